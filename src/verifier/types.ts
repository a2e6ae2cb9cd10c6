import type { Logger } from 'pino';
import type { M2MClient, M2MClientOptions } from '../client/index.js';
import type { UpstreamBudgetOptions } from './budget.js';
import type { SharedCacheStore } from './store.js';

/** What a verified token tells: who is calling and with what. Never holds the token string. */
export interface VerifiedM2MToken {
  /** Token id (`mt_…`). */
  readonly id: string;
  /** The calling machine (`mch_…`). */
  readonly subject: string;
  /** Machine ids the token may call. */
  readonly scopes: readonly string[];
  /** Custom claims, deeply frozen, or `null`. */
  readonly claims: Readonly<Record<string, unknown>> | null;
  /** Unix ms, or `null` when the token never expires. */
  readonly expiration: number | null;
  readonly createdAt: number;
}

/** Cache settings. Answers are cached in process with lru-cache, keyed by HMAC of the token. */
export interface VerifierCacheOptions {
  /**
   * Most good answers kept, and, apart from them, most refusals kept: the two are bounded
   * separately, so no number of bad tokens can push a good answer out. Default `10000`.
   */
  max?: number;
  /**
   * Most bytes of heap the good answers may take (an estimate: strings and claims included).
   * A single answer over 64 KiB is served but not cached. Default `67108864` (64 MiB).
   */
  maxBytes?: number;
  /**
   * How long a good answer is trusted without asking Clerk again: the **revocation budget**.
   * A token revoked elsewhere (the dashboard, another instance) is still accepted here for at
   * most this long. Never extended by reads, and never past the token's own expiration
   * (minus `clockSkewMs`). Default `10000` ms.
   */
  ttlMs?: number;
  /** How long Clerk's definite "not valid" (404) is remembered. Default `5000` ms. */
  negativeTtlMs?: number;
  /**
   * When Clerk cannot answer, a good answer that went stale less than this long ago may still
   * be served; never past the token's expiration, never after a revocation seen here.
   * Default `0` (off).
   */
  staleIfErrorMs?: number;
}

/** Circuit-breaker settings. */
export interface VerifierBreakerOptions {
  /** Consecutive upstream failures that open the breaker. Default `5`; `0` disables it. */
  failures?: number;
  /** How long an open breaker fails fast before one trial call. Default `5000` ms. */
  cooldownMs?: number;
}

/**
 * Options of {@link createTokenVerifier}: `client` (a client you own) or the client's own options
 * (`apiUrl`, `machineSecretKey`, `secretKey`, `timeoutMs`, `retry`, `dispatcher`, `userAgent`),
 * from which the verifier builds and owns one.
 */
export interface TokenVerifierOptions extends Omit<M2MClientOptions, 'logger'> {
  /** A client to verify through. Revocations made through it are applied here at once. */
  client?: M2MClient;
  /**
   * This service's machine id (`mch_…`), the machine tokens must be made to call; not the caller,
   * which `req.m2m.machineId` names. When set, a token whose `scopes` lack it is not valid.
   * Needed when verifying with the instance key, which Clerk does not scope-check, and for
   * JWT-format tokens with a machine key. Default: unset.
   */
  machineId?: string;
  /** When set, only tokens whose subject (the calling machine) is listed are valid. Default: any. */
  allowedSubjects?: readonly string[];
  /**
   * How far our clock may drift from Clerk's. Good answers leave the cache this long before the
   * token expires; a token past its expiration by more than this is refused without asking.
   * Default `5000` ms.
   */
  clockSkewMs?: number;
  /** The clock, in Unix ms. Default `Date.now`. */
  now?: () => number;
  /**
   * Public key (PEM) for JWT-format tokens, so they verify with no network at all. Default:
   * `CLERK_JWT_KEY`; without it, keys are read from Clerk's JWKS with the instance `secretKey`,
   * and without that either, JWT-format tokens are refused as invalid.
   */
  jwtKey?: string;
  /**
   * A JWT with an unknown `kid` makes the verifier refetch the JWKS at most once per this
   * interval, whatever the `kid`, so forged `kid`s cannot hammer Clerk. Default `30000` ms.
   */
  jwksRefreshMinMs?: number;
  /**
   * A pino logger; also given to a client the verifier builds. Default: pino at level `warn` on
   * stderr (a rejected key, an unreachable Clerk; nothing per request in normal operation);
   * `false` silences it.
   */
  logger?: Logger | false;
  /**
   * Cache settings, or `false` to ask Clerk on every call (concurrent calls still share one).
   * With `false` no token is ever "seen valid", so `upstreamBudget` applies to every call.
   */
  cache?: VerifierCacheOptions | false;
  /**
   * Verify calls to Clerk for tokens this verifier has never seen valid are admitted by this
   * token bucket; beyond it they are answered 503 `temporarily_unavailable` with `Retry-After`
   * and no call, so a flood of made-up `mt_…` tokens cannot spend Clerk's per-instance rate
   * limit (1 000 requests per 10 s in production, 100 in development, shared by every service
   * on the instance). Tokens seen valid are never held back. `false` turns it off.
   * Default `{ perSecond: 20, burst: 40 }`.
   */
  upstreamBudget?: UpstreamBudgetOptions | false;
  /**
   * Accept tokens minted for any machine of the instance. Needed, as a deliberate choice, when
   * verifying with the instance `secretKey` (or only a `jwtKey`) without `machineId` or
   * `allowedSubjects`: otherwise construction fails, since Clerk does not scope-check for
   * the instance key and any machine's token would be let in. Default `false`.
   */
  anyMachine?: boolean;
  /** Circuit-breaker settings, or `false` to disable it. */
  breaker?: VerifierBreakerOptions | false;
  /**
   * A cache level shared by all instances (e.g. `createRedisStore()` from `m2m-guard/redis`),
   * behind the in-process cache: answers fetched by one instance serve the others, and
   * revocations and `invalidate()` reach every instance at once. Default: none.
   */
  store?: SharedCacheStore;
}

