/**
 * Shared set-up of the verifier tests: an emulator on loopback with an injected clock, clients
 * to mint and revoke tokens, verifiers built against it, a captured pino logger and
 * diagnostics-channel recorders. Everything built here is closed by `Harness.close()`.
 */
import diagnostics from 'node:diagnostics_channel';
import { type Logger, pino } from 'pino';
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import {
  type CreateTokenParams,
  createM2MClient,
  type M2MClient,
  type M2MClientOptions,
  type M2MToken,
} from '../../src/client/index.js';
import {
  type EmulatedMachine,
  type Emulator,
  type EmulatorOptions,
  startEmulator,
} from '../../src/emulator/index.js';
import {
  createTokenVerifier,
  InvalidTokenError,
  type InvalidTokenReason,
  type TokenVerifier,
  type TokenVerifierOptions,
  type UnavailableReason,
  VerifierUnavailableError,
} from '../../src/verifier/index.js';

/** A fixed, realistic starting point for the injected clock (2025-06-15T00:00:00Z). */
export const START = Date.UTC(2025, 5, 15);

/** A machine key the emulator does not know: Clerk answers 401 to it. */
export const UNKNOWN_MACHINE_KEY = 'ak_0123456789abcdef0123456789abcdef';

/** The clock shared by the emulator (`clock`) and the verifier (`now`), moved by the test. */
export interface TestClock {
  (): number;
  /** Moves the clock forward by `ms`. */
  advance(ms: number): void;
  /** Sets the clock to `ms` after {@link START}. */
  at(ms: number): void;
}

export function createTestClock(start = START): TestClock {
  let now = start;
  const clock = (() => now) as TestClock;
  clock.advance = (ms) => {
    now += ms;
  };
  clock.at = (ms) => {
    now = start + ms;
  };
  return clock;
}

interface Closable {
  close(): Promise<void>;
}

export type MintedToken = M2MToken & { token: string };

export interface Harness {
  readonly emulator: Emulator;
  readonly clock: TestClock;
  /** Client holding the `caller` machine's key: mints tokens scoped to `api`. */
  readonly minter: M2MClient;
  /** A client with the instance key, unrelated to any verifier: revocations "elsewhere". */
  readonly admin: M2MClient;
  /** The emulated machine of that name (`caller`, `api`, …). */
  machine(name: string): EmulatedMachine;
  /** Mints an opaque token as the `caller` machine (scopes: the `api` machine). */
  mint(params?: CreateTokenParams): Promise<MintedToken>;
  /** A client against the emulator (instance key, no retries unless overridden). */
  client(options?: M2MClientOptions): M2MClient;
  /**
   * A verifier against the emulator. Unless `client` is given, it builds its own client with
   * the instance key and `retry: false`; the injected clock is its `now`.
   */
  verifier(options?: TokenVerifierOptions): TokenVerifier;
  /** Registers anything with `close()` to be closed at the end of the test. */
  track<T extends Closable>(thing: T): T;
  /**
   * Ends one test: closes what it built (newest first), resets the emulator (tokens, counters,
   * faults, latency) and puts the clock back to {@link START}.
   */
  endTest(): Promise<void>;
  /** Ends the test, then closes the long-lived clients and the emulator. Idempotent. */
  close(): Promise<void>;
}

const CLERK_ENV = [
  'CLERK_API_URL',
  'CLERK_MACHINE_SECRET_KEY',
  'CLERK_SECRET_KEY',
  'CLERK_JWT_KEY',
] as const;

/**
 * Starts an emulator (whose clock is the harness clock unless `options.clock` is given) with a
 * minting client and an admin client. Clerk's environment variables are blanked meanwhile.
 */
