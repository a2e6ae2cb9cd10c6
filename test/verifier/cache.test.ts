/**
 * Cache semantics, read from exact upstream-call counts (`emulator.calls.verify`) with the clock
 * injected into both the emulator and the verifier: absolute TTL, negative caching, expiry-bound
 * TTL with clock skew, invalidate(), `cache: false` and the size bound.
 */
import { describe, expect, it, vi } from 'vitest';
import { InvalidTokenError } from '../../src/verifier/index.js';
import {
  createTestClock,
  expectInvalid,
  rejection,
  startHarness,
  useHarness,
} from '../helpers/verifier-helpers.js';

const h = useHarness();

const unknownToken = (c: string) => `mt_${c.repeat(40)}`;

describe('positive cache: absolute TTL', () => {
  it('default cache.ttlMs is 10 000: served from cache at +9 999 ms, re-verified at +10 000 ms', async () => {
    const minted = await h.mint();
    const verifier = h.verifier();
    await verifier.verify(minted.token);
    expect(h.emulator.calls.verify).toBe(1);

    h.clock.at(9_999);
    await verifier.verify(minted.token);
    expect(h.emulator.calls.verify).toBe(1);

    h.clock.at(10_000);
    await expect(verifier.verify(minted.token)).resolves.toMatchObject({ id: minted.id });
    expect(h.emulator.calls.verify).toBe(2);
  });

  it('steady traffic makes one upstream call per TTL window; hits never extend it', async () => {
    const minted = await h.mint();
    const verifier = h.verifier();
    let requests = 0;
    for (let t = 0; t < 30_000; t += 250) {
      h.clock.at(t);
      await verifier.verify(minted.token);
      requests++;
    }
    expect(h.emulator.calls.verify).toBe(3);
    const stats = verifier.stats();
    expect(stats.misses).toBe(3);
    expect(stats.hits).toBe(requests - 3);
    expect(stats.upstreamCalls).toBe(3);
  });

  it('a custom cache.ttlMs sets the window', async () => {
    const minted = await h.mint();
    const verifier = h.verifier({ cache: { ttlMs: 2_000 } });
    await verifier.verify(minted.token);
    h.clock.at(1_999);
    await verifier.verify(minted.token);
    expect(h.emulator.calls.verify).toBe(1);
    h.clock.at(2_000);
    await verifier.verify(minted.token);
    expect(h.emulator.calls.verify).toBe(2);
  });

  it('cache: false sends every sequential call upstream', async () => {
    const minted = await h.mint();
    const verifier = h.verifier({ cache: false });
    for (let i = 0; i < 5; i++) {
      await expect(verifier.verify(minted.token)).resolves.toMatchObject({ id: minted.id });
    }
    expect(h.emulator.calls.verify).toBe(5);
    for (let i = 0; i < 3; i++) {
      await expectInvalid(verifier.verify(unknownToken('n')), 'unknown');
    }
    expect(h.emulator.calls.verify).toBe(8);
    expect(verifier.stats()).toMatchObject({ hits: 0, negativeHits: 0, size: 0, misses: 8 });
  });

  it('cache: false still shares one upstream call between concurrent callers', async () => {
    const minted = await h.mint();
    const verifier = h.verifier({ cache: false });
    await Promise.all(Array.from({ length: 10 }, () => verifier.verify(minted.token)));
    expect(h.emulator.calls.verify).toBe(1);
    expect(verifier.stats().coalesced).toBe(9);
  });
});

