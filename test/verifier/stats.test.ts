/**
 * stats() and the cache/upstream diagnostics channels agree with what happened, and carry no
 * token.
 */
import { describe, expect, it } from 'vitest';
import { VERIFIER_CHANNELS } from '../../src/verifier/index.js';
import {
  expectInvalid,
  expectUnavailable,
  recordChannel,
  useHarness,
} from '../helpers/verifier-helpers.js';

const h = useHarness();

interface CacheMessage {
  event: string;
}
interface UpstreamMessage {
  outcome: 'valid' | 'invalid' | 'error';
  ms: number;
  reason?: string;
}

const count = (messages: CacheMessage[], event: string) =>
  messages.filter((m) => m.event === event).length;

describe('stats() and diagnostics channels', () => {
  it('a fresh verifier has all counters at zero', () => {
    expect(h.verifier().stats()).toEqual(
      expect.objectContaining({
        hits: 0,
        misses: 0,
        negativeHits: 0,
        coalesced: 0,
        upstreamCalls: 0,
        upstreamErrors: 0,
        staleServed: 0,
        size: 0,
      }),
    );
  });

  it('count every event of a mixed scenario, and the channels say the same', async () => {
    const cache = recordChannel<CacheMessage>(VERIFIER_CHANNELS.cache);
    const upstream = recordChannel<UpstreamMessage>(VERIFIER_CHANNELS.upstream);
    const tokens: string[] = [];
    try {
      const good = await h.mint();
      const other = await h.mint();
      tokens.push(good.token, other.token);
      const unknown = `mt_${'U'.repeat(40)}`;
      tokens.push(unknown);
      const verifier = h.verifier({ cache: { ttlMs: 1_000, staleIfErrorMs: 5_000 } });

      await verifier.verify(good.token); // miss, upstream valid
      await verifier.verify(good.token); // hit
      await verifier.verify(good.token); // hit
      await expectInvalid(verifier.verify(unknown), 'unknown'); // miss, upstream invalid
      await expectInvalid(verifier.verify(unknown), 'unknown'); // negative hit
      await expectInvalid(verifier.verify('garbage'), 'malformed'); // nothing counted
      await Promise.all([1, 2, 3].map(() => verifier.verify(other.token))); // 3 misses, 2 coalesced

      h.clock.at(1_500);
      h.emulator.failNext(1, 503, { operation: 'verify' });
      await verifier.verify(good.token); // miss, upstream error, stale served
      h.emulator.failNext(1, 503, { operation: 'verify' });
      await expectUnavailable(verifier.verify(`mt_${'V'.repeat(40)}`), 'upstream_error'); // miss, error

      const stats = verifier.stats();
      expect(stats).toEqual(
        expect.objectContaining({
          hits: 2,
          misses: 7,
          negativeHits: 1,
          coalesced: 2,
          upstreamCalls: 5,
          upstreamErrors: 2,
          staleServed: 1,
          // good (stale-servable), other, unknown (still within its negative TTL).
          size: 3,
        }),
      );
      expect(h.emulator.calls.verify).toBe(5);

      expect(count(cache.messages, 'hit')).toBe(stats.hits);
      expect(count(cache.messages, 'miss')).toBe(stats.misses);
      expect(count(cache.messages, 'negative-hit')).toBe(stats.negativeHits);
      expect(count(cache.messages, 'coalesced')).toBe(stats.coalesced);
      expect(count(cache.messages, 'stale-served')).toBe(stats.staleServed);

      expect(upstream.messages).toHaveLength(stats.upstreamCalls);
      expect(upstream.messages.map((m) => [m.outcome, m.reason])).toEqual([
        ['valid', undefined],
        ['invalid', 'unknown'],
        ['valid', undefined],
        ['error', 'upstream_error'],
        ['error', 'upstream_error'],
      ]);
      for (const message of upstream.messages) {
        expect(message.ms).toBeGreaterThanOrEqual(0);
        expect(Number.isInteger(message.ms)).toBe(true);
      }

      const everything = JSON.stringify([cache.messages, upstream.messages]);
      for (const token of tokens) expect(everything).not.toContain(token);
    } finally {
      cache.stop();
      upstream.stop();
    }
  });

  it('upstream channel reasons for timeout, rate limit and misconfiguration', async () => {
    const upstream = recordChannel<UpstreamMessage>(VERIFIER_CHANNELS.upstream);
    try {
      const minted = await h.mint();
      const verifier = h.verifier({ timeoutMs: 200, cache: false });
      h.emulator.failNext(1, 'hang', { operation: 'verify' });
      await expectUnavailable(verifier.verify(minted.token), 'timeout');
      h.emulator.failNext(1, 429, { operation: 'verify', retryAfter: 1 });
      await expectUnavailable(verifier.verify(minted.token), 'rate_limited');
      h.clock.advance(1_000); // past the pause the 429 asked for
      h.emulator.failNext(1, 401, { operation: 'verify' });
      await expectUnavailable(verifier.verify(minted.token), 'misconfigured');
      expect(upstream.messages.map((m) => m.reason)).toEqual([
        'timeout',
        'rate_limited',
        'misconfigured',
      ]);
      expect(verifier.stats()).toMatchObject({ upstreamCalls: 3, upstreamErrors: 3 });
    } finally {
      upstream.stop();
    }
  });

  it('stats() is a snapshot, not a live view', async () => {
    const minted = await h.mint();
    const verifier = h.verifier();
    const before = verifier.stats();
    await verifier.verify(minted.token);
    expect(before.misses).toBe(0);
    expect(verifier.stats().misses).toBe(1);
  });

  it('each verifier counts only its own events', async () => {
    const minted = await h.mint();
    const a = h.verifier();
    const b = h.verifier();
    await a.verify(minted.token);
    await a.verify(minted.token);
    expect(a.stats()).toMatchObject({ misses: 1, hits: 1, size: 1 });
    expect(b.stats()).toMatchObject({ misses: 0, hits: 0, size: 0 });
  });
});
