/**
 * m2m-guard for Fastify: `m2mAuth(options)` is a plugin (wrapped with `fastify-plugin`, so it
 * applies to the encapsulation context it is registered in) that decorates `request.m2m` and
 * verifies in an `onRequest` hook; the guards are `preHandler` hooks. Answers exactly as the
 * Express middleware does.
 *
 * @example
 * await app.register(m2mAuth({ machineSecretKey: process.env.CLERK_MACHINE_SECRET_KEY }));
 * app.get('/internal/orders', { preHandler: requireMachine(API_MACHINE_ID) }, (request) => ({
 *   calledBy: request.m2m?.subject,
 * }));
 */
import type {
  FastifyPluginCallback,
  FastifyReply,
  FastifyRequest,
  HookHandlerDoneFunction,
  preHandlerHookHandler,
} from 'fastify';
import fp from 'fastify-plugin';
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
import { callMeFirst, looksLikeRequest, misuseError } from '../middleware/misuse.js';

import type { M2MRequestAuth } from '../middleware/types.js';

export type { M2MAdapterOptions as M2MAuthOptions, M2MRequestAuth };

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by m2m-guard's `m2mAuth()` after a token is verified; `null` otherwise. */
    m2m: M2MRequestAuth | null;
  }
}

/** What `m2mAuth()` returns: the plugin, plus its verifier and a way to release it. */
export type M2MAuthPlugin = FastifyPluginCallback & M2MAdapterHandle;

/**
 * A Fastify plugin verifying each request's bearer M2M token in an `onRequest` hook. With
 * `passErrors: true` a refusal goes to Fastify's error handler (`setErrorHandler`) as the
 * `M2MAuthError`; Fastify's default handler uses its `statusCode` and `headers`.
 */
export function m2mAuth(options: M2MAdapterOptions = {}): M2MAuthPlugin {
  // `app.register(m2mAuth)`: Fastify calls us as the plugin; a rejection fails `ready()`.
  if (looksLikeRequest(options))
    return Promise.reject(misuseError('m2mAuth', 'app.register(m2mAuth())')) as never;
  const adapter = adapterCore(options, 'm2mAuth');
  const { core, handle } = adapter;

  function finish(
    decision: M2MDecision,
    request: FastifyRequest,
    reply: FastifyReply,
    done: HookHandlerDoneFunction,
  ): void {
    markHandled(request, adapter, decision);
    if (decision instanceof M2MAuthError) {
      refuse(decision, request, reply, done);
      return;
    }
    if (decision !== ANONYMOUS_PASS && decision !== PREFLIGHT_PASS) {
      request.m2m = bindAuth(request, decision as M2MRequestAuth);
    }
    done();
  }

  function onRequest(request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) {
    request.m2m = null;
    let decision: M2MDecision | Promise<M2MDecision>;
    try {
      decision = decideNodeRequest(core, request.raw);
    } catch (err) {
      return done(err as Error);
    }
    if (decision instanceof Promise) {
      decision.then((settled) => finish(settled, request, reply, done), done);
    } else {
      finish(decision, request, reply, done); // a cache hit: no promise, no closure
    }
  }

  const plugin: FastifyPluginCallback = (fastify, _opts, done) => {
    if (!fastify.hasRequestDecorator('m2m')) fastify.decorateRequest('m2m', null);
    fastify.addHook('onRequest', onRequest);
    done();
  };
  return Object.assign(fp(plugin, { fastify: '5.x', name: 'm2m-guard' }), handle);
}

/** Answers a refusal as the `m2mAuth()` that handled the request does. */
function refuse(
  err: M2MAuthError,
  request: FastifyRequest,
  reply: FastifyReply,
  done: HookHandlerDoneFunction,
): void {
  const by = refuserOf(request);
  by.logRefusal(err);
  if (by.passErrors || reply.sent) done(err);
  else reply.code(err.status).headers(refusalHeaders(err)).send(refusalBody(err));
}

function guard(check: M2MGuardCheck): preHandlerHookHandler {
  return function m2mGuard(request, reply, done) {
    let refusal: M2MAuthError | undefined;
    try {
      refusal = checkHeld(check, request, request.m2m);
    } catch (err) {
      return done(err as Error);
    }
    if (refusal === undefined) done();
    else refuse(refusal, request, reply, done);
  };
}

/** A `preHandler` hook: this service's machine id must be in the token's scopes. */
export function requireMachine(machineId: string): preHandlerHookHandler {
  if (looksLikeRequest(machineId)) callMeFirst('requireMachine', "requireMachine('mch_…')");
  return guard(checkMachine(machineId));
}

/** A `preHandler` hook: only these calling machines (token subjects) may pass. */
export function allowSubjects(...machineIdList: string[]): preHandlerHookHandler {
  if (looksLikeRequest(machineIdList[0])) callMeFirst('allowSubjects', "allowSubjects('mch_…')");
  return guard(checkSubjects(machineIdList));
}

/** A `preHandler` hook: `predicate(request.m2m)` must return `true`. */
export function requireClaims(predicate: (auth: M2MRequestAuth) => boolean): preHandlerHookHandler {
  if (looksLikeRequest(predicate)) callMeFirst('requireClaims', 'requireClaims(predicate)');
  return guard(checkClaims(predicate));
}