describe('negative cache', () => {
  it('default negativeTtlMs is 5 000: an unknown token twice is 1 call; after 5 000 ms, 2', async () => {
    const verifier = h.verifier();
    const token = unknownToken('z');
    await expectInvalid(verifier.verify(token), 'unknown');
    await expectInvalid(verifier.verify(token), 'unknown');
    expect(h.emulator.calls.verify).toBe(1);
    expect(verifier.stats().negativeHits).toBe(1);

    h.clock.at(4_999);
    await expectInvalid(verifier.verify(token), 'unknown');
    expect(h.emulator.calls.verify).toBe(1);

    h.clock.at(5_000);
    await expectInvalid(verifier.verify(token), 'unknown');
    expect(h.emulator.calls.verify).toBe(2);
  });

  it('a custom negativeTtlMs sets the window; 0 turns negative caching off', async () => {
    const short = h.verifier({ cache: { negativeTtlMs: 1_000 } });
    const token = unknownToken('y');
    await expectInvalid(short.verify(token), 'unknown');
    h.clock.at(999);
    await expectInvalid(short.verify(token), 'unknown');
    expect(h.emulator.calls.verify).toBe(1);
    h.clock.at(1_000);
    await expectInvalid(short.verify(token), 'unknown');
    expect(h.emulator.calls.verify).toBe(2);

    const none = h.verifier({ cache: { negativeTtlMs: 0 } });
    await expectInvalid(none.verify(token), 'unknown');
    await expectInvalid(none.verify(token), 'unknown');
    expect(h.emulator.calls.verify).toBe(4);
  });

  it('a token that becomes valid is still refused until the negative entry ends', async () => {
    // Negative answers are remembered as such: the test documents the window, not a wish.
    const verifier = h.verifier();
    const minted = await h.mint();
    const other = h.verifier({ cache: { negativeTtlMs: 0 } });
    await expect(other.verify(minted.token)).resolves.toMatchObject({ id: minted.id });
    // A token id is shaped like a token and unknown to Clerk: cached as unknown.
    await expectInvalid(verifier.verify(minted.id), 'unknown');
    await expectInvalid(verifier.verify(minted.id), 'unknown');
    expect(verifier.stats().negativeHits).toBe(1);
  });
});

describe('TTL bounded by the token expiration', () => {
  it('caches until expiration - clockSkewMs, re-verifies after, refuses at expiration', async () => {
    const minted = await h.mint({ secondsUntilExpiration: 20 });
    const expiration = h.clock() + 20_000;
    expect(minted.expiration).toBe(expiration);
    const verifier = h.verifier({ clockSkewMs: 5_000, cache: { ttlMs: 60_000 } });

    await verifier.verify(minted.token);
    h.clock.at(14_999);
    await verifier.verify(minted.token);
    expect(h.emulator.calls.verify).toBe(1);

    h.clock.at(15_000);
    await expect(verifier.verify(minted.token)).resolves.toMatchObject({ id: minted.id });
    expect(h.emulator.calls.verify).toBe(2);

    // In the last clockSkewMs an answer is never cached: each call asks Clerk, which still
    // answers 200 one millisecond before expiration.
    h.clock.at(19_999);
    await expect(verifier.verify(minted.token)).resolves.toMatchObject({ id: minted.id });
    expect(h.emulator.calls.verify).toBe(3);

    // Clerk answers 404 the millisecond expiration passes; the verifier, which held the token
    // as good, reads it as expired.
    h.clock.at(20_000);
    const err = await rejection(verifier.verify(minted.token));
    expect(err).toBeInstanceOf(InvalidTokenError);
    expect((err as InvalidTokenError).reason).toBe('expired');
    expect((err as InvalidTokenError).tokenId).toBe(minted.id);
    expect(h.emulator.calls.verify).toBe(4);
    // That refusal is cached like any other 404.
    await expectInvalid(verifier.verify(minted.token), 'expired');
    expect(h.emulator.calls.verify).toBe(4);
  });

  it('default clockSkewMs is 5 000: a 12 s token is cached for 7 s, not the 10 s TTL', async () => {
    const minted = await h.mint({ secondsUntilExpiration: 12 });
    const verifier = h.verifier();
    await verifier.verify(minted.token);
    h.clock.at(6_999);
    await verifier.verify(minted.token);
    expect(h.emulator.calls.verify).toBe(1);
    h.clock.at(7_000);
    await verifier.verify(minted.token);
    expect(h.emulator.calls.verify).toBe(2);
  });

  it('a token Clerk calls live but past expiration + clockSkewMs by our clock is expired', async () => {
    const ours = createTestClock();
    // Clerk's clock is 10 s behind ours.
    const behind = await startHarness({ clock: () => ours() - 10_000 });
    try {
      const minted = await behind.mint({ secondsUntilExpiration: 5 });
      expect(minted.expiration).toBe(ours() - 5_000);

      const strict = behind.verifier({ now: ours });
      const err = await expectInvalid(strict.verify(minted.token), 'expired');
      expect(err.tokenId).toBe(minted.id);
      expect(behind.emulator.calls.verify).toBe(1);

      // A larger tolerance accepts it, but never serves it from the cache (it is past
      // expiration - skew): each call asks Clerk.
      const lenient = behind.verifier({ now: ours, clockSkewMs: 6_000 });
      await expect(lenient.verify(minted.token)).resolves.toMatchObject({ id: minted.id });
      await lenient.verify(minted.token);
      expect(behind.emulator.calls.verify).toBe(3);
      expect(lenient.stats().hits).toBe(0);
    } finally {
      await behind.close();
    }
  });
});