export async function startHarness(options: EmulatorOptions = {}): Promise<Harness> {
  // Clients fall back to these variables; keep the tests independent of the shell.
  const savedEnv = CLERK_ENV.map((name) => [name, process.env[name]] as const);
  for (const name of CLERK_ENV) delete process.env[name];
  const clock = createTestClock();
  const emulator = await startEmulator({ clock, ...options });
  let perTest: Closable[] = [];
  let closed = false;
  const track = <T extends Closable>(thing: T): T => {
    perTest.push(thing);
    return thing;
  };
  const newClient = (clientOptions: M2MClientOptions = {}) =>
    createM2MClient({
      apiUrl: emulator.url,
      secretKey: emulator.instanceSecretKey,
      retry: false,
      ...clientOptions,
    });
  const machine = (name: string): EmulatedMachine => {
    const found = emulator.machines[name];
    if (!found) throw new Error(`the emulator has no machine named ${name}`);
    return found;
  };
  const caller = emulator.machines.caller;
  const minter = newClient(caller ? { machineSecretKey: caller.secretKey } : {});
  const admin = newClient();
  const endTest = async () => {
    const things = perTest.reverse();
    perTest = [];
    for (const thing of things) await thing.close().catch(() => {});
    emulator.reset();
    clock.at(0);
  };
  return {
    emulator,
    clock,
    minter,
    admin,
    machine,
    mint: (params = {}) => minter.createToken(params),
    client: (clientOptions) => track(newClient(clientOptions)),
    verifier(verifierOptions: TokenVerifierOptions = {}) {
      const defaults: TokenVerifierOptions = {
        ...(verifierOptions.client === undefined
          ? { apiUrl: emulator.url, secretKey: emulator.instanceSecretKey, retry: false }
          : {}),
        // The instance key scope-checks nothing: these tests accept any machine on purpose.
        ...(verifierOptions.machineId === undefined && verifierOptions.allowedSubjects === undefined
          ? { anyMachine: true }
          : {}),
      };
      return track(createTokenVerifier({ ...defaults, now: clock, ...verifierOptions }));
    },
    track,
    endTest,
    async close() {
      if (closed) return;
      closed = true;
      await endTest();
      await minter.close();
      await admin.close();
      await emulator.close();
      for (const [name, value] of savedEnv) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    },
  };
}

/**
 * One emulator for a whole test file (starting one costs an RSA key pair): started before all
 * tests; after each test, what the test built is closed and the emulator and clock are reset;
 * after all, everything is closed. Read the fields inside tests and hooks only.
 */
export function useHarness(options: EmulatorOptions = {}): Harness {
  let current: Harness | undefined;
  const get = (): Harness => {
    if (!current) throw new Error('the harness is only available inside tests');
    return current;
  };
  beforeAll(async () => {
    current = await startHarness(options);
  });
  afterEach(async () => {
    await current?.endTest();
  });
  afterAll(async () => {
    await current?.close();
    current = undefined;
  });
  return {
    get emulator() {
      return get().emulator;
    },
    get clock() {
      return get().clock;
    },
    get minter() {
      return get().minter;
    },
    get admin() {
      return get().admin;
    },
    machine: (name) => get().machine(name),
    mint: (params) => get().mint(params),
    client: (clientOptions) => get().client(clientOptions),
    verifier: (verifierOptions) => get().verifier(verifierOptions),
    track: (thing) => get().track(thing),
    endTest: () => get().endTest(),
    close: () => get().close(),
  };
}

/** A pino logger at `trace` whose lines are kept in memory. */
export interface CapturedLog {
  readonly logger: Logger;
  /** Every line written so far, raw. */
  readonly lines: string[];
  /** Every line parsed. */
  records(): Array<Record<string, unknown> & { level: number; msg?: string }>;
}

export function captureLogger(): CapturedLog {
  const lines: string[] = [];
  const logger = pino(
    { level: 'trace' },
    {
      write(line: string) {
        lines.push(line);
      },
    },
  );
  return {
    logger,
    lines,
    records: () => lines.map((line) => JSON.parse(line)),
  };
}

/** Records the messages published on a diagnostics channel until `stop()`. */
export interface ChannelRecorder<T> {
  readonly messages: T[];
  stop(): void;
}

export function recordChannel<T = Record<string, unknown>>(name: string): ChannelRecorder<T> {
  const messages: T[] = [];
  const listener = (message: unknown) => {
    messages.push(message as T);
  };
  diagnostics.subscribe(name, listener);
  return {
    messages,
    stop: () => diagnostics.unsubscribe(name, listener),
  };
}

/** The error a promise rejects with; fails when it resolves. */
export async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error('expected the promise to reject, but it resolved');
}

/** Asserts that `promise` rejects with an `InvalidTokenError` of `reason`, and returns it. */
export async function expectInvalid(
  promise: Promise<unknown>,
  reason: InvalidTokenReason,
): Promise<InvalidTokenError> {
  const err = await rejection(promise);
  expect(err).toBeInstanceOf(InvalidTokenError);
  expect(err).not.toBeInstanceOf(VerifierUnavailableError);
  expect((err as InvalidTokenError).reason).toBe(reason);
  return err as InvalidTokenError;
}

/** Asserts that `promise` rejects with a `VerifierUnavailableError` of `reason`, and returns it. */
export async function expectUnavailable(
  promise: Promise<unknown>,
  reason: UnavailableReason,
): Promise<VerifierUnavailableError> {
  const err = await rejection(promise);
  expect(err).toBeInstanceOf(VerifierUnavailableError);
  expect(err).not.toBeInstanceOf(InvalidTokenError);
  expect((err as VerifierUnavailableError).reason).toBe(reason);
  return err as VerifierUnavailableError;
}
