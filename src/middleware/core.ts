/**
 * The framework-free core of `m2mAuth()`: from the parts of a request (its `Authorization`
 * values, method, preflight headers and URL) to a decision: the verified auth, a pass without
 * auth, or the refusal (an `M2MAuthError` carrying status, headers and JSON body). Every adapter
 * (Express/Connect, Fastify, Hono, Koa, Web, NestJS) is a thin wrapper that reads the parts and
 * answers the refusal in its framework's idiom, so all of them answer alike.
 */
import { M2MConfigError } from '../shared/config-error.js';
import {
  assertKnownKeys,
  assertMethods,
  boolOption,
  optionKeys,
  optionsObject,
  stringOption,
} from '../shared/validate.js';
import { MACHINE_ID_PATTERN } from '../shared/wire.js';
import {
  createTokenVerifier,
  InvalidTokenError,
  type RequestOutcome,
  recordRequestOutcome,
  TOKEN_VERIFIER_KEYS,
  type TokenVerifier,
  type TokenVerifierOptions,
  type VerifiedM2MToken,
  VerifierUnavailableError,
} from '../verifier/index.js';
import {
  AuthUnavailableError,
  InsufficientScopeError,
  InvalidRequestError,
  M2MAuthError,
  TokenRejectedError,
  UnauthorizedError,
} from './errors.js';
import { type Extraction, fromAuthorizationValues, fromQueryOf, withQuery } from './extract.js';
import type { M2MRequestAuth } from './types.js';

/** Options of the core, shared by `m2mAuth()` in every framework. */
export interface M2MAuthenticatorOptions extends TokenVerifierOptions {
  /** A verifier you built (and own). Default: one built from the other options. */
  verifier?: TokenVerifier;
  /**
   * When `false`, a request without any token passes with no auth. A bad token is still
   * refused and an outage is still 503. Default `true`.
   */
  required?: boolean;
  /** Also accept `?access_token=`. Default `false`: the parameter is ignored, as if absent. */
  allowQueryToken?: boolean;
  /** Let CORS preflight requests (`OPTIONS` with `Access-Control-Request-Method`) pass. Default `true`. */
  skipPreflight?: boolean;
  /** The `realm` of the `WWW-Authenticate` challenge. Default `"api"`. */
  realm?: string;
}

/** The option keys of the core, besides the verifier's. */
/** The core's own options (the rest are the verifier's), kept complete by the compiler. */
export const AUTHENTICATOR_KEYS = optionKeys<
  Omit<M2MAuthenticatorOptions, keyof TokenVerifierOptions>
>({
  verifier: true,
  required: true,
  allowQueryToken: true,
  skipPreflight: true,
  realm: true,
});

/** What the core reads of a request. Header values as the framework gives them. */
export interface M2MRequestParts {
  /**
   * The `Authorization` header: one value, every value (a list), or none. A value holding a
   * comma is several headers joined (Web `Headers` join them): 400, as two headers are.
   */
  authorization: string | readonly string[] | null | undefined;
  /** The HTTP method, upper case. Only read to recognise a CORS preflight. */
  method?: string | undefined;
  /** `Access-Control-Request-Method`, for preflights. */
  accessControlRequestMethod?: string | null | undefined;
  /** `Access-Control-Request-Headers`, for preflights. */
  accessControlRequestHeaders?: string | null | undefined;
  /** The request URL (absolute, or path and query). Only read with `allowQueryToken`. */
  url?: string | undefined;
}

/** A request let through without auth: a CORS preflight, or no token with `required: false`. */
export interface M2MPass {
  readonly pass: 'preflight' | 'anonymous';
}

/** The decision for a credentialed CORS preflight let through (`skipPreflight`, the default). */
export const PREFLIGHT_PASS: M2MPass = Object.freeze({ pass: 'preflight' });
/** The decision for a request without a token under `required: false`. */
export const ANONYMOUS_PASS: M2MPass = Object.freeze({ pass: 'anonymous' });

/**
 * The core's decision: the verified auth (frozen, shared by every request with that token), a
 * pass without auth, or the refusal to answer (`status`, `headers`, `toJSON()` for the body).
 */
export type M2MDecision = M2MRequestAuth | M2MPass | M2MAuthError;

/** What became of a request, for metrics and logs: one word per decision. */
/** What became of a request: the counted outcomes of `m2m_guard.requests`, or a pass. */
export type M2MOutcome = RequestOutcome | 'preflight' | 'anonymous';

