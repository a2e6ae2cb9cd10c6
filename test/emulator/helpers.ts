import { request } from 'undici';
import { expect } from 'vitest';
import { type Emulator, type EmulatorOptions, startEmulator } from '../../src/emulator/index.js';

const running: Emulator[] = [];

/** Starts an emulator that {@link closeEmulators} will close. */
export async function start(options?: EmulatorOptions): Promise<Emulator> {
  const emulator = await startEmulator(options);
  running.push(emulator);
  return emulator;
}

export async function closeEmulators(): Promise<void> {
  await Promise.all(running.splice(0).map((e) => e.close()));
}

/** A clock tests move by hand. */
export function manualClock(start = 1_800_000_000_000): {
  now: () => number;
  advance(ms: number): void;
  set(ms: number): void;
} {
  let current = start;
  return {
    now: () => current,
    advance: (ms) => {
      current += ms;
    },
    set: (ms) => {
      current = ms;
    },
  };
}

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  // biome-ignore lint/suspicious/noExplicitAny: response bodies are inspected field by field
  json: any;
}

export interface CallOptions {
  /** Sent as `Authorization: Bearer <key>`. */
  key?: string;
  /** Serialised as JSON with `content-type: application/json` unless a string/Buffer. */
  body?: unknown;
  headers?: Record<string, string>;
}

/** One raw HTTP request with undici; the body is parsed when the answer is `application/json`. */
export async function call(
  emulator: Emulator,
  method: string,
  path: string,
  options: CallOptions = {},
): Promise<RawResponse> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.key !== undefined) headers.authorization = `Bearer ${options.key}`;
  let body: string | Buffer | undefined;
  if (typeof options.body === 'string' || Buffer.isBuffer(options.body)) body = options.body;
  else if (options.body !== undefined) {
    body = JSON.stringify(options.body);
    headers['content-type'] ??= 'application/json';
  }
  const res = await request(`${emulator.url}${path}`, {
    method: method as 'GET',
    headers,
    body,
  });
  const text = await res.body.text();
  const json =
    res.headers['content-type'] === 'application/json' && text !== ''
      ? JSON.parse(text)
      : undefined;
  return { status: res.statusCode, headers: res.headers, text, json };
}

/** Asserts a Clerk error answer: status, exact content type, body shape and code. */
export function expectClerkError(res: RawResponse, status: number, code: string): void {
  expect({ status: res.status, code: res.json?.errors?.[0]?.code }).toEqual({ status, code });
  expect(res.headers['content-type']).toBe('application/json');
  expect(res.json.errors).toHaveLength(1);
  expect(res.json.errors[0]).toEqual(
    expect.objectContaining({
      message: expect.any(String),
      long_message: expect.any(String),
      code,
    }),
  );
  expect(res.json.clerk_trace_id).toMatch(/^[0-9a-f]{32}$/);
}

/** Creates an opaque token as `machine` (raw call) and returns the 201 body. */
export async function createToken(
  emulator: Emulator,
  machine: string,
  body: Record<string, unknown> = {},
  // biome-ignore lint/suspicious/noExplicitAny: see RawResponse.json
): Promise<any> {
  const res = await call(emulator, 'POST', '/m2m_tokens', {
    key: emulator.machines[machine]!.secretKey,
    body,
  });
  expect(res.status).toBe(201);
  return res.json;
}

/**
 * One emulator per machine setup for a whole test file, reset (tokens, clock) before each use:
 * `const setup = reusableEmulators();` then `const { emulator, clock } = await setup(ttl?)`.
 * `ttl` is the caller machine's default token lifetime (seconds, or null: never expires).
 */
export function reusableEmulators() {
  const clock = manualClock();
  const begin = clock.now();
  const shared = new Map<string, Emulator>();
  return async function setup(ttl: number | null = 3600) {
    const key = String(ttl);
    let emulator = shared.get(key);
    if (!emulator) {
      emulator = await start({
        clock: clock.now,
        machines: [
          { name: 'caller', scopedMachines: ['api'], defaultTokenTtlSeconds: ttl },
          { name: 'api' },
        ],
      });
      shared.set(key, emulator);
    }
    emulator.reset();
    clock.set(begin);
    return { emulator, clock };
  };
}
