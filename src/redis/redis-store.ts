import { Cluster, type ClusterNode, type ClusterOptions, Redis } from 'ioredis';
import type { Logger } from 'pino';
import { M2MConfigError } from '../shared/config-error.js';
import { loggerOption } from '../shared/logger.js';
import {
  assertKnownKeys,
  assertMethods,
  intOption,
  optionKeys,
  optionsObject,
  stringOption,
} from '../shared/validate.js';
import type { SharedCacheStore } from '../verifier/index.js';

/** Options of {@link createRedisStore}: exactly one of `url`, `cluster` and `client`. */
export interface RedisStoreOptions {
  /** A Redis URL (`redis://127.0.0.1:6379`); the store opens and owns its connections. */
  url?: string;
  /**
   * The URLs of some nodes of a Redis Cluster (`['redis://10.0.0.1:6379', …]`; the others are
   * discovered); the store opens and owns an ioredis `Cluster`. Invalidations then travel by
   * sharded pub/sub (Redis 7 or later). Default: none.
   */
  cluster?: readonly string[];
  /**
   * An ioredis client you own, `Redis` or `Cluster`; the store duplicates it for its
   * subscription (a `Cluster` with `shardedSubscribers`, for sharded pub/sub on Redis 7+).
   */
  client?: Redis | Cluster;
  /**
   * Prefix of every key and of the invalidation channel. Share it between the instances that
   * should share answers; the verifier adds its own identity after it. On a cluster, a hash
   * tag in it (`{app}:`) would put every key on one node. Default `m2m-guard:`.
   */
  keyPrefix?: string;
  /**
   * Deadline of each Redis command. A slow or absent Redis then costs a request at most this
   * long before the verifier carries on without it. Default `200` ms.
   */
  commandTimeoutMs?: number;
  /** A pino logger for connection state. Default: pino at level `warn` on stderr (a rejected key, an unreachable Clerk; nothing per request in normal operation); `false` silences it. */
  logger?: Logger | false;
}

export interface RedisStore extends SharedCacheStore {
  /** The invalidation channel. */
  readonly channel: string;
  /**
   * Resolves once both connections are ready (subscribed), or rejects after `timeoutMs`
   * (default 5000). Optional: until then the store is skipped, not failed.
   */
  ready(timeoutMs?: number): Promise<void>;
  /** Closes the store's own connections (and the client, if the store opened it). */
  close(): Promise<void>;
}

const REDIS_STORE_KEYS = optionKeys<RedisStoreOptions>({
  url: true,
  cluster: true,
  client: true,
  keyPrefix: true,
  commandTimeoutMs: true,
  logger: true,
});

/**
 * A {@link SharedCacheStore} on Redis or Redis Cluster through ioredis: `SET key value PX ttl`
 * (the TTL set atomically with the value, never extended by reads), one key per command so
 * keys spread over a cluster's nodes, and pub/sub for invalidations (sharded pub/sub on a
 * cluster). Commands fail fast while Redis is down (no offline queue, no per-command retries)
 * and the connections reconnect by themselves; every `error` event is handled.
 *
 * @example
 * const store = createRedisStore({ url: process.env.REDIS_URL });
 * const clusterStore = createRedisStore({ cluster: ['redis://10.0.0.1:6379'] });
 */
