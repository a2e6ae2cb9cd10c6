import { Redis } from 'ioredis';
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

/** Options of {@link createRedisStore}: `url` or `client`. */
export interface RedisStoreOptions {
  /** A Redis URL (`redis://127.0.0.1:6379`); the store opens and owns its connections. */
  url?: string;
  /** An ioredis client you own; the store duplicates it for its subscription. */
  client?: Redis;
  /**
   * Prefix of every key and of the invalidation channel. Share it between the instances that
   * should share answers; the verifier adds its own identity after it. Default `m2m-guard:`.
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
  client: true,
  keyPrefix: true,
  commandTimeoutMs: true,
  logger: true,
});

/**
 * A {@link SharedCacheStore} on Redis through ioredis: `SET key value PX ttl` (the TTL set
 * atomically with the value, never extended by reads) and pub/sub for invalidations.
 * Commands fail fast while Redis is down (no offline queue, no per-command retries) and the
 * connections reconnect by themselves; every `error` event is handled.
 */
export function createRedisStore(options: RedisStoreOptions): RedisStore {
  const opts = optionsObject<RedisStoreOptions>(options, 'options');
  assertKnownKeys(opts, REDIS_STORE_KEYS);
  const url = stringOption(opts.url, 'url');
  if ((url === undefined) === (opts.client === undefined)) {
    throw new M2MConfigError('url', 'or `client` is required, and not both');
  }
  if (opts.client !== undefined) {
    assertMethods(opts.client, 'client', ['duplicate', 'multi'], 'must be an ioredis client');
  }
  const keyPrefix = stringOption(opts.keyPrefix, 'keyPrefix') ?? 'm2m-guard:';
  const commandTimeout = intOption(opts.commandTimeoutMs, 'commandTimeoutMs', 200, {
    min: 1,
    max: 60_000,
  });
  const log = loggerOption(opts.logger).child({ component: 'm2m-redis-store' });
  if (url !== undefined) assertRedisUrl(url);
  const retryStrategy = (times: number) => Math.min(50 * 2 ** times, 2000);
  const commands =
    url !== undefined
      ? new Redis(url, {
          enableOfflineQueue: false,
          maxRetriesPerRequest: 0,
          commandTimeout,
          retryStrategy,
        })
      : opts.client!;
  // Subscriptions must survive reconnects and a start before Redis is up: this connection
  // queues its SUBSCRIBE and retries it for as long as it takes.
  const subscriber = commands.duplicate({
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

  const states = new Map<Redis, 'up' | 'down'>();
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
    detach.push(() => {
      connection.off('error', onError);
      connection.off('ready', onReady);
    });
  }
  subscriber.on('message', (from: string, message: string) => {
    if (from === channel) for (const listener of listeners) listener(message);
  });
  const subscribed = subscriber.subscribe(channel).then(() => undefined);
  subscribed.catch(() => {});

  /**
   * Every command fails fast: at once while the connection is not ready (also for a client
   * you own, whatever its own options), and after `commandTimeoutMs` when Redis hangs.
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
    name: 'redis',
    channel,
    async get(key) {
      return (await command(() => commands.get(keyPrefix + key))) ?? undefined;
    },
    async set(entries, ttlMs) {
      const px = Math.max(1, Math.ceil(ttlMs));
      await command(async () => {
        // One MULTI, so the entries (an answer and its token-id link) appear together.
        const tx = commands.multi();
        for (const [key, value] of entries) tx.set(keyPrefix + key, value, 'PX', px);
        await tx.exec();
      });
    },
    async delete(key) {
      await command(() => commands.del(keyPrefix + key));
    },
    async publish(message) {
      await command(() => commands.publish(channel, message));
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
      listeners.clear();
      for (const off of detach) off();
      subscriber.disconnect();
      if (url !== undefined) commands.disconnect();
    },
  };
}

/** ioredis reads almost anything as a socket path; accept only real Redis URLs. */
function assertRedisUrl(url: string): void {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new M2MConfigError('url', 'must be a redis:// or rediss:// URL');
  }
  if (
    (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') ||
    !parsed.hostname ||
    (parsed.port !== '' && !/^\d+$/.test(parsed.port))
  ) {
    throw new M2MConfigError('url', 'must be a redis:// or rediss:// URL');
  }
}
