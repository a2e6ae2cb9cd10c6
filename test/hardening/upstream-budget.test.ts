/**
 * The upstream budget and Clerk's 429, against the emulator on a moved clock: never-seen tokens
 * past the budget are refused 503 without any call; tokens seen valid are never held back; a
 * 429 pauses every upstream call for its Retry-After while cached answers keep being served.
 */
import express from 'express';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { m2mAuth } from '../../src/middleware/index.js';
import { captureLogger, expectUnavailable, useHarness } from '../helpers/verifier-helpers.js';

const h = useHarness();
const garbage = (i: number) => `mt_${String(i).padStart(40, 'x')}`;

describe('upstreamBudget', () => {
  it('past the burst, a never-seen token is 503 budget_exhausted with Retry-After and no call', async () => {
    const log = captureLogger();
    const verifier = h.verifier({ upstreamBudget: { perSecond: 2, burst: 3 }, logger: log.logger });
    for (let i = 0; i < 3; i++) {
      await expect(verifier.verify(garbage(i))).rejects.toMatchObject({ reason: 'unknown' });
    }
    expect(h.emulator.calls.verify).toBe(3);
    for (let i = 3; i < 10; i++) {
      const err = await expectUnavailable(verifier.verify(garbage(i)), 'budget_exhausted');
      expect(err.retryAfter).toBe(1);
    }
    expect(h.emulator.calls.verify, 'no call past the budget').toBe(3);
    expect(verifier.stats()).toMatchObject({ budgetRefused: 7, upstreamCalls: 3 });
    const warned = log.records().filter((r) => /budget/.test(String(r.msg)) && r.level === 40);
    expect(warned, 'one warning per episode').toHaveLength(1);

    h.clock.advance(500); // one call's worth at 2 per second
    await expect(verifier.verify(garbage(10))).rejects.toMatchObject({ reason: 'unknown' });
    await expectUnavailable(verifier.verify(garbage(11)), 'budget_exhausted');
    expect(h.emulator.calls.verify).toBe(4);
  });

  it('a refusal already cached costs nothing from the budget', async () => {
    const verifier = h.verifier({ upstreamBudget: { perSecond: 1, burst: 1 } });
    await expect(verifier.verify(garbage(1))).rejects.toMatchObject({ reason: 'unknown' });
    for (let i = 0; i < 5; i++) {
      await expect(verifier.verify(garbage(1))).rejects.toMatchObject({ reason: 'unknown' });
    }
    expect(verifier.stats().budgetRefused).toBe(0);
  });

  it('a token seen valid is re-verified after its fresh window even with the budget spent', async () => {
    const verifier = h.verifier({
      upstreamBudget: { perSecond: 1, burst: 1 },
      cache: { ttlMs: 1_000 },
    });
    const minted = await h.mint();
    await verifier.verify(minted.token); // takes the only call of the budget
    await expectUnavailable(verifier.verify(garbage(1)), 'budget_exhausted');
    h.clock.advance(1_000); // fresh window over; the budget has refilled one call...
    await expect(verifier.verify(garbage(2))).rejects.toMatchObject({ reason: 'unknown' }); // ...spent
    const before = h.emulator.calls.verify;
    await expect(verifier.verify(minted.token)).resolves.toMatchObject({ id: minted.id });
    expect(h.emulator.calls.verify - before, 're-verified upstream').toBe(1);
  });

  it('upstreamBudget: false admits every call', async () => {
    const verifier = h.verifier({ upstreamBudget: false });
    for (let i = 0; i < 60; i++) {
      await expect(verifier.verify(garbage(i))).rejects.toMatchObject({ reason: 'unknown' });
    }
    expect(verifier.stats().budgetRefused).toBe(0);
  });

  it('the default is 40 at once, then 20 a second', async () => {
    const verifier = h.verifier();
    for (let i = 0; i < 40; i++) {
      await expect(verifier.verify(garbage(i))).rejects.toMatchObject({ reason: 'unknown' });
    }
    await expectUnavailable(verifier.verify(garbage(40)), 'budget_exhausted');
    h.clock.advance(1_000);
    for (let i = 41; i < 61; i++) {
      await expect(verifier.verify(garbage(i))).rejects.toMatchObject({ reason: 'unknown' });
    }
    await expectUnavailable(verifier.verify(garbage(61)), 'budget_exhausted');
  });

  it('m2mAuth answers a refusal of the budget 503 temporarily_unavailable with Retry-After', async () => {
    const auth = m2mAuth({
      apiUrl: h.emulator.url,
      secretKey: h.emulator.instanceSecretKey,
      anyMachine: true,
      now: h.clock,
      upstreamBudget: { perSecond: 1, burst: 1 },
    });
    h.track(auth);
    const app = express().get('/r', auth, (_req, res) => {
      res.json({ ok: true });
    });
    expect(
      (
        await request(app)
          .get('/r')
          .set('authorization', `Bearer ${garbage(1)}`)
      ).status,
    ).toBe(401);
    const refused = await request(app)
      .get('/r')
      .set('authorization', `Bearer ${garbage(2)}`);
    expect(refused.status).toBe(503);
    expect(refused.headers['retry-after']).toBe('1');
    expect(refused.body.error).toBe('temporarily_unavailable');
  });
});

describe("Clerk's 429", () => {
  it('pauses every upstream call for its Retry-After; cached answers keep being served', async () => {
    const verifier = h.verifier({ cache: { ttlMs: 60_000 }, breaker: { failures: 1 } });
    const cached = await h.mint();
    await verifier.verify(cached.token);
    const other = await h.mint();
    h.emulator.failNext(1, 429, { operation: 'verify', retryAfter: 5 });
    await expectUnavailable(verifier.verify(other.token), 'rate_limited');
    const calls = h.emulator.calls.verify;

    h.clock.advance(4_000);
    const paused = await expectUnavailable(verifier.verify(other.token), 'rate_limited');
    expect(paused.retryAfter).toBe(1);
    await expect(verifier.verify(cached.token)).resolves.toMatchObject({ id: cached.id });
    expect(h.emulator.calls.verify, 'nothing asked while paused').toBe(calls);

    h.clock.advance(1_000);
    await expect(verifier.verify(other.token)).resolves.toMatchObject({ id: other.id });
    expect(h.emulator.calls.verify).toBe(calls + 1);
  });
});
