/**
 * Shared set-up of the JWT-format token tests: an injected clock, RSA/EC key pairs, a JWT
 * encoder that signs whatever header and payload a test asks for (to forge and tamper), a
 * switchable reverse proxy in front of the emulator (to make its JWKS fail with a 503), clients
 * and emulators tracked so that `closeAll()` releases everything a test built.
 */
import {
  constants,
  createHmac,
  sign as cryptoSign,
  generateKeyPairSync,
  type KeyObject,
  randomBytes,
} from 'node:crypto';
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, beforeEach, expect } from 'vitest';
import { createM2MClient, type M2MClient, type M2MToken } from '../../src/client/index.js';
import { type Emulator, type EmulatorOptions, startEmulator } from '../../src/emulator/index.js';
import { InvalidTokenError, type InvalidTokenReason } from '../../src/verifier/index.js';

/** A fixed starting point for the injected clocks (2030-01-01T00:00:00Z). */
export const START = Date.UTC(2030, 0, 1);

/** The M2M JWT category, and the other categories Clerk uses for other tokens. */
export const M2M_CAT = 'cl_B7d4PD333AAA';
export const SESSION_CAT = 'cl_B7d4PD111AAA';
export const TEMPLATE_CAT = 'cl_B7d4PD222AAA';

/** Well-formed machine ids for forged tokens (`mch_` + 27 word characters). */
export const CALLER_ID = `mch_${'c'.repeat(27)}`;
export const API_ID = `mch_${'a'.repeat(27)}`;
export const OTHER_ID = `mch_${'o'.repeat(27)}`;

export interface TestClock {
  (): number;
  /** Moves the clock forward by `ms`. */
  advance(ms: number): void;
  /** Puts the clock back to its start. */
  reset(): void;
}

export function createClock(start = START): TestClock {
  let now = start;
  const clock = (() => now) as TestClock;
  clock.advance = (ms) => {
    now += ms;
  };
  clock.reset = () => {
    now = start;
  };
  return clock;
}

/** Anything with an async `close()`: emulators, clients, verifiers, middlewares, servers. */
export interface Closable {
  close(): Promise<unknown>;
}

/** Remembers what a test opened; `closeAll()` (in `afterEach`) closes it, newest first. */
export function createTracker() {
  const open: Closable[] = [];
  return {
    track<T extends Closable>(value: T): T {
      open.push(value);
      return value;
    },
    async closeAll(): Promise<void> {
      const all = open.splice(0).reverse();
      for (const item of all) await item.close();
    },
  };
}

export type Tracker = ReturnType<typeof createTracker>;

export interface RsaPair {
  publicKey: KeyObject;
  privateKey: KeyObject;
  publicKeyPem: string;
}

export function rsaPair(modulusLength = 2048): RsaPair {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength });
  return {
    publicKey,
    privateKey,
    publicKeyPem: publicKey.export({ format: 'pem', type: 'spki' }).toString(),
  };
}

const pairs = new Map<string, RsaPair>();

/**
 * A 2048-bit RSA pair generated once per test file and name (generation is slow): e.g.
 * `sharedRsaPair('attacker')`.
 */
export function sharedRsaPair(name: string): RsaPair {
  let pair = pairs.get(name);
  if (!pair) {
    pair = rsaPair();
    pairs.set(name, pair);
  }
  return pair;
}

export function ecPair(): RsaPair {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return {
    publicKey,
    privateKey,
    publicKeyPem: publicKey.export({ format: 'pem', type: 'spki' }).toString(),
  };
}

/** A `kid` shaped like Clerk's (`ins_…`) that no JWKS holds. */
export const randomKid = (): string => `ins_${randomBytes(14).toString('hex')}`;

/** A token id shaped like Clerk's. */
export const randomTokenId = (): string => `mt_${randomBytes(16).toString('hex')}`;

const b64u = (value: string | Buffer): string => Buffer.from(value).toString('base64url');

/** Computes the signature of a JWT signing input (`header.payload`). */
export type Signer = (input: Buffer) => Buffer;

