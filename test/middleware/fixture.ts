/**
 * Shared set-up of the middleware tests: an emulator of Clerk with a movable clock and four
 * machines, token minting through the real client, log capture, and the exact answers
 * (status, `WWW-Authenticate`, JSON body) the middleware must give.
 */
import { randomBytes } from 'node:crypto';
import { type Logger, pino } from 'pino';
import { expect } from 'vitest';
import { type EmulatedMachine, type Emulator, startEmulator } from '../../src/emulator/index.js';
import {
  type CreateTokenParams,
  createM2MClient,
  type M2MClient,
  type M2MToken,
} from '../../src/index.js';

/** The fixed descriptions, spelled out here rather than imported, so a change shows up as a failure. */
export const DESCRIPTION = {
  missing: 'A bearer token is required',
  invalidToken: 'The access token is not valid',
  insufficientScope: 'The token does not grant access to this resource',
  unavailable: 'Token verification is temporarily unavailable',
  malformedHeader: 'The Authorization header must be: Bearer <token>',
  severalHeaders: 'Only one Authorization header is allowed',
  severalPlaces: 'The token must be sent in one place only',
  badToken: 'The bearer token contains characters that are not allowed',
} as const;

export const CHALLENGE = {
  missing: 'Bearer realm="api"',
  invalidToken:
    'Bearer realm="api", error="invalid_token", error_description="The access token is not valid"',
  insufficientScope:
    'Bearer realm="api", error="insufficient_scope", error_description="The token does not grant access to this resource"',
  invalidRequest: (description: string) =>
    `Bearer realm="api", error="invalid_request", error_description="${description}"`,
} as const;

export const BODY = {
  missing: { error: 'unauthorized', error_description: 'A bearer token is required' },
  invalidToken: { error: 'invalid_token', error_description: 'The access token is not valid' },
  insufficientScope: {
    error: 'insufficient_scope',
    error_description: 'The token does not grant access to this resource',
  },
  unavailable: {
    error: 'temporarily_unavailable',
    error_description: 'Token verification is temporarily unavailable',
  },
  invalidRequest: (description: string) => ({
    error: 'invalid_request',
    error_description: description,
  }),
} as const;

/** What a refusal must look like. `challenge: null` means no `WWW-Authenticate` at all. */
export interface ExpectedRefusal {
  status: number;
  challenge: string | null;
  body: unknown;
  retryAfter?: string;
}

export const REFUSAL = {
  missing: { status: 401, challenge: CHALLENGE.missing, body: BODY.missing },
  invalidToken: { status: 401, challenge: CHALLENGE.invalidToken, body: BODY.invalidToken },
  insufficientScope: {
    status: 403,
    challenge: CHALLENGE.insufficientScope,
    body: BODY.insufficientScope,
  },
  unavailable: { status: 503, challenge: null, body: BODY.unavailable },
  invalidRequest: (description: string): ExpectedRefusal => ({
    status: 400,
    challenge: CHALLENGE.invalidRequest(description),
    body: BODY.invalidRequest(description),
  }),
} as const satisfies Record<string, ExpectedRefusal | ((d: string) => ExpectedRefusal)>;

/** The parts of an answer the assertions read; supertest and `rawRequest` answers both fit. */
export interface AnswerLike {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: unknown;
}

/** Asserts the exact default refusal: status, challenge, JSON body, no-store, Retry-After. */
export function expectRefusal(res: AnswerLike, expected: ExpectedRefusal): void {
  expect({
    status: res.status,
    challenge: res.headers['www-authenticate'] ?? null,
    body: res.body,
    retryAfter: res.headers['retry-after'],
  }).toEqual({
    status: expected.status,
    challenge: expected.challenge,
    body: expected.body,
    retryAfter: expected.retryAfter,
  });
  expect(res.headers['content-type']).toMatch(/^application\/json/);
  expect(res.headers['cache-control']).toBe('no-store');
}

/** A clock both the emulator and a verifier can share; tests move it forward. */
export interface TestClock {
  offsetMs: number;
  now: () => number;
  advance(ms: number): void;
}

export function createClock(): TestClock {
  const clock: TestClock = {
    offsetMs: 0,
    now: () => Date.now() + clock.offsetMs,
    advance(ms) {
      clock.offsetMs += ms;
    },
  };
  return clock;
}

