/**
 * `verifier.health()` through the breaker's states (the clock mocked through `now`, failures
 * from the emulator's `failNext`), and through a Redis of its own going down and coming back.
 */
import { describe, expect, it } from 'vitest';
import { createRedisStore } from '../../src/redis/index.js';
import { expectUnavailable, useHarness } from '../helpers/verifier-helpers.js';
import { redisSkipped } from '../redis/redis-env.js';
import { HAS_REDIS_SERVER, startRedisServer } from '../redis/redis-server.js';
import { randomPrefix, waitFor } from '../redis/support.js';

const h = useHarness();

describe('health() and the breaker', () => {
  it('ok, degraded after a failed call, unavailable while open, then half-open and closed', async () => {
    const verifier = h.verifier({ breaker: { failures: 2, cooldownMs: 1_000 } });
    expect(verifier.health()).toEqual({
      status: 'ok',
      breaker: 'closed',
      lastUpstreamSuccessAt: null,
      lastUpstreamFailureAt: null,
      store: 'none',
    });
    const token = (await h.mint()).token;
    await verifier.verify(token);
    const succeededAt = h.clock();
    expect(verifier.health()).toMatchObject({ status: 'ok', lastUpstreamSuccessAt: succeededAt });

    h.clock.advance(100);
    h.emulator.failNext(2, 503, { operation: 'verify' });
    await expectUnavailable(verifier.verify((await h.mint()).token), 'upstream_error');
    expect(verifier.health()).toEqual({
      status: 'degraded', // the last call failed, the breaker is still closed
      breaker: 'closed',
      lastUpstreamSuccessAt: succeededAt,
      lastUpstreamFailureAt: h.clock(),
      store: 'none',
    });
    await expectUnavailable(verifier.verify((await h.mint()).token), 'upstream_error');
    expect(verifier.health()).toMatchObject({ status: 'unavailable', breaker: 'open' });
    await expectUnavailable(verifier.verify((await h.mint()).token), 'circuit_open');
    expect(h.emulator.calls.verify).toBe(3); // the open breaker asked nobody

    h.clock.advance(1_000); // the cooldown is over: the next call is the trial
    expect(verifier.health()).toMatchObject({ status: 'degraded', breaker: 'half-open' });
    h.emulator.failNext(1, 503, { operation: 'verify' });
    await expectUnavailable(verifier.verify((await h.mint()).token), 'upstream_error');
    expect(verifier.health()).toMatchObject({ status: 'unavailable', breaker: 'open' });

    h.clock.advance(1_000);
    await verifier.verify((await h.mint()).token); // a trial that succeeds closes it
    expect(verifier.health()).toEqual({
      status: 'ok',
      breaker: 'closed',
      lastUpstreamSuccessAt: h.clock(),
      lastUpstreamFailureAt: h.clock() - 1_000,
      store: 'none',
    });
  });

  it('a definite "not valid" from Clerk is an answer: health stays ok', async () => {
    const verifier = h.verifier();
    await expect(verifier.verify(`mt_${'Z'.repeat(40)}`)).rejects.toThrow();
    expect(verifier.health()).toMatchObject({
      status: 'ok',
      lastUpstreamSuccessAt: h.clock(),
      lastUpstreamFailureAt: null,
    });
  });
});

const skip = redisSkipped() || !HAS_REDIS_SERVER;

describe.skipIf(skip)('health() and the shared store', () => {
  it('store up, down (degraded, requests still answered), and up again', async () => {
    const server = await startRedisServer();
    try {
      const store = createRedisStore({ url: server.url, keyPrefix: randomPrefix() });
      await store.ready();
      // New tokens until Redis is back: more never-seen tokens than the default budget admits.
      const verifier = h.verifier({ store, upstreamBudget: false });
      await verifier.verify((await h.mint()).token);
      expect(verifier.health()).toMatchObject({ status: 'ok', store: 'up' });

      await server.stop();
      await verifier.verify((await h.mint()).token); // Clerk still answers
      expect(verifier.health()).toMatchObject({ status: 'degraded', store: 'down' });

      await server.restart();
      await waitFor(
        async () => {
          // The store counts as back after a quiet spell without failures (on this clock).
          h.clock.advance(1_000);
          await verifier.verify((await h.mint()).token);
          return verifier.health().store === 'up';
        },
        10_000,
        'the store to come back',
        100,
      );
      expect(verifier.health()).toMatchObject({ status: 'ok', breaker: 'closed', store: 'up' });
      await verifier.close();
      await store.close();
    } finally {
      await server.close();
    }
  }, 20_000);
});
