/** Shared values and hooks of the client tests. */
import { Writable } from 'node:stream';
import { type Logger, pino } from 'pino';
import { afterEach, beforeEach } from 'vitest';
import { createM2MClient, type M2MClient, type M2MClientOptions } from '../../src/client/index.js';
import { type ScriptedServer, startScriptedServer } from '../helpers/scripted-server.js';

export const MACHINE_KEY = 'ak_test_machineSecret_7f3c9a1e5b2d4c6e8a0b';
export const OTHER_MACHINE_KEY = 'ak_test_otherMachine_1a2b3c4d5e6f7a8b9c0d';
export const INSTANCE_KEY = 'sk_test_instanceSecret_0d9c8b7a6f5e4d3c2b1a';
/** A token string, deliberately not shaped like a token id. */
export const TOKEN = 'mt_secretTokenString_Zq8XOIucKvqHVr5tYP1234';
export const TOKEN_ID = 'mt_f7f0ba8c3b4843ce7d85fcdd5e71853e';
export const SUBJECT = 'mch_2xhFjEI5X2qWRvtV13BzSj8H6Dk';
export const SCOPE = 'mch_2yGkLpQ7Y3rXSwtU24CzTk9I7Em';

/** Retries fast enough for tests. */
export const FAST_RETRY = { minDelayMs: 1, maxDelayMs: 50 } as const;

/** An M2M token as Clerk sends it (snake_case), without the `token` string unless overridden. */
export function tokenJson(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    object: 'machine_to_machine_token',
    id: TOKEN_ID,
    subject: SUBJECT,
    claims: { important_metadata: 'Some useful data' },
    scopes: [SCOPE],
    revoked: false,
    revocation_reason: null,
    expired: false,
    expiration: 1716886800000,
    last_used_at: 1716883300000,
    created_at: 1716883200000,
    updated_at: 1716883400000,
    ...overrides,
  };
}

/** A Clerk error body. */
export function clerkError(
  code: string,
  message = 'some details about the error',
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return { errors: [{ message, long_message: `${message} (long)`, code }], ...extra };
}

const ENV_NAMES = ['CLERK_API_URL', 'CLERK_MACHINE_SECRET_KEY', 'CLERK_SECRET_KEY'] as const;

/** Clears Clerk's environment variables for each test and restores them afterwards. */
export function isolateClerkEnv(): void {
  const saved: Record<string, string | undefined> = {};
  beforeEach(() => {
    for (const name of ENV_NAMES) {
      saved[name] = process.env[name];
      delete process.env[name];
    }
  });
  afterEach(() => {
    for (const name of ENV_NAMES) {
      if (saved[name] === undefined) delete process.env[name];
      else process.env[name] = saved[name];
    }
  });
}

/**
 * Returns `track(thing)`, which registers `thing.close()` to run after the current test
 * (last tracked, first closed).
 */
export function useCleanup(): <T extends { close(): unknown }>(thing: T) => T {
  const closers: (() => unknown)[] = [];
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
  });
  return (thing) => {
    closers.push(() => thing.close());
    return thing;
  };
}

/** A pino logger at level `trace` whose lines are collected in `lines`. */
export function captureLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  let pending = '';
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      pending += chunk.toString('utf8');
      const parts = pending.split('\n');
      pending = parts.pop() ?? '';
      lines.push(...parts.filter((line) => line !== ''));
      callback();
    },
  });
  return { logger: pino({ level: 'trace' }, stream), lines };
}

/** Awaits a promise that must reject and returns the reason. */
export async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error('expected the promise to reject, but it resolved');
}

/**
 * A scripted server started before each test, and `client(options)` building a client aimed
 * at it with the file's `defaults`; both are closed after the test. `rig.server` is the
 * current test's server.
 */
export function useScriptedClient(defaults: M2MClientOptions) {
  const track = useCleanup();
  const rig = {
    server: undefined as unknown as ScriptedServer,
    client: (options: M2MClientOptions = {}): M2MClient =>
      track(createM2MClient({ apiUrl: rig.server.url, ...defaults, ...options })),
  };
  beforeEach(async () => {
    rig.server = track(await startScriptedServer());
  });
  return rig;
}
