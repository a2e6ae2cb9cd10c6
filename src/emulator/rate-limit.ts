import type { RateLimitOptions } from './options.js';

/**
 * A fixed-window counter for the whole instance, like Clerk's per-instance limit: every M2M
 * request counts whatever key it carries. Time comes from the emulator's clock so tests can
 * move past a window.
 */
export class RateLimiter {
  private windowStart = 0;
  private used = 0;

  constructor(private limit: RateLimitOptions | false) {}

  set(limit: RateLimitOptions | false): void {
    this.limit = limit;
    this.windowStart = 0;
    this.used = 0;
  }

  /** Counts one request; returns the whole seconds to wait (≥ 1) when it is over the limit. */
  hit(now: number): number | undefined {
    if (this.limit === false) return undefined;
    const { limit, windowMs } = this.limit;
    if (this.used === 0 || now < this.windowStart || now >= this.windowStart + windowMs) {
      this.windowStart = now;
      this.used = 0;
    }
    if (this.used >= limit) {
      return Math.max(1, Math.ceil((this.windowStart + windowMs - now) / 1000));
    }
    this.used += 1;
    return undefined;
  }
}
