/**
 * `createRedisStore()` on the Redis Cluster of `REDIS_CLUSTER_URLS`: keys spread over the
 * nodes (no hash tag, one key per command, so no CROSSSLOT), invalidations by sharded pub/sub,
 * an ioredis `Cluster` you own accepted and left open, verifiers sharing answers through it
 * without a single store failure, also after the answer's slot moved to another node.
 */
import { Cluster } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Emulator, startEmulator } from '../../src/emulator/index.js';
import { createM2MClient, createTokenVerifier, type M2MToken } from '../../src/index.js';
import { createRedisStore, type RedisStore } from '../../src/redis/index.js';
import { clusterSkipped, REDIS_CLUSTER_URLS } from './redis-env.js';
import { startRedisCluster } from './redis-server.js';
import {
  Closer,
  captureLogger,
  entryKeyOf,
  randomPrefix,
  STORE_FAILED,
  sleep,
  verdict,
  waitFor,
  waitForShared,
} from './support.js';

const nodesOf = (urls: string[]) =>
  urls.map((url) => ({ host: '127.0.0.1', port: Number(new URL(url).port) }));

describe.skipIf(clusterSkipped())('createRedisStore on a Redis Cluster', () => {
  const urls = REDIS_CLUSTER_URLS!;
  const closer = new Closer();
  let inspector: Cluster;

  beforeAll(async () => {
    inspector = new Cluster(nodesOf(urls));
    inspector.on('error', () => {});
  });
  afterEach(() => closer.closeAll());
  afterAll(() => {
    inspector?.disconnect();
  });

  async function store(keyPrefix = randomPrefix()): Promise<RedisStore> {
    const made = closer.add(createRedisStore({ cluster: urls, keyPrefix }));
    await made.ready();
    return made;
  }

  it('spreads keys over every node, one key per command, with absolute TTLs', async () => {
    const keyPrefix = randomPrefix();
    const s = await store(keyPrefix);
    expect(s.name).toBe('redis-cluster');
    for (let i = 0; i < 60; i++) await s.set(`t:${i}`, `v${i}`, 5000);
    expect(await s.get('t:7')).toBe('v7');
    const perNode = await Promise.all(
      inspector.nodes('master').map(async (node) => {
        const [, keys] = await node.scan('0', 'MATCH', `${keyPrefix}*`, 'COUNT', 1000);
        return keys.length;
      }),
    );
    expect(perNode).toHaveLength(3);
    expect(perNode.every((count) => count > 0)).toBe(true);
    const pttl = await inspector.pttl(`${keyPrefix}t:7`);
    expect(pttl).toBeGreaterThan(4000);
    expect(pttl).toBeLessThanOrEqual(5000);
    await s.delete('t:7');
    expect(await s.get('t:7')).toBeUndefined();
  });

  it('broadcasts by sharded pub/sub to every store of the prefix, itself included', async () => {
    const keyPrefix = randomPrefix();
    const a = await store(keyPrefix);
    const b = await store(keyPrefix);
    const got = { a: [] as string[], b: [] as string[] };
    a.subscribe((m) => got.a.push(m));
    b.subscribe((m) => got.b.push(m));
    // Counted where the subscriptions are: on the node that owns the channel's slot.
    let count = 0;
    for (const node of inspector.nodes('master')) {
      const reply = (await node.call('PUBSUB', 'SHARDNUMSUB', a.channel)) as [string, number];
      count += Number(reply[1]);
    }
    expect(count).toBe(2);
    await a.publish('one');
    await waitFor(() => got.a.length === 1 && got.b.length === 1, 1000, 'the message');
    // Classic PUBLISH does not reach a sharded subscription: the store uses SPUBLISH.
    await inspector.publish(a.channel, 'classic');
    await sleep(50);
    expect(got).toStrictEqual({ a: ['one'], b: ['one'] });
  });

  it('ends up subscribed however its first SSUBSCRIBE fares as the cluster comes up', async () => {
    // ioredis may refuse an SSUBSCRIBE sent as the cluster becomes ready ("No sharded
    // subscriber for slot") while its per-node subscribers start: the store retries.
    const keyPrefix = randomPrefix();
    const stores = await Promise.all(Array.from({ length: 8 }, () => store(keyPrefix)));
    const got = stores.map(() => [] as string[]);
    for (const [i, s] of stores.entries()) s.subscribe((m) => got[i]!.push(m));
    await stores[0]!.publish('all');
    await waitFor(() => got.every((g) => g.length === 1), 2000, 'every store to get it');
  });

  it('uses a Cluster you own, and leaves it open at close', async () => {
    const own = new Cluster(nodesOf(urls), { enableOfflineQueue: false });
    own.on('error', () => {});
    closer.add({ close: () => own.disconnect() });
    await new Promise<void>((resolve) => own.once('ready', () => resolve()));
    const keyPrefix = randomPrefix();
    const s = closer.add(createRedisStore({ client: own, keyPrefix }));
    await s.ready();
    expect(s.name).toBe('redis-cluster');
    await s.set('k', 'v', 1000);
    expect(await own.get(`${keyPrefix}k`)).toBe('v');
    const got: string[] = [];
    s.subscribe((m) => got.push(m));
    await own.spublish(s.channel, 'hello');
    await waitFor(() => got.length === 1, 1000, 'the message');
    await s.close();
    expect(await own.get(`${keyPrefix}k`)).toBe('v');
  });

  it('lets verifiers share answers with no store failure (the answer and its link apart)', async () => {
    const emulator: Emulator = await startEmulator();
    closer.add(emulator);
    const keyPrefix = randomPrefix();
    const minter = closer.add(
      createM2MClient({
        apiUrl: emulator.url,
        machineSecretKey: emulator.machines.caller!.secretKey,
        retry: false,
      }),
    );
    const log = captureLogger();
    const verifiers = [];
    for (let i = 0; i < 2; i++) {
      const s = await store(keyPrefix);
      verifiers.push(
        closer.add(
          createTokenVerifier({
            apiUrl: emulator.url,
            secretKey: emulator.instanceSecretKey,
            anyMachine: true,
            store: s,
            logger: log.logger,
          }),
        ),
      );
    }
    const tokens = [];
    for (let i = 0; i < 10; i++)
      tokens.push((await minter.createToken()) as M2MToken & { token: string });
    for (const t of tokens) expect(await verdict(verifiers[0]!, t.token)).toBe('valid');
    await waitFor(
      async () => {
        let found = 0;
        for (const node of inspector.nodes('master')) {
          const [, keys] = await node.scan('0', 'MATCH', `${keyPrefix}*:t:*`, 'COUNT', 1000);
          found += keys.length;
        }
        return found === tokens.length;
      },
      2000,
      'every answer shared',
      5,
    );
    for (const t of tokens) expect(await verdict(verifiers[1]!, t.token)).toBe('valid');
    expect(verifiers[1]!.stats()).toMatchObject({ sharedHits: 10, upstreamCalls: 0 });
    expect(emulator.calls.verify).toBe(10);
    expect(log.count(STORE_FAILED)).toBe(0);
  });

  it('follows a slot that moved (MOVED) without a failure, on a cluster of its own', async () => {
    const cluster = closer.add(await startRedisCluster(3));
    const emulator: Emulator = closer.add(await startEmulator());
    const keyPrefix = randomPrefix();
    const log = captureLogger();
    const replica = async () => {
      const s = closer.add(createRedisStore({ cluster: cluster.urls, keyPrefix }));
      await s.ready();
      const client = closer.add(
        createM2MClient({ apiUrl: emulator.url, secretKey: emulator.instanceSecretKey }),
      );
      return {
        client,
        verifier: closer.add(
          createTokenVerifier({ client, anyMachine: true, store: s, logger: log.logger }),
        ),
      };
    };
    const a = await replica();
    const b = await replica();
    const minter = closer.add(
      createM2MClient({
        apiUrl: emulator.url,
        machineSecretKey: emulator.machines.caller!.secretKey,
      }),
    );
    const raw = new Cluster(nodesOf(cluster.urls));
    raw.on('error', () => {});
    closer.add({ close: () => raw.disconnect() });
    const t = (await minter.createToken()) as M2MToken & { token: string };
    expect(await verdict(a.verifier, t.token)).toBe('valid');
    await waitForShared(raw, keyPrefix, a.client, t.id);
    const key = (await entryKeyOf(raw, keyPrefix, a.client, t.id))!;

    // Move the answer's slot to another node, key and all, as a resharding does.
    const slot = Number(await raw.call('CLUSTER', 'KEYSLOT', key));
    const ids = new Map<number, string>();
    for (const node of cluster.nodes) {
      const conn = raw.nodes('master').find((n) => n.options.port === node.port)!;
      ids.set(node.port, String(await conn.call('CLUSTER', 'MYID')));
    }
    const slots = (await raw.nodes('master')[0]!.call('CLUSTER', 'SLOTS')) as [
      number,
      number,
      [string, number],
    ][];
    const from = slots.find(([lo, hi]) => slot >= lo && slot <= hi)![2][1];
    const to = cluster.nodes.find((node) => node.port !== from)!.port;
    const on = (port: number) => raw.nodes('master').find((n) => n.options.port === port)!;
    await on(to).call('CLUSTER', 'SETSLOT', slot, 'IMPORTING', ids.get(from)!);
    await on(from).call('CLUSTER', 'SETSLOT', slot, 'MIGRATING', ids.get(to)!);
    await on(from).call('MIGRATE', '127.0.0.1', to, '', 0, 5000, 'KEYS', key);
    for (const node of cluster.nodes) {
      await on(node.port).call('CLUSTER', 'SETSLOT', slot, 'NODE', ids.get(to)!);
    }
    expect(await on(to).call('EXISTS', key)).toBe(1);

    // B has never seen the token: it reads the answer where it now lives.
    expect(await verdict(b.verifier, t.token)).toBe('valid');
    expect(b.verifier.stats()).toMatchObject({ sharedHits: 1, upstreamCalls: 0 });
    expect(emulator.calls.verify).toBe(1);
    expect(log.count(STORE_FAILED)).toBe(0);
  }, 30_000);

  it('carries on through a failover: requests answered, then sharing and broadcast resume', async () => {
    const cluster = closer.add(await startRedisCluster(3, { replicas: 1, nodeTimeoutMs: 1000 }));
    const emulator: Emulator = closer.add(await startEmulator());
    const keyPrefix = randomPrefix();
    const logs = [captureLogger(), captureLogger()];
    const replicas = [];
    for (const log of logs) {
      const s = closer.add(createRedisStore({ cluster: cluster.urls, keyPrefix }));
      await s.ready();
      const client = closer.add(
        createM2MClient({ apiUrl: emulator.url, secretKey: emulator.instanceSecretKey }),
      );
      replicas.push({
        store: s,
        client,
        verifier: closer.add(
          createTokenVerifier({ client, anyMachine: true, store: s, logger: log.logger }),
        ),
      });
    }
    const [a, b] = replicas as [(typeof replicas)[0], (typeof replicas)[0]];
    const minter = closer.add(
      createM2MClient({
        apiUrl: emulator.url,
        machineSecretKey: emulator.machines.caller!.secretKey,
      }),
    );
    const mint = async () => (await minter.createToken()) as M2MToken & { token: string };

    // The master that owns the invalidation channel's slot dies.
    const probe = new Cluster(nodesOf(cluster.urls));
    probe.on('error', () => {});
    closer.add({ close: () => probe.disconnect() });
    const slot = Number(await probe.call('CLUSTER', 'KEYSLOT', a.store.channel));
    const slots = (await probe.call('CLUSTER', 'SLOTS')) as [number, number, [string, number]][];
    const port = slots.find(([lo, hi]) => slot >= lo && slot <= hi)![2][1];
    probe.disconnect();
    await cluster.nodes.find((node) => node.port === port)!.stop();

    // Meanwhile every request is answered (by Clerk where the store cannot).
    for (let i = 0; i < 5; i++) {
      const t = await mint();
      expect(await verdict(a.verifier, t.token)).toBe('valid');
      expect(await verdict(b.verifier, t.token)).toBe('valid');
    }
    await cluster.healthy(15_000); // its replica took over

    // By themselves, the stores find the new master: shared answers and revocations again.
    await waitFor(
      async () => {
        const t = await mint();
        await verdict(a.verifier, t.token);
        await sleep(50);
        const shared = b.verifier.stats().sharedHits;
        if ((await verdict(b.verifier, t.token)) !== 'valid') return false;
        if (b.verifier.stats().sharedHits === shared) return false;
        await a.client.revokeToken({ m2mTokenId: t.id });
        const refused = async () => (await verdict(b.verifier, t.token)) === 'revoked';
        const deadline = Date.now() + 500;
        while (Date.now() < deadline) {
          if (await refused()) return true;
          await sleep(10);
        }
        return false;
      },
      20_000,
      'sharing and broadcast to resume after the failover',
      200,
    );
    for (const log of logs) expect(log.count(STORE_FAILED)).toBeLessThanOrEqual(1);
  }, 60_000);
});