/** Whether a decision is a refusal: answer its `status`, `headers` and `toJSON()`. */
export function isRefusal(decision: M2MDecision): decision is M2MAuthError {
  return decision instanceof M2MAuthError;
}

/** Whether a decision lets the request through without auth (a preflight, or anonymous). */
export function isPass(decision: M2MDecision): decision is M2MPass {
  return decision === PREFLIGHT_PASS || decision === ANONYMOUS_PASS;
}

/** The outcome word of a decision (`temporarily_unavailable` is `unavailable`). */
export function outcomeOf(decision: M2MDecision): M2MOutcome {
  if (decision instanceof M2MAuthError) {
    return decision.status === 503 ? 'unavailable' : (decision.code as M2MOutcome);
  }
  if (isPass(decision)) return decision.pass;
  return 'accepted';
}

/**
 * Every decision of the core and of every guard, in every framework, passes here once, so this
 * is the one place where each request's outcome is known (`outcomeOf(decision)`): `m2mAuth()`'s
 * decision (accepted, preflight, anonymous or a refusal), then, only when a guard refuses, the
 * guard's refusal (`insufficient_scope`, or `unauthorized` without a trusted auth). A guard that
 * lets a request through adds nothing. Keep it free of allocation: it runs on the hot path.
 */
function settle<D extends M2MDecision>(decision: D): D {
  recordRequestOutcome(outcomeOf(decision)); // passes are not counted
  return decision;
}

/** A preflight let through before the core was asked (the Express and `node:http` adapters). */
export function preflightPass(): M2MPass {
  return settle(PREFLIGHT_PASS);
}

/**
 * A CORS preflight for a request that will carry credentials: `OPTIONS` with
 * `Access-Control-Request-Method` and `authorization` among `Access-Control-Request-Headers`
 * (as express-jwt has it). Any other OPTIONS request is authenticated like the rest.
 */
export function isPreflightRequest(
  method: string | undefined,
  requestMethod: string | null | undefined,
  requestHeaders: string | null | undefined,
): boolean {
  if (method !== 'OPTIONS' || requestMethod === undefined || requestMethod === null) return false;
  return (
    typeof requestHeaders === 'string' && /(^|[\s,])authorization($|[\s,])/i.test(requestHeaders)
  );
}

/** What `createM2MAuthenticator()` returns. */
export interface M2MAuthenticator {
  /** The verifier in use: the one passed in, or the one built from the options. */
  readonly verifier: TokenVerifier;
  readonly realm: string;
  readonly skipPreflight: boolean;
  readonly allowQueryToken: boolean;
  /**
   * Decides a request from its parts. A cached answer (and every refusal that needs no call to
   * Clerk) is returned synchronously, with no promise; otherwise a promise of the decision.
   * Never rejects for a bad token or an outage: those are refusals. Throws only for a bug.
   */
  authenticate(parts: M2MRequestParts): M2MDecision | Promise<M2MDecision>;
  /** Decides from an extraction already made (the Express adapter reads `rawHeaders` itself). */
  decideExtraction(found: Extraction): M2MDecision | Promise<M2MDecision>;
  /** Closes the verifier if this authenticator built it; a passed-in one is left open. */
  close(): Promise<void>;
}

/**
 * The framework-free decision step of `m2mAuth()`: extract, verify, decide. Options are
 * validated here, once (`M2MConfigError` naming the option).
 *
 * @example
 * const auth = createM2MAuthenticator({ machineSecretKey: process.env.CLERK_MACHINE_SECRET_KEY });
 * let decision = auth.authenticate({ authorization: request.headers.get('authorization') });
 * if (decision instanceof Promise) decision = await decision;
 * if (isRefusal(decision)) return Response.json(decision.toJSON(), { status: decision.status, headers: decision.headers });
 */
export function createM2MAuthenticator(options: M2MAuthenticatorOptions = {}): M2MAuthenticator {
  const opts = optionsObject<M2MAuthenticatorOptions>(options, 'options');
  assertKnownKeys(opts, [...AUTHENTICATOR_KEYS, ...TOKEN_VERIFIER_KEYS]);
  return buildAuthenticator(opts, realmOption(opts.realm));
}

/**
 * Builds the core from options an adapter has already checked for unknown keys. `onIssue` is
 * told of each auth object the core makes (once per verified answer, never per request).
 */