export const rs =
  (key: KeyObject, hash: 'sha256' | 'sha384' | 'sha512' = 'sha256'): Signer =>
  (input) =>
    cryptoSign(hash, input, key);

export const ps256 =
  (key: KeyObject): Signer =>
  (input) =>
    cryptoSign('sha256', input, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 });

export const es256 =
  (key: KeyObject): Signer =>
  (input) =>
    cryptoSign('sha256', input, { key, dsaEncoding: 'ieee-p1363' });

export const hs256 =
  (secret: string | Buffer): Signer =>
  (input) =>
    createHmac('sha256', secret).update(input).digest();

/** Encodes and signs exactly this header and payload. */
export function signJwt(
  header: Record<string, unknown>,
  payload: Record<string, unknown>,
  signer: Signer,
): string {
  const input = `${b64u(JSON.stringify(header))}.${b64u(JSON.stringify(payload))}`;
  return `${input}.${b64u(signer(Buffer.from(input)))}`;
}

export interface DecodedJwt {
  header: Record<string, unknown>;
  payload: Record<string, unknown>;
  /** The third part, as sent. */
  signature: string;
}

export function decodeJwt(token: string): DecodedJwt {
  const [h, p, s] = token.split('.');
  const part = (v: string | undefined) => JSON.parse(Buffer.from(v!, 'base64url').toString('utf8'));
  return { header: part(h), payload: part(p), signature: s ?? '' };
}

/** Re-encodes a token with a changed payload and its ORIGINAL signature. */
export function withPayload(token: string, payload: Record<string, unknown>): string {
  const [h, , s] = token.split('.');
  return `${h}.${b64u(JSON.stringify(payload))}.${s}`;
}

/** Copies `base` with `changes` applied; a change to `undefined` removes the field. */
export function edit(
  base: Record<string, unknown>,
  changes: Record<string, unknown> = {},
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base, ...changes };
  for (const [name, value] of Object.entries(changes)) if (value === undefined) delete out[name];
  return out;
}

/** The header Clerk (and the emulator) puts on an M2M JWT. */
export function m2mHeader(kid: string, changes: Record<string, unknown> = {}) {
  return edit({ alg: 'RS256', typ: 'JWT', kid, cat: M2M_CAT }, changes);
}

/** A production-shaped M2M payload issued at `nowMs`, valid for an hour, for `API_ID`. */
export function m2mPayload(nowMs: number, changes: Record<string, unknown> = {}) {
  const iat = Math.floor(nowMs / 1000);
  return edit(
    {
      iss: 'https://clerk.example.test',
      sub: CALLER_ID,
      aud: [API_ID],
      scopes: API_ID,
      iat,
      nbf: iat - 10,
      exp: iat + 3600,
      jti: randomTokenId(),
      role: 'svc',
    },
    changes,
  );
}

