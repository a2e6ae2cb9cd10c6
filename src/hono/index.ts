/**
 * m2m-guard for Hono: `m2mAuth(options)` is a Hono middleware that verifies each request's
 * bearer M2M token and sets `c.get('m2m')`, typed through Hono's `Variables`
 * (`new Hono<M2MEnv>()`); the guards are Hono middleware. Answers exactly as the Express
 * middleware does. Runs wherever Hono does (`@hono/node-server`, `app.request()`, fetch runtimes).
 *
 * @example
 * const app = new Hono<M2MEnv>();
 * app.use('/internal/*', m2mAuth({ machineSecretKey: process.env.CLERK_MACHINE_SECRET_KEY }));
 * app.get('/internal/orders', requireMachine(API_MACHINE_ID), (c) =>
 *   c.json({ calledBy: c.get('m2m')?.subject }),
 * );
 */
import type { Context, MiddlewareHandler, Next } from 'hono';
import {
  adapterCore,
  checkHeld,
  decideWebRequest,
  type M2MAdapterHandle,
  type M2MAdapterOptions,
  markHandled,
  refusalResponse,
  refuserOf,
} from '../middleware/adapter.js';
import {
  ANONYMOUS_PASS,
  bindAuth,
  checkClaims,
  checkMachine,
  checkSubjects,
  type M2MDecision,
  type M2MGuardCheck,
  PREFLIGHT_PASS,
} from '../middleware/core.js';
import { M2MAuthError } from '../middleware/errors.js';
import { callMeFirst, looksLikeRequest } from '../middleware/misuse.js';
import type { M2MRequestAuth } from '../middleware/types.js';

export type { M2MAdapterOptions as M2MAuthOptions, M2MRequestAuth };

/** The variables `m2mAuth()` sets: `c.get('m2m')`, the verified auth or `undefined`. */
export type M2MVariables = { m2m: M2MRequestAuth | undefined };
/** A Hono environment with `c.get('m2m')` typed: `new Hono<M2MEnv>()`. */
export type M2MEnv = { Variables: M2MVariables };

/** What a Hono middleware returns. */
type HandlerResult = ReturnType<MiddlewareHandler<M2MEnv>>;

/** What `m2mAuth()` returns: the middleware, plus its verifier and a way to release it. */
export type M2MAuthMiddleware = MiddlewareHandler<M2MEnv> & M2MAdapterHandle;

/**
 * A Hono middleware verifying each request's bearer M2M token. With `passErrors: true` a
 * refusal is thrown as the `M2MAuthError` to `app.onError()`.
 */
export function m2mAuth(options: M2MAdapterOptions = {}): M2MAuthMiddleware {
  const adapter = adapterCore(options, 'm2mAuth');
  const { core, handle } = adapter;

  function finish(decision: M2MDecision, c: Context<M2MEnv>, next: Next): HandlerResult {
    markHandled(c, adapter, decision);
    // A refusal is rare: its promise costs nothing on the accept path.
    if (decision instanceof M2MAuthError) return Promise.resolve(refuse(decision, c));
    if (decision !== ANONYMOUS_PASS && decision !== PREFLIGHT_PASS) {
      c.set('m2m', bindAuth(c, decision as M2MRequestAuth));
    }
    return next();
  }

  const middleware: MiddlewareHandler<M2MEnv> = (c, next) => {
    c.set('m2m', undefined);
    const decision = decideWebRequest(core, c.req.raw);
    if (decision instanceof Promise) {
      return decision.then((settled): HandlerResult => finish(settled, c, next));
    }
    return finish(decision, c, next); // a cache hit: no promise of ours
  };
  return Object.assign(middleware, handle);
}

function refuse(err: M2MAuthError, c: Context): Response {
  const by = refuserOf(c);
  by.logRefusal(err);
  if (by.passErrors) throw err;
  return refusalResponse(err);
}

function guard(check: M2MGuardCheck): MiddlewareHandler<M2MEnv> {
  return async function m2mGuard(c, next) {
    const refusal = checkHeld(check, c, c.get('m2m'));
    if (refusal !== undefined) return refuse(refusal, c);
    await next();
  };
}

/** Hono middleware: this service's machine id must be in the token's scopes. */
export function requireMachine(machineId: string): MiddlewareHandler<M2MEnv> {
  if (looksLikeRequest(machineId)) callMeFirst('requireMachine', "requireMachine('mch_…')");
  return guard(checkMachine(machineId));
}

/** Hono middleware: only these calling machines (token subjects) may pass. */
export function allowSubjects(...machineIdList: string[]): MiddlewareHandler<M2MEnv> {
  if (looksLikeRequest(machineIdList[0])) callMeFirst('allowSubjects', "allowSubjects('mch_…')");
  return guard(checkSubjects(machineIdList));
}

/** Hono middleware: `predicate(c.get('m2m'))` must return `true`. */
export function requireClaims(
  predicate: (auth: M2MRequestAuth) => boolean,
): MiddlewareHandler<M2MEnv> {
  if (looksLikeRequest(predicate)) callMeFirst('requireClaims', 'requireClaims(predicate)');
  return guard(checkClaims(predicate));
}
