import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { M2MConfigError } from '../shared/config-error.js';
import { loggerOption } from '../shared/logger.js';
import {
  assertKnownKeys,
  assertMethods,
  boolOption,
  functionOption,
  optionKeys,
  optionsObject,
} from '../shared/validate.js';
import {
  createTokenVerifier,
  InvalidTokenError,
  recordRequestOutcome,
  TOKEN_VERIFIER_KEYS,
  type TokenVerifier,
  type TokenVerifierOptions,
  type VerifiedM2MToken,
  VerifierUnavailableError,
} from '../verifier/index.js';
import {
  AuthUnavailableError,
  InvalidRequestError,
  type M2MAuthError,
  TokenRejectedError,
  UnauthorizedError,
} from './errors.js';
import { type Extraction, extractToken, fromCustomValue } from './extract.js';
import { parseResponseOptions, rememberResponder } from './respond.js';
import type {
  M2MAuthMiddleware,
  M2MAuthOptions,
  M2MMiddleware,
  M2MRequestAuth,
  NextFunction,
} from './types.js';

/** The middleware's own options (the rest are the verifier's), kept complete by the compiler. */
const OWN_KEYS = optionKeys<Omit<M2MAuthOptions, keyof TokenVerifierOptions>>({
  verifier: true,
  required: true,
  getToken: true,
  allowQueryToken: true,
  skipPreflight: true,
  realm: true,
  onError: true,
  passErrors: true,
});

/**
 * A CORS preflight for a request that will carry credentials: `OPTIONS` with
 * `Access-Control-Request-Method` and `authorization` among `Access-Control-Request-Headers`
 * (as express-jwt has it). Any other OPTIONS request is authenticated like the rest.
 */
export function isPreflight(req: IncomingMessage): boolean {
  if (req.method !== 'OPTIONS' || req.headers['access-control-request-method'] === undefined) {
    return false;
  }
  const asked = req.headers['access-control-request-headers'];
  return typeof asked === 'string' && /(^|[\s,])authorization($|[\s,])/i.test(asked);
}

/**
 * Express/Connect middleware that verifies the bearer M2M token of each request and puts the
 * verified claims on `req.m2m`. Refusals: no token 401, malformed request 400, bad token 401
 * `invalid_token`, Clerk unreachable 503; never a silent pass. Options are validated here, once.
 */