describe('invalidate()', () => {
  it('invalidate(token) and invalidate(tokenId) each drop the cached answer', async () => {
    const minted = await h.mint();
    const verifier = h.verifier();
    await verifier.verify(minted.token);
    await verifier.verify(minted.token);
    expect(h.emulator.calls.verify).toBe(1);

    verifier.invalidate(minted.token);
    expect(verifier.stats().size).toBe(0);
    await verifier.verify(minted.token);
    expect(h.emulator.calls.verify).toBe(2);

    verifier.invalidate(minted.id);
    expect(verifier.stats().size).toBe(0);
    await verifier.verify(minted.token);
    expect(h.emulator.calls.verify).toBe(3);

    await verifier.verify(minted.token);
    expect(h.emulator.calls.verify).toBe(3);
  });

  it('invalidate(token) drops a negative answer too', async () => {
    const verifier = h.verifier();
    const token = unknownToken('x');
    await expectInvalid(verifier.verify(token), 'unknown');
    verifier.invalidate(token);
    await expectInvalid(verifier.verify(token), 'unknown');
    expect(h.emulator.calls.verify).toBe(2);
  });

  it('drops only the one answer, and ignores empty or unknown input', async () => {
    const a = await h.mint();
    const b = await h.mint();
    const verifier = h.verifier();
    await verifier.verify(a.token);
    await verifier.verify(b.token);

    verifier.invalidate(a.id);
    verifier.invalidate('');
    verifier.invalidate(unknownToken('w'));
    verifier.invalidate(42 as unknown as string);
    expect(verifier.stats().size).toBe(1);

    await verifier.verify(b.token);
    expect(h.emulator.calls.verify).toBe(2);
    await verifier.verify(a.token);
    expect(h.emulator.calls.verify).toBe(3);
  });

  it.each([
    ['token', (m: { token: string; id: string }) => m.token],
    ['token id', (m: { token: string; id: string }) => m.id],
  ])(
    'invalidate(%s) during an upstream call in flight: the late answer is not kept',
    async (_label, which) => {
      const minted = await h.mint();
      const verifier = h.verifier();
      await verifier.verify(minted.token);
      h.clock.at(10_000); // the answer is no longer fresh: the next call goes upstream
      h.emulator.setLatency(500);
      const inFlight = verifier.verify(minted.token);
      await vi.waitFor(() => expect(h.emulator.calls.verify).toBe(2), { interval: 5 });

      // E.g. a webhook said the token was revoked: drop whatever is known about it.
      verifier.invalidate(which(minted));
      await inFlight;
      h.emulator.setLatency(0);

      // "The next call goes upstream": an answer computed before invalidate() is not reused.
      await verifier.verify(minted.token);
      expect(h.emulator.calls.verify).toBe(3);
    },
  );

  it('with cache: false, invalidate() is a harmless no-op', async () => {
    const verifier = h.verifier({ cache: false });
    expect(() => verifier.invalidate('mt_abc')).not.toThrow();
  });
});

describe('cache.max', () => {
  it('bounds the size: max 5, 8 distinct good tokens -> size 5, the oldest evicted', async () => {
    const minted = [];
    for (let i = 0; i < 8; i++) minted.push(await h.mint());
    const verifier = h.verifier({ cache: { max: 5 } });
    for (const m of minted) await verifier.verify(m.token);
    expect(verifier.stats().size).toBe(5);
    expect(h.emulator.calls.verify).toBe(8);

    // The newest is cached; the oldest was evicted.
    await verifier.verify(minted[7]!.token);
    expect(h.emulator.calls.verify).toBe(8);
    await verifier.verify(minted[0]!.token);
    expect(h.emulator.calls.verify).toBe(9);
    expect(verifier.stats().size).toBe(5);
  });

  it('bounds good answers and refusals apart: refusals never push a good answer out', async () => {
    const verifier = h.verifier({ cache: { max: 5 } });
    const good = [];
    for (let i = 0; i < 3; i++) good.push((await h.mint()).token);
    for (const token of good) await verifier.verify(token);
    for (const c of 'abcdefgh') await expectInvalid(verifier.verify(unknownToken(c)), 'unknown');
    expect(verifier.stats().size).toBe(3 + 5);
    const calls = h.emulator.calls.verify;
    for (const token of good) await verifier.verify(token);
    expect(h.emulator.calls.verify, 'every good answer still cached').toBe(calls);
  });
});
