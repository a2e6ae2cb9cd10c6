/**
 * `createRedisStore()` on its own: option validation (no Redis needed), then get / set with PX /
 * delete / publish / subscribe / ready / close against the real Redis of `REDIS_URL`.
 */
import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createTokenVerifier, M2MConfigError, type SharedCacheStore } from '../../src/index.js';
import { createRedisStore, type RedisStore } from '../../src/redis/index.js';
import { REDIS_URL, redisSkipped } from './redis-env.js';
import { Closer, randomPrefix, rawRedis, sleep, subscribers, waitFor } from './support.js';

/** The option an `M2MConfigError` names, or the error itself when it is something else. */
function configErrorOf(make: () => unknown): string | unknown {
  try {
    make();
  } catch (err) {
    return err instanceof M2MConfigError ? err.option : err;
  }
  return 'no error';
}

/** A store that does nothing, for the verifier's option checks. */
const inertStore: SharedCacheStore = {
  name: 'inert',
  get: async () => undefined,
  set: async () => {},
  delete: async () => {},
  publish: async () => {},
  subscribe: () => () => {},
};

describe('createRedisStore options (no Redis needed)', () => {
  it('requires exactly one of `url` and `client`', () => {
    expect(configErrorOf(() => createRedisStore({}))).toBe('url');
    expect(configErrorOf(() => createRedisStore(undefined as never))).toBe('url');
    const client = { duplicate: () => client } as unknown as Redis;
    expect(configErrorOf(() => createRedisStore({ url: 'redis://127.0.0.1:1', client }))).toBe(
      'url',
    );
  });

  it('requires exactly one of `url`, `cluster` and `client`, and `cluster` to be Redis URLs', () => {
    const url = 'redis://127.0.0.1:1';
    const client = { duplicate: () => client, get: () => {}, set: () => {} } as unknown as Redis;
    expect(configErrorOf(() => createRedisStore({ url, cluster: [url] }))).toBe('url');
    expect(configErrorOf(() => createRedisStore({ cluster: [url], client }))).toBe('cluster');
    expect(configErrorOf(() => createRedisStore({ cluster: [] }))).toBe('cluster');
    expect(configErrorOf(() => createRedisStore({ cluster: url as never }))).toBe('cluster');
    expect(configErrorOf(() => createRedisStore({ cluster: ['http://127.0.0.1:1'] }))).toBe(
      'cluster',
    );
    expect(configErrorOf(() => createRedisStore({ cluster: [url, 5 as never] }))).toBe('cluster');
    expect(configErrorOf(() => createRedisStore({ cluster: ['127.0.0.1:7000'] }))).toBe('cluster');
  });

  it('names every other bad option', () => {
    const url = 'redis://127.0.0.1:1';
    expect(configErrorOf(() => createRedisStore({ url, keyPrefix: '' }))).toBe('keyPrefix');
    expect(configErrorOf(() => createRedisStore({ url, keyPrefix: 5 as never }))).toBe('keyPrefix');
    expect(configErrorOf(() => createRedisStore({ url, commandTimeoutMs: 0 }))).toBe(
      'commandTimeoutMs',
    );
    expect(configErrorOf(() => createRedisStore({ url, commandTimeoutMs: 1.5 }))).toBe(
      'commandTimeoutMs',
    );
    expect(configErrorOf(() => createRedisStore({ url, ttl: 5 } as never))).toBe('ttl');
    expect(configErrorOf(() => createRedisStore({ url, keyprefix: 'x' } as never))).toBe(
      'keyprefix',
    );
    expect(configErrorOf(() => createRedisStore({ url, logger: console } as never))).toBe('logger');
    expect(configErrorOf(() => createRedisStore({ url: '' }))).toBe('url');
    expect(configErrorOf(() => createRedisStore({ client: {} as Redis }))).toBe('client');
    expect(configErrorOf(() => createRedisStore('redis://x' as never))).toBe('options');
  });

  it('makes a verifier refuse a `store` that is not a store, and `store` without a cache', () => {
    const base = { apiUrl: 'http://127.0.0.1:1', secretKey: 'sk_test_x', retry: false as const };
    expect(configErrorOf(() => createTokenVerifier({ ...base, store: {} as never }))).toBe('store');
    expect(configErrorOf(() => createTokenVerifier({ ...base, store: null as never }))).toBe(
      'store',
    );
    const { subscribe: _, ...noSubscribe } = inertStore;
    expect(configErrorOf(() => createTokenVerifier({ ...base, store: noSubscribe as never }))).toBe(
      'store',
    );
    expect(
      configErrorOf(() => createTokenVerifier({ ...base, store: inertStore, cache: false })),
    ).toBe('store');
  });
});

