/**
 * Several verifiers in one process, each with its own Redis store (its own connections) on the
 * same Redis and prefix, as the replicas of one service: shared answers, revocations and
 * invalidations reaching every replica, separate namespaces per verify key, what Redis holds,
 * and the same through two Express apps.
 */
import { once } from 'node:events';
import type { Server } from 'node:http';
import express from 'express';
import type { Redis } from 'ioredis';
import request from 'supertest';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  createM2MClient,
  createTokenVerifier,
  type M2MToken,
  m2mAuth,
  type VerifierCacheOptions,
} from '../../src/index.js';
import { createRedisStore } from '../../src/redis/index.js';
import { MESSAGE_MAX_AGE_MS } from '../../src/verifier/shared-level.js';
import { REDIS_URL, redisSkipped } from './redis-env.js';
import {
  Closer,
  entryKeyOf,
  expectRefused,
  type Instance,
  randomPrefix,
  rawRedis,
  scanKeys,
  sleep,
  startInstance,
  unknownToken,
  unsealed,
  useMintingEmulator,
  verdict,
  waitFor,
  waitForEntries,
  waitForShared,
} from './support.js';

type Minted = M2MToken & { token: string };

describe.skipIf(redisSkipped())('shared cache across verifiers (in process)', () => {
  const url = REDIS_URL!;
  const closer = new Closer();
  const env = useMintingEmulator(closer);
  let raw: Redis;
  let keyPrefix: string;

  beforeAll(() => {
    raw = rawRedis(url);
  });
  afterAll(() => {
    raw?.disconnect();
  });

  const mint = (params = {}) => env.mint(params) as Promise<Minted>;
  /** Waits for the background write of a good answer, so the next replica reads it. */
  const shared = (instance: Instance, tokenId: string) =>
    waitForShared(raw, keyPrefix, instance.client, tokenId);

  /** A replica verifying with the instance key (so its client may revoke) unless `key` is given. */
  async function replica(
    options: { key?: string; cache?: VerifierCacheOptions; jwtKey?: string } = {},
  ): Promise<Instance> {
    return closer.add(
      await startInstance({
        ...options,
        apiUrl: env.emulator.url,
        key: options.key ?? env.emulator.instanceSecretKey,
        redisUrl: url,
        keyPrefix,
      }),
    );
  }

  /** Serves `mw` on `GET /who` on loopback; closed after the test. */
  async function serve(mw: ReturnType<typeof m2mAuth>): Promise<Server> {
    const server = express()
      .get('/who', mw, (req, res) => {
        res.json({ subject: req.m2m?.subject });
      })
      .listen(0, '127.0.0.1');
    await once(server, 'listening');
    closer.add({
      close: () =>
        new Promise<void>((resolve) => {
          server.closeAllConnections();
          server.close(() => resolve());
        }),
    });
    return server;
  }

  // A fresh prefix per test: tests never see each other's keys or messages.
  beforeEach(() => {
    keyPrefix = randomPrefix();
  });

  it('serves an answer fetched by one replica to another without asking Clerk', async () => {
    const a = await replica();
    const b = await replica();
    const t = await mint();
    const fromA = await a.verifier.verify(t.token);
    await shared(a, t.id);
    const fromB = await b.verifier.verify(t.token);
    expect(env.emulator.calls.verify).toBe(1);
    expect(b.verifier.stats()).toMatchObject({ sharedHits: 1, upstreamCalls: 0, misses: 1 });
    expect(a.verifier.stats()).toMatchObject({ sharedHits: 0, upstreamCalls: 1 });
    expect(fromB).toStrictEqual(fromA);
    expect(fromB).toMatchObject({ id: t.id, subject: env.emulator.machines.caller!.id });

    // Now in B's own cache: the next call touches neither Redis nor Clerk.
    await b.verifier.verify(t.token);
    expect(b.verifier.stats()).toMatchObject({ sharedHits: 1, hits: 1 });

    // A third replica, started later, is served too.
    const c = await replica();
    await c.verifier.verify(t.token);
    expect(c.verifier.stats().sharedHits).toBe(1);
    expect(env.emulator.calls.verify).toBe(1);
  });

  it('shares a definite "unknown" answer', async () => {
    const a = await replica();
    const b = await replica();
    const bogus = unknownToken();
    await expectRefused(a.verifier, bogus, 'unknown');
    await waitForEntries(raw, keyPrefix, 1);
    await expectRefused(b.verifier, bogus, 'unknown');
    expect(env.emulator.calls.verify).toBe(1);
    expect(b.verifier.stats().sharedHits).toBe(1);
  });

  it('makes every other replica refuse a token revoked through one, and new replicas too', async () => {
    const a = await replica();
    const others = [await replica(), await replica()];
    const t = await mint();
    await a.verifier.verify(t.token);
    await shared(a, t.id);
    for (const other of others) await other.verifier.verify(t.token);
    expect(env.emulator.calls.verify).toBe(1);

    await a.client.revokeToken({ m2mTokenId: t.id });
    const revokedAt = performance.now();
    await expectRefused(a.verifier, t.token, 'revoked'); // at once, where it was revoked
    const lags = await Promise.all(
      others.map(async (other) => {
        await waitFor(
          async () => (await verdict(other.verifier, t.token)) !== 'valid',
          1000,
          'the other replica to refuse',
        );
        return performance.now() - revokedAt;
      }),
    );
    for (const other of others) {
      await expectRefused(other.verifier, t.token, 'revoked');
      expect(other.verifier.stats().invalidationsReceived).toBe(1);
    }
    console.log(`in-process revoke-to-refusal lag: ${lags.map((l) => l.toFixed(2)).join(', ')} ms`);

    // Started after the revocation: reads the shared "revoked" answer, never asks Clerk.
    const late = await replica();
    await expectRefused(late.verifier, t.token, 'revoked');
    expect(late.verifier.stats()).toMatchObject({ sharedHits: 1, upstreamCalls: 0 });
    expect(env.emulator.calls.verify).toBe(1);
  });

  it('propagates a revocation made through a replica that never saw the token', async () => {
    const revoker = await replica();
    const b = await replica();
    const t = await mint();
    await b.verifier.verify(t.token);
    await shared(b, t.id);
    await revoker.client.revokeToken({ m2mTokenId: t.id });
    await waitFor(
      async () => (await verdict(b.verifier, t.token)) !== 'valid',
      1000,
      'B to refuse',
    );
    await expectRefused(b.verifier, t.token, 'revoked');
    await expectRefused(revoker.verifier, t.token, 'revoked');
    const late = await replica();
    await expectRefused(late.verifier, t.token, 'revoked');
    expect(env.emulator.calls.verify).toBe(1);
  });

  it('drops an answer on the other replicas when one invalidates the token', async () => {
    const a = await replica();
    const b = await replica();
    const t = await mint();
    await a.verifier.verify(t.token);
    await shared(a, t.id);
    await b.verifier.verify(t.token);
    expect(env.emulator.calls.verify).toBe(1);

    a.verifier.invalidate(t.token);
    await waitFor(() => b.verifier.stats().invalidationsReceived === 1, 1000, 'the message');
    expect(await verdict(b.verifier, t.token)).toBe('valid');
    expect(env.emulator.calls.verify).toBe(2); // B asked Clerk again
    expect(b.verifier.stats().upstreamCalls).toBe(1);
  });

  it('drops an answer on the other replicas when one invalidates the token id', async () => {
    const a = await replica();
    const b = await replica();
    const t = await mint();
    await a.verifier.verify(t.token);
    await shared(a, t.id);
    await b.verifier.verify(t.token);

    a.verifier.invalidate(t.id);
    await waitFor(() => b.verifier.stats().invalidationsReceived === 1, 1000, 'the message');
    expect(await verdict(b.verifier, t.token)).toBe('valid');
    expect(env.emulator.calls.verify).toBe(2);
    expect(b.verifier.stats().sharedHits).toBe(1); // only the first time
  });

  it('does not serve the shared answer again right after invalidate(tokenId) on the same replica', async () => {
    const a = await replica();
    const t = await mint();
    await a.verifier.verify(t.token);
    await shared(a, t.id);
    a.verifier.invalidate(t.id);
    // invalidate() returns nothing to wait for: the next verify must not see the dropped answer.
    expect(await verdict(a.verifier, t.token)).toBe('valid');
    expect({
      sharedHits: a.verifier.stats().sharedHits,
      clerk: env.emulator.calls.verify,
    }).toStrictEqual({ sharedHits: 0, clerk: 2 });
  });

  it('drops the shared answer when invalidate(tokenId) follows the verify that fetched it', async () => {
    const a = await replica();
    const t = await mint();
    await a.verifier.verify(t.token);
    // At once: the answer's entry is being written, its id link not yet.
    a.verifier.invalidate(t.id);
    await waitFor(
      async () => (await scanKeys(raw, keyPrefix)).every((k) => !k.includes(':id:')),
      1000,
      'the id link to go',
    );
    await sleep(50); // whatever invalidate() still does in the background
    const late = await replica();
    expect(await verdict(late.verifier, t.token)).toBe('valid');
    expect({
      sharedHits: late.verifier.stats().sharedHits,
      clerk: env.emulator.calls.verify,
    }).toStrictEqual({ sharedHits: 0, clerk: 2 });
  });

  it('never shares answers between verifiers with different keys', async () => {
    const apiKey = env.emulator.machines.api!.secretKey;
    const byInstance = await replica();
    const byMachine = await replica({ key: apiKey });
    const t = await mint();
    const bogus = unknownToken();
    await byInstance.verifier.verify(t.token);
    await expectRefused(byInstance.verifier, bogus, 'unknown');
    await shared(byInstance, t.id);
    await waitForEntries(raw, keyPrefix, 2);
    await byMachine.verifier.verify(t.token);
    await expectRefused(byMachine.verifier, bogus, 'unknown');
    expect(env.emulator.calls.verify).toBe(4);
    expect(byMachine.verifier.stats().sharedHits).toBe(0);
    expect(byInstance.verifier.stats().sharedHits).toBe(0);

    // Each key has its namespace, and its own replicas share within it.
    await waitForEntries(raw, keyPrefix, 4);
    const keys = await scanKeys(raw, keyPrefix);
    const instanceNs = `${keyPrefix}v2:${byInstance.client.verifyIdentity}:`;
    const machineNs = `${keyPrefix}v2:${byMachine.client.verifyIdentity}:`;
    expect(instanceNs).not.toBe(machineNs);
    expect(byInstance.client.verifyIdentity).toMatch(/^instance:/);
    expect(byMachine.client.verifyIdentity).toMatch(/^machine:/);
    const hashes = (ns: string) =>
      keys.filter((k) => k.startsWith(`${ns}t:`)).map((k) => k.slice(`${ns}t:`.length));
    expect(hashes(instanceNs)).toHaveLength(2);
    expect(hashes(machineNs)).toHaveLength(2);
    expect(hashes(instanceNs).filter((h) => hashes(machineNs).includes(h))).toStrictEqual([]);
    expect(keys.every((k) => k.startsWith(instanceNs) || k.startsWith(machineNs))).toBe(true);

    const machine2 = await replica({ key: apiKey });
    await machine2.verifier.verify(t.token);
    expect(machine2.verifier.stats().sharedHits).toBe(1);
    expect(env.emulator.calls.verify).toBe(4);
  });

  it('keeps no token text in Redis, and TTLs within cache.ttlMs that reads never extend', async () => {
    const cache = { ttlMs: 4000, negativeTtlMs: 2000 };
    const a = await replica({ cache });
    const b = await replica({ cache });
    const good = await mint({ claims: { team: 'billing' } });
    const revoked = await mint();
    const bogus = unknownToken();
    await a.verifier.verify(good.token);
    await shared(a, good.id);
    await b.verifier.verify(good.token);
    await a.verifier.verify(revoked.token);
    await expectRefused(a.verifier, bogus, 'unknown');
    await a.client.revokeToken({ m2mTokenId: revoked.id });
    await waitFor(
      async () => (await verdict(b.verifier, revoked.token)) === 'revoked',
      1000,
      'the revocation',
    );
    await waitForEntries(raw, keyPrefix, 3);

    const keys = await scanKeys(raw, keyPrefix);
    const namespace = `${keyPrefix}v2:${a.client.verifyIdentity}:`;
    expect(keys.every((k) => k.startsWith(namespace))).toBe(true);
    // Entries for good, revoked and bogus; the id link of good (the revoked one's is gone).
    expect(keys.filter((k) => k.startsWith(`${namespace}t:`))).toHaveLength(3);
    expect(keys.filter((k) => k.startsWith(`${namespace}id:`))).toStrictEqual([
      `${namespace}id:${good.id}`,
    ]);
    // And the revocation marker of the revoked one, for writers racing the revocation.
    expect(keys.filter((k) => k.startsWith(`${namespace}rv:`))).toStrictEqual([
      `${namespace}rv:${revoked.id}`,
    ]);

    const secrets = [
      good.token,
      revoked.token,
      bogus,
      env.emulator.instanceSecretKey,
      env.emulator.machines.caller!.secretKey,
    ];
    for (const key of keys) {
      const value = (await raw.get(key)) ?? '';
      const pttl = await raw.pttl(key);
      for (const secret of secrets) {
        expect(key).not.toContain(secret);
        expect(value).not.toContain(secret);
      }
      expect(pttl, key).toBeGreaterThan(0);
      // A revocation marker outlives any writer that asked Clerk before the revocation.
      const bound = key.includes(':rv:') ? MESSAGE_MAX_AGE_MS : cache.ttlMs;
      expect(pttl, key).toBeLessThanOrEqual(bound);
    }
    const goodKey = await entryKeyOf(raw, keyPrefix, a.client, good.id);
    expect(goodKey).toBeDefined();
    expect(JSON.parse(unsealed((await raw.get(goodKey!))!))).toMatchObject({
      kind: 'valid',
      value: { id: good.id, claims: { team: 'billing' } },
    });

    // Read the good entry through new replicas and the store: its TTL only goes down.
    const ttls = [await raw.pttl(goodKey!)];
    for (let i = 0; i < 3; i++) {
      const reader = await replica({ cache });
      await reader.verifier.verify(good.token);
      expect(reader.verifier.stats().sharedHits).toBe(1);
      await a.store.get(goodKey!.slice(keyPrefix.length));
      ttls.push(await raw.pttl(goodKey!));
    }
    for (let i = 1; i < ttls.length; i++) expect(ttls[i]).toBeLessThanOrEqual(ttls[i - 1]!);
    expect(ttls.at(-1)!).toBeLessThan(ttls[0]!);
  });

  it('never writes a JWT answer to Redis: each verifier checks JWTs with its own keys', async () => {
    const jwtKey = env.emulator.jwtKey;
    const a = await replica({ jwtKey });
    const b = await replica({ jwtKey });
    const jwt = await mint({ tokenFormat: 'jwt', secondsUntilExpiration: 60 });
    await a.verifier.verify(jwt.token);
    await b.verifier.verify(jwt.token);
    await new Promise((resolve) => setTimeout(resolve, 50)); // any background write
    expect(b.verifier.stats().sharedHits).toBe(0);
    expect(env.emulator.calls.verify).toBe(0);
    expect(await scanKeys(raw, keyPrefix)).toEqual([]);
  });

  it('makes another Express app answer 401 once a token is revoked through one', async () => {
    const storeA = closer.add(createRedisStore({ url, keyPrefix }));
    const storeB = closer.add(createRedisStore({ url, keyPrefix }));
    await Promise.all([storeA.ready(), storeB.ready()]);
    const clientA = closer.add(
      createM2MClient({
        apiUrl: env.emulator.url,
        secretKey: env.emulator.instanceSecretKey,
        retry: false,
      }),
    );
    const verifierA = closer.add(
      createTokenVerifier({ client: clientA, store: storeA, anyMachine: true }),
    );
    const mwA = m2mAuth({ verifier: verifierA });
    const mwB = closer.add(
      m2mAuth({
        apiUrl: env.emulator.url,
        secretKey: env.emulator.instanceSecretKey,
        anyMachine: true,
        store: storeB,
      }),
    );
    const serverA = await serve(mwA);
    const serverB = await serve(mwB);
    const get = (server: Server, token: string) =>
      request(server).get('/who').set('Authorization', `Bearer ${token}`);

    const t = await mint();
    const caller = env.emulator.machines.caller!.id;
    expect((await get(serverA, t.token)).body).toStrictEqual({ subject: caller });
    await waitForShared(raw, keyPrefix, clientA, t.id);
    const first = await get(serverB, t.token);
    expect(first.status).toBe(200);
    expect(first.body).toStrictEqual({ subject: caller });
    expect(env.emulator.calls.verify).toBe(1);
    expect(mwB.verifier.stats().sharedHits).toBe(1);

    await clientA.revokeToken({ m2mTokenId: t.id });
    await waitFor(
      () => mwB.verifier.stats().invalidationsReceived === 1,
      1000,
      'the revocation to reach app B',
    );
    const after = await get(serverB, t.token);
    expect(after.status).toBe(401);
    expect(after.body.error).toBe('invalid_token');
    expect((await get(serverA, t.token)).status).toBe(401);
    expect(env.emulator.calls.verify).toBe(1);
  });
});
