/** The token bucket behind `upstreamBudget`, on a moved clock. */
import { describe, expect, it } from 'vitest';
import { createTokenBucket } from '../../src/verifier/budget.js';

describe('token bucket', () => {
  it('starts full: burst calls at once, then one per 1000/perSecond ms', () => {
    let now = 0;
    const bucket = createTokenBucket({ perSecond: 4, burst: 3 }, () => now);
    expect([bucket.take(), bucket.take(), bucket.take()]).toEqual([0, 0, 0]);
    expect(bucket.take()).toBe(250);
    now += 100;
    expect(bucket.take()).toBe(150);
    now += 150;
    expect(bucket.take()).toBe(0);
    expect(bucket.take()).toBe(250);
  });

  it('refills to burst at most, however long the quiet spell', () => {
    let now = 0;
    const bucket = createTokenBucket({ perSecond: 10, burst: 2 }, () => now);
    now += 60_000;
    expect([bucket.take(), bucket.take()]).toEqual([0, 0]);
    expect(bucket.take()).toBeGreaterThan(0);
  });

  it('a clock moved backwards refills nothing', () => {
    let now = 10_000;
    const bucket = createTokenBucket({ perSecond: 1, burst: 1 }, () => now);
    expect(bucket.take()).toBe(0);
    now = 0;
    expect(bucket.take()).toBe(1000);
    now = 10_000;
    expect(bucket.take()).toBe(1000);
    now = 11_000;
    expect(bucket.take()).toBe(0);
  });
});
