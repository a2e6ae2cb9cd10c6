/**
 * Upstream faults, end to end through m2mAuth on Express with a short client deadline
 * (`timeoutMs: 300`, the default retry policy): every way Clerk can fail ends in a 503 (with
 * Clerk's `Retry-After` for a 429) within the deadline × attempts plus a margin, nothing is
 * cached, the next request after healing goes upstream and passes, and no promise is left
 * unhandled. Then recovery: the circuit breaker closes after its trial call, and stale-if-error
 * serves only what its rules allow. Time that matters comes from one injected clock.
 */
import diagnostics from 'node:diagnostics_channel';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { connect, createServer as createNetServer, type Socket } from 'node:net';
import express from 'express';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import {
  type CreateTokenParams,
  createM2MClient,
  type M2MClient,
  type RetryOptions,
} from '../../src/client/index.js';
import { type Emulator, startEmulator } from '../../src/emulator/index.js';
import { m2mAuth, requireMachine } from '../../src/middleware/index.js';
import {
  createTokenVerifier,
  type TokenVerifier,
  VERIFIER_CHANNELS,
  type VerifierBreakerOptions,
  type VerifierCacheOptions,
} from '../../src/verifier/index.js';
import {
  createClock,
  fixedInstance,
  type HttpAnswer,
  httpClient,
  LeakWatch,
  listen,
  until,
} from './support.js';

const watch = new LeakWatch();
const logger = watch.logger;
const clock = createClock();
const instance = fixedInstance();
const http = httpClient(10_000);
/** The per-attempt deadline of the verifier's client. */
const DEADLINE_MS = 300;
/** A hang check, not a benchmark: deadline × attempts + backoff is well under this. */
const BOUND_MS = 3000;

// Anything that escapes the library as an unhandled rejection or exception is collected here.
const escaped: { kind: string; error: unknown }[] = [];
const onRejection = (error: unknown) => escaped.push({ kind: 'unhandledRejection', error });
const onException = (error: unknown) => escaped.push({ kind: 'uncaughtException', error });
process.on('unhandledRejection', onRejection);
process.on('uncaughtException', onException);

let emulator: Emulator;
let minter: M2MClient;
let apiMachineId = '';

beforeAll(async () => {
  watch.secret('instance secret key', instance.instanceSecretKey!);
  for (const m of instance.machines) watch.secret(`${m.name} machine secret key`, m.secretKey);
  emulator = await startEmulator({ ...instance, clock, logger });
  apiMachineId = emulator.machines.api!.id;
  minter = createM2MClient({
    apiUrl: emulator.url,
    machineSecretKey: emulator.machines.caller!.secretKey,
    logger,
  });
});

afterAll(async () => {
  process.off('unhandledRejection', onRejection);
  process.off('uncaughtException', onException);
  await http.close();
  await minter?.close();
  await emulator?.close();
});

async function mint(params: CreateTokenParams = {}) {
  const created = await minter.createToken(params);
  watch.secret('minted token', created.token);
  return created;
}

interface Rig {
  readonly url: string;
  readonly client: M2MClient;
  readonly verifier: TokenVerifier;
  call(token: string): Promise<HttpAnswer>;
  /** Opens `n` keep-alive connections (with requests that never go upstream). */
  warm(n: number): Promise<void>;
}

const rigs: Array<() => Promise<void>> = [];
afterEach(async () => {
  emulator.setLatency(0);
  for (const close of rigs.splice(0).reverse()) await close();
});

/**
 * An Express app with `m2mAuth` + `requireMachine(api)` over its own verifier and client (the
 * instance key, `timeoutMs: 300`, the default retries unless told), sharing the test clock.
 */
