/**
 * The two outcomes of a failed verification, never confused with each other:
 * the token is not good ({@link InvalidTokenError}), or no answer could be had
 * ({@link VerifierUnavailableError}). A timeout is never an invalid token; a 404 is never
 * "unavailable".
 */

/** Why a token is not good. Logged; never shown to the caller, who sees one generic answer. */
export type InvalidTokenReason =
  /** Cannot be an M2M token: wrong prefix, characters, or length. No upstream call was made. */
  | 'malformed'
  /** Clerk does not know the token (or it was never valid here). */
  | 'unknown'
  /** Revoked, as seen through this process or by Clerk. */
  | 'revoked'
  /** Past its expiration. */
  | 'expired'
  /** Valid, but not granted to this machine (`machineId`) or from a subject not allowed. */
  | 'out_of_scope';

export class InvalidTokenError extends Error {
  override name = 'InvalidTokenError';
  readonly reason: InvalidTokenReason;
  /** The token id (`mt_…`) when known: safe to log. */
  readonly tokenId: string | undefined;
  /** The calling machine when known. */
  readonly subject: string | undefined;

  constructor(reason: InvalidTokenReason, details: { tokenId?: string; subject?: string } = {}) {
    super(`M2M token is not valid (${reason})`);
    this.reason = reason;
    this.tokenId = details.tokenId;
    this.subject = details.subject;
  }
}

/** Why no answer could be had. */
export type UnavailableReason =
  | 'timeout'
  | 'network'
  | 'rate_limited'
  | 'upstream_error'
  | 'invalid_response'
  /** Clerk rejected our own key (401/403) or none is configured: fix the configuration. */
  | 'misconfigured'
  /** The circuit breaker is open after repeated failures. */
  | 'circuit_open'
  /** The upstream budget for never-seen tokens is spent (see `upstreamBudget`). */
  | 'budget_exhausted';

export class VerifierUnavailableError extends Error {
  override name = 'VerifierUnavailableError';
  readonly reason: UnavailableReason;
  /** Seconds after which trying again makes sense, when known. */
  readonly retryAfter: number | undefined;

  constructor(reason: UnavailableReason, options: { retryAfter?: number; cause?: unknown } = {}) {
    super(
      `M2M token verification is unavailable (${reason})`,
      options.cause === undefined ? undefined : { cause: options.cause },
    );
    this.reason = reason;
    this.retryAfter = options.retryAfter;
  }
}
