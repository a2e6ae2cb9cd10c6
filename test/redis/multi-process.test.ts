/**
 * Replicas in separate processes (`fixtures/instance.ts` under tsx), sharing the Redis of
 * `REDIS_URL`: an answer fetched by one serves the others, a revocation through one is refused
 * by the others within a measured lag, and a replica started after the revocation refuses the
 * token without asking Clerk. Then three replicas on the Redis Cluster of `REDIS_CLUSTER_URLS`.
 */
import { Cluster, type Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Emulator, startEmulator } from '../../src/emulator/index.js';
import { createM2MClient, type M2MClient, type M2MToken } from '../../src/index.js';
import { clusterSkipped, REDIS_CLUSTER_URLS, REDIS_URL, redisSkipped } from './redis-env.js';
import { type Child, spawnReplica } from './replica-process.js';
import {
  entryKeyOf,
  percentile,
  randomPrefix,
  rawRedis,
  sleep,
  unknownToken,
  waitFor,
  waitForEntries,
  waitForShared,
} from './support.js';

type Minted = M2MToken & { token: string };

describe.skipIf(redisSkipped())('replicas in separate processes', () => {
  let emulator: Emulator;
  let minter: M2MClient;
  let keyPrefix: string;
  let a: Child;
  let b: Child;
  let raw: Redis;
  /** The replicas verify with the instance key: this is how they name their namespace. */
  let identity: Pick<M2MClient, 'verifyIdentity'>;
  const extra: Child[] = [];

  const config = () => ({
    apiUrl: emulator.url,
    secretKey: emulator.instanceSecretKey,
    redisUrl: REDIS_URL!,
    keyPrefix,
  });
  const mint = () => minter.createToken() as Promise<Minted>;
  /** Waits for the background write of a good answer, so the next replica reads it. */
  const shared = (tokenId: string) => waitForShared(raw, keyPrefix, identity, tokenId);

  beforeAll(async () => {
    emulator = await startEmulator();
    minter = createM2MClient({
      apiUrl: emulator.url,
      machineSecretKey: emulator.machines.caller!.secretKey,
      retry: false,
    });
    keyPrefix = randomPrefix();
    raw = rawRedis(REDIS_URL!);
    const probe = createM2MClient({ apiUrl: emulator.url, secretKey: emulator.instanceSecretKey });
    identity = { verifyIdentity: probe.verifyIdentity };
    await probe.close();
    [a, b] = await Promise.all([spawnReplica(config()), spawnReplica(config())]);
  }, 30_000);
  afterEach(async () => {
    for (const child of extra.splice(0)) await child.close();
  });
  afterAll(async () => {
    await Promise.all([a?.close(), b?.close()]);
    raw?.disconnect();
    await minter?.close();
    await emulator?.close();
  });

  it('serves an answer fetched by one process to another without asking Clerk', async () => {
    const t = await mint();
    const before = emulator.calls.verify;
    const statsBefore = await b.stats();
    expect(await a.verdict(t.token)).toBe('valid');
    await shared(t.id);
    expect(await b.verdict(t.token)).toBe('valid');
    expect(emulator.calls.verify - before).toBe(1);
    const statsAfter = await b.stats();
    expect(statsAfter.sharedHits - statsBefore.sharedHits).toBe(1);
    expect(statsAfter.upstreamCalls - statsBefore.upstreamCalls).toBe(0);

    const bogus = unknownToken();
    expect(await a.verdict(bogus)).toBe('unknown');
    await waitForEntries(raw, keyPrefix, 2);
    expect(await b.verdict(bogus)).toBe('unknown');
    expect(emulator.calls.verify - before).toBe(2);
  });

  it('makes the other process refuse a revoked token within a bounded lag (20 revocations)', async () => {
    const lags: number[] = [];
    const verifyBefore = emulator.calls.verify;
    const received = (await b.stats()).invalidationsReceived;
    for (let i = 0; i < 20; i++) {
      const t = await mint();
      expect(await a.verdict(t.token)).toBe('valid');
      await shared(t.id);
      expect(await b.verdict(t.token)).toBe('valid');
      // B polls its own verifier on every turn of its event loop until it refuses.
      const refused = b.call<{ at: number; verdict: string; acceptedAtStart: boolean }>(
        'waitRefused',
        { token: t.token, timeoutMs: 3000 },
      );
      await sleep(10);
      const { at: revokedAt } = await a.call<{ at: number }>('revoke', { tokenId: t.id });
      const outcome = await refused;
      expect(outcome.acceptedAtStart).toBe(true);
      expect(outcome.verdict).toBe('revoked');
      lags.push(Math.max(0, outcome.at - revokedAt));
    }
    const p50 = percentile(lags, 50);
    const max = Math.max(...lags);
    console.log(
      `revocation lag, revokeToken() resolved in process A -> refused in process B, over ` +
        `${lags.length} revocations on loopback: p50 ${p50.toFixed(2)} ms, max ${max.toFixed(2)} ms`,
    );
    expect(max).toBeLessThan(1000);
    // Each token cost one Clerk call (A's); B was served by Redis, then refused from Redis.
    expect(emulator.calls.verify - verifyBefore).toBe(20);
    expect((await b.stats()).invalidationsReceived - received).toBe(20);
  });

  it('makes a process started after the revocation refuse the token without asking Clerk', async () => {
    const t = await mint();
    expect(await a.verdict(t.token)).toBe('valid');
    await shared(t.id);
    const entryKey = (await entryKeyOf(raw, keyPrefix, identity, t.id))!;
    await a.call('revoke', { tokenId: t.id });
    expect(await a.verdict(t.token)).toBe('revoked');
    await waitFor(
      async () => (await raw.get(entryKey))?.includes('"revoked"') === true,
      2000,
      'the shared "revoked" answer',
    );
    const before = emulator.calls.verify;

    const late = await spawnReplica(config());
    extra.push(late);
    expect(await late.verdict(t.token)).toBe('revoked');
    expect(emulator.calls.verify).toBe(before);
    expect(await late.stats()).toMatchObject({ sharedHits: 1, upstreamCalls: 0 });
  }, 30_000);

  it('drops the answer in the other process when one invalidates the token', async () => {
    const t = await mint();
    expect(await a.verdict(t.token)).toBe('valid');
    await shared(t.id);
    expect(await b.verdict(t.token)).toBe('valid');
    const before = emulator.calls.verify;
    const received = (await b.stats()).invalidationsReceived;
    await a.call('invalidate', { token: t.token });
    const deadline = Date.now() + 1000;
    while ((await b.stats()).invalidationsReceived === received && Date.now() < deadline) {
      await sleep(5);
    }
    expect((await b.stats()).invalidationsReceived).toBe(received + 1);
    expect(await b.verdict(t.token)).toBe('valid');
    expect(emulator.calls.verify - before).toBe(1); // B asked Clerk again
  });
});

