/**
 * Shared set-up of the Redis tests: verifier "instances" (client + Redis store + verifier, as
 * one service replica builds them), captured pino logs, polling, and raw Redis inspection.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { type Cluster, Redis } from 'ioredis';
import { type Logger, pino } from 'pino';
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import { type Emulator, startEmulator } from '../../src/emulator/index.js';
import {
  type CreateTokenParams,
  createM2MClient,
  createTokenVerifier,
  InvalidTokenError,
  type InvalidTokenReason,
  type M2MClient,
  type M2MToken,
  type TokenVerifier,
  type VerifierCacheOptions,
} from '../../src/index.js';
import { createRedisStore, type RedisStore } from '../../src/redis/index.js';

/** A key prefix no other test uses, so tests sharing one Redis never see each other's keys. */
export function randomPrefix(): string {
  return `m2m-test:${randomUUID().slice(0, 8)}:`;
}

/** A well-formed opaque token nobody ever issued. */
export function unknownToken(): string {
  return `mt_${randomBytes(20).toString('hex')}`;
}

export interface CapturedLog {
  readonly logger: Logger;
  records(): Array<Record<string, unknown> & { level: number; msg?: string }>;
  /** Records whose message starts with `prefix`. */
  count(prefix: string): number;
}

/** A pino logger at `trace` whose lines are kept in memory. */
export function captureLogger(): CapturedLog {
  const lines: string[] = [];
  const logger = pino({ level: 'trace' }, { write: (line: string) => void lines.push(line) });
  const records = () => lines.map((line) => JSON.parse(line));
  return {
    logger,
    records,
    count: (prefix) => records().filter((r) => String(r.msg ?? '').startsWith(prefix)).length,
  };
}

export const STORE_FAILED = 'shared cache store failed';
export const STORE_BACK = 'shared cache store is back';

/** One replica of a service: its own client, Redis store and verifier. */
export interface Instance {
  readonly client: M2MClient;
  readonly store: RedisStore;
  readonly verifier: TokenVerifier;
  close(): Promise<void>;
}

export interface InstanceOptions {
  apiUrl: string;
  /** The key the instance verifies with: an instance key (`sk_…`) or a machine key (`ak_…`). */
  key: string;
  redisUrl: string;
  keyPrefix: string;
  cache?: VerifierCacheOptions;
  /** The verifier's logger. */
  logger?: Logger;
  /** The store's logger. */
  storeLogger?: Logger;
  commandTimeoutMs?: number;
  jwtKey?: string;
}

/** Builds an instance and waits until its store is connected and subscribed. */
export async function startInstance(options: InstanceOptions): Promise<Instance> {
  const client = createM2MClient({
    apiUrl: options.apiUrl,
    ...(options.key.startsWith('ak_')
      ? { machineSecretKey: options.key }
      : { secretKey: options.key }),
    retry: false,
  });
  const store = createRedisStore({
    url: options.redisUrl,
    keyPrefix: options.keyPrefix,
    ...(options.storeLogger ? { logger: options.storeLogger } : {}),
    ...(options.commandTimeoutMs ? { commandTimeoutMs: options.commandTimeoutMs } : {}),
  });
  const verifier = createTokenVerifier({
    client,
    anyMachine: true,
    store,
    ...(options.cache ? { cache: options.cache } : {}),
    ...(options.logger ? { logger: options.logger } : {}),
    ...(options.jwtKey ? { jwtKey: options.jwtKey } : {}),
  });
  const close = async () => {
    await verifier.close();
    await client.close();
    await store.close();
  };
  try {
    await store.ready();
  } catch (err) {
    await close();
    throw err;
  }
  return { client, store, verifier, close };
}

/** Closes everything registered, newest first, even when one close fails. */
export class Closer {
  private things: Array<{ close(): Promise<void> | void }> = [];
  add<T extends { close(): Promise<void> | void }>(thing: T): T {
    this.things.push(thing);
    return thing;
  }
  async closeAll(): Promise<void> {
    const things = this.things.reverse();
    this.things = [];
    for (const thing of things) {
      try {
        await thing.close();
      } catch {
        // Closing the rest matters more.
      }
    }
  }
}

/** The emulator of a test file and a client minting tokens as its `caller` machine. */
export interface MintingEmulator {
  readonly emulator: Emulator;
  mint(params?: CreateTokenParams): Promise<M2MToken & { token: string }>;
}

/**
 * Starts an emulator and a minting client before the file's tests; after each test, closes what
 * `closer` holds, then resets the emulator; after all, closes both.
 */