async function rig(
  options: {
    apiUrl?: string;
    cache?: VerifierCacheOptions | false;
    breaker?: VerifierBreakerOptions | false;
    clockSkewMs?: number;
    retry?: RetryOptions | false;
    timeoutMs?: number;
  } = {},
): Promise<Rig> {
  const client = createM2MClient({
    apiUrl: options.apiUrl ?? emulator.url,
    secretKey: instance.instanceSecretKey,
    timeoutMs: options.timeoutMs ?? DEADLINE_MS,
    logger,
    ...(options.retry === undefined ? {} : { retry: options.retry }),
  });
  const verifier = createTokenVerifier({
    client,
    anyMachine: true,
    now: clock,
    logger,
    cache: options.cache ?? { ttlMs: 10_000 },
    breaker: options.breaker ?? false,
    ...(options.clockSkewMs === undefined ? {} : { clockSkewMs: options.clockSkewMs }),
  });
  const app = express();
  app.get(
    '/r',
    m2mAuth({ verifier, logger, onError: watch.onError }),
    requireMachine(apiMachineId),
    (req, res) => {
      res.json({ auth: req.m2m });
    },
  );
  const server = await listen(app);
  rigs.push(async () => {
    watch.record('verifier.stats()', verifier.stats());
    await server.close();
    await verifier.close();
    await client.close();
  });
  const url = `${server.url}/r`;
  return {
    url,
    client,
    verifier,
    async call(token: string) {
      const answer = await http.get(url, { authorization: `Bearer ${token}` });
      watch.recordAnswer(`GET /r -> ${answer.status}`, answer);
      return answer;
    },
    async warm(n: number) {
      const answers = await Promise.all(
        Array.from({ length: n }, () => http.get(url, { authorization: 'Bearer !!' })),
      );
      for (const answer of answers) expect(answer.status).toBe(400);
    },
  };
}

/** A 503 from m2mAuth: `temporarily_unavailable`, no challenge, `Retry-After` only when given. */
function expectUnavailable(answer: HttpAnswer, retryAfter?: number): void {
  expect(answer.status).toBe(503);
  expect(answer.json).toEqual({
    error: 'temporarily_unavailable',
    error_description: expect.any(String),
  });
  expect(answer.headers['www-authenticate']).toBeUndefined();
  expect(answer.headers['retry-after']).toBe(
    retryAfter === undefined ? undefined : String(retryAfter),
  );
}

/** A TCP relay in front of the emulator: stop it to refuse connections, restart it to heal. */
async function startRelay(target: number, port = 0) {
  const sockets = new Set<Socket>();
  const server = createNetServer((inbound) => {
    const outbound = connect(target, '127.0.0.1');
    for (const s of [inbound, outbound]) sockets.add(s);
    const done = () => {
      inbound.destroy();
      outbound.destroy();
      sockets.delete(inbound);
      sockets.delete(outbound);
    };
    inbound.pipe(outbound).pipe(inbound);
    for (const s of [inbound, outbound]) {
      s.on('error', done);
      s.on('close', done);
    }
  });
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
}

// ---------------------------------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------------------------------

interface FaultCase {
  name: string;
  inject(): void;
  heal?(): void;
  /**
   * Upstream attempts the default retry policy makes (2 retries, 100–2000 ms backoff):
   * 502/503/504 and connection errors are retried; a timeout, a 500, a 401/403, a 429 whose
   * `Retry-After` exceeds `maxDelayMs`, and an unreadable 200 are not.
   */
  attempts: number;
  retryAfter?: number;
  /** The deadline had to run out: the 503 cannot come before it. */
  waitsForDeadline?: boolean;
}