describe.skipIf(clusterSkipped())('replicas in separate processes on a Redis Cluster', () => {
  let emulator: Emulator;
  let minter: M2MClient;
  let replicas: Child[] = [];
  let inspector: Cluster;
  let keyPrefix: string;
  let identity: Pick<M2MClient, 'verifyIdentity'>;

  beforeAll(async () => {
    emulator = await startEmulator();
    keyPrefix = randomPrefix();
    inspector = new Cluster(
      REDIS_CLUSTER_URLS!.map((url) => ({ host: '127.0.0.1', port: Number(new URL(url).port) })),
    );
    inspector.on('error', () => {});
    const probe = createM2MClient({ apiUrl: emulator.url, secretKey: emulator.instanceSecretKey });
    identity = { verifyIdentity: probe.verifyIdentity };
    await probe.close();
    minter = createM2MClient({
      apiUrl: emulator.url,
      machineSecretKey: emulator.machines.caller!.secretKey,
      retry: false,
    });
    const config = {
      apiUrl: emulator.url,
      secretKey: emulator.instanceSecretKey,
      clusterUrls: REDIS_CLUSTER_URLS!,
      keyPrefix,
    };
    replicas = await Promise.all([
      spawnReplica(config),
      spawnReplica(config),
      spawnReplica(config),
    ]);
  }, 30_000);
  afterAll(async () => {
    await Promise.all(replicas.map((replica) => replica.close()));
    inspector?.disconnect();
    await minter?.close();
    await emulator?.close();
  });

  const mint = () => minter.createToken() as Promise<Minted>;
  /** Waits for the shared answer on the cluster, then has every other replica read it. */
  async function sharedWithAll(fetcher: Child, t: Minted) {
    await waitForShared(inspector, keyPrefix, identity, t.id);
    for (const other of replicas.filter((r) => r !== fetcher)) {
      const before = (await other.stats()).sharedHits;
      expect(await other.verdict(t.token)).toBe('valid');
      expect((await other.stats()).sharedHits).toBe(before + 1);
    }
  }

  it('makes one Clerk call for a token fetched by one of three replicas', async () => {
    for (const fetcher of replicas) {
      const t = await mint();
      const before = emulator.calls.verify;
      expect(await fetcher.verdict(t.token)).toBe('valid');
      await sharedWithAll(fetcher, t);
      expect(emulator.calls.verify - before).toBe(1);
    }
  });

  it('makes every replica refuse a token revoked through any of them within 250 ms (20 revocations)', async () => {
    const lags: number[] = [];
    for (let i = 0; i < 21; i++) {
      const revoker = replicas[i % replicas.length]!;
      const others = replicas.filter((r) => r !== revoker);
      const t = await mint();
      expect(await revoker.verdict(t.token)).toBe('valid');
      await sharedWithAll(revoker, t);
      const refused = others.map((other) =>
        other.call<{ at: number; verdict: string; acceptedAtStart: boolean }>('waitRefused', {
          token: t.token,
          timeoutMs: 3000,
        }),
      );
      await sleep(10);
      const { at: revokedAt } = await revoker.call<{ at: number }>('revoke', { tokenId: t.id });
      for (const outcome of await Promise.all(refused)) {
        expect(outcome.acceptedAtStart).toBe(true);
        expect(outcome.verdict).toBe('revoked');
        lags.push(Math.max(0, outcome.at - revokedAt));
      }
    }
    const p50 = percentile(lags, 50);
    const max = Math.max(...lags);
    console.log(
      `revocation lag over a 3-node Redis Cluster, revokeToken() resolved in one process -> ` +
        `refused in each other one, ${lags.length} refusals after 21 revocations through each ` +
        `replica in turn: p50 ${p50.toFixed(2)} ms, max ${max.toFixed(2)} ms`,
    );
    expect(max).toBeLessThan(250);
  }, 60_000);
});