export function m2mAuth(options: M2MAuthOptions = {}): M2MAuthMiddleware {
  const opts = optionsObject<M2MAuthOptions>(options, 'options');
  assertKnownKeys(opts, [...OWN_KEYS, ...TOKEN_VERIFIER_KEYS]);
  const logger = loggerOption(opts.logger).child({ component: 'm2m-auth' });
  const responder = parseResponseOptions(opts, logger);
  const { realm } = responder;
  const required = boolOption(opts.required, 'required', true);
  const allowQueryToken = boolOption(opts.allowQueryToken, 'allowQueryToken', false);
  const skipPreflight = boolOption(opts.skipPreflight, 'skipPreflight', true);
  const getToken = functionOption<NonNullable<M2MAuthOptions['getToken']>>(
    opts.getToken,
    'getToken',
  );
  if (getToken && allowQueryToken) {
    throw new M2MConfigError('allowQueryToken', 'cannot be combined with `getToken`');
  }
  const verifier = verifierOption(opts);
  const ownsVerifier = opts.verifier === undefined;

  /** The auth object of each verified answer, made once: frozen, so requests can share it. */
  const authOf = new WeakMap<VerifiedM2MToken, M2MRequestAuth>();
  function attach(req: IncomingMessage, verified: VerifiedM2MToken): undefined {
    let auth = authOf.get(verified);
    if (!auth) {
      auth = Object.freeze({
        id: verified.id,
        subject: verified.subject,
        machineId: verified.subject,
        scopes: verified.scopes,
        claims: verified.claims,
        expiration: verified.expiration,
      });
      authOf.set(verified, auth);
    }
    req.m2m = auth;
    recordRequestOutcome('accepted');
    return undefined;
  }

  function refusalOf(err: unknown): M2MAuthError {
    if (err instanceof InvalidTokenError) {
      const { reason, tokenId, subject } = err;
      return new TokenRejectedError({ realm, reason, tokenId, subject, cause: err });
    }
    if (err instanceof VerifierUnavailableError) {
      return new AuthUnavailableError({ realm, retryAfter: err.retryAfter, cause: err });
    }
    throw err;
  }

  /**
   * Decides a request: a refusal, `undefined` to pass, or a promise of either. A cached answer
   * is decided synchronously, so the hot path makes no promise at all.
   */
  type Decision = M2MAuthError | undefined;
  function decide(req: IncomingMessage, found: Extraction): Decision | Promise<Decision> {
    if (found.kind === 'malformed') {
      return new InvalidRequestError(found.description, { realm, reason: 'malformed' });
    }
    if (found.kind === 'none') return required ? new UnauthorizedError({ realm }) : undefined;
    let cached: VerifiedM2MToken | undefined;
    try {
      cached = verifier.verifyCached(found.token);
    } catch (err) {
      return refusalOf(err);
    }
    if (cached) return attach(req, cached);
    return verifier.verify(found.token).then((verified) => attach(req, verified), refusalOf);
  }

  const middleware: M2MMiddleware = function m2mAuthMiddleware(req, res, next) {
    // Only we set req.m2m: whatever another middleware put there is dropped.
    if (req.m2m !== undefined) req.m2m = undefined;
    if (skipPreflight && isPreflight(req)) {
      rememberResponder(req, 'preflight');
      return next();
    }
    rememberResponder(req, responder);
    let decision: Decision | Promise<Decision>;
    try {
      decision = getToken
        ? Promise.resolve(getToken(req)).then((value) => decide(req, fromCustomValue(value)))
        : decide(req, extractToken(req, allowQueryToken));
    } catch (err) {
      return next(err);
    }
    if (decision instanceof Promise) {
      decision.then((refusal) => finish(refusal, req, res, next), next);
    } else {
      finish(decision, req, res, next); // a cache hit: no promise, no closure
    }
  };

  function finish(
    refusal: Decision,
    req: IncomingMessage,
    res: ServerResponse,
    next: NextFunction,
  ) {
    if (!refusal) return passOn(next, res, logger);
    try {
      responder.refuse(refusal, req, res, next);
    } catch (err) {
      next(err); // an onError that throws
    }
  }
  return Object.assign(middleware, {
    verifier,
    close: () => (ownsVerifier ? verifier.close() : Promise.resolve()),
  });
}

/**
 * Calls `next()`, guarding against a handler after us that throws synchronously (plain
 * `node:http`, Connect): it is logged and answered 500, never left as an unhandled rejection
 * when we were called back from a promise.
 */
function passOn(next: () => void, res: ServerResponse, logger: Logger): void {
  try {
    next();
  } catch (err) {
    logger.error({ err: (err as Error)?.message }, 'a handler after m2mAuth() threw');
    if (!res.headersSent) {
      res.statusCode = 500;
      res.setHeader('Content-Type', 'application/json');
      res.end('{"error":"server_error"}');
    }
  }
}

function verifierOption(opts: M2MAuthOptions): TokenVerifier {
  const { verifier } = opts;
  const verifierKeys = TOKEN_VERIFIER_KEYS.filter(
    (k) => k !== 'logger' && opts[k as keyof M2MAuthOptions] !== undefined,
  );
  if (verifier === undefined) {
    const own = Object.fromEntries(verifierKeys.map((k) => [k, opts[k as keyof M2MAuthOptions]]));
    return createTokenVerifier({ ...own, logger: opts.logger });
  }
  assertMethods(
    verifier,
    'verifier',
    ['verify', 'verifyCached'],
    'must be a verifier from createTokenVerifier()',
  );
  if (verifierKeys.length > 0) {
    throw new M2MConfigError(verifierKeys[0]!, 'cannot be combined with `verifier`; set it there');
  }
  return verifier;
}
