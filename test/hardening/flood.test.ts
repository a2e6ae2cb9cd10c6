/**
 * The lockout, as an attacker ran it: 20 callers verified and cached, then an anonymous flood of
 * 10 000 JWT-shaped and 2 000 `mt_`-shaped garbage tokens over HTTP, against the emulator with
 * Clerk's development rate limit (100 requests per 10 s). The fresh windows of the 20 callers end
 * several times during the flood (the clock moves). Every legitimate request must get 200, Clerk
 * must never answer 429, and the garbage may cost no more upstream calls than the budget allows.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { Pool } from 'undici';
import { afterAll, describe, expect, it } from 'vitest';
import { m2mAuth } from '../../src/middleware/index.js';
import { useHarness } from '../helpers/verifier-helpers.js';

const h = useHarness({ rateLimit: { limit: 100, windowMs: 10_000 } });
const CALLERS = 20;
const JWT_GARBAGE = 10_000;
const OPAQUE_GARBAGE = 2_000;
const ROUNDS = 12;
const TTL_MS = 5_000;
// The burst covers the 20 callers' first verification (they are never-seen tokens then too).
const BUDGET = { perSecond: 2, burst: 25 };

const b64 = (n: number) => randomBytes(n).toString('base64url');
const jwtShaped = () => `${b64(24)}.${b64(48)}.${b64(32)}`;
const opaqueShaped = () => `mt_${b64(30)}`;

const closers: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  for (const close of closers.reverse()) await close();
});

describe('an anonymous flood cannot lock legitimate callers out', () => {
  it('20 cached callers get 200 on every request through 12 000 garbage tokens', async () => {
    const api = h.machine('api');
    const auth = m2mAuth({
      apiUrl: h.emulator.url,
      secretKey: h.emulator.instanceSecretKey,
      machineId: api.id,
      now: h.clock,
      retry: false,
      cache: { ttlMs: TTL_MS },
      upstreamBudget: BUDGET,
    });
    closers.push(() => auth.close());
    const app = express().get('/internal', auth, (_req, res) => {
      res.json({ ok: true });
    });
    const server = app.listen(0, '127.0.0.1');
    await once(server, 'listening');
    closers.push(() => new Promise((resolve) => server.close(resolve)));
    const pool = new Pool(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, {
      connections: 32,
    });
    closers.push(() => pool.close());
    const call = async (token: string) => {
      const res = await pool.request({
        path: '/internal',
        method: 'GET',
        headers: { authorization: `Bearer ${token}` },
      });
      await res.body.dump();
      return res.statusCode;
    };
    const inParallel = async (tokens: string[], width = 32) => {
      const statuses: number[] = [];
      for (let i = 0; i < tokens.length; i += width) {
        statuses.push(...(await Promise.all(tokens.slice(i, i + width).map(call))));
      }
      return statuses;
    };

    const callers: string[] = [];
    for (let i = 0; i < CALLERS; i++) callers.push((await h.mint()).token);
    expect(await inParallel(callers)).toEqual(callers.map(() => 200));
    const startedAt = h.clock();
    const legitCallsBefore = h.emulator.calls.verify;

    const legit: number[] = [];
    const garbage: number[] = [];
    let reverifications = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const tokens = [
        ...Array.from({ length: JWT_GARBAGE / ROUNDS }, jwtShaped),
        ...Array.from({ length: Math.ceil(OPAQUE_GARBAGE / ROUNDS) }, opaqueShaped),
      ];
      garbage.push(...(await inParallel(tokens)));
      legit.push(...(await inParallel(callers)));
      h.clock.advance(1_000);
      if ((h.clock() - startedAt) % TTL_MS === 0) reverifications += CALLERS;
    }
    const seconds = (h.clock() - startedAt) / 1000;
    const stats = auth.verifier.stats();
    const garbageCalls = h.emulator.calls.verify - legitCallsBefore - reverifications;

    expect(
      legit.filter((s) => s !== 200),
      'every legitimate request passed',
    ).toEqual([]);
    expect(garbage.length).toBeGreaterThanOrEqual(JWT_GARBAGE + OPAQUE_GARBAGE);
    expect(new Set(garbage), 'garbage is refused, 401 or 503 past the budget').toEqual(
      new Set([401, 503]),
    );
    expect(stats.upstreamErrors, 'Clerk never answered 429 (or anything but an answer)').toBe(0);
    expect(garbageCalls, 'upstream calls for garbage stay within the budget').toBeLessThanOrEqual(
      BUDGET.burst + BUDGET.perSecond * seconds,
    );
    expect(stats.budgetRefused).toBeGreaterThan(0);
    console.info(
      `flood: legitimate ${legit.length} requests, statuses ${[...new Set(legit)].join(',')}; ` +
        `garbage ${garbage.length} requests; upstream verify calls ${h.emulator.calls.verify} ` +
        `(garbage ${garbageCalls}, re-verifications ${reverifications}); ` +
        `budgetRefused ${stats.budgetRefused}; cache entries ${stats.size}`,
    );
  }, 120_000);
});
