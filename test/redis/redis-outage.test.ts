/**
 * Redis failing under the verifiers, on a throwaway redis-server of this file's own (the shared
 * `REDIS_URL` server is never stopped): killed mid-run and restarted, hung (SIGSTOP), not yet
 * started when the store is created, and the same with an ioredis client the user owns.
 * Outcomes never change, only the number of Clerk calls; nothing goes unhandled; the outage is
 * logged once and the recovery too.
 */
import { once } from 'node:events';
import type { Server } from 'node:http';
import express from 'express';
import { Redis } from 'ioredis';
import request from 'supertest';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { type Emulator, startEmulator } from '../../src/emulator/index.js';
import {
  createM2MClient,
  createTokenVerifier,
  type M2MClient,
  type M2MToken,
  m2mAuth,
} from '../../src/index.js';
import { createRedisStore } from '../../src/redis/index.js';
import { OUTAGE_QUIET_MS } from '../../src/verifier/shared-level.js';
import { redisSkipped, SKIP_REDIS } from './redis-env.js';
import {
  freePort,
  HAS_REDIS_SERVER,
  startRedisServer,
  type ThrowawayRedis,
} from './redis-server.js';
import {
  type CapturedLog,
  Closer,
  captureLogger,
  expectRefused,
  type Instance,
  randomPrefix,
  rawRedis,
  STORE_BACK,
  STORE_FAILED,
  scanKeys,
  sleep,
  startInstance,
  subscribers,
  unknownToken,
  verdict,
  waitFor,
  waitForShared,
} from './support.js';

type Minted = M2MToken & { token: string };

const skip = redisSkipped() || !HAS_REDIS_SERVER;
if (!SKIP_REDIS && !HAS_REDIS_SERVER) {
  console.warn('Redis outage tests skipped: redis-server is not on PATH (they start their own)');
}

