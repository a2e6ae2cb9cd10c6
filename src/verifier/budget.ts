/**
 * The upstream budget: a token bucket that admits verify calls for tokens this verifier has
 * never seen valid. Anyone can send a fresh random `mt_…` string, and each one would be a
 * billed call counted against Clerk's per-instance rate limit (shared by every service on the
 * instance); the bucket caps what an anonymous flood can spend. Tokens seen valid are not
 * held back by it: an attacker cannot make those.
 */

/** `upstreamBudget`: verify calls per second for never-seen tokens, and the burst allowed. */
export interface UpstreamBudgetOptions {
  /** Calls admitted per second, on average. Default `20`. */
  perSecond?: number;
  /** Calls admitted at once after a quiet spell (the bucket's size). Default `40`. */
  burst?: number;
}

export const DEFAULT_UPSTREAM_BUDGET = { perSecond: 20, burst: 40 } as const;

export interface TokenBucket {
  /**
   * Takes one call from the bucket: `0` when admitted, else how many ms until one would be.
   */
  take(): number;
}

/** A token bucket on the injected clock, full at the start. */
export function createTokenBucket(
  { perSecond, burst }: Required<UpstreamBudgetOptions>,
  now: () => number,
): TokenBucket {
  let tokens = burst;
  let last = now();
  return {
    take() {
      const at = now();
      // A clock moved backwards refills nothing and takes nothing away.
      if (at > last) tokens = Math.min(burst, tokens + ((at - last) * perSecond) / 1000);
      last = Math.max(last, at);
      if (tokens >= 1) {
        tokens -= 1;
        return 0;
      }
      return Math.ceil(((1 - tokens) * 1000) / perSecond);
    },
  };
}
