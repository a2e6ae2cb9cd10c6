/**
 * The stores the conformance suite runs against, one entry each. A new store (Valkey, a managed
 * service) is proven by adding an entry: how to open it, how to see what it holds, and a
 * deployment of its own that can be taken down and brought back.
 */
import { Cluster, Redis } from 'ioredis';
import type { Logger } from 'pino';
import { createRedisStore } from '../../src/redis/index.js';
import type { SharedCacheStore } from '../../src/verifier/index.js';
import { memoryStore } from '../helpers/memory-store.js';
import { clusterSkipped, REDIS_CLUSTER_URLS, REDIS_URL, redisSkipped } from '../redis/redis-env.js';
import { HAS_REDIS_SERVER, startRedisCluster, startRedisServer } from '../redis/redis-server.js';

export interface Held {
  key: string;
  value: string;
  /** Time left to live, ms. */
  ttlMs: number;
}

/** One deployment of a store: what the instances of a service share. */
export interface StoreDeployment {
  /** A store on this deployment as one instance opens it (its own connections). */
  open(keyPrefix: string, logger?: Logger): Promise<SharedCacheStore & { close?(): unknown }>;
  /** Every key held under `keyPrefix`, with its value and time left. */
  dump(keyPrefix: string): Promise<Held[]>;
  /** Takes (part of) the deployment down: commands to it fail or hang. */
  down(): Promise<void>;
  /** Brings it back, empty; resolves once it serves again. */
  up(): Promise<void>;
  close(): Promise<void>;
}

export interface StoreTarget {
  name: string;
  /** True when this target is skipped (its skip line printed once per run). */
  skipped: boolean;
  /** The deployment of the run, shared by the tests (never taken down). */
  shared(): Promise<StoreDeployment>;
  /** A deployment of the test's own, which it may take down. */
  own(): Promise<StoreDeployment>;
}

/** In memory: one store per key prefix (keys and channel apart, as Redis keeps them). */
function memoryDeployment(): StoreDeployment {
  const byPrefix = new Map<string, ReturnType<typeof memoryStore>>();
  let down = false;
  const check = () => {
    if (down) throw new Error('memory store is down');
  };
  const of = (keyPrefix: string) => {
    const found = byPrefix.get(keyPrefix) ?? memoryStore();
    byPrefix.set(keyPrefix, found);
    return found;
  };
  return {
    async open(keyPrefix) {
      const { store } = of(keyPrefix);
      return {
        name: store.name,
        async get(key) {
          check();
          return store.get(key);
        },
        async set(key, value, ttlMs) {
          check();
          await store.set(key, value, ttlMs);
        },
        async delete(key) {
          check();
          await store.delete(key);
        },
        async publish(message) {
          check();
          await store.publish(message);
        },
        subscribe: (listener) =>
          store.subscribe((message) => {
            if (!down) listener(message);
          }),
      };
    },
    async dump(keyPrefix) {
      const now = Date.now();
      return [...of(keyPrefix).data]
        .filter(([, held]) => held.until > now)
        .map(([key, held]) => ({
          key: keyPrefix + key,
          value: held.value,
          ttlMs: held.until - now,
        }));
    },
    async down() {
      down = true;
    },
    async up() {
      for (const { data } of byPrefix.values()) data.clear();
      down = false;
    },
    async close() {},
  };
}

/** Every key under `prefix` on `redis`: each master of a cluster is scanned. */
async function dumpRedis(redis: Redis | Cluster, prefix: string): Promise<Held[]> {
  const nodes = redis instanceof Cluster ? redis.nodes('master') : [redis];
  const keys: string[] = [];
  for (const node of nodes) {
    let cursor = '0';
    do {
      const [next, batch] = await node.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      keys.push(...batch);
      cursor = next;
    } while (cursor !== '0');
  }
  const held: Held[] = [];
  for (const key of [...new Set(keys)].sort()) {
    const value = await redis.get(key);
    const ttlMs = await redis.pttl(key);
    if (value !== null) held.push({ key, value, ttlMs });
  }
  return held;
}

/** A deployment at `urls` (one URL: a server; several: a cluster); `down`/`up` as given. */
function redisDeployment(
  urls: string[],
  cluster: boolean,
  control: { down(): Promise<void>; up(): Promise<void>; close(): Promise<void> },
): StoreDeployment {
  const inspector: Redis | Cluster = cluster
    ? new Cluster(urls.map((url) => ({ host: '127.0.0.1', port: Number(new URL(url).port) })))
    : new Redis(urls[0]!, { maxRetriesPerRequest: 1 });
  inspector.on('error', () => {});
  const opened = new Set<{ close(): Promise<void> }>();
  return {
    async open(keyPrefix, logger) {
      const store = createRedisStore({
        ...(cluster ? { cluster: urls } : { url: urls[0]! }),
        keyPrefix,
        ...(logger ? { logger } : {}),
      });
      opened.add(store);
      await store.ready();
      return store;
    },
    dump: (keyPrefix) => dumpRedis(inspector, keyPrefix),
    down: control.down,
    up: control.up,
    async close() {
      for (const store of opened) await store.close();
      inspector.disconnect();
      await control.close();
    },
  };
}

const unsupported = {
  down: async () => {
    throw new Error('the shared deployment is never taken down');
  },
  up: async () => {},
  close: async () => {},
};

export const STORE_TARGETS: StoreTarget[] = [
  {
    name: 'in-memory test store',
    skipped: false,
    shared: async () => memoryDeployment(),
    own: async () => memoryDeployment(),
  },
  {
    name: 'Redis',
    skipped: redisSkipped() || !HAS_REDIS_SERVER,
    shared: async () => redisDeployment([REDIS_URL!], false, unsupported),
    async own() {
      const server = await startRedisServer();
      return redisDeployment([server.url], false, {
        down: () => server.stop(),
        up: () => server.restart(),
        close: () => server.close(),
      });
    },
  },
  {
    name: 'Redis Cluster',
    skipped: clusterSkipped() || !HAS_REDIS_SERVER,
    shared: async () => redisDeployment(REDIS_CLUSTER_URLS!, true, unsupported),
    async own() {
      // One node of three down: a third of the slots gone, the rest served.
      const cluster = await startRedisCluster(3);
      return redisDeployment(cluster.urls, true, {
        down: () => cluster.nodes[0]!.stop(),
        async up() {
          await cluster.nodes[0]!.restart();
          await cluster.healthy();
        },
        close: () => cluster.close(),
      });
    },
  },
];