/** A token of the right shape (`mt_` + 40 URL-safe characters) that no one ever issued. */
export function unknownToken(): string {
  return `mt_${randomBytes(30).toString('base64url')}`;
}

export type MintedToken = M2MToken & { token: string };

export interface Fixture {
  readonly emu: Emulator;
  readonly url: string;
  readonly clock: TestClock;
  /** Scoped to `api` and `billing`: its tokens may call both. */
  readonly caller: EmulatedMachine;
  /** The service under protection. */
  readonly api: EmulatedMachine;
  readonly billing: EmulatedMachine;
  /** Scoped to `billing` only: its tokens are out of scope for `api`. */
  readonly outsider: EmulatedMachine;
  /** Mints an opaque token as `caller` (default) or `outsider`. */
  mint(params?: CreateTokenParams & { as?: 'caller' | 'outsider' }): Promise<MintedToken>;
  /** Revokes a token at the emulator, with the instance key (not through any verifier's client). */
  revoke(tokenId: string): Promise<void>;
  /** Options for `m2mAuth()` verifying as `api` with its Machine Secret Key (Clerk scope-checks). */
  machineKey(): { apiUrl: string; machineSecretKey: string };
  /** Options for `m2mAuth()` verifying with the instance key (no scope check unless `machineId`). */
  instanceKey(): { apiUrl: string; secretKey: string };
  /** Every secret of the instance: keys of all machines and the instance key. */
  secrets(): string[];
  /** Drops tokens, faults and counters, and puts the clock back. */
  reset(): void;
  close(): Promise<void>;
}

export async function startFixture(): Promise<Fixture> {
  const clock = createClock();
  const emu = await startEmulator({
    clock: () => clock.now(),
    machines: [
      { name: 'caller', scopedMachines: ['api', 'billing'] },
      { name: 'api', scopedMachines: [] },
      { name: 'billing', scopedMachines: [] },
      { name: 'outsider', scopedMachines: ['billing'] },
    ],
  });
  const machine = (name: keyof typeof emu.machines): EmulatedMachine => emu.machines[name];
  const clients: Record<'caller' | 'outsider' | 'instance', M2MClient> = {
    caller: createM2MClient({ apiUrl: emu.url, machineSecretKey: machine('caller').secretKey }),
    outsider: createM2MClient({ apiUrl: emu.url, machineSecretKey: machine('outsider').secretKey }),
    instance: createM2MClient({ apiUrl: emu.url, secretKey: emu.instanceSecretKey }),
  };
  return {
    emu,
    url: emu.url,
    clock,
    caller: machine('caller'),
    api: machine('api'),
    billing: machine('billing'),
    outsider: machine('outsider'),
    mint({ as = 'caller', ...params } = {}) {
      return clients[as].createToken(params);
    },
    async revoke(tokenId) {
      await clients.instance.revokeToken({ m2mTokenId: tokenId });
    },
    machineKey: () => ({ apiUrl: emu.url, machineSecretKey: machine('api').secretKey }),
    instanceKey: () => ({ apiUrl: emu.url, secretKey: emu.instanceSecretKey }),
    secrets: () => [emu.instanceSecretKey, ...Object.values(emu.machines).map((m) => m.secretKey)],
    reset() {
      emu.reset();
      clock.offsetMs = 0;
    },
    async close() {
      await Promise.all(Object.values(clients).map((c) => c.close()));
      await emu.close();
    },
  };
}

export type LogLine = Record<string, unknown> & { level: number; msg?: string };

export interface LogCapture {
  /** A pino logger at level `trace` writing into this capture. */
  readonly logger: Logger;
  /** Every line as written, unparsed. */
  readonly raw: string[];
  lines(): LogLine[];
  /** The middleware's refusal lines (`m2m request refused`). */
  refusals(): LogLine[];
  clear(): void;
}

export function captureLogs(): LogCapture {
  const raw: string[] = [];
  const logger = pino(
    { level: 'trace' },
    {
      write(chunk: string) {
        for (const line of chunk.split('\n')) if (line !== '') raw.push(line);
      },
    },
  );
  const lines = () => raw.map((line) => JSON.parse(line) as LogLine);
  return {
    logger,
    raw,
    lines,
    refusals: () => lines().filter((line) => line.msg === 'm2m request refused'),
    clear() {
      raw.length = 0;
    },
  };
}