describe.skipIf(redisSkipped())('createRedisStore against Redis', () => {
  const url = REDIS_URL!;
  const closer = new Closer();
  let raw: Redis;

  beforeAll(() => {
    raw = rawRedis(url);
  });
  afterEach(() => closer.closeAll());
  afterAll(() => {
    raw.disconnect();
  });

  async function store(options: { keyPrefix?: string; client?: Redis } = {}): Promise<RedisStore> {
    const made = closer.add(
      createRedisStore(
        options.client
          ? { client: options.client, keyPrefix: options.keyPrefix ?? randomPrefix() }
          : { url, keyPrefix: options.keyPrefix ?? randomPrefix() },
      ),
    );
    await made.ready();
    return made;
  }

  it('refuses a URL that is not a Redis URL', async () => {
    // The store wraps `new Redis(url)` in a try/catch meant to throw M2MConfigError('url'),
    // but ioredis never throws there: it takes both for the path of a Unix socket.
    // (Here, not with the checks above, because these stores try to connect.)
    const made: RedisStore[] = [];
    const answers: Record<string, unknown> = {};
    try {
      for (const url of ['not a url', 'http://127.0.0.1:6379']) {
        answers[url] = configErrorOf(() => made.push(createRedisStore({ url })));
      }
    } finally {
      for (const store of made) await store.close();
    }
    expect(answers).toStrictEqual({
      'not a url': 'url',
      'http://127.0.0.1:6379': 'url',
    });
  });

  it('sets with an absolute TTL under the prefix, gets, deletes', async () => {
    const keyPrefix = randomPrefix();
    const s = await store({ keyPrefix });
    expect(s.name).toBe('redis');
    expect(s.channel).toBe(`${keyPrefix}invalidate`);
    expect(await s.get('k')).toBeUndefined();

    await s.set('k', 'value', 5000);
    expect(await s.get('k')).toBe('value');
    expect(await raw.get(`${keyPrefix}k`)).toBe('value');
    const pttl = await raw.pttl(`${keyPrefix}k`);
    expect(pttl).toBeGreaterThan(4000);
    expect(pttl).toBeLessThanOrEqual(5000);

    // A new value replaces the old one and its TTL.
    await s.set('k', 'other', 2000);
    expect(await s.get('k')).toBe('other');
    expect(await raw.pttl(`${keyPrefix}k`)).toBeLessThanOrEqual(2000);

    await s.delete('k');
    expect(await s.get('k')).toBeUndefined();
    expect(await raw.exists(`${keyPrefix}k`)).toBe(0);
    await s.delete('never-set'); // deleting nothing is fine
  });

  it('never extends a TTL by reading', async () => {
    const keyPrefix = randomPrefix();
    const s = await store({ keyPrefix });
    await s.set('k', 'v', 3000);
    const ttls: number[] = [await raw.pttl(`${keyPrefix}k`)];
    for (let i = 0; i < 5; i++) {
      await sleep(15);
      expect(await s.get('k')).toBe('v');
      ttls.push(await raw.pttl(`${keyPrefix}k`));
    }
    for (let i = 1; i < ttls.length; i++) expect(ttls[i]).toBeLessThanOrEqual(ttls[i - 1]!);
    expect(ttls.at(-1)!).toBeLessThan(ttls[0]!);
  });

  it('lets an entry expire on time, a fractional TTL rounded up to at least 1 ms', async () => {
    const keyPrefix = randomPrefix();
    const s = await store({ keyPrefix });
    await s.set('short', 'v', 60);
    expect(await s.get('short')).toBe('v');
    await sleep(120);
    expect(await s.get('short')).toBeUndefined();
    await s.set('tiny', 'v', 0.2);
    await sleep(20);
    expect(await s.get('tiny')).toBeUndefined();
  });

  it('publishes to every store of the prefix, itself included, and to no other prefix', async () => {
    const keyPrefix = randomPrefix();
    const a = await store({ keyPrefix });
    const b = await store({ keyPrefix });
    const other = await store();
    const got = { a: [] as string[], b: [] as string[], other: [] as string[] };
    a.subscribe((m) => got.a.push(m));
    const offB = b.subscribe((m) => got.b.push(m));
    other.subscribe((m) => got.other.push(m));
    expect(await subscribers(raw, a.channel)).toBe(2);

    await a.publish('one');
    await waitFor(() => got.a.length === 1 && got.b.length === 1, 1000, 'the first message');
    expect(got).toStrictEqual({ a: ['one'], b: ['one'], other: [] });

    offB();
    await b.publish('two');
    await waitFor(() => got.a.length === 2, 1000, 'the second message');
    await sleep(30);
    expect(got).toStrictEqual({ a: ['one', 'two'], b: ['one'], other: [] });

    // A message on the channel from anyone reaches the listeners as is.
    await raw.publish(a.channel, 'raw');
    await waitFor(() => got.a.length === 3, 1000, 'the raw message');
    expect(got.a[2]).toBe('raw');
  });

  it('is skipped, not failed, until its first connection; ready() then resolves', async () => {
    const keyPrefix = randomPrefix();
    await raw.set(`${keyPrefix}k`, 'v', 'PX', 5000);
    const s = closer.add(createRedisStore({ url, keyPrefix }));
    // Not connected yet: every command is a no-op that resolves.
    expect(await s.get('k')).toBeUndefined();
    await s.set('other', 'v', 1000);
    await s.publish('nobody');
    await s.ready(3000);
    expect(await s.get('k')).toBe('v');
    await s.ready(); // again: at once
  });

  it('uses a client you own, and leaves it open at close', async () => {
    const own = rawRedis(url);
    closer.add({ close: () => own.disconnect() });
    const keyPrefix = randomPrefix();
    const s = await store({ client: own, keyPrefix });
    await s.set('k', 'v', 1000);
    expect(await own.get(`${keyPrefix}k`)).toBe('v');
    const got: string[] = [];
    s.subscribe((m) => got.push(m));
    await own.publish(s.channel, 'hello');
    await waitFor(() => got.length === 1, 1000, 'the message');

    await s.close();
    expect(await own.ping()).toBe('PONG');
    expect(await subscribers(raw, s.channel)).toBe(0);
  });

  it('closes its own connections: no subscription left, commands refused; idempotent', async () => {
    const s = await store();
    const got: string[] = [];
    s.subscribe((m) => got.push(m));
    expect(await subscribers(raw, s.channel)).toBe(1);
    await s.close();
    await s.close();
    await waitFor(
      async () => (await subscribers(raw, s.channel)) === 0,
      1000,
      'the subscription to end',
    );
    await raw.publish(s.channel, 'late');
    await sleep(30);
    expect(got).toStrictEqual([]);
    await expect(s.get('k')).rejects.toThrow();
  });

  it('removes the listeners it put on a client you own when it closes', async () => {
    const own = rawRedis(url);
    closer.add({ close: () => own.disconnect() });
    const before = { error: own.listenerCount('error'), ready: own.listenerCount('ready') };
    for (let i = 0; i < 3; i++) {
      const s = createRedisStore({ client: own, keyPrefix: randomPrefix() });
      await s.ready();
      await s.close();
    }
    expect({ error: own.listenerCount('error'), ready: own.listenerCount('ready') }).toStrictEqual(
      before,
    );
  });
});
