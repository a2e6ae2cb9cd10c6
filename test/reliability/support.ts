/**
 * Shared set-up of the reliability suite: an injected clock, loopback servers, an HTTP client
 * with hang protection, and the leak watch that every file runs its secrets check with.
 *
 * The leak watch owns a pino logger at `trace` whose lines are kept in memory; the tests pass
 * it as `logger` to the emulator, clients, verifiers and middleware. Everything else a caller
 * or operator could see (responses, errors with their causes, `stats()`) is recorded on the
 * watch, and `findLeaks()` searches it all for every registered secret.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type RequestListener, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { inspect } from 'node:util';
import { type Logger, pino } from 'pino';
import { Agent, request } from 'undici';
import type { EmulatorOptions, MachineConfig } from '../../src/emulator/index.js';
import type { M2MAuthError } from '../../src/middleware/errors.js';
import { writeError } from '../../src/middleware/respond.js';
import type { ErrorHandler } from '../../src/middleware/types.js';

/** 2026-01-15T12:00:00Z: where injected clocks start. */
export const START = Date.UTC(2026, 0, 15, 12);

/** A clock shared by the emulator (`clock`) and the verifier (`now`), moved by the test. */
export interface TestClock {
  (): number;
  advance(ms: number): void;
  set(ms: number): void;
}

export function createClock(start = START): TestClock {
  let now = start;
  const clock = (() => now) as TestClock;
  clock.advance = (ms) => {
    now += ms;
  };
  clock.set = (ms) => {
    now = ms;
  };
  return clock;
}

/** The strict `WWW-Authenticate` grammar m2mAuth must stay within, for a given realm. */
export function challengePattern(realm: string): RegExp {
  const quoted = realm.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(
    `^Bearer realm="${quoted}"(, error="(invalid_request|invalid_token)", error_description="[^"\\\\]*")?$`,
  );
}

/** What can be an opaque M2M token, as the brief defines it: anything else must not go upstream. */
export const TOKEN_SHAPE = /^mt_[A-Za-z0-9_-]{16,253}$/;

/** Random alphanumerics, for keys and ids the tests choose themselves. */
export function randomAlnum(length: number): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  let out = '';
  for (const byte of randomBytes(length * 2)) {
    if (byte < 248) out += alphabet[byte % 62];
    if (out.length === length) break;
  }
  return out.length === length ? out : out + randomAlnum(length - out.length);
}

/**
 * Emulator options with fixed identities, so a restarted emulator (same port) is the same
 * instance: machines `caller` (may call `api`), `api`, and `other` (may call `caller` only).
 */
export function fixedInstance(): Pick<EmulatorOptions, 'instanceSecretKey' | 'machines'> & {
  machines: Required<Pick<MachineConfig, 'name' | 'id' | 'secretKey' | 'scopedMachines'>>[];
} {
  const id = () => `mch_${randomAlnum(27)}`;
  const key = () => `ak_${randomBytes(16).toString('hex')}`;
  return {
    instanceSecretKey: `sk_test_${randomAlnum(40)}`,
    machines: [
      { name: 'caller', id: id(), secretKey: key(), scopedMachines: ['api'] },
      { name: 'api', id: id(), secretKey: key(), scopedMachines: [] },
      { name: 'other', id: id(), secretKey: key(), scopedMachines: ['caller'] },
    ],
  };
}

export interface Listening {
  readonly url: string;
  readonly port: number;
  readonly server: Server;
  close(): Promise<void>;
}

/** Serves `handler` (an Express app or a plain listener) on 127.0.0.1 at an ephemeral port. */
export async function listen(handler: RequestListener): Promise<Listening> {
  const server = createServer(handler);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

export interface HttpAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  /** The body parsed as JSON, or `undefined` when it is not JSON. */
  // biome-ignore lint/suspicious/noExplicitAny: answers are inspected field by field
  json: any;
  /** Wall time of the whole exchange. */
  ms: number;
}