export function createRedisStore(options: RedisStoreOptions): RedisStore {
  const opts = optionsObject<RedisStoreOptions>(options, 'options');
  assertKnownKeys(opts, REDIS_STORE_KEYS);
  const url = stringOption(opts.url, 'url');
  const clusterUrls = clusterOption(opts.cluster);
  const given = [url, clusterUrls, opts.client].filter((v) => v !== undefined).length;
  if (given !== 1) {
    throw new M2MConfigError(
      url === undefined ? (clusterUrls === undefined ? 'url' : 'cluster') : 'url',
      'or `cluster` or `client` is required, exactly one of them',
    );
  }
  if (opts.client !== undefined) {
    assertMethods(opts.client, 'client', ['duplicate', 'get', 'set'], 'must be an ioredis client');
  }
  const keyPrefix = stringOption(opts.keyPrefix, 'keyPrefix') ?? 'm2m-guard:';
  const commandTimeout = intOption(opts.commandTimeoutMs, 'commandTimeoutMs', 200, {
    min: 1,
    max: 60_000,
  });
  const log = loggerOption(opts.logger).child({ component: 'm2m-redis-store' });
  if (url !== undefined) assertRedisUrl(url, 'url');
  const retryStrategy = (times: number) => Math.min(50 * 2 ** times, 2000);
  const commands: Redis | Cluster =
    url !== undefined
      ? new Redis(url, {
          enableOfflineQueue: false,
          maxRetriesPerRequest: 0,
          commandTimeout,
          retryStrategy,
        })
      : clusterUrls !== undefined
        ? new Cluster(clusterUrls.map(clusterNode), {
            enableOfflineQueue: false,
            clusterRetryStrategy: retryStrategy,
            redisOptions: { maxRetriesPerRequest: 0, commandTimeout, ...credentials(clusterUrls) },
          })
        : opts.client!;
  const isCluster = commands instanceof Cluster || commands.isCluster === true;
  // Subscriptions must survive reconnects and a start before Redis is up: this connection
  // queues its SUBSCRIBE and retries it for as long as it takes.
  const subscriber = isCluster
    ? (commands as Cluster).duplicate([], {
        enableOfflineQueue: true,
        clusterRetryStrategy: retryStrategy,
        // Not the commands' deadline: a subscriber node connection that times out its start
        // under load would leave the channel's slot without a subscriber.
        redisOptions: {
          ...(commands as Cluster).options.redisOptions,
          commandTimeout: undefined,
          maxRetriesPerRequest: null,
        },
        // Sharded pub/sub: a message goes to the one shard that owns the channel's slot,
        // not over the cluster bus to every node (ioredis keeps one subscriber per master
        // and moves the subscription when the slot moves or fails over).
        shardedSubscribers: true,
      } satisfies ClusterOptions)
    : (commands as Redis).duplicate({
        enableOfflineQueue: true,
        maxRetriesPerRequest: null,
        commandTimeout: undefined,
        retryStrategy,
      });
  const channel = `${keyPrefix}invalidate`;
  const listeners = new Set<(message: string) => void>();
  let closed = false;
  // Until the first connection, the store is skipped rather than failed: start-up is no outage.
  let everReady = commands.status === 'ready';

  const states = new Map<Redis | Cluster, 'up' | 'down'>();
  const detach: (() => void)[] = [];
  for (const [connection, role] of [
    [commands, 'commands'],
    [subscriber, 'subscriber'],
  ] as const) {
    // An unhandled 'error' event would crash the process; log once per outage instead.
    const onError = (err: Error) => {
      if (states.get(connection) !== 'down' && !closed) {
        states.set(connection, 'down');
        log.warn({ role, err: err.message }, 'redis connection failed; will reconnect');
      }
    };
    const onReady = () => {
      if (connection === commands) everReady = true;
      if (states.get(connection) === 'down') log.info({ role }, 'redis connection is back');
      states.set(connection, 'up');
    };
    connection.on('error', onError);
    connection.on('ready', onReady);
    // A cluster reports each node's failure as well; one line per outage all the same.
    if (isCluster) connection.on('node error', onError);
    detach.push(() => {
      connection.off('error', onError);
      connection.off('ready', onReady);
      connection.off('node error', onError);
    });
  }
  const onMessage = (from: string, message: string) => {
    if (from === channel) for (const listener of listeners) listener(message);
  };
  subscriber.on(isCluster ? 'smessage' : 'message', onMessage);
  let retryTimer: NodeJS.Timeout | undefined;
  /**
   * Subscribes, retrying until it succeeds: on a cluster, an SSUBSCRIBE sent as the cluster
   * becomes ready can be refused ("No sharded subscriber for slot") while ioredis is still
   * starting its per-node subscribers, and would otherwise leave the store deaf for good.
   */
  const subscribed = new Promise<void>((resolve) => {
    const attempt = (failures: number) => {
      if (closed) return;
      (isCluster ? subscriber.ssubscribe(channel) : subscriber.subscribe(channel)).then(
        () => resolve(),
        () => {
          retryTimer = setTimeout(() => attempt(failures + 1), retryStrategy(failures));
          retryTimer.unref();
        },
      );
    };
    attempt(0);
  });

  /**
   * Every command fails fast: at once while the connection is not ready (also for a client
   * you own, whatever its own options), and after `commandTimeoutMs` when Redis hangs, a node
   * is down or a slot is moving.
   */
  async function command<T>(run: () => Promise<T>): Promise<T | undefined> {
    if (!everReady) return undefined;
    if (closed) throw new Error('the redis store is closed');
    if (commands.status !== 'ready') throw new Error(`redis is ${commands.status}`);
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        run(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`redis did not answer within ${commandTimeout} ms`)),
            commandTimeout,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  return {
    name: isCluster ? 'redis-cluster' : 'redis',
    channel,
    async get(key) {
      return (await command(() => commands.get(keyPrefix + key))) ?? undefined;
    },
    async set(key, value, ttlMs) {
      const px = Math.max(1, Math.ceil(ttlMs));
      await command(() => commands.set(keyPrefix + key, value, 'PX', px));
    },
    async delete(key) {
      await command(() => commands.del(keyPrefix + key));
    },
    async publish(message) {
      await command(() =>
        isCluster ? commands.spublish(channel, message) : commands.publish(channel, message),
      );
    },
    async ready(timeoutMs = 5000) {
      let timer: NodeJS.Timeout | undefined;
      let onReady: (() => void) | undefined;
      const commandsReady = everReady
        ? Promise.resolve()
        : new Promise<void>((resolve) => {
            onReady = () => resolve();
            commands.once('ready', onReady);
          });
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`redis not ready within ${timeoutMs} ms`)),
          timeoutMs,
        );
      });
      try {
        await Promise.race([Promise.all([commandsReady, subscribed]), timeout]);
      } finally {
        clearTimeout(timer);
        if (onReady) commands.off('ready', onReady);
      }
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    async close() {
      if (closed) return;
      closed = true;
      clearTimeout(retryTimer);
      listeners.clear();
      for (const off of detach) off();
      subscriber.disconnect();
      if (opts.client === undefined) commands.disconnect();
    },
  };
}