const verifyOnly = { operation: 'verify' } as const;
const FAULTS: FaultCase[] = [
  {
    name: 'latency past the deadline (setLatency 1000)',
    inject: () => emulator.setLatency(1000),
    heal: () => emulator.setLatency(0),
    attempts: 1,
    waitsForDeadline: true,
  },
  {
    name: "an answer that never comes ('hang')",
    inject: () => emulator.failNext(1, 'hang', verifyOnly),
    attempts: 1,
    waitsForDeadline: true,
  },
  { name: '500', inject: () => emulator.failNext(1, 500, verifyOnly), attempts: 1 },
  { name: '502', inject: () => emulator.failNext(3, 502, verifyOnly), attempts: 3 },
  { name: '503', inject: () => emulator.failNext(3, 503, verifyOnly), attempts: 3 },
  { name: '504', inject: () => emulator.failNext(3, 504, verifyOnly), attempts: 3 },
  {
    name: '429 with Retry-After: 3',
    inject: () => emulator.failNext(1, 429, { ...verifyOnly, retryAfter: 3 }),
    attempts: 1,
    retryAfter: 3,
    // Clerk's 429 pauses every upstream call for its Retry-After.
    heal: () => clock.advance(3_000),
  },
  {
    name: '401 (Clerk refuses our key)',
    inject: () => emulator.failNext(1, 401, verifyOnly),
    attempts: 1,
  },
  { name: '403', inject: () => emulator.failNext(1, 403, verifyOnly), attempts: 1 },
  {
    name: "connection reset ('reset')",
    inject: () => emulator.failNext(3, 'reset', verifyOnly),
    attempts: 3,
  },
  {
    name: "reset mid-body ('reset-mid-body')",
    inject: () => emulator.failNext(3, 'reset-mid-body', verifyOnly),
    attempts: 3,
  },
  {
    name: "a body that is not JSON ('not-json')",
    inject: () => emulator.failNext(1, 'not-json', verifyOnly),
    attempts: 1,
  },
  {
    name: "JSON of the wrong shape ('wrong-shape')",
    inject: () => emulator.failNext(1, 'wrong-shape', verifyOnly),
    attempts: 1,
  },
];