export function useMintingEmulator(closer: Closer): MintingEmulator {
  let emulator: Emulator | undefined;
  let minter: M2MClient | undefined;
  beforeAll(async () => {
    emulator = await startEmulator();
    minter = createM2MClient({
      apiUrl: emulator.url,
      machineSecretKey: emulator.machines.caller!.secretKey,
      retry: false,
    });
  });
  afterEach(async () => {
    await closer.closeAll();
    emulator?.reset();
  });
  afterAll(async () => {
    await minter?.close();
    await emulator?.close();
  });
  return {
    get emulator() {
      if (!emulator) throw new Error('the emulator is only available inside tests');
      return emulator;
    },
    mint: (params = {}) => minter!.createToken(params) as Promise<M2MToken & { token: string }>,
  };
}

/** Resolves on the next turn of the event loop, after pending I/O (a Redis message) is handled. */
export const tick = () => new Promise<void>((resolve) => setImmediate(resolve));
export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Polls `check` (on every turn of the event loop) until it returns true; fails after `timeoutMs`. */
export async function waitFor(
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what: string,
  intervalMs = 0,
): Promise<number> {
  const started = performance.now();
  for (;;) {
    if (await check()) return performance.now() - started;
    if (performance.now() - started > timeoutMs) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await (intervalMs > 0 ? sleep(intervalMs) : tick());
  }
}

/** The reason a verification was refused with, or `'valid'`. Other errors propagate. */
export async function verdict(
  verifier: TokenVerifier,
  token: string,
): Promise<InvalidTokenReason | 'valid'> {
  try {
    await verifier.verify(token);
    return 'valid';
  } catch (err) {
    if (err instanceof InvalidTokenError) return err.reason;
    throw err;
  }
}

/** Asserts that `verifier` refuses `token` for `reason`. */
export async function expectRefused(
  verifier: TokenVerifier,
  token: string,
  reason: InvalidTokenReason,
): Promise<void> {
  expect(await verdict(verifier, token)).toBe(reason);
}

/** Every key under `prefix` on the server `redis` is connected to. */
export async function scanKeys(redis: Redis, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    keys.push(...batch);
    cursor = next;
  } while (cursor !== '0');
  return [...new Set(keys)].sort();
}

/** A plain ioredis connection for inspecting the server the tests use. */
export function rawRedis(url: string): Redis {
  const redis = new Redis(url, { maxRetriesPerRequest: 1 });
  redis.on('error', () => {});
  return redis;
}

/** The number of subscribers of `channel`. */
export async function subscribers(redis: Redis, channel: string): Promise<number> {
  const reply = (await redis.call('PUBSUB', 'NUMSUB', channel)) as [string, number];
  return Number(reply[1]);
}

/** The key of the entry of a valid token, found through its id link. */
export async function entryKeyOf(
  redis: Redis | Cluster,
  keyPrefix: string,
  client: Pick<M2MClient, 'verifyIdentity'>,
  tokenId: string,
): Promise<string | undefined> {
  const namespace = `${keyPrefix}v2:${client.verifyIdentity}`;
  const link = await redis.get(`${namespace}:id:${tokenId}`);
  return link === null ? undefined : `${namespace}:t:${unsealed(link)}`;
}

/** The payload of a signed value or message (`<mac>.<payload>`), its MAC left unchecked. */
export function unsealed(text: string): string {
  return text.slice(text.indexOf('.') + 1);
}

/**
 * Waits until the good answer of `tokenId` is in Redis: its id link and its entry are
 * written in the background after the verification that fetched it returned.
 */
export async function waitForShared(
  redis: Redis | Cluster,
  keyPrefix: string,
  client: Pick<M2MClient, 'verifyIdentity'>,
  tokenId: string,
): Promise<void> {
  // The link and the answer are two writes: wait for both.
  await waitFor(
    async () => {
      const key = await entryKeyOf(redis, keyPrefix, client, tokenId);
      return key !== undefined && (await redis.exists(key)) === 1;
    },
    2000,
    `the shared answer of ${tokenId}`,
    2,
  );
}

/** Waits until `count` answers (good or bad) are in Redis under `keyPrefix`. */
export async function waitForEntries(redis: Redis, keyPrefix: string, count: number) {
  await waitFor(
    async () => (await scanKeys(redis, keyPrefix)).filter((k) => k.includes(':t:')).length >= count,
    2000,
    `${count} shared answers`,
    2,
  );
}

/** p-th percentile (0–100) of `values`, nearest rank. */
export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1]!;
}