/** Asserts that `promise` rejects with an `InvalidTokenError` (of `reason`, when given). */
export async function expectInvalid(
  promise: Promise<unknown>,
  reason?: InvalidTokenReason,
): Promise<InvalidTokenError> {
  const err = await promise.then(
    (value) => {
      throw new Error(
        `expected an InvalidTokenError, got a verified token ${JSON.stringify(value)}`,
      );
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(InvalidTokenError);
  if (reason !== undefined) expect((err as InvalidTokenError).reason).toBe(reason);
  return err as InvalidTokenError;
}

export interface EmulatorSetup {
  emulator: Emulator;
  clock: TestClock;
  /** The `caller` machine's client: mints tokens scoped to `api`. */
  minter: M2MClient;
  callerId: string;
  apiId: string;
  /** Mints a JWT-format token as `caller` (scopes: `api`). */
  mintJwt(params?: {
    claims?: Record<string, unknown> | null;
    secondsUntilExpiration?: number;
  }): Promise<M2MToken & { token: string }>;
  /** Mints an opaque token as `caller` (scopes: `api`). */
  mintOpaque(params?: {
    claims?: Record<string, unknown> | null;
    secondsUntilExpiration?: number;
  }): Promise<M2MToken & { token: string }>;
  /** Zeroes the emulator's counters, drops its tokens and puts the clock back to its start. */
  reset(): void;
}

/** Starts an emulator on the injected clock, with a minting client; both are tracked. */
export async function setupEmulator(
  tracker: Tracker,
  options: EmulatorOptions = {},
  clock: TestClock = createClock(),
): Promise<EmulatorSetup> {
  const emulator = tracker.track(await startEmulator({ clock, ...options }));
  const caller = emulator.machines.caller!;
  const api = emulator.machines.api!;
  const minter = tracker.track(
    createM2MClient({
      apiUrl: emulator.url,
      machineSecretKey: caller.secretKey,
      retry: false,
    }),
  );
  return {
    emulator,
    clock,
    minter,
    callerId: caller.id,
    apiId: api.id,
    mintJwt: (params = {}) => minter.createToken({ ...params, tokenFormat: 'jwt' }),
    mintOpaque: (params = {}) => minter.createToken({ ...params, tokenFormat: 'opaque' }),
    reset() {
      emulator.reset();
      clock.reset();
    },
  };
}

export interface Listening {
  url: string;
  close(): Promise<void>;
}

async function listenOn(server: Server): Promise<Listening> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  let closing: Promise<void> | undefined;
  return {
    url: `http://127.0.0.1:${port}`,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

/** A URL on which nothing listens: every connection is refused. */
export async function closedPortUrl(): Promise<string> {
  const probe = await listenOn(createServer((_req, res) => res.end()));
  await probe.close();
  return probe.url;
}

export interface SwitchableProxy extends Listening {
  /** While `true`, every request is answered 503 with a Clerk error body. */
  down: boolean;
  /** Requests for the JWKS that reached the proxy (answered or failed). */
  readonly jwksRequests: number;
}

/** A reverse proxy to `target` that a test can switch to answering 503. */
export async function startProxy(target: string): Promise<SwitchableProxy> {
  let jwksRequests = 0;
  const state = { down: false };
  const server = createServer((req, res) => {
    if ((req.url ?? '').includes('jwks')) jwksRequests += 1;
    if (state.down) {
      const body = JSON.stringify({
        errors: [{ code: 'service_unavailable', message: 'Service unavailable' }],
      });
      res.writeHead(503, { 'content-type': 'application/json', 'content-length': body.length });
      res.end(body);
      return;
    }
    const upstream = httpRequest(
      `${target}${req.url ?? '/'}`,
      { method: req.method, headers: req.headers, agent: false },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  const listening = await listenOn(server);
  return {
    ...listening,
    get down() {
      return state.down;
    },
    set down(value: boolean) {
      state.down = value;
    },
    get jwksRequests() {
      return jwksRequests;
    },
  };
}

/** Sets an environment variable for the test; the returned function restores it. */
export function setEnv(name: string, value: string | undefined): () => void {
  const had = Object.hasOwn(process.env, name);
  const previous = process.env[name];
  if (value === undefined) delete process.env[name];
  else process.env[name] = value;
  return () => {
    if (had) process.env[name] = previous;
    else delete process.env[name];
  };
}

/**
 * The lifecycle most JWT test files share: one emulator per file (a key pair is slow to
 * generate), reset before each test; `tracker` closes what a test opened; CLERK_JWT_KEY is
 * blanked, since one in the shell would change which keys every verifier here trusts.
 */
export function useJwtSuite(): { tracker: ReturnType<typeof createTracker>; setup: EmulatorSetup } {
  const tracker = createTracker();
  const suite = createTracker();
  const ctx = { tracker, setup: undefined as unknown as EmulatorSetup };
  let restoreEnv = () => {};
  beforeAll(async () => {
    ctx.setup = await setupEmulator(suite);
  });
  afterAll(() => suite.closeAll());
  beforeEach(() => {
    ctx.setup.reset();
    restoreEnv = setEnv('CLERK_JWT_KEY', undefined);
  });
  afterEach(async () => {
    await tracker.closeAll();
    restoreEnv();
  });
  return ctx;
}
