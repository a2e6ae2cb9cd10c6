import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { M2MConfigError } from '../shared/config-error.js';
import { boolOption, functionOption } from '../shared/validate.js';
import { issuedOf, realmOption } from './core.js';
import type { M2MAuthError } from './errors.js';
import type { ErrorHandler, M2MRequestAuth, NextFunction, ResponseOptions } from './types.js';

/** How one `m2mAuth()` answers refusals; guards after it on the same request reuse it. */
export interface Responder {
  realm: string;
  refuse(err: M2MAuthError, req: IncomingMessage, res: ServerResponse, next: NextFunction): void;
}

export function parseResponseOptions(options: ResponseOptions, logger: Logger): Responder {
  const realm = realmOption(options.realm);
  const onError = functionOption<ErrorHandler>(options.onError, 'onError');
  const passErrors = boolOption(options.passErrors, 'passErrors', false);
  if (onError && passErrors) {
    throw new M2MConfigError('passErrors', 'cannot be combined with `onError`');
  }
  return {
    realm,
    refuse(err, req, res, next) {
      const line = {
        reason: err.reason,
        status: err.status,
        tokenId: err.tokenId,
        subject: err.subject,
      };
      // `info` for every refusal, 503 included: an outage is said once by the verifier (with
      // the host and what to fix), never once per request.
      logger.info(line, 'm2m request refused');
      if (onError) return onError(err, req, res, next);
      if (passErrors || res.headersSent) return next(err);
      writeError(res, err);
    },
  };
}

/** The default answer, with plain `node:http` calls so it works under any framework. */
export function writeError(res: ServerResponse, err: M2MAuthError): void {
  const body = JSON.stringify(err.toJSON());
  res.statusCode = err.status;
  for (const [name, value] of Object.entries(err.headers)) res.setHeader(name, value);
  res.setHeader('Content-Type', 'application/json');
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.end(body);
}

/**
 * Which `m2mAuth()` handled a request (or that it let a preflight through), kept on the request
 * under a module-private key: a property write per request, cheaper than a `WeakMap` entry.
 */
const RESPONDER = Symbol('m2m-guard.responder');
type WithResponder = { [RESPONDER]?: Responder | 'preflight' };

export function rememberResponder(req: IncomingMessage, responder: Responder | 'preflight'): void {
  (req as WithResponder)[RESPONDER] = responder;
}

export function responderOf(req: IncomingMessage): Responder | 'preflight' | undefined {
  return (req as WithResponder)[RESPONDER];
}

/**
 * The responder of the `m2mAuth()` that issued each auth object, written once per auth (not per
 * request): a request it accepts needs no responder of its own, one property write fewer on
 * the hot path, where Express's request objects make each write dear.
 */
const issuers = new WeakMap<M2MRequestAuth, Responder>();

export function rememberIssuer(auth: M2MRequestAuth, responder: Responder): void {
  issuers.set(auth, responder);
}

/** The responder for a request the guards see: its trusted auth's issuer, else the request's. */
export function responderFor(
  req: IncomingMessage,
  auth: M2MRequestAuth | undefined,
): Responder | 'preflight' | undefined {
  return (auth && issuers.get(issuedOf(auth))) ?? responderOf(req);
}
