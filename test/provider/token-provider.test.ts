import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type Emulator, startEmulator } from '../../src/emulator/index.js';
import {
  createAuthorizedFetch,
  createM2MClient,
  createTokenProvider,
  DEFAULT_REFRESH_BEFORE_MS,
  type M2MClient,
  M2MConfigError,
} from '../../src/index.js';

/** The caller side against the emulator, with one clock moved by the tests for both. */
let now = Date.parse('2026-11-30T12:00:00Z');
const clock = () => now;
let emulator: Emulator<'caller' | 'api'>;
let client: M2MClient;

beforeAll(async () => {
  emulator = await startEmulator({ clock });
});
afterAll(() => emulator.close());
beforeEach(() => {
  emulator.reset();
  client = createM2MClient({
    apiUrl: emulator.url,
    machineSecretKey: emulator.machines.caller.secretKey,
  });
});
afterEach(() => client.close());

const provider = (options: Partial<Parameters<typeof createTokenProvider>[0]> = {}) =>
  createTokenProvider({ client, now: clock, ...options });

describe('createTokenProvider', () => {
  it('keeps one minted token and shares one mint between concurrent callers', async () => {
    const p = provider({ secondsUntilExpiration: 600, claims: { job: 'nightly' } });
    const tokens = await Promise.all(Array.from({ length: 20 }, () => p.getToken()));
    expect(new Set(tokens).size).toBe(1);
    expect(emulator.calls.create).toBe(1);
    expect(await p.getToken()).toBe(tokens[0]);
    expect(emulator.calls.create).toBe(1);
    const instance = createM2MClient({
      apiUrl: emulator.url,
      secretKey: emulator.instanceSecretKey,
    });
    const verified = await instance.verifyToken({ token: tokens[0]! });
    await instance.close();
    expect(verified.claims).toEqual({ job: 'nightly' });
  });

  it('refreshes refreshBeforeMs before expiry, not earlier (moved clock)', async () => {
    const p = provider({ secondsUntilExpiration: 600, refreshBeforeMs: 60_000 });
    const first = await p.getToken();
    now += 600_000 - 60_001; // one ms before the refresh point
    expect(await p.getToken()).toBe(first);
    expect(emulator.calls.create).toBe(1);
    now += 1; // at the refresh point
    const second = await p.getToken();
    expect(second).not.toBe(first);
    expect(emulator.calls.create).toBe(2);
  });

  it('caps the lead at half the lifetime, so a short token is not re-minted on every call', async () => {
    const p = provider({ secondsUntilExpiration: 30 }); // default lead 60 s > lifetime
    const first = await p.getToken();
    now += 14_999;
    expect(await p.getToken()).toBe(first);
    now += 1;
    expect(await p.getToken()).not.toBe(first);
    expect(DEFAULT_REFRESH_BEFORE_MS).toBe(60_000);
  });

  it('keeps using a still-live token when a refresh fails, and throws once it has expired', async () => {
    const p = provider({ secondsUntilExpiration: 100, refreshBeforeMs: 20_000 });
    const first = await p.getToken();
    now += 85_000; // past the refresh point, before expiry
    emulator.failNext(1, 400, { operation: 'create' });
    expect(await p.getToken()).toBe(first);
    now += 15_000; // expired
    emulator.failNext(1, 400, { operation: 'create' });
    await expect(p.getToken()).rejects.toMatchObject({ name: 'BadRequestError' });
    expect(await p.getToken()).not.toBe(first); // healthy again
  });

  it('logs a failing refresh once, not on every call that retries it', async () => {
    const lines: { level: number; msg: string }[] = [];
    const logger = pino(
      { level: 'trace' },
      { write: (line: string) => lines.push(JSON.parse(line)) },
    );
    const p = provider({ secondsUntilExpiration: 100, refreshBeforeMs: 20_000, logger });
    const first = await p.getToken();
    now += 85_000;
    emulator.failNext(3, 400, { operation: 'create' });
    for (let i = 0; i < 3; i++) expect(await p.getToken()).toBe(first);
    expect(lines.filter((line) => line.level >= 40)).toHaveLength(1);
    expect(await p.getToken()).not.toBe(first); // a mint succeeds: a later failure is said again
    now += 85_000;
    emulator.failNext(1, 400, { operation: 'create' });
    await p.getToken();
    expect(lines.filter((line) => line.level >= 40)).toHaveLength(2);
  });

  it('invalidate() makes the next call mint a new token', async () => {
    const p = provider();
    const first = await p.getToken();
    p.invalidate();
    expect(await p.getToken()).not.toBe(first);
    expect(emulator.calls.create).toBe(2);
  });

  it.each([
    ['client', { client: {} }],
    ['secondsUntilExpiration', { secondsUntilExpiration: 0 }],
    ['refreshBeforeMs', { refreshBeforeMs: -1 }],
    ['claims', { claims: [] }],
    ['now', { now: 5 }],
    ['refreshBeforeMS', { refreshBeforeMS: 1 }],
  ])('validates %s at construction', (option, bad) => {
    const build = () => createTokenProvider({ client, ...bad } as never);
    expect(build).toThrow(M2MConfigError);
    try {
      build();
    } catch (err) {
      expect((err as M2MConfigError).option).toBe(option);
    }
  });
});