/** The `cluster` option: a non-empty array of Redis URLs. */
function clusterOption(value: unknown): readonly string[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value) || value.length === 0 || value.length > 1000) {
    throw new M2MConfigError('cluster', 'must be a non-empty array of redis:// URLs');
  }
  for (const url of value) assertRedisUrl(url, 'cluster');
  return [...value] as string[];
}

function clusterNode(url: string): ClusterNode {
  const parsed = new URL(url);
  return { host: parsed.hostname, port: parsed.port === '' ? 6379 : Number(parsed.port) };
}

/** User, password and TLS of the cluster's nodes, from the first URL (every node shares them). */
function credentials(urls: readonly string[]) {
  const parsed = new URL(urls[0]!);
  return {
    ...(parsed.username ? { username: decodeURIComponent(parsed.username) } : {}),
    ...(parsed.password ? { password: decodeURIComponent(parsed.password) } : {}),
    ...(parsed.protocol === 'rediss:' ? { tls: {} } : {}),
  };
}

/** ioredis reads almost anything as a socket path; accept only real Redis URLs. */
function assertRedisUrl(url: unknown, option: string): void {
  let parsed: URL;
  try {
    if (typeof url !== 'string') throw new TypeError('not a string');
    parsed = new URL(url);
  } catch {
    throw new M2MConfigError(option, 'must be a redis:// or rediss:// URL');
  }
  if (
    (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') ||
    !parsed.hostname ||
    (parsed.port !== '' && !/^\d+$/.test(parsed.port))
  ) {
    throw new M2MConfigError(option, 'must be a redis:// or rediss:// URL');
  }
}
