import type { IncomingMessage, ServerResponse } from 'node:http';
import { silentLogger } from '../shared/logger.js';
import {
  checkClaims,
  checkMachine,
  checkSubjects,
  type M2MGuardCheck,
  trustedAuth,
} from './core.js';
import type { M2MAuthError } from './errors.js';
import { callMeFirst, looksLikeRequest } from './misuse.js';
import { parseResponseOptions, type Responder, responderFor } from './respond.js';
import type { M2MMiddleware, M2MRequestAuth, NextFunction } from './types.js';

/**
 * Guards that compose after `m2mAuth()`: each lets a verified request through or answers 403
 * `insufficient_scope`, the same way (realm, `onError`, `passErrors`) as the `m2mAuth()` that
 * ran before it. A request that reaches a guard without the `req.m2m` that `m2mAuth()` set on it
 * (none, or one set or replaced by anyone else) gets 401. The decisions are `checkMachine()`,
 * `checkSubjects()` and `checkClaims()` of the core.
 */

const fallback: Responder = parseResponseOptions({}, silentLogger());

function guard(check: M2MGuardCheck): M2MMiddleware {
  return (req: IncomingMessage, res: ServerResponse, next: NextFunction) => {
    // Only the req.m2m that m2mAuth() set on this very request is trusted.
    const auth = trustedAuth(req, req.m2m);
    const responder = responderFor(req, auth);
    if (responder === 'preflight') return next();
    const r = responder ?? fallback;
    let refusal: M2MAuthError | undefined;
    try {
      refusal = check(auth, r.realm);
    } catch (err) {
      return next(err);
    }
    if (refusal === undefined) return next();
    r.refuse(refusal, req, res, next);
  };
}

/** This service's machine id must be in the token's scopes. */
export function requireMachine(machineId: string): M2MMiddleware {
  if (looksLikeRequest(machineId)) callMeFirst('requireMachine', "requireMachine('mch_…')");
  return guard(checkMachine(machineId));
}

/** Only these calling machines (token subjects) may pass. */
export function allowSubjects(...machineIdList: string[]): M2MMiddleware {
  if (looksLikeRequest(machineIdList[0])) callMeFirst('allowSubjects', "allowSubjects('mch_…')");
  return guard(checkSubjects(machineIdList));
}

/** `predicate(req.m2m)` must return true. A predicate that throws hands the error to `next`. */
export function requireClaims(predicate: (auth: M2MRequestAuth) => boolean): M2MMiddleware {
  if (looksLikeRequest(predicate)) callMeFirst('requireClaims', 'requireClaims(predicate)');
  return guard(checkClaims(predicate));
}
