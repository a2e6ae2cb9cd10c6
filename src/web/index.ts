/**
 * m2m-guard for Web-standard `Request`/`Response` handlers (Next.js route handlers, Bun, Deno,
 * Cloudflare Workers, anything built on `fetch` handlers). `m2mAuth(options)` returns a function
 * of the request that resolves to the verified auth or to the refusal `Response`, ready to
 * return; `withM2MAuth(options, handler)` wraps a route handler. The guards are functions of the
 * auth that return a refusal `Response` or `undefined`. Answers exactly as the Express middleware.
 *
 * @example
 * export const GET = withM2MAuth({ machineSecretKey: process.env.CLERK_MACHINE_SECRET_KEY },
 *   (request, auth) => Response.json({ calledBy: auth?.subject }));
 */
import {
  adapterCore,
  decideWebRequest,
  type M2MAdapterHandle,
  refusalResponse,
} from '../middleware/adapter.js';
import {
  ANONYMOUS_PASS,
  checkClaims,
  checkMachine,
  checkSubjects,
  isIssuedAuth,
  type M2MAuthenticatorOptions,
  type M2MDecision,
  type M2MGuardCheck,
  PREFLIGHT_PASS,
} from '../middleware/core.js';
import { M2MAuthError } from '../middleware/errors.js';
import { callMeFirst, looksLikeRequest } from '../middleware/misuse.js';
import type { M2MRequestAuth } from '../middleware/types.js';

/** Options of the Web `m2mAuth()`: the core's. A refusal is always the `Response` returned. */
export type M2MAuthOptions = M2MAuthenticatorOptions;
export type { M2MRequestAuth };

/**
 * What `m2mAuth()` returns: a function of the request resolving to the verified auth, to the
 * refusal `Response`, or to `null` when the request passes without auth (a CORS preflight, or no
 * token with `required: false`); plus its verifier and a way to release it.
 */
export type M2MAuthFunction = ((request: Request) => Promise<M2MRequestAuth | Response | null>) &
  M2MAdapterHandle;

/** A route handler that receives the verified auth (`null`: see `M2MAuthFunction`). */
export type M2MRouteHandler<Rest extends unknown[] = unknown[]> = (
  request: Request,
  auth: M2MRequestAuth | null,
  ...rest: Rest
) => Response | Promise<Response>;

/** Verifies a Web `Request`'s bearer M2M token. Refusals resolve to a `Response`; never rejects for them. */
export function m2mAuth(options: M2MAuthOptions = {}): M2MAuthFunction {
  const adapter = adapterCore(options, 'm2mAuth', []);
  const { core, handle } = adapter;
  function answer(decision: M2MDecision): M2MRequestAuth | Response | null {
    if (decision instanceof M2MAuthError) {
      adapter.logRefusal(decision);
      return refusalResponse(decision);
    }
    if (decision === ANONYMOUS_PASS || decision === PREFLIGHT_PASS) return null;
    return decision as M2MRequestAuth;
  }
  const authenticate = async (request: Request) => {
    const decision = decideWebRequest(core, request);
    return answer(decision instanceof Promise ? await decision : decision);
  };
  return Object.assign(authenticate, handle);
}

/**
 * Wraps a route handler: a refused request gets the refusal `Response` and never reaches it.
 *
 * @example
 * export const GET = withM2MAuth(options, (request, auth) => Response.json({ calledBy: auth?.subject }));
 */
export function withM2MAuth<Rest extends unknown[]>(
  options: M2MAuthOptions,
  handler: M2MRouteHandler<Rest>,
): ((request: Request, ...rest: Rest) => Promise<Response>) & M2MAdapterHandle {
  if (typeof handler !== 'function') {
    throw new TypeError(
      'withM2MAuth(options, handler) takes the route handler as its second argument',
    );
  }
  const authenticate = m2mAuth(options);
  const wrapped = async (request: Request, ...rest: Rest) => {
    const auth = await authenticate(request);
    if (auth instanceof Response) return auth;
    return handler(request, auth, ...rest);
  };
  return Object.assign(wrapped, { verifier: authenticate.verifier, close: authenticate.close });
}

/** A guard of the Web adapter: the refusal `Response`, or `undefined` to go on. */
export type M2MGuard = (auth: M2MRequestAuth | null | undefined) => Response | undefined;

function guard(check: M2MGuardCheck): M2MGuard {
  return (auth) => {
    // Only an auth m2mAuth() made is trusted: anything else is no auth.
    const refusal = check(isIssuedAuth(auth) ? auth : undefined);
    return refusal === undefined ? undefined : refusalResponse(refusal);
  };
}

/** This service's machine id must be in the token's scopes. */
export function requireMachine(machineId: string): M2MGuard {
  if (looksLikeRequest(machineId)) callMeFirst('requireMachine', "requireMachine('mch_…')");
  return guard(checkMachine(machineId));
}

/** Only these calling machines (token subjects) may pass. */
export function allowSubjects(...machineIdList: string[]): M2MGuard {
  if (looksLikeRequest(machineIdList[0])) callMeFirst('allowSubjects', "allowSubjects('mch_…')");
  return guard(checkSubjects(machineIdList));
}

/** `predicate(auth)` must return `true`. A predicate that throws throws out of the guard. */
export function requireClaims(predicate: (auth: M2MRequestAuth) => boolean): M2MGuard {
  if (looksLikeRequest(predicate)) callMeFirst('requireClaims', 'requireClaims(predicate)');
  return guard(checkClaims(predicate));
}
