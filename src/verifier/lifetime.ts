/**
 * How long an answer lives, in one place. Every function is pure: times in, times out, all
 * absolute Unix ms on the verifier's clock, so an answer moved between cache levels or
 * processes keeps its deadlines and nothing ever extends them.
 *
 * The windows of a good answer, in order:
 * - **fresh** (`freshUntil`): served without asking Clerk. The revocation budget.
 * - **servable stale** (`staleUntil`): served only when Clerk cannot answer (stale-if-error).
 * - **retained** ({@link retainUntil}): kept, never served, so that Clerk's later 404 can be
 *   logged as `revoked` or `expired` rather than `unknown`, and so that re-verifying a token
 *   seen valid is not held back by the upstream budget.
 * - **shared** ({@link sharedTtl}): what other instances get, never more than servable.
 */

/** The lifetime settings an answer's windows come from. */
export interface LifetimeRules {
  /** `cache.ttlMs`: how long a good answer is trusted without asking again. */
  ttlMs: number;
  /** `cache.negativeTtlMs`: how long Clerk's "not valid" is remembered. */
  negativeTtlMs: number;
  /** `cache.staleIfErrorMs`: how long past freshness a good answer may serve an outage. */
  staleIfErrorMs: number;
  /** `clockSkewMs`: how far our clock may drift from Clerk's. */
  clockSkewMs: number;
}

/** What a good answer's windows need to know of it (a cached good entry fits as it is). */
export interface GoodWindows {
  freshUntil: number;
  staleUntil: number;
  /** `value.expiration`: the token's expiration (Unix ms), `null` when it never expires. */
  value: { readonly expiration: number | null };
}

const NEVER = Number.POSITIVE_INFINITY;

/**
 * A good answer from Clerk at `at` is fresh for `ttlMs`, and never past the token's
 * expiration minus the clock skew (so our clock running late cannot serve an expired token).
 */
export function freshUntilOf(at: number, expiration: number | null, rules: LifetimeRules): number {
  return Math.min(at + rules.ttlMs, expiration === null ? NEVER : expiration - rules.clockSkewMs);
}

/** A good answer may serve an outage `staleIfErrorMs` past its freshness, never past expiry. */
export function staleUntilOf(
  freshUntil: number,
  expiration: number | null,
  rules: LifetimeRules,
): number {
  return Math.min(freshUntil + rules.staleIfErrorMs, expiration ?? NEVER);
}

/**
 * A locally verified JWT is good until it expires (plus the skew jose allows): its signature
 * cannot be revoked, so asking again would learn nothing.
 */
export function jwtUntilOf(expiration: number, rules: LifetimeRules): number {
  return expiration + rules.clockSkewMs;
}

/** Clerk's definite "not valid" at `at` is remembered for `negativeTtlMs`. */
export function negativeUntilOf(at: number, rules: LifetimeRules): number {
  return at + rules.negativeTtlMs;
}

/**
 * A revocation seen here replaces the good answer by a refusal that outlives every copy of
 * the good answer that could still be fresh elsewhere, so the next request is refused at once.
 */
export function revokedUntilOf(at: number, rules: LifetimeRules): number {
  return at + Math.max(rules.ttlMs, rules.negativeTtlMs);
}

/**
 * A good answer is kept past its freshness until its token expires (plus one fresh window),
 * never served in that time unless stale-if-error allows it. The cache's bounds still apply.
 */
export function retainUntil(answer: GoodWindows, rules: LifetimeRules): number {
  return Math.max(
    answer.staleUntil,
    answer.freshUntil + rules.ttlMs,
    (answer.value.expiration ?? 0) + rules.ttlMs,
  );
}

/** Other instances get a good answer only while it may be served, a refusal while fresh. */
export function sharedTtl(servableUntil: number, at: number): number {
  return servableUntil - at;
}

/** Whether a good answer may be served now because Clerk cannot answer. */
export function isServableStale(answer: GoodWindows, at: number): boolean {
  const { expiration } = answer.value;
  return at < answer.staleUntil && (expiration === null || at < expiration);
}

/**
 * How long a revocation is remembered by token id: until the token expires (plus the skew),
 * or, when its expiry is unknown, for the longest time any copy of a good answer fetched
 * before the revocation could still be served (fresh, then stale-if-error, plus the skew).
 * Clerk itself refuses the token from then on, so remembering longer protects nothing.
 */
export function revocationMemoryMs(
  at: number,
  expiration: number | null | undefined,
  rules: LifetimeRules,
): number {
  const retention = rules.ttlMs + rules.staleIfErrorMs + rules.clockSkewMs;
  if (expiration === null || expiration === undefined) return retention;
  return Math.max(1, expiration + rules.clockSkewMs - at);
}
