import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { M2MConfigError } from '../shared/config-error.js';
import { loggerOption } from '../shared/logger.js';
import {
  assertKnownKeys,
  boolOption,
  functionOption,
  optionKeys,
  optionsObject,
} from '../shared/validate.js';
import { TOKEN_VERIFIER_KEYS } from '../verifier/index.js';
import {
  ANONYMOUS_PASS,
  AUTHENTICATOR_KEYS,
  bindAuth,
  buildAuthenticator,
  isPreflightRequest,
  type M2MAuthenticatorOptions,
  type M2MDecision,
  preflightPass,
} from './core.js';
import { M2MAuthError } from './errors.js';
import { extractToken, fromCustomValue } from './extract.js';
import { callMeFirst, looksLikeRequest } from './misuse.js';
import { parseResponseOptions, rememberIssuer, rememberResponder } from './respond.js';
import type {
  M2MAuthMiddleware,
  M2MAuthOptions,
  M2MMiddleware,
  M2MRequestAuth,
  NextFunction,
} from './types.js';

/** The middleware's own options (the rest are the verifier's), kept complete by the compiler. */
const OWN_KEYS = [
  ...AUTHENTICATOR_KEYS,
  ...optionKeys<Omit<M2MAuthOptions, keyof M2MAuthenticatorOptions>>({
    getToken: true,
    onError: true,
    passErrors: true,
  }),
];

/** A CORS preflight that will carry credentials (see `isPreflightRequest()`). */
export function isPreflight(req: IncomingMessage): boolean {
  if (req.method !== 'OPTIONS') return false; // the hot path reads no header here
  const { headers } = req;
  return isPreflightRequest(
    req.method,
    headers['access-control-request-method'],
    headers['access-control-request-headers'],
  );
}

/**
 * Express/Connect middleware that verifies the bearer M2M token of each request and puts the
 * verified claims on `req.m2m`. Refusals: no token 401, malformed request 400, bad token 401
 * `invalid_token`, Clerk unreachable 503; never a silent pass. Options are validated here, once.
 * A thin wrapper over `createM2MAuthenticator()`, the framework-free core.
 *
 * @example
 * app.use('/internal', m2mAuth({ machineSecretKey: process.env.CLERK_MACHINE_SECRET_KEY }));
 * app.get('/internal/orders', (req, res) => res.json({ calledBy: req.m2m?.subject }));
 */
export function m2mAuth(options: M2MAuthOptions = {}): M2MAuthMiddleware {
  if (looksLikeRequest(options)) callMeFirst('m2mAuth', 'app.use(m2mAuth())');
  const opts = optionsObject<M2MAuthOptions>(options, 'options');
  assertKnownKeys(opts, [...OWN_KEYS, ...TOKEN_VERIFIER_KEYS]);
  const logger = loggerOption(opts.logger).child({ component: 'm2m-auth' });
  const responder = parseResponseOptions(opts, logger);
  const getToken = functionOption<NonNullable<M2MAuthOptions['getToken']>>(
    opts.getToken,
    'getToken',
  );
  if (getToken && boolOption(opts.allowQueryToken, 'allowQueryToken', false)) {
    throw new M2MConfigError('allowQueryToken', 'cannot be combined with `getToken`');
  }
  const core = buildAuthenticator(opts, responder.realm, (auth) => rememberIssuer(auth, responder));
  const { skipPreflight, allowQueryToken, verifier } = core;

  const middleware: M2MMiddleware = function m2mAuthMiddleware(req, res, next) {
    // Only we set req.m2m: whatever another middleware put there is dropped.
    if (req.m2m !== undefined) req.m2m = undefined;
    if (skipPreflight && isPreflight(req)) {
      preflightPass();
      rememberResponder(req, 'preflight');
      return next();
    }
    let decision: M2MDecision | Promise<M2MDecision>;
    try {
      decision = getToken
        ? Promise.resolve(getToken(req)).then((value) =>
            core.decideExtraction(fromCustomValue(value)),
          )
        : core.decideExtraction(extractToken(req, allowQueryToken));
    } catch (err) {
      return next(err);
    }
    if (decision instanceof Promise) {
      decision.then((settled) => finish(settled, req, res, next), next);
    } else {
      finish(decision, req, res, next); // a cache hit: no promise, no closure
    }
  };

  function finish(
    decision: M2MDecision,
    req: IncomingMessage,
    res: ServerResponse,
    next: NextFunction,
  ): void {
    if (decision instanceof M2MAuthError) {
      rememberResponder(req, responder);
      try {
        responder.refuse(decision, req, res, next);
      } catch (err) {
        next(err); // an onError that throws
      }
      return;
    }
    if (decision === ANONYMOUS_PASS) {
      rememberResponder(req, responder); // the guards answer in this m2mAuth()'s format
    } else {
      // No responder written: the guards find it through the auth (`rememberIssuer`).
      req.m2m = bindAuth(req, decision as M2MRequestAuth);
    }
    passOn(next, res, logger);
  }
  return Object.assign(middleware, { verifier, close: core.close });
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