describe.skipIf(skip)('Redis outages', () => {
  const closer = new Closer();
  let emulator: Emulator;
  let minter: M2MClient;
  let server: ThrowawayRedis | undefined;
  const problems: unknown[] = [];
  const collect = (reason: unknown) => void problems.push(reason);

  beforeAll(async () => {
    emulator = await startEmulator();
    minter = createM2MClient({
      apiUrl: emulator.url,
      machineSecretKey: emulator.machines.caller!.secretKey,
      retry: false,
    });
    process.on('unhandledRejection', collect);
  });
  afterEach(async () => {
    try {
      await closer.closeAll();
    } finally {
      await server?.close();
      server = undefined;
      vi.restoreAllMocks();
    }
    emulator.reset();
    problems.length = 0;
  });
  afterAll(async () => {
    process.off('unhandledRejection', collect);
    await minter?.close();
    await emulator?.close();
  });

  const mint = () => minter.createToken() as Promise<Minted>;

  interface Replica extends Instance {
    log: CapturedLog;
    storeLog: CapturedLog;
  }

  async function replica(
    redis: ThrowawayRedis,
    keyPrefix: string,
    commandTimeoutMs?: number,
  ): Promise<Replica> {
    const log = captureLogger();
    const storeLog = captureLogger();
    const instance = closer.add(
      await startInstance({
        apiUrl: emulator.url,
        key: emulator.instanceSecretKey,
        redisUrl: redis.url,
        keyPrefix,
        logger: log.logger,
        storeLogger: storeLog.logger,
        ...(commandTimeoutMs ? { commandTimeoutMs } : {}),
      }),
    );
    return { ...instance, log, storeLog };
  }

  async function serve(verifier: Instance['verifier']): Promise<Server> {
    const app = express().get('/who', m2mAuth({ verifier }), (req, res) => {
      res.json({ subject: req.m2m?.subject });
    });
    const listening = app.listen(0, '127.0.0.1');
    await once(listening, 'listening');
    closer.add({
      close: () =>
        new Promise<void>((resolve) => {
          listening.closeAllConnections();
          listening.close(() => resolve());
        }),
    });
    return listening;
  }

  it('changes no outcome when Redis dies mid-run, logs it once, and recovers by itself', async () => {
    const ioredisUnhandled = vi.spyOn(console, 'error');
    server = await startRedisServer();
    const keyPrefix = randomPrefix();
    const a = await replica(server, keyPrefix);
    const b = await replica(server, keyPrefix);
    const app = await serve(a.verifier);
    const get = (token: string) => request(app).get('/who').set('Authorization', `Bearer ${token}`);
    const raw = rawRedis(server.url);
    closer.add({ close: () => raw.disconnect() });

    // Up: B is served by Redis.
    const early = await mint();
    expect((await get(early.token)).status).toBe(200);
    await waitForShared(raw, keyPrefix, a.client, early.id);
    expect(await verdict(b.verifier, early.token)).toBe('valid');
    expect(emulator.calls.verify).toBe(1);
    expect(b.verifier.stats().sharedHits).toBe(1);

    // Down.
    await server.stop();
    await waitFor(
      () => a.storeLog.count('redis connection failed') === 2,
      2000,
      'the store to notice',
    );
    const clerkBefore = emulator.calls.verify;
    const used = [early.token];
    for (let i = 0; i < 6; i++) {
      const t = await mint();
      const bogus = unknownToken();
      used.push(t.token, bogus);
      const res = await get(t.token);
      expect(res.status).toBe(200);
      expect(res.body).toStrictEqual({ subject: emulator.machines.caller!.id });
      expect(await verdict(b.verifier, t.token)).toBe('valid');
      expect((await get(bogus)).status).toBe(401);
      await expectRefused(b.verifier, bogus, 'unknown');
      // Already in process: still served, by both.
      expect((await get(early.token)).status).toBe(200);
      expect(await verdict(b.verifier, early.token)).toBe('valid');
    }
    // Only more Clerk calls: each new token and each unknown one asked by both replicas.
    expect(emulator.calls.verify - clerkBefore).toBe(6 * 4);
    expect(b.verifier.stats().sharedHits).toBe(1);
    expect(a.log.count(STORE_FAILED)).toBe(1);
    expect(b.log.count(STORE_FAILED)).toBe(1);
    const warning = a.log.records().find((r) => String(r.msg).startsWith(STORE_FAILED));
    expect(warning).toMatchObject({ level: 40, store: 'redis' });
    expect(a.log.count(STORE_BACK)).toBe(0);

    // Back, empty: the replicas find it again by themselves, and share again.
    await server.restart();
    const sharedBefore = b.verifier.stats().sharedHits;
    await waitFor(
      async () => {
        const t = await mint();
        await verdict(a.verifier, t.token);
        await sleep(20); // A's write, if Redis is back
        await verdict(b.verifier, t.token);
        return b.verifier.stats().sharedHits > sharedBefore;
      },
      8000,
      'shared hits to resume',
      50,
    );
    // Back once commands have worked for OUTAGE_QUIET_MS without failing: keep them busy.
    await waitFor(
      async () => {
        await verdict(a.verifier, unknownToken());
        await verdict(b.verifier, unknownToken());
        return a.log.count(STORE_BACK) === 1 && b.log.count(STORE_BACK) === 1;
      },
      OUTAGE_QUIET_MS + 4000,
      'both replicas to log that the store is back',
      200,
    );
    expect(a.log.count(STORE_FAILED)).toBe(1);
    expect(b.log.count(STORE_FAILED)).toBe(1);
    for (const log of [a.storeLog, b.storeLog]) {
      await waitFor(
        () => log.count('redis connection is back') === 2,
        3000,
        'the store to log both connections back',
      );
      expect(log.count('redis connection failed')).toBe(2);
    }

    // Subscriptions are back too: a revocation through A reaches B again.
    const channel = a.store.channel;
    await waitFor(async () => (await subscribers(raw, channel)) === 2, 3000, 'resubscription');
    const late = await mint();
    await verdict(a.verifier, late.token);
    await waitForShared(raw, keyPrefix, a.client, late.id);
    expect(await verdict(b.verifier, late.token)).toBe('valid');
    await a.client.revokeToken({ m2mTokenId: late.id });
    await waitFor(
      async () => (await verdict(b.verifier, late.token)) === 'revoked',
      1000,
      'B to refuse the revoked token',
    );

    // The outage and recovery lines carry no token.
    const lines = [a, b].flatMap((r) => [...r.log.records(), ...r.storeLog.records()]);
    const text = JSON.stringify(lines);
    for (const token of used) expect(text).not.toContain(token);

    expect(problems).toStrictEqual([]);
    expect(
      ioredisUnhandled.mock.calls.filter((args) => String(args[0]).includes('[ioredis]')),
    ).toStrictEqual([]);
  }, 30_000);

  it('costs a request at most about commandTimeoutMs when Redis hangs', async () => {
    server = await startRedisServer();
    const a = await replica(server, randomPrefix(), 100);
    const warm = await mint();
    expect(await verdict(a.verifier, warm.token)).toBe('valid');

    server.pause();
    try {
      for (let i = 0; i < 3; i++) {
        const t = await mint();
        const started = performance.now();
        expect(await verdict(a.verifier, t.token)).toBe('valid');
        expect(performance.now() - started).toBeLessThan(1000);
        await expectRefused(a.verifier, unknownToken(), 'unknown');
      }
      expect(a.log.count(STORE_FAILED)).toBe(1);
      expect(problems).toStrictEqual([]);
    } finally {
      server.resume();
    }
  });

  it.each([
    ['dead', (s: ThrowawayRedis) => s.stop()],
    ['hung', (s: ThrowawayRedis) => s.pause()],
  ] as const)(
    'bounds a request by commandTimeoutMs with a client you own, Redis %s',
    async (_, fail) => {
      server = await startRedisServer();
      // Default ioredis options, as most applications create their client.
      const own = new Redis(server.url);
      own.on('error', () => {});
      const keyPrefix = randomPrefix();
      const store = closer.add(createRedisStore({ client: own, keyPrefix, commandTimeoutMs: 100 }));
      const client = closer.add(
        createM2MClient({
          apiUrl: emulator.url,
          secretKey: emulator.instanceSecretKey,
          retry: false,
        }),
      );
      const verifier = closer.add(createTokenVerifier({ client, anyMachine: true, store }));
      // Closed first: that ends whatever still waits on it.
      closer.add({ close: () => own.disconnect() });
      await store.ready();
      const warm = await mint();
      expect(await verdict(verifier, warm.token)).toBe('valid');
      // Its entry and id link written: nothing is left in flight when Redis fails.
      await waitFor(async () => (await scanKeys(own, keyPrefix)).length === 2, 1000, 'the writes');

      await fail(server);
      const t = await mint();
      const started = performance.now();
      const answer = await Promise.race([
        verdict(verifier, t.token),
        sleep(1200).then(() => 'still waiting after 1200 ms'),
      ]);
      expect({ answer, fast: performance.now() - started < 1000 }).toStrictEqual({
        answer: 'valid',
        fast: true,
      });
    },
  );

  it('subscribes once Redis comes up when the store was created before it', async () => {
    const port = await freePort();
    const url = `redis://127.0.0.1:${port}`;
    const keyPrefix = randomPrefix();
    const early = closer.add(createRedisStore({ url, keyPrefix }));
    const readiness = early.ready(5000).then(
      () => 'ready',
      (err: Error) => `rejected: ${err.message}`,
    );
    const got: string[] = [];
    early.subscribe((m) => got.push(m));
    await sleep(300);
    server = await startRedisServer(port);
    const raw = rawRedis(url);
    closer.add({ close: () => raw.disconnect() });
    const publisher = closer.add(createRedisStore({ url, keyPrefix }));
    await publisher.ready();

    // The early store's commands connection comes up by itself...
    await raw.set(`${keyPrefix}k`, 'v', 'PX', 10_000);
    await waitFor(async () => (await early.get('k')) === 'v', 4000, 'the early store to connect');
    // ...and so must its subscription, or it never hears of a revocation.
    await waitFor(
      async () => (await subscribers(raw, early.channel)) === 2,
      1500,
      'the early store to subscribe',
    ).catch(() => {});
    await publisher.publish('hello');
    await sleep(100);
    expect({ readiness: await readiness, received: got }).toStrictEqual({
      readiness: 'ready',
      received: ['hello'],
    });
  });
});