describe('every upstream fault ends in a 503, caches nothing, and heals', () => {
  test.each(FAULTS)('$name', async (fault) => {
    const r = await rig();
    const { token } = await mint();
    const before = emulator.calls.verify;

    fault.inject();
    const started = performance.now();
    const failed = await r.call(token);
    const elapsed = performance.now() - started;
    expectUnavailable(failed, fault.retryAfter);
    expect(elapsed).toBeLessThan(BOUND_MS);
    if (fault.waitsForDeadline) expect(elapsed).toBeGreaterThanOrEqual(DEADLINE_MS - 20);
    expect(emulator.calls.verify - before, 'upstream attempts').toBe(fault.attempts);
    expect(r.verifier.stats()).toMatchObject({ size: 0, upstreamErrors: 1, hits: 0 });

    fault.heal?.();
    const healed = await r.call(token);
    expect(healed.status).toBe(200);
    expect(healed.json.auth).toMatchObject({ scopes: [apiMachineId] });
    expect(emulator.calls.verify - before, 'the next request went upstream').toBe(
      fault.attempts + 1,
    );
    expect(r.verifier.stats()).toMatchObject({ size: 1, upstreamCalls: 2 });
  });

  test('connection refused (upstream down), then back on the same port', async () => {
    const relay = await startRelay(Number(new URL(emulator.url).port));
    const r = await rig({ apiUrl: `http://127.0.0.1:${relay.port}` });
    const warm = await mint();
    expect((await r.call(warm.token)).status).toBe(200);
    const { token } = await mint();
    const before = emulator.calls.verify;

    await relay.close();
    const started = performance.now();
    const failed = await r.call(token);
    expectUnavailable(failed);
    expect(performance.now() - started).toBeLessThan(BOUND_MS);
    expect(emulator.calls.verify).toBe(before);
    expect(r.verifier.stats()).toMatchObject({ size: 1, upstreamErrors: 1 });

    const back = await startRelay(Number(new URL(emulator.url).port), relay.port);
    try {
      const healed = await r.call(token);
      expect(healed.status).toBe(200);
      expect(emulator.calls.verify - before).toBe(1);
    } finally {
      await back.close();
    }
  });

  test('concurrent requests for one token share one failing call, then one good one', async () => {
    // A deadline and a latency long enough for the burst to arrive while the call is in flight.
    const r = await rig({ timeoutMs: 3000 });
    const { token } = await mint();
    await r.warm(12);
    const before = emulator.calls.verify;
    emulator.failNext(1, 500, verifyOnly);
    emulator.setLatency(500);
    const answers = await Promise.all(Array.from({ length: 12 }, () => r.call(token)));
    for (const answer of answers) expectUnavailable(answer);
    expect(emulator.calls.verify - before).toBe(1);
    expect(r.verifier.stats()).toMatchObject({ size: 0, coalesced: 11 });

    const healed = await Promise.all(Array.from({ length: 12 }, () => r.call(token)));
    expect(healed.map((a) => a.status)).toEqual(Array(12).fill(200));
    expect(emulator.calls.verify - before).toBe(2);
  });

  test('optional auth (required: false) never turns an outage or a bad token into a pass', async () => {
    const client = createM2MClient({
      apiUrl: emulator.url,
      secretKey: instance.instanceSecretKey,
      timeoutMs: DEADLINE_MS,
      logger,
    });
    const verifier = createTokenVerifier({
      client,
      anyMachine: true,
      now: clock,
      logger,
      breaker: false,
    });
    const app = express();
    app.get(
      '/o',
      m2mAuth({ verifier, logger, required: false, onError: watch.onError }),
      (req, res) => {
        res.json({ anonymous: req.m2m === undefined });
      },
    );
    const server = await listen(app);
    rigs.push(async () => {
      await server.close();
      await verifier.close();
      await client.close();
    });
    const get = async (headers: Record<string, string>) => {
      const answer = await http.get(`${server.url}/o`, headers);
      watch.recordAnswer(`optional auth -> ${answer.status}`, answer);
      return answer;
    };
    const { token } = await mint();

    emulator.failNext(1, 500, verifyOnly);
    expectUnavailable(await get({ authorization: `Bearer ${token}` }));
    emulator.setLatency(1000);
    expectUnavailable(await get({ authorization: `Bearer ${token}` }));
    emulator.setLatency(0);
    expect((await get({ authorization: 'Bearer mt_not-a-real-token-at-all' })).status).toBe(401);
    expect((await get({ authorization: 'Bearer !!' })).status).toBe(400);
    expect((await get({ authorization: `Basic ${token}` })).status).toBe(400);
    const anonymous = await get({});
    expect(anonymous.status).toBe(200);
    expect(anonymous.json).toEqual({ anonymous: true });
    const verified = await get({ authorization: `Bearer ${token}` });
    expect(verified.json).toEqual({ anonymous: false });
  });

  test('a client that went away mid-verification leaves nothing behind', async () => {
    const r = await rig();
    const { token } = await mint();
    emulator.setLatency(200);
    const before = emulator.calls.verify;
    const controller = new AbortController();
    const abandoned = http.agent
      .request({
        origin: new URL(r.url).origin,
        path: '/r',
        method: 'GET',
        headers: { authorization: `Bearer ${token}` },
        signal: controller.signal,
      })
      .catch((err: unknown) => err);
    await until(() => emulator.calls.verify > before, 'the verify call to arrive');
    controller.abort();
    expect(await abandoned).toBeInstanceOf(Error);
    emulator.setLatency(0);
    // The shared call finishes for nobody; its answer is kept for the next caller.
    await until(() => r.verifier.stats().size === 1, 'the abandoned call to settle', 2000);
    const next = await r.call(token);
    expect(next.status).toBe(200);
    expect(emulator.calls.verify - before).toBe(1);
  });
});

// ---------------------------------------------------------------------------------------------
// Recovery: circuit breaker
// ---------------------------------------------------------------------------------------------