describe('createAuthorizedFetch', () => {
  let server: Server;
  let seen: (string | undefined)[];
  let answer: number;
  beforeEach(async () => {
    seen = [];
    answer = 200;
    server = createServer((req, res) => {
      seen.push(req.headers.authorization);
      res.statusCode = answer;
      res.end(req.headers['x-keep'] ?? '');
    }).listen(0, '127.0.0.1');
    await once(server, 'listening');
  });
  afterEach(() => {
    server.closeAllConnections();
    server.close();
  });
  const url = () => `http://127.0.0.1:${(server.address() as AddressInfo).port}/x`;

  it('sends the bearer token and keeps the caller’s own headers', async () => {
    const p = provider();
    const call = createAuthorizedFetch(p);
    const res = await call(url(), { headers: { 'x-keep': 'yes' } });
    expect(await res.text()).toBe('yes');
    expect(seen).toEqual([`Bearer ${await p.getToken()}`]);
  });

  it('drops the kept token after a 401, so the next request carries a new one', async () => {
    const p = provider();
    const call = createAuthorizedFetch(p);
    answer = 401;
    await call(url());
    answer = 200;
    await call(url());
    expect(seen[0]).not.toBe(seen[1]);
    expect(emulator.calls.create).toBe(2);
  });

  it('validates its arguments', () => {
    expect(() => createAuthorizedFetch({} as never)).toThrow(M2MConfigError);
    expect(() => createAuthorizedFetch(provider(), 'x' as never)).toThrow(M2MConfigError);
  });
});

describe('createTokenProvider: token format and server-side reuse', () => {
  it('mints JWT-format tokens with tokenFormat: jwt', async () => {
    const p = provider({ tokenFormat: 'jwt', secondsUntilExpiration: 600 });
    const token = await p.getToken();
    expect(token.split('.')).toHaveLength(3);
    const payload = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString());
    expect(payload.sub).toBe(emulator.machines.caller.id);
  });

  it("minRemainingTtlSeconds lets two providers share Clerk's live token", async () => {
    const options = { secondsUntilExpiration: 600, minRemainingTtlSeconds: 300 };
    const first = await provider(options).getToken();
    const second = await provider(options).getToken();
    expect(emulator.calls.create).toBe(2);
    expect(second).toBe(first); // Clerk returned the live token instead of minting a new one
    const fresh = await provider({ secondsUntilExpiration: 600 }).getToken();
    expect(fresh).not.toBe(first);
  });

  it.each([
    [{ tokenFormat: 'JWT' }, 'tokenFormat', 'must be `opaque` or `jwt`'],
    [{ minRemainingTtlSeconds: -1 }, 'minRemainingTtlSeconds', 'must be an integer from 0'],
    [{ minRemainingTtlSeconds: 1.5 }, 'minRemainingTtlSeconds', 'must be an integer'],
    [
      { secondsUntilExpiration: 60, minRemainingTtlSeconds: 60 },
      'minRemainingTtlSeconds',
      'must be an integer from 0 to 59',
    ],
    [
      { tokenFormat: 'jwt', minRemainingTtlSeconds: 10 },
      'minRemainingTtlSeconds',
      'applies to opaque tokens only',
    ],
  ])('refuses %o naming %s', (options, option, expectation) => {
    let err: unknown;
    try {
      provider(options as never);
    } catch (caught) {
      err = caught;
    }
    expect(err).toBeInstanceOf(M2MConfigError);
    expect((err as M2MConfigError).option).toBe(option);
    expect((err as M2MConfigError).message).toContain(expectation);
  });
});