export function buildAuthenticator(
  opts: Partial<M2MAuthenticatorOptions>,
  realm: string,
  onIssue?: (auth: M2MRequestAuth) => void,
): M2MAuthenticator {
  const required = boolOption(opts.required, 'required', true);
  const allowQueryToken = boolOption(opts.allowQueryToken, 'allowQueryToken', false);
  const skipPreflight = boolOption(opts.skipPreflight, 'skipPreflight', true);
  const verifier = verifierOption(opts);
  const ownsVerifier = opts.verifier === undefined;
  const missing = required ? undefined : ANONYMOUS_PASS;

  /** The auth object of each verified answer, made once: frozen, so requests can share it. */
  const authOf = new WeakMap<VerifiedM2MToken, M2MRequestAuth>();
  function accept(verified: VerifiedM2MToken): M2MRequestAuth {
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
      realms.set(auth, realm);
      onIssue?.(auth);
    }
    return settle(auth);
  }

  function refuse(err: unknown): M2MAuthError {
    if (err instanceof InvalidTokenError) {
      const { reason, tokenId, subject } = err;
      return settle(new TokenRejectedError({ realm, reason, tokenId, subject, cause: err }));
    }
    if (err instanceof VerifierUnavailableError) {
      return settle(new AuthUnavailableError({ realm, retryAfter: err.retryAfter, cause: err }));
    }
    throw err;
  }

  function decideExtraction(found: Extraction): M2MDecision | Promise<M2MDecision> {
    if (found.kind === 'malformed') {
      return settle(new InvalidRequestError(found.description, { realm, reason: 'malformed' }));
    }
    if (found.kind === 'none') return settle(missing ?? new UnauthorizedError({ realm }));
    let cached: VerifiedM2MToken | undefined;
    try {
      cached = verifier.verifyCached(found.token);
    } catch (err) {
      return refuse(err);
    }
    if (cached) return accept(cached);
    return verifier.verify(found.token).then(accept, refuse);
  }

  return {
    verifier,
    realm,
    skipPreflight,
    allowQueryToken,
    decideExtraction,
    authenticate(parts) {
      if (
        skipPreflight &&
        isPreflightRequest(
          parts.method,
          parts.accessControlRequestMethod,
          parts.accessControlRequestHeaders,
        )
      ) {
        return settle(PREFLIGHT_PASS);
      }
      const header = fromAuthorizationValues(parts.authorization);
      return decideExtraction(
        allowQueryToken && header.kind !== 'malformed'
          ? withQuery(header, fromQueryOf(parts.url))
          : header,
      );
    },
    close: () => (ownsVerifier ? verifier.close() : Promise.resolve()),
  };
}

/** Quoted-string safe: printable ASCII without `"` and `\`, so the challenge stays well formed. */
const REALM = /^[\x20\x21\x23-\x5b\x5d-\x7e]{1,100}$/;

export function realmOption(value: unknown): string {
  const realm = stringOption(value, 'realm') ?? 'api';
  if (!REALM.test(realm)) {
    throw new M2MConfigError(
      'realm',
      'must be 1-100 printable ASCII characters without `"` or `\\`',
    );
  }
  return realm;
}