/** A keep-alive undici client whose every request fails (never hangs) after `timeoutMs`. */
export function httpClient(timeoutMs = 5000) {
  const agent = new Agent({ keepAliveTimeout: 10_000, connections: 16 });
  return {
    agent,
    async get(url: string, headers: Record<string, string> = {}): Promise<HttpAnswer> {
      const started = performance.now();
      const res = await request(url, {
        dispatcher: agent,
        headers,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
      const text = await res.body.text();
      return {
        status: res.statusCode,
        headers: res.headers,
        text,
        json: parseJson(text),
        ms: performance.now() - started,
      };
    },
    close: () => agent.close(),
  };
}

export function parseJson(text: string): unknown {
  try {
    return text === '' ? undefined : JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Rejects with a clear message when `promise` takes longer than `ms`: a hang, not a slow answer. */
export async function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`hang: ${what} took more than ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Waits until `check()` is true, polling every few ms, or fails after `ms`. */
export async function until(check: () => boolean, what: string, ms = 3000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

// ---------------------------------------------------------------------------------------------
// Leak watch
// ---------------------------------------------------------------------------------------------

export interface Leak {
  /** Which secret (its label, never its value). */
  secret: string;
  /** Which form of it was found: `whole`, `base64`, `first half`, `second half`. */
  form: string;
  /** Where: a log line, a response, an error, stats. */
  source: string;
  /** The text around the find, with the secret replaced by its label. */
  excerpt: string;
}

export interface Checkpoint {
  logLines: number;
  records: number;
}

interface Needle {
  label: string;
  form: string;
  value: string;
}

/** The random part of a secret: what follows its `mt_`, `ak_`, `sk_test_` … prefix. */
function randomPart(value: string): string {
  return value.replace(/^[a-z]{2,4}_(?:test_|live_)?/, '');
}

export class LeakWatch {
  readonly logLines: string[] = [];
  readonly logger: Logger;
  private readonly needles: Needle[] = [];
  private readonly labels = new Map<string, string>();
  private readonly haystack: { source: string; text: string }[] = [];

  constructor() {
    this.logger = pino(
      { level: 'trace' },
      {
        write: (line: string) => {
          this.logLines.push(line);
        },
      },
    );
  }

  /** Registers a secret (a key or a token string) under a label; returns it unchanged. */
  secret(label: string, value: string): string {
    if (this.labels.has(value)) return value;
    this.labels.set(value, label);
    this.needles.push({ label, form: 'whole', value });
    this.needles.push({ label, form: 'base64', value: Buffer.from(value).toString('base64') });
    const random = randomPart(value);
    if (random.length >= 24) {
      const half = Math.floor(random.length / 2);
      this.needles.push({ label, form: 'first half', value: random.slice(0, half) });
      this.needles.push({ label, form: 'second half', value: random.slice(half) });
    }
    return value;
  }

  /** How many secrets are registered. */
  get secretCount(): number {
    return this.labels.size;
  }

  /** Records anything a caller or operator could see: strings, errors (with causes), objects. */
  record(source: string, value: unknown): void {
    for (const text of render(value, 0)) this.haystack.push({ source, text });
  }

  /** Records an HTTP answer: status line, every header and the body. */
  recordAnswer(source: string, answer: Pick<HttpAnswer, 'status' | 'headers' | 'text'>): void {
    this.haystack.push({
      source,
      text: `${answer.status}\n${JSON.stringify(answer.headers)}\n${answer.text}`,
    });
  }

  /** An `onError` for m2mAuth that records the error, then answers exactly as the default does. */
  readonly onError: ErrorHandler = (err: M2MAuthError, _req, res) => {
    this.record(`m2mAuth error (${err.name})`, err);
    writeError(res, err);
  };

  /**
   * Every registered secret found in the logs, in `extra`, and in everything recorded: one
   * report per secret and place, in its most complete form (whole before base64 before halves).
   */
  findLeaks(extra: { source: string; text: string }[] = [], since?: Checkpoint): Leak[] {
    const leaks: Leak[] = [];
    const all = [
      ...this.logLines
        .map((text, i) => ({ source: `log line ${i}`, text }))
        .slice(since?.logLines ?? 0),
      ...this.haystack.slice(since?.records ?? 0),
      ...extra,
    ];
    for (const { source, text } of all) {
      const reported = new Set<string>();
      for (const needle of this.needles) {
        if (reported.has(needle.label)) continue;
        const at = text.indexOf(needle.value);
        if (at === -1) continue;
        reported.add(needle.label);
        const excerpt = this.mask(text.slice(Math.max(0, at - 60), at + needle.value.length + 60));
        leaks.push({ secret: needle.label, form: needle.form, source, excerpt });
      }
    }
    return leaks;
  }

  /** Where the logs and records stand now, to search only what came after. */
  checkpoint(): Checkpoint {
    return { logLines: this.logLines.length, records: this.haystack.length };
  }

  /** Leaks in what was logged and recorded since `checkpoint`. */
  findLeaksSince(checkpoint: Checkpoint): Leak[] {
    return this.findLeaks([], checkpoint);
  }

  /** `text` with every form of every secret replaced by its label, so reports do not leak. */
  private mask(text: string): string {
    let out = text;
    const longestFirst = [...this.needles].sort((a, b) => b.value.length - a.value.length);
    for (const needle of longestFirst) out = out.split(needle.value).join(`<${needle.label}>`);
    return out;
  }

  /**
   * Proves the search is live: for every registered secret, a planted copy is found; and the
   * watch did see logs and records (an empty haystack would pass vacuously).
   */
  selfCheck(): { secrets: number; logLines: number; records: number; missed: string[] } {
    const missed: string[] = [];
    for (const [value, label] of this.labels) {
      const planted = this.findLeaks([{ source: 'planted', text: `…${value}…` }]);
      if (!planted.some((l) => l.source === 'planted' && l.secret === label)) missed.push(label);
    }
    return {
      secrets: this.labels.size,
      logLines: this.logLines.length,
      records: this.haystack.length,
      missed,
    };
  }

  /** Parsed log records, for assertions on what was logged. */
  records(): Array<Record<string, unknown> & { level: number; msg?: string }> {
    return this.logLines.map((line) => JSON.parse(line));
  }
}

/** Every textual form a value can take in a log, a response or a bug report. */
function render(value: unknown, depth: number): string[] {
  if (depth > 6) return [];
  if (typeof value === 'string') return [value];
  if (Buffer.isBuffer(value)) return [value.toString('utf8'), value.toString('latin1')];
  const out: string[] = [];
  const tryPush = (f: () => string | undefined) => {
    try {
      const s = f();
      if (s !== undefined) out.push(s);
    } catch {
      // circular structures and exotic objects: the other renderings still count
    }
  };
  if (value instanceof Error) {
    tryPush(() => String(value));
    tryPush(() => value.message);
    tryPush(() => value.stack);
    tryPush(() => JSON.stringify(value));
    tryPush(() => inspect(value, { depth: 8, showHidden: true }));
    const withCause = value as Error & { cause?: unknown; errors?: unknown[] };
    if (withCause.cause !== undefined) out.push(...render(withCause.cause, depth + 1));
    if (Array.isArray(withCause.errors)) {
      for (const inner of withCause.errors) out.push(...render(inner, depth + 1));
    }
    return out;
  }
  tryPush(() => JSON.stringify(value));
  tryPush(() => inspect(value, { depth: 8 }));
  tryPush(() => String(value));
  return out;
}
