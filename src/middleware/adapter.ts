/**
 * What every framework adapter (Fastify, Hono, Koa, Web, NestJS) shares: building the core from
 * the options, deciding a `node:http` request or a Web `Request`, logging refusals as Express
 * does, writing a refusal's exact answer, and the per-request record guards read.
 */
import type { IncomingMessage } from 'node:http';
import type { Logger } from 'pino';
import { loggerOption } from '../shared/logger.js';
import { assertKnownKeys, boolOption, optionsObject } from '../shared/validate.js';
import { TOKEN_VERIFIER_KEYS, type TokenVerifier } from '../verifier/index.js';
import {
  AUTHENTICATOR_KEYS,
  buildAuthenticator,
  type M2MAuthenticator,
  type M2MAuthenticatorOptions,
  type M2MDecision,
  type M2MGuardCheck,
  PREFLIGHT_PASS,
  preflightPass,
  realmOption,
  trustedAuth,
} from './core.js';
import type { M2MAuthError } from './errors.js';
import { extractToken } from './extract.js';
import { isPreflight } from './m2m-auth.js';
import { callMeFirst, looksLikeRequest } from './misuse.js';
import type { M2MRequestAuth } from './types.js';

/** Options of `m2mAuth()` in the framework adapters: the core's, and `passErrors`. */
export interface M2MAdapterOptions extends M2MAuthenticatorOptions {
  /**
   * Hand refusals to the framework's own error path (thrown, or `done(err)`), as the
   * `M2MAuthError` carrying `status`, `headers` and `toJSON()`. Default `false`: the adapter
   * answers them itself, exactly as the Express middleware does.
   */
  passErrors?: boolean;
}

/** What an adapter's `m2mAuth()` carries besides the framework's handler. */
export interface M2MAdapterHandle {
  /** The verifier in use: the one passed in, or the one built from the options. */
  readonly verifier: TokenVerifier;
  /** Closes the verifier if `m2mAuth()` built it; a passed-in one is left open. */
  close(): Promise<void>;
}

export interface AdapterCore {
  readonly core: M2MAuthenticator;
  readonly passErrors: boolean;
  /** Logs a refusal as the Express middleware does (`m2m request refused`). */
  logRefusal(err: M2MAuthError): void;
  readonly handle: M2MAdapterHandle;
}

/** Validates an adapter's options (unknown keys included) and builds its core, once. */
export function adapterCore(
  options: unknown,
  factory: string,
  extraKeys: readonly string[] = ['passErrors'],
): AdapterCore {
  if (looksLikeRequest(options)) callMeFirst(factory, `${factory}()`);
  const opts = optionsObject<M2MAdapterOptions>(options, 'options');
  assertKnownKeys(opts, [...AUTHENTICATOR_KEYS, ...extraKeys, ...TOKEN_VERIFIER_KEYS]);
  const logger = loggerOption(opts.logger).child({ component: 'm2m-auth' });
  const realm = realmOption(opts.realm);
  const passErrors = boolOption(opts.passErrors, 'passErrors', false);
  const core = buildAuthenticator(opts, realm);
  return {
    core,
    passErrors,
    logRefusal: (err) => logRefusal(logger, err),
    handle: { verifier: core.verifier, close: core.close },
  };
}

const silent = adapterCoreless();
/** For a guard's refusal on a request no `m2mAuth()` handled: logged nowhere, answered. */
function adapterCoreless(): Pick<AdapterCore, 'passErrors' | 'logRefusal'> {
  return { passErrors: false, logRefusal: () => undefined };
}

/** How a guard answers on this request: as the `m2mAuth()` that handled it did. */
export function refuserOf(holder: object): Pick<AdapterCore, 'passErrors' | 'logRefusal'> {
  return handlerOf(holder) ?? silent;
}

export function logRefusal(logger: Logger, err: M2MAuthError): void {
  const line = {
    reason: err.reason,
    status: err.status,
    tokenId: err.tokenId,
    subject: err.subject,
  };
  if (err.status === 503) logger.warn(line, 'm2m request refused');
  else logger.info(line, 'm2m request refused');
}

/**
 * Decides a `node:http` request (Fastify's `request.raw`, Koa's `ctx.req`, NestJS): the same
 * reading as the Express middleware, `rawHeaders` included, so two headers are seen as two.
 */
export function decideNodeRequest(
  core: M2MAuthenticator,
  req: IncomingMessage,
): M2MDecision | Promise<M2MDecision> {
  if (core.skipPreflight && isPreflight(req)) return preflightPass();
  return core.decideExtraction(extractToken(req, core.allowQueryToken));
}

/** Decides a Web `Request` (Hono, Next.js, fetch handlers): `Headers` join repeats with `, `. */
export function decideWebRequest(
  core: M2MAuthenticator,
  request: Request,
): M2MDecision | Promise<M2MDecision> {
  const { headers } = request;
  return core.authenticate({
    authorization: headers.get('authorization'),
    method: request.method,
    accessControlRequestMethod: headers.get('access-control-request-method'),
    accessControlRequestHeaders: headers.get('access-control-request-headers'),
    url: request.url,
  });
}

/** The exact body and headers of a refusal, as the Express middleware writes them. */
export function refusalBody(err: M2MAuthError): string {
  return JSON.stringify(err.toJSON());
}

export function refusalHeaders(err: M2MAuthError): Record<string, string> {
  const headers = err.headers;
  headers['Content-Type'] = 'application/json';
  return headers;
}

/** A refusal as a Web `Response`, ready to return. */
export function refusalResponse(err: M2MAuthError): Response {
  return new Response(refusalBody(err), { status: err.status, headers: refusalHeaders(err) });
}

// ---------------------------------------------------------------------------------------------
// What the guards read: which m2mAuth() handled the request, and what it decided
// ---------------------------------------------------------------------------------------------

/** The adapter `m2mAuth()` that handled a request, or that it let a preflight through. */
const HANDLED = Symbol('m2m-guard.handled');
type Handled = { [HANDLED]?: AdapterCore | 'preflight' };

/** Records on the request (or context) which `m2mAuth()` handled it; the auth is bound apart. */
export function markHandled(holder: object, by: AdapterCore, decision: M2MDecision): void {
  (holder as Handled)[HANDLED] = decision === PREFLIGHT_PASS ? 'preflight' : by;
}

/** The `m2mAuth()` whose realm, logger and `passErrors` a guard's refusal follows. */
export function handlerOf(holder: object): AdapterCore | undefined {
  const handled = (holder as Handled)[HANDLED];
  return handled === 'preflight' ? undefined : handled;
}

/**
 * A guard's decision on a request: a preflight `m2mAuth()` let through passes; otherwise the
 * check runs on the auth `m2mAuth()` bound to this holder, only if `seen` (the framework's slot)
 * is still that very object, in the realm of that `m2mAuth()`.
 */
export function checkHeld(
  check: M2MGuardCheck,
  holder: object,
  seen: M2MRequestAuth | null | undefined,
): M2MAuthError | undefined {
  const handled = (holder as Handled)[HANDLED];
  if (handled === 'preflight') return undefined;
  return check(trustedAuth(holder, seen), handled?.core.realm ?? 'api');
}