function verifierOption(opts: Partial<M2MAuthenticatorOptions>): TokenVerifier {
  const { verifier } = opts;
  const verifierKeys = TOKEN_VERIFIER_KEYS.filter(
    (k) => k !== 'logger' && opts[k as keyof M2MAuthenticatorOptions] !== undefined,
  );
  if (verifier === undefined) {
    const own = Object.fromEntries(
      verifierKeys.map((k) => [k, opts[k as keyof M2MAuthenticatorOptions]]),
    );
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

// ---------------------------------------------------------------------------------------------
// Which auth a request may be trusted with
// ---------------------------------------------------------------------------------------------

/** The realm of the authenticator that made each auth object, for guards that have no request. */
const realms = new WeakMap<M2MRequestAuth, string>();

/** The realm to refuse an auth in: the one of the authenticator that accepted it. */
export function realmOf(auth: M2MRequestAuth | null | undefined, fallback = 'api'): string {
  return (auth && realms.get(issuedOf(auth))) ?? fallback;
}

/** Whether an auth object is one a core made (not one built or copied field by field elsewhere). */
export function isIssuedAuth(auth: unknown): auth is M2MRequestAuth {
  return typeof auth === 'object' && auth !== null && realms.has(issuedOf(auth as M2MRequestAuth));
}

/**
 * The auth handed to one request (a request, a Koa or Hono context): the issued auth's fields,
 * frozen, tied to that holder by private fields nobody else can set, read or forge. Trust then
 * needs no write on the request besides the framework's own slot (`req.m2m`): each extra
 * property added to Express's request objects costs microseconds, an allocation far less.
 */
class RequestAuth implements M2MRequestAuth {
  readonly id: string;
  readonly subject: string;
  readonly machineId: string;
  readonly scopes: readonly string[];
  readonly claims: Readonly<Record<string, unknown>> | null;
  readonly expiration: number | null;
  readonly #holder: object;
  readonly #issued: M2MRequestAuth;

  constructor(issued: M2MRequestAuth, holder: object) {
    this.id = issued.id;
    this.subject = issued.subject;
    this.machineId = issued.machineId;
    this.scopes = issued.scopes;
    this.claims = issued.claims;
    this.expiration = issued.expiration;
    this.#holder = holder;
    this.#issued = issued;
    Object.freeze(this);
  }

  /** `seen` itself when it is the auth bound to `holder`, else `undefined`. */
  static trusted(holder: object, seen: unknown): M2MRequestAuth | undefined {
    return typeof seen === 'object' && seen !== null && #holder in seen && seen.#holder === holder
      ? (seen as RequestAuth)
      : undefined;
  }

  /** The issued auth behind a request's auth; any other object is its own. */
  static issuedOf(auth: M2MRequestAuth): M2MRequestAuth {
    return #issued in auth ? (auth as RequestAuth).#issued : auth;
  }
}

const { issuedOf } = RequestAuth;

export { issuedOf };

/** The auth to put in `holder`'s slot for an auth the core accepted: bound to that holder. */
export function bindAuth(holder: object, auth: M2MRequestAuth): M2MRequestAuth {
  return new RequestAuth(auth, holder);
}

/**
 * The auth a guard may trust: what the framework's slot holds (`seen`) only if the core bound
 * it to this very holder. Anything set, copied or replaced by anyone else is no auth.
 */
export function trustedAuth(holder: object, seen: unknown): M2MRequestAuth | undefined {
  return RequestAuth.trusted(holder, seen);
}

// ---------------------------------------------------------------------------------------------
// The guards' decisions
// ---------------------------------------------------------------------------------------------

/**
 * A guard's decision, framework-free: `undefined` to let the request through, or the refusal:
 * 401 `unauthorized` without a trusted auth, 403 `insufficient_scope` when the rule says no.
 * A rule that throws (a `requireClaims` predicate) throws out of the check.
 */
export type M2MGuardCheck = (
  auth: M2MRequestAuth | null | undefined,
  realm?: string,
) => M2MAuthError | undefined;

function guardCheck(allows: (auth: M2MRequestAuth) => boolean): M2MGuardCheck {
  return (auth, realm = realmOf(auth)) => {
    if (auth === undefined || auth === null) return settle(new UnauthorizedError({ realm }));
    if (allows(auth)) return undefined;
    return settle(new InsufficientScopeError({ realm, tokenId: auth.id, subject: auth.subject }));
  };
}

function machineIds(ids: readonly string[], option: string): Set<string> {
  if (ids.length === 0) throw new M2MConfigError(option, 'needs at least one machine id');
  for (const id of ids) {
    if (typeof id !== 'string' || !MACHINE_ID_PATTERN.test(id)) {
      throw new M2MConfigError(option, 'takes machine ids (`mch_` + 27 characters)');
    }
  }
  return new Set(ids);
}

/** The decision of `requireMachine(machineId)`: this machine id must be in the token's scopes. */
export function checkMachine(machineId: string, option = 'requireMachine'): M2MGuardCheck {
  const [id] = machineIds([machineId], option);
  return guardCheck((auth) => auth.scopes.includes(id!));
}

/** The decision of `allowSubjects(...ids)`: only these calling machines may pass. */
export function checkSubjects(
  machineIdList: readonly string[],
  option = 'allowSubjects',
): M2MGuardCheck {
  const allowed = machineIds(machineIdList, option);
  return guardCheck((auth) => allowed.has(auth.subject));
}

/** The decision of `requireClaims(predicate)`: `predicate(auth)` must return `true`. */
export function checkClaims(
  predicate: (auth: M2MRequestAuth) => boolean,
  option = 'requireClaims',
): M2MGuardCheck {
  if (typeof predicate !== 'function') throw new M2MConfigError(option, 'takes a function');
  return guardCheck((auth) => predicate(auth) === true);
}
