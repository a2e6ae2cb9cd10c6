import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { M2MConfigError } from '../shared/config-error.js';
import { boolOption, functionOption, stringOption } from '../shared/validate.js';
import { recordRequestOutcome } from '../verifier/index.js';
import type { M2MAuthError } from './errors.js';
import type { ErrorHandler, NextFunction, ResponseOptions } from './types.js';

/** How one `m2mAuth()` answers refusals; guards after it on the same request reuse it. */
export interface Responder {
  realm: string;
  refuse(err: M2MAuthError, req: IncomingMessage, res: ServerResponse, next: NextFunction): void;
}

/** Quoted-string safe: printable ASCII without `"` and `\`, so the challenge stays well formed. */
const REALM = /^[\x20\x21\x23-\x5b\x5d-\x7e]{1,100}$/;

export function parseResponseOptions(options: ResponseOptions, logger: Logger): Responder {
  const realm = stringOption(options.realm, 'realm') ?? 'api';
  if (!REALM.test(realm)) {
    throw new M2MConfigError(
      'realm',
      'must be 1-100 printable ASCII characters without `"` or `\\`',
    );
  }
  const onError = functionOption<ErrorHandler>(options.onError, 'onError');
  const passErrors = boolOption(options.passErrors, 'passErrors', false);
  if (onError && passErrors) {
    throw new M2MConfigError('passErrors', 'cannot be combined with `onError`');
  }
  return {
    realm,
    refuse(err, req, res, next) {
      recordRequestOutcome(err.code);
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

const responders = new WeakMap<IncomingMessage, Responder | 'preflight'>();

/** Remembers which `m2mAuth()` handled a request (or that it let a preflight through). */
export function rememberResponder(req: IncomingMessage, responder: Responder | 'preflight'): void {
  responders.set(req, responder);
}

export function responderOf(req: IncomingMessage): Responder | 'preflight' | undefined {
  return responders.get(req);
}
