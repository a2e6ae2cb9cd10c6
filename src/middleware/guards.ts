import type { IncomingMessage, ServerResponse } from 'node:http';
import { M2MConfigError } from '../shared/config-error.js';
import { silentLogger } from '../shared/logger.js';
import { MACHINE_ID_PATTERN } from '../shared/wire.js';
import { InsufficientScopeError, UnauthorizedError } from './errors.js';
import { parseResponseOptions, type Responder, responderOf } from './respond.js';
import type { M2MMiddleware, M2MRequestAuth, NextFunction } from './types.js';

/**
 * Guards that compose after `m2mAuth()`: each lets a verified request through or answers 403
 * `insufficient_scope`, the same way (realm, `onError`, `passErrors`) as the `m2mAuth()` that
 * ran before it. A request that reaches a guard without `req.m2m` gets 401.
 */

const fallback: Responder = parseResponseOptions({}, silentLogger());

function guard(allows: (auth: M2MRequestAuth) => boolean): M2MMiddleware {
  return (req: IncomingMessage, res: ServerResponse, next: NextFunction) => {
    const responder = responderOf(req);
    if (responder === 'preflight') return next();
    const r = responder ?? fallback;
    // Only a req.m2m that m2mAuth() set on this very request is trusted.
    const auth = responder === undefined ? undefined : req.m2m;
    if (auth === undefined)
      return r.refuse(new UnauthorizedError({ realm: r.realm }), req, res, next);
    let ok: boolean;
    try {
      ok = allows(auth);
    } catch (err) {
      return next(err);
    }
    if (ok) return next();
    const refusal = new InsufficientScopeError({
      realm: r.realm,
      tokenId: auth.id,
      subject: auth.subject,
    });
    r.refuse(refusal, req, res, next);
  };
}

function machineIds(ids: readonly string[], option: string): Set<string> {
  if (ids.length === 0) throw new M2MConfigError(option, 'needs at least one machine id');
  for (const id of ids) {
    if (typeof id !== 'string' || !MACHINE_ID_PATTERN.test(id)) {
      throw new M2MConfigError(option, 'takes machine ids (`mch_` + 27 characters)');
    }
  }
  return new Set(ids);
}

/** This service's machine id must be in the token's scopes. */
export function requireMachine(machineId: string): M2MMiddleware {
  const [id] = machineIds([machineId], 'requireMachine');
  return guard((auth) => auth.scopes.includes(id!));
}

/** Only these calling machines (token subjects) may pass. */
export function allowSubjects(...machineIdList: string[]): M2MMiddleware {
  const allowed = machineIds(machineIdList, 'allowSubjects');
  return guard((auth) => allowed.has(auth.subject));
}

/** `predicate(req.m2m)` must return true. A predicate that throws hands the error to `next`. */
export function requireClaims(predicate: (auth: M2MRequestAuth) => boolean): M2MMiddleware {
  if (typeof predicate !== 'function')
    throw new M2MConfigError('requireClaims', 'takes a function');
  return guard((auth) => predicate(auth) === true);
}
