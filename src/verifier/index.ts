/**
 * The verifier: framework-agnostic M2M token verification through the client, with a hashed,
 * bounded, expiry-aware cache, singleflight, a circuit breaker and stale-if-error.
 * Knows nothing of Express or HTTP servers.
 */

export { DEFAULT_UPSTREAM_BUDGET, type UpstreamBudgetOptions } from './budget.js';
export {
  InvalidTokenError,
  type InvalidTokenReason,
  type UnavailableReason,
  VerifierUnavailableError,
} from './errors.js';
export {
  DEFAULT_BREAKER,
  DEFAULT_CACHE,
  DEFAULT_CLOCK_SKEW_MS,
  TOKEN_VERIFIER_KEYS,
} from './options.js';
export { CHANNELS as VERIFIER_CHANNELS } from './stats.js';
export type { SharedCacheStore } from './store.js';
// The rest of telemetry.js (the counter table, listeners) is internal: m2m-guard/prometheus only.
export { REQUEST_OUTCOMES, type RequestOutcome, recordRequestOutcome } from './telemetry.js';
export { isOpaqueM2MToken, MAX_OPAQUE_TOKEN_LENGTH } from './token-shape.js';
export type {
  TokenVerifier,
  TokenVerifierOptions,
  VerifiedM2MToken,
  VerifierBreakerOptions,
  VerifierCacheOptions,
  VerifierHealth,
  VerifierStats,
  VerifyOptions,
} from './types.js';
export { createTokenVerifier } from './verifier.js';