export interface VerifyOptions {
  /** Stops waiting for the answer. A shared upstream call goes on for the other callers. */
  signal?: AbortSignal;
}

export interface VerifierStats {
  /** Good answers served from the cache. */
  hits: number;
  /** Calls that found no fresh answer. */
  misses: number;
  /** Definite "not valid" answers served from the cache. */
  negativeHits: number;
  /** Misses that joined an upstream call already in flight. */
  coalesced: number;
  upstreamCalls: number;
  /** Upstream calls that ended without an answer (timeouts, 5xx, 429, 401, …). */
  upstreamErrors: number;
  /** Upstream calls Clerk answered with a definite "not valid" (404, 400). */
  upstreamInvalid: number;
  /** Stale good answers served while Clerk was unavailable. */
  staleServed: number;
  /** Misses answered by the shared store (another instance had asked Clerk). */
  sharedHits: number;
  /** Invalidations and revocations received from other instances through the shared store. */
  invalidationsReceived: number;
  /** Verify calls for never-seen tokens that the upstream budget held back (answered 503). */
  budgetRefused: number;
  /**
   * Values and messages from the shared store that failed their integrity check (MAC) or were
   * replayed, each ignored as if absent.
   */
  sharedRejected: number;
  /** Entries in the cache now: good answers and refusals. */
  size: number;
  /** Approximate heap bytes of the good answers cached now (bounded by `cache.maxBytes`). */
  bytes: number;
}

/** What `verifier.health()` tells, for a readiness route. Times are Unix ms, or `null`. */
export interface VerifierHealth {
  /** `unavailable` while the breaker is open; `degraded` while the store is down or the last upstream call failed. */
  status: 'ok' | 'degraded' | 'unavailable';
  breaker: 'closed' | 'half-open' | 'open';
  /** When Clerk last answered a verify call (valid or not), by the verifier's clock. */
  lastUpstreamSuccessAt: number | null;
  /** When a verify call last ended without an answer (timeout, 5xx, 429, …). */
  lastUpstreamFailureAt: number | null;
  /** The shared store: `none` without one, else whether its last operation failed. */
  store: 'none' | 'up' | 'down';
}

export interface TokenVerifier {
  /** Verifies a bearer token. Throws `InvalidTokenError` or `VerifierUnavailableError`. */
  verify(token: string, options?: VerifyOptions): Promise<VerifiedM2MToken>;
  /**
   * Answers from the in-process cache alone, synchronously: the verified token, an
   * `InvalidTokenError` thrown for a cached refusal (or a token that cannot be one), or
   * `undefined` when there is no fresh answer and `verify()` must ask. For hot paths that
   * want no promise on a hit; `m2mAuth()` uses it.
   */
  verifyCached(token: string): VerifiedM2MToken | undefined;
  /** Drops any cached answer for a token string or a token id. */
  invalidate(tokenOrTokenId: string): void;
  stats(): VerifierStats;
  /** The verifier's state for a readiness check; reads counters only, never calls out. */
  health(): VerifierHealth;
  /** Closes the client if the verifier built it. */
  close(): Promise<void>;
}
