/** The lifetime rules, with plain numbers: each window as documented in src/verifier/lifetime.ts. */
import { describe, expect, it } from 'vitest';
import {
  freshUntilOf,
  isServableStale,
  jwtUntilOf,
  type LifetimeRules,
  negativeUntilOf,
  retainUntil,
  revocationMemoryMs,
  revokedUntilOf,
  sharedTtl,
  staleUntilOf,
} from '../../src/verifier/lifetime.js';

const rules: LifetimeRules = {
  ttlMs: 10_000,
  negativeTtlMs: 5_000,
  staleIfErrorMs: 30_000,
  clockSkewMs: 5_000,
};

/** A good answer's windows, as a cached entry carries them. */
const windows = (freshUntil: number, staleUntil: number, expiration: number | null) => ({
  freshUntil,
  staleUntil,
  value: { expiration },
});

describe('lifetime rules', () => {
  it('fresh: ttlMs from the answer, never past expiration minus the skew', () => {
    expect(freshUntilOf(1_000, null, rules)).toBe(11_000);
    expect(freshUntilOf(1_000, 100_000, rules)).toBe(11_000);
    expect(freshUntilOf(1_000, 12_000, rules)).toBe(7_000);
    expect(freshUntilOf(1_000, 3_000, rules)).toBe(-2_000); // already within the skew: not fresh
  });

  it('servable stale: staleIfErrorMs past freshness, never past expiration', () => {
    expect(staleUntilOf(11_000, null, rules)).toBe(41_000);
    expect(staleUntilOf(11_000, 20_000, rules)).toBe(20_000);
    expect(staleUntilOf(11_000, null, { ...rules, staleIfErrorMs: 0 })).toBe(11_000);
  });

  it('a JWT is good until its expiration plus the skew; refusals for negativeTtlMs', () => {
    expect(jwtUntilOf(50_000, rules)).toBe(55_000);
    expect(negativeUntilOf(1_000, rules)).toBe(6_000);
  });

  it('a revocation seen here outlives every fresh copy elsewhere', () => {
    expect(revokedUntilOf(1_000, rules)).toBe(11_000);
    expect(revokedUntilOf(1_000, { ...rules, negativeTtlMs: 60_000 })).toBe(61_000);
  });

  it('retained until the token expires plus one fresh window, at least while servable', () => {
    expect(retainUntil(windows(11_000, 41_000, 100_000), rules)).toBe(110_000);
    expect(retainUntil(windows(11_000, 41_000, null), rules)).toBe(41_000);
    expect(retainUntil(windows(11_000, 11_000, null), rules)).toBe(21_000);
  });

  it('shared only while servable', () => {
    expect(sharedTtl(41_000, 1_000)).toBe(40_000);
    expect(sharedTtl(1_000, 1_000)).toBe(0);
  });

  it('stale service stops at staleUntil and at expiration, whichever first', () => {
    const answer = windows(11_000, 41_000, 30_000);
    expect(isServableStale(answer, 29_999)).toBe(true);
    expect(isServableStale(answer, 30_000)).toBe(false);
    expect(isServableStale(windows(11_000, 41_000, null), 40_999)).toBe(true);
    expect(isServableStale(windows(11_000, 41_000, null), 41_000)).toBe(false);
  });

  it('a revocation is remembered until the token expires, else for the retention window', () => {
    expect(revocationMemoryMs(1_000, 60_000, rules)).toBe(64_000);
    expect(revocationMemoryMs(1_000, null, rules)).toBe(45_000);
    expect(revocationMemoryMs(1_000, undefined, rules)).toBe(45_000);
    expect(revocationMemoryMs(100_000, 60_000, rules)).toBe(1); // expired long ago: at once
  });
});
