/**
 * m2m-guard for Koa: `m2mAuth(options)` is a Koa middleware that verifies each request's bearer
 * M2M token and sets `ctx.state.m2m` (typed with `new Koa<M2MState>()`); the guards are Koa
 * middleware. Answers exactly as the Express middleware does.
 *
 * @example
 * const app = new Koa<M2MState>();
 * app.use(m2mAuth({ machineSecretKey: process.env.CLERK_MACHINE_SECRET_KEY }));
 * app.use(requireMachine(API_MACHINE_ID));
 * app.use((ctx) => { ctx.body = { calledBy: ctx.state.m2m?.subject }; });
 */
import type { Middleware, ParameterizedContext } from 'koa';
import {
  adapterCore,
  checkHeld,
  decideNodeRequest,
  type M2MAdapterHandle,
  type M2MAdapterOptions,
  markHandled,
  refusalBody,
  refusalHeaders,
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

/** The state `m2mAuth()` sets: `ctx.state.m2m`, the verified auth or `undefined`. */
export interface M2MState {
  m2m?: M2MRequestAuth | undefined;
}

type Ctx = ParameterizedContext<M2MState>;
type Next = () => Promise<unknown>;

/** What `m2mAuth()` returns: the middleware, plus its verifier and a way to release it. */
export type M2MAuthMiddleware = Middleware<M2MState> & M2MAdapterHandle;

/**
 * A Koa middleware verifying each request's bearer M2M token. With `passErrors: true` a refusal
 * is thrown as the `M2MAuthError`: Koa's error handling answers its `status` and `headers`.
 */
export function m2mAuth(options: M2MAdapterOptions = {}): M2MAuthMiddleware {
  const adapter = adapterCore(options, 'm2mAuth');
  const { core, handle } = adapter;

  function finish(decision: M2MDecision, ctx: Ctx, next: Next): unknown {
    markHandled(ctx, adapter, decision);
    if (decision instanceof M2MAuthError) return refuse(decision, ctx);
    if (decision !== ANONYMOUS_PASS && decision !== PREFLIGHT_PASS) {
      ctx.state.m2m = bindAuth(ctx, decision as M2MRequestAuth);
    }
    return next();
  }

  const middleware: Middleware<M2MState> = (ctx, next) => {
    ctx.state.m2m = undefined;
    const decision = decideNodeRequest(core, ctx.req);
    if (decision instanceof Promise) return decision.then((settled) => finish(settled, ctx, next));
    return finish(decision, ctx, next); // a cache hit: no promise of ours
  };
  return Object.assign(middleware, handle);
}

function refuse(err: M2MAuthError, ctx: Ctx): void {
  const by = refuserOf(ctx);
  by.logRefusal(err);
  if (by.passErrors) throw err;
  ctx.status = err.status;
  ctx.set(refusalHeaders(err));
  ctx.body = refusalBody(err); // Content-Type is already set: Koa keeps it as it is
}

function guard(check: M2MGuardCheck): Middleware<M2MState> {
  return function m2mGuard(ctx, next) {
    const refusal = checkHeld(check, ctx, ctx.state.m2m);
    if (refusal !== undefined) return refuse(refusal, ctx);
    return next();
  };
}

/** Koa middleware: this service's machine id must be in the token's scopes. */
export function requireMachine(machineId: string): Middleware<M2MState> {
  if (looksLikeRequest(machineId)) callMeFirst('requireMachine', "requireMachine('mch_…')");
  return guard(checkMachine(machineId));
}

/** Koa middleware: only these calling machines (token subjects) may pass. */
export function allowSubjects(...machineIdList: string[]): Middleware<M2MState> {
  if (looksLikeRequest(machineIdList[0])) callMeFirst('allowSubjects', "allowSubjects('mch_…')");
  return guard(checkSubjects(machineIdList));
}

/** Koa middleware: `predicate(ctx.state.m2m)` must return `true`. */
export function requireClaims(predicate: (auth: M2MRequestAuth) => boolean): Middleware<M2MState> {
  if (looksLikeRequest(predicate)) callMeFirst('requireClaims', 'requireClaims(predicate)');
  return guard(checkClaims(predicate));
}