describe('recovery', () => {
  test('the circuit breaker opens after 2 failures, fails fast, and closes after its trial', async () => {
    const states: string[] = [];
    const onState = (message: unknown) => states.push((message as { state: string }).state);
    diagnostics.subscribe(VERIFIER_CHANNELS.breaker, onState);
    try {
      const cooldownMs = 1000;
      // A longer deadline: the half-open step below holds the trial call upstream for a while.
      const r = await rig({ breaker: { failures: 2, cooldownMs }, timeoutMs: 3000 });
      await r.warm(4);
      const [a, b, c, d, e] = await Promise.all([mint(), mint(), mint(), mint(), mint()]);
      const calls = () => emulator.calls.verify;
      let before = calls();

      // Two consecutive failures open it.
      emulator.failNext(2, 500, verifyOnly);
      expectUnavailable(await r.call(a!.token));
      expectUnavailable(await r.call(b!.token));
      expect(calls() - before).toBe(2);
      expect(states).toEqual(['open']);

      // Open: refused at once, without asking Clerk, until the cooldown has passed, with the
      // rest of the cooldown as Retry-After (whole seconds, at least 1).
      before = calls();
      expectUnavailable(await r.call(c!.token), 1);
      clock.advance(cooldownMs - 1);
      expectUnavailable(await r.call(c!.token), 1);
      expect(calls() - before).toBe(0);

      // Cooldown over: one trial call goes upstream; Clerk is healthy, so it closes.
      clock.advance(1);
      expect((await r.call(c!.token)).status).toBe(200);
      expect(calls() - before).toBe(1);
      expect(states).toEqual(['open', 'half-open', 'closed']);

      // Closed again: one failure is just a failure, and the next call goes upstream.
      before = calls();
      emulator.failNext(1, 500, verifyOnly);
      expectUnavailable(await r.call(a!.token));
      expect((await r.call(b!.token)).status).toBe(200);
      expect(calls() - before).toBe(2);

      // A failed trial opens it again at once.
      emulator.failNext(2, 500, verifyOnly);
      expectUnavailable(await r.call(d!.token));
      expectUnavailable(await r.call(e!.token));
      clock.advance(cooldownMs);
      before = calls();
      emulator.failNext(1, 500, verifyOnly);
      expectUnavailable(await r.call(d!.token));
      expect(calls() - before).toBe(1);
      expectUnavailable(await r.call(e!.token), 1);
      expect(calls() - before).toBe(1);

      // Half-open lets exactly one trial through, even under concurrency.
      clock.advance(cooldownMs);
      emulator.setLatency(500);
      const [first, second] = await Promise.all([r.call(d!.token), r.call(e!.token)]);
      emulator.setLatency(0);
      expect([first!.status, second!.status].sort()).toEqual([200, 503]);
      expect(calls() - before).toBe(2);
      expect(states.slice(-3)).toEqual(['open', 'half-open', 'closed']);

      // And the one refused during the trial passes now.
      const refused = first!.status === 503 ? d! : e!;
      expect((await r.call(refused.token)).status).toBe(200);
    } finally {
      diagnostics.unsubscribe(VERIFIER_CHANNELS.breaker, onState);
    }
  });

  // -------------------------------------------------------------------------------------------
  // Recovery: stale-if-error
  // -------------------------------------------------------------------------------------------

  const STALE = { ttlMs: 1000, staleIfErrorMs: 2000, negativeTtlMs: 500 };

  test('stale-if-error serves a good answer within its window only, without sliding', async () => {
    const r = await rig({ cache: STALE, clockSkewMs: 0 });
    const { token } = await mint();
    const t0 = clock();
    expect((await r.call(token)).status).toBe(200);
    const before = emulator.calls.verify;

    // Fresh: no upstream call at all.
    clock.set(t0 + 999);
    expect((await r.call(token)).status).toBe(200);
    expect(emulator.calls.verify).toBe(before);

    // Stale and Clerk failing: served, again and again, but never past fresh + window.
    for (const at of [1000, 1500, 2500, 2999]) {
      clock.set(t0 + at);
      emulator.failNext(1, 500, verifyOnly);
      const stale = await r.call(token);
      expect(stale.status, `at +${at} ms`).toBe(200);
    }
    expect(emulator.calls.verify - before).toBe(4);
    expect(r.verifier.stats().staleServed).toBe(4);

    clock.set(t0 + 3000);
    emulator.failNext(1, 500, verifyOnly);
    expectUnavailable(await r.call(token));

    // Clerk healthy again: a fresh answer.
    expect((await r.call(token)).status).toBe(200);
    expect(emulator.calls.verify - before).toBe(6);
  });

  test('stale-if-error never serves a token past its expiration', async () => {
    const r = await rig({ cache: { ...STALE, staleIfErrorMs: 60_000 }, clockSkewMs: 0 });
    const { token, expiration } = await mint({ secondsUntilExpiration: 3 });
    expect(expiration).toBe(clock() + 3000);
    expect((await r.call(token)).status).toBe(200);

    clock.set(expiration! - 1);
    emulator.failNext(3, 503, verifyOnly);
    expect((await r.call(token)).status).toBe(200);

    clock.set(expiration!);
    emulator.failNext(3, 503, verifyOnly);
    expectUnavailable(await r.call(token));
    // And with Clerk answering: refused as expired.
    expect((await r.call(token)).status).toBe(401);
  });

  test('stale-if-error never serves a token revoked through the same client', async () => {
    const r = await rig({ cache: STALE, clockSkewMs: 0 });
    const { token, id } = await mint();
    const t0 = clock();
    expect((await r.call(token)).status).toBe(200);

    clock.set(t0 + 1500);
    emulator.failNext(1, 500, verifyOnly);
    expect((await r.call(token)).status).toBe(200);

    // Revoked through the verifier's own client, while Clerk's verify still fails.
    await r.client.revokeToken({ m2mTokenId: id });
    const before = emulator.calls.verify;
    emulator.failNext(1, 500, verifyOnly);
    const refused = await r.call(token);
    expect(refused.status).toBe(401);
    expect(emulator.calls.verify).toBe(before);

    // Still within the stale window, once the remembered refusal has expired, with Clerk still
    // failing (the fault above is still queued): unavailable, never the stale good answer.
    clock.set(t0 + 2900);
    expectUnavailable(await r.call(token));
    // Clerk healthy: refused.
    expect((await r.call(token)).status).toBe(401);
  });

  test('stale-if-error has nothing to serve for a token never verified: 503', async () => {
    const r = await rig({ cache: STALE, clockSkewMs: 0 });
    const { token } = await mint();
    emulator.failNext(1, 500, verifyOnly);
    expectUnavailable(await r.call(token));
    expect(r.verifier.stats().staleServed).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------------
// The end of the file: nothing escaped, nothing leaked
// ---------------------------------------------------------------------------------------------

test('no promise was left unhandled and no exception escaped', async () => {
  // Let late timers (emulator latency, abandoned calls) fire first.
  await new Promise((resolve) => setTimeout(resolve, 1200));
  expect(escaped.map((e) => `${e.kind}: ${String(e.error)}`)).toEqual([]);
});

test('no token or secret key appears in logs, errors, answers or stats', () => {
  const self = watch.selfCheck();
  expect(self.missed).toEqual([]);
  expect(self.secrets).toBeGreaterThanOrEqual(10);
  expect(self.records).toBeGreaterThan(0);
  // Every part logged into the captured logger.
  const components = new Set(watch.records().map((r) => r.component));
  for (const component of ['m2m-emulator', 'm2m-verifier', 'm2m-auth', undefined]) {
    expect(components.has(component), `log lines of ${component ?? 'the client'}`).toBe(true);
  }
  expect(watch.findLeaks()).toEqual([]);
});
