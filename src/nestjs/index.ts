/**
 * m2m-guard for NestJS, on the Express and the Fastify platform: `M2MAuthGuard` is a
 * `CanActivate` constructed with the options (`@UseGuards(new M2MAuthGuard(options))` or
 * `app.useGlobalGuards(new M2MAuthGuard(options))`) that verifies the bearer M2M token and sets
 * `request.m2m`; `@M2M()` reads it in a handler; `requireMachine()`, `allowSubjects()` and
 * `requireClaims()` are guards to list after it. A refusal is thrown as an `HttpException` (its
 * `cause` the `M2MAuthError`) after its headers are set, so Nest's exception filters answer it:
 * the default filter answers exactly as the Express middleware does. No TypeScript decorator
 * metadata is needed.
 *
 * @example
 * app.useGlobalGuards(new M2MAuthGuard({ machineSecretKey: process.env.CLERK_MACHINE_SECRET_KEY }));
 * // in a controller: @Get('orders') orders(@M2M() auth?: M2MRequestAuth) { … }
 */
import type { IncomingMessage } from 'node:http';
import {
  type CanActivate,
  createParamDecorator,
  type ExecutionContext,
  HttpException,
} from '@nestjs/common';
import {
  type AdapterCore,
  adapterCore,
  checkHeld,
  decideNodeRequest,
  handlerOf,
  type M2MAdapterHandle,
  markHandled,
} from '../middleware/adapter.js';
import {
  ANONYMOUS_PASS,
  bindAuth,
  checkClaims,
  checkMachine,
  checkSubjects,
  type M2MAuthenticatorOptions,
  type M2MDecision,
  type M2MGuardCheck,
  PREFLIGHT_PASS,
  trustedAuth,
} from '../middleware/core.js';
import { M2MAuthError } from '../middleware/errors.js';
import type { M2MRequestAuth } from '../middleware/types.js';

/** Options of `M2MAuthGuard`: the core's. Refusals take Nest's own exception path. */
export type M2MAuthOptions = M2MAuthenticatorOptions;
export type { M2MRequestAuth };

/** The request as both platforms give it: Express's `req`, or Fastify's request with `raw`. */
type NestRequest = { m2m?: M2MRequestAuth | null; raw?: IncomingMessage };
/** Express's `res` and Fastify's reply both have `header(name, value)`. */
type NestResponse = { header(name: string, value: string): unknown };

/** The `M2MAuthError` of a refusal, as Nest's exception filters see it (`exception.cause`). */
export class M2MHttpException extends HttpException {
  constructor(readonly error: M2MAuthError) {
    super(error.toJSON(), error.status, { cause: error });
  }
}

function refuse(err: M2MAuthError, context: ExecutionContext, by: AdapterCore | undefined): never {
  by?.logRefusal(err);
  const response = context.switchToHttp().getResponse<NestResponse>();
  for (const [name, value] of Object.entries(err.headers)) response.header(name, value);
  throw new M2MHttpException(err);
}

/**
 * Verifies each request's bearer M2M token and sets `request.m2m`. Options are validated here,
 * once (`M2MConfigError` naming the option).
 */
export class M2MAuthGuard implements CanActivate, M2MAdapterHandle {
  readonly #adapter: AdapterCore;
  readonly verifier: M2MAdapterHandle['verifier'];

  constructor(options: M2MAuthOptions = {}) {
    this.#adapter = adapterCore(options, 'M2MAuthGuard', []);
    this.verifier = this.#adapter.core.verifier;
  }

  canActivate(context: ExecutionContext): boolean | Promise<boolean> {
    const request = context.switchToHttp().getRequest<NestRequest>();
    request.m2m = undefined;
    const raw = request.raw ?? (request as IncomingMessage);
    const decision = decideNodeRequest(this.#adapter.core, raw);
    if (decision instanceof Promise) {
      return decision.then((settled) => this.#finish(settled, request, context));
    }
    return this.#finish(decision, request, context);
  }

  #finish(decision: M2MDecision, request: NestRequest, context: ExecutionContext): boolean {
    markHandled(request, this.#adapter, decision);
    if (decision instanceof M2MAuthError) refuse(decision, context, this.#adapter);
    if (decision !== ANONYMOUS_PASS && decision !== PREFLIGHT_PASS) {
      request.m2m = bindAuth(request, decision as M2MRequestAuth);
    }
    return true;
  }

  /** Closes the verifier if this guard built it; a passed-in one is left open. */
  close(): Promise<void> {
    return this.#adapter.core.close();
  }
}

/** A guard listed after `M2MAuthGuard`: refuses as it does (403, or 401 without its auth). */
class M2MCheckGuard implements CanActivate {
  readonly #check: M2MGuardCheck;
  constructor(check: M2MGuardCheck) {
    this.#check = check;
  }
  canActivate(context: ExecutionContext): boolean {
    const request = context.switchToHttp().getRequest<NestRequest>();
    const refusal = checkHeld(this.#check, request, request.m2m);
    if (refusal !== undefined) refuse(refusal, context, handlerOf(request));
    return true;
  }
}

/** A guard: this service's machine id must be in the token's scopes. */
export function requireMachine(machineId: string): CanActivate {
  return new M2MCheckGuard(checkMachine(machineId));
}

/** A guard: only these calling machines (token subjects) may pass. */
export function allowSubjects(...machineIdList: string[]): CanActivate {
  return new M2MCheckGuard(checkSubjects(machineIdList));
}

/** A guard: `predicate(request.m2m)` must return `true`. */
export function requireClaims(predicate: (auth: M2MRequestAuth) => boolean): CanActivate {
  return new M2MCheckGuard(checkClaims(predicate));
}

/**
 * A parameter decorator giving the handler the verified auth (or `undefined`): only the one
 * `M2MAuthGuard` set on this request, never a `request.m2m` set by anyone else.
 */
export const M2M = createParamDecorator(
  (_data: unknown, context: ExecutionContext): M2MRequestAuth | undefined => {
    const request = context.switchToHttp().getRequest<NestRequest>();
    return trustedAuth(request, request.m2m);
  },
);
