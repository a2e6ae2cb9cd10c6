import { Agent, request as httpRequest } from 'node:http';
import { createClerkClient } from '@clerk/backend';
import { pino } from 'pino';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import type { Emulator } from '../../src/emulator/index.js';
import {
  call,
  closeEmulators,
  createToken,
  expectClerkError,
  manualClock,
  start,
} from './helpers.js';

afterEach(closeEmulators);

const createAs = (emulator: Emulator, machine = 'caller') =>
  call(emulator, 'POST', '/m2m_tokens', { key: emulator.machines[machine]!.secretKey, body: {} });
const verifyRaw = (emulator: Emulator, token = 'mt_unknown') =>
  call(emulator, 'POST', '/m2m_tokens/verify', {
    key: emulator.instanceSecretKey,
    body: { token },
  });

/** Resolves to 'pending' if the promise has not settled after `ms`. */
async function settledWithin<T>(promise: Promise<T>, ms: number): Promise<T | 'pending'> {
  let timer: NodeJS.Timeout | undefined;
  const pending = new Promise<'pending'>((resolve) => {
    timer = setTimeout(() => resolve('pending'), ms);
  });
  try {
    return await Promise.race([promise, pending]);
  } finally {
    clearTimeout(timer);
  }
}

describe('failNext with a status', () => {
  it('answers the next N requests with the status and a Clerk body, then recovers', async () => {
    const emulator = await start();
    emulator.failNext(2, 503);
    const first = await createAs(emulator);
    const second = await verifyRaw(emulator);
    expectClerkError(first, 503, 'service_unavailable');
    expectClerkError(second, 503, 'service_unavailable');
    expect(first.headers['retry-after']).toBeUndefined();
    expect((await createAs(emulator)).status).toBe(201);
    expect(emulator.calls).toMatchObject({ create: 2, verify: 1 });
  });

  it('fails before authentication and validation', async () => {
    const emulator = await start();
    emulator.failNext(1, 500);
    const res = await call(emulator, 'POST', '/m2m_tokens', { body: '{bad json' });
    expectClerkError(res, 500, 'internal_clerk_error');
    const after = await call(emulator, 'POST', '/m2m_tokens', { body: '{bad json' });
    expectClerkError(after, 401, 'authorization_missing');
  });

  it("sends Retry-After when asked, which Clerk's SDK reports", async () => {
    const emulator = await start();
    emulator.failNext(1, 429, { retryAfter: 7 });
    const clerk = createClerkClient({
      secretKey: emulator.instanceSecretKey,
      machineSecretKey: emulator.machines.caller!.secretKey,
      apiUrl: emulator.url,
    });
    const err = await clerk.m2m.createToken().catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 429, retryAfter: 7 });
    expect((err as { errors: { code: string }[] }).errors[0]!.code).toBe('too_many_requests');
    expect((await clerk.m2m.createToken()).subject).toBe(emulator.machines.caller!.id);
  });

  it('uses a generic code for statuses without a well-known one', async () => {
    const emulator = await start();
    emulator.failNext(1, 418);
    expectClerkError(await createAs(emulator), 418, 'emulated_fault');
  });

  it('targets one operation and leaves the others alone', async () => {
    const emulator = await start();
    emulator.failNext(1, 502, { operation: 'verify' });
    expect((await createAs(emulator)).status).toBe(201);
    expect(
      (await call(emulator, 'GET', '/v1/jwks', { key: emulator.instanceSecretKey })).status,
    ).toBe(200);
    expectClerkError(await verifyRaw(emulator), 502, 'bad_gateway');
    expect((await verifyRaw(emulator)).status).toBe(404);
  });

  it('queues several calls first in, first out', async () => {
    const emulator = await start();
    emulator.failNext(1, 500);
    emulator.failNext(2, 504);
    expect((await createAs(emulator)).status).toBe(500);
    expect((await createAs(emulator)).status).toBe(504);
    expect((await verifyRaw(emulator)).status).toBe(504);
    expect((await createAs(emulator)).status).toBe(201);
  });
});

describe('failNext with a FaultKind', () => {
  it('reset: destroys the socket without an answer', async () => {
    const emulator = await start();
    emulator.failNext(1, 'reset');
    await expect(
      request(`${emulator.url}/m2m_tokens/verify`, { method: 'POST', body: '{}' }),
    ).rejects.toThrow();
    expect((await createAs(emulator)).status).toBe(201);
  });

  it('reset-mid-body: 200 headers with a content-length, half the body, then a dead socket', async () => {
    const emulator = await start();
    emulator.failNext(1, 'reset-mid-body');
    const res = await request(`${emulator.url}/m2m_tokens`, {
      method: 'POST',
      headers: { authorization: `Bearer ${emulator.machines.caller!.secretKey}` },
    });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('application/json');
    const declared = Number(res.headers['content-length']);
    expect(declared).toBeGreaterThan(0);
    await expect(res.body.text()).rejects.toThrow();
    expect((await createAs(emulator)).status).toBe(201);
  });

  it('not-json: 200 text/html', async () => {
    const emulator = await start();
    emulator.failNext(1, 'not-json');
    const res = await createAs(emulator);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('text/html');
    expect(res.text).toMatch(/<html>/);
  });

  it('wrong-shape: 200 application/json {"ok":true}', async () => {
    const emulator = await start();
    emulator.failNext(1, 'wrong-shape');
    const res = await createAs(emulator);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('application/json');
    expect(res.json).toEqual({ ok: true });
  });

  it('hang: never answers, and close() ends it promptly', async () => {
    const emulator = await start();
    emulator.failNext(1, 'hang');
    const hanging = createAs(emulator).catch((err: Error) => err);
    expect(await settledWithin(hanging, 300)).toBe('pending');
    // Other requests are unaffected while one hangs.
    expect((await createAs(emulator)).status).toBe(201);
    const started = performance.now();
    await emulator.close();
    expect(performance.now() - started).toBeLessThan(2000);
    expect(await settledWithin(hanging, 2000)).toBeInstanceOf(Error);
  });
});

describe('latency', () => {
  it('delays every answer, errors included', async () => {
    const emulator = await start({ latencyMs: 150 });
    for (const send of [() => createAs(emulator), () => call(emulator, 'GET', '/nope')]) {
      const started = performance.now();
      await send();
      expect(performance.now() - started).toBeGreaterThanOrEqual(140);
    }
  });

  it('delays requests concurrently, not one after another', async () => {
    const emulator = await start();
    emulator.setLatency(200);
    const started = performance.now();
    const answers = await Promise.all(Array.from({ length: 10 }, () => createAs(emulator)));
    const elapsed = performance.now() - started;
    expect(answers.every((r) => r.status === 201)).toBe(true);
    expect(elapsed).toBeGreaterThanOrEqual(190);
    expect(elapsed).toBeLessThan(1500);
  });

  it('setLatency(0) removes the delay', async () => {
    const emulator = await start({ latencyMs: 3000 });
    emulator.setLatency(0);
    const started = performance.now();
    await createAs(emulator);
    expect(performance.now() - started).toBeLessThan(2000);
  });

  it('delays injected faults too', async () => {
    const emulator = await start({ latencyMs: 150 });
    emulator.failNext(1, 503);
    const started = performance.now();
    expect((await createAs(emulator)).status).toBe(503);
    expect(performance.now() - started).toBeGreaterThanOrEqual(140);
  });
});

describe('rate limit', () => {
  it('answers 429 with Retry-After past the limit, across keys and routes, until the window ends', async () => {
    const clock = manualClock();
    const emulator = await start({ clock: clock.now, rateLimit: { limit: 3, windowMs: 10_000 } });
    expect((await createAs(emulator, 'caller')).status).toBe(201);
    expect((await createAs(emulator, 'api')).status).toBe(201);
    expect((await verifyRaw(emulator)).status).toBe(404);

    const limited = await createAs(emulator);
    expectClerkError(limited, 429, 'too_many_requests');
    expect(limited.headers['retry-after']).toBe('10');
    // Unauthenticated requests are limited too: the bucket is the instance's.
    expectClerkError(
      await call(emulator, 'POST', '/m2m_tokens/verify', { body: {} }),
      429,
      'too_many_requests',
    );
    // The JWKS is not rate limited.
    expect(
      (await call(emulator, 'GET', '/v1/jwks', { key: emulator.instanceSecretKey })).status,
    ).toBe(200);

    clock.advance(4_500);
    expect((await createAs(emulator)).headers['retry-after']).toBe('6');
    clock.advance(5_499); // 1 ms left in the window
    expect((await createAs(emulator)).headers['retry-after']).toBe('1');
    clock.advance(1);
    expect((await createAs(emulator)).status).toBe(201);
  });

  it('can be turned on, changed and off at run time', async () => {
    const emulator = await start();
    emulator.setRateLimit({ limit: 1, windowMs: 60_000 });
    expect((await createAs(emulator)).status).toBe(201);
    expect((await createAs(emulator)).status).toBe(429);
    emulator.setRateLimit(false);
    for (let i = 0; i < 5; i++) expect((await createAs(emulator)).status).toBe(201);
  });

  it("is reported by Clerk's SDK as a 429 with retryAfter", async () => {
    const emulator = await start({ rateLimit: { limit: 1, windowMs: 30_000 } });
    const clerk = createClerkClient({
      secretKey: emulator.instanceSecretKey,
      machineSecretKey: emulator.machines.caller!.secretKey,
      apiUrl: emulator.url,
    });
    await clerk.m2m.createToken();
    const err = await clerk.m2m.createToken().catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 429 });
    expect((err as { retryAfter: number }).retryAfter).toBeGreaterThanOrEqual(1);
  });
});

describe('calls', () => {
  it('counts requests per operation that reached routing, whatever their outcome', async () => {
    const emulator = await start();
    await createAs(emulator); // 201
    await call(emulator, 'POST', '/m2m_tokens', { body: {} }); // 401
    await call(emulator, 'POST', '/v1/m2m_tokens', {
      key: emulator.machines.caller!.secretKey,
      body: [],
    }); // 400
    await verifyRaw(emulator); // 404
    await call(emulator, 'GET', '/m2m_tokens', { key: emulator.instanceSecretKey }); // 400
    await call(emulator, 'POST', `/m2m_tokens/mt_${'1'.repeat(32)}/revoke`, { body: {} }); // 401
    await call(emulator, 'GET', '/jwks'); // 401
    await call(emulator, 'GET', '/unknown'); // not an operation
    await call(emulator, 'DELETE', '/m2m_tokens'); // 405: not an operation
    emulator.failNext(1, 503);
    await verifyRaw(emulator); // injected 503
    expect(emulator.calls).toEqual({ create: 3, list: 1, revoke: 1, verify: 2, jwks: 1 });
  });
});

describe('reset', () => {
  it('drops tokens, zeroes counters, clears faults and restores latency and rate limit', async () => {
    const emulator = await start({ latencyMs: 0, rateLimit: { limit: 100, windowMs: 60_000 } });
    const { caller } = emulator.machines;
    const token = await createToken(emulator, 'caller');
    emulator.failNext(5, 500);
    emulator.setLatency(3000);
    emulator.setRateLimit({ limit: 1, windowMs: 60_000 });

    emulator.reset();

    expect(emulator.calls).toEqual({ create: 0, list: 0, revoke: 0, verify: 0, jwks: 0 });
    const started = performance.now();
    expect((await verifyRaw(emulator, token.token)).status).toBe(404); // token gone, no fault
    expect(performance.now() - started).toBeLessThan(2000); // latency back to 0, not 3 s
    // Rate limit back to 100/min, not 1/min.
    for (let i = 0; i < 3; i++) expect((await createAs(emulator)).status).toBe(201);
    // Machines and keys are unchanged.
    expect(emulator.machines.caller).toEqual(caller);
    const listed = await call(emulator, 'GET', `/m2m_tokens?subject=${caller!.id}`, {
      key: emulator.instanceSecretKey,
    });
    expect(listed.json.total_count).toBe(3);
    expect(emulator.calls).toEqual({ create: 3, list: 1, revoke: 0, verify: 1, jwks: 0 });
  });
});

describe('close', () => {
  it('does not hang on an open keep-alive connection, and is idempotent', async () => {
    const emulator = await start();
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const status = await new Promise<number>((resolve, reject) => {
        const req = httpRequest(`${emulator.url}/v1/jwks`, {
          agent,
          headers: { authorization: `Bearer ${emulator.instanceSecretKey}` },
        });
        req.on('response', (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        });
        req.on('error', reject);
        req.end();
      });
      expect(status).toBe(200);
      // The socket is parked in the agent, still open.
      expect(Object.values(agent.freeSockets).flat()).toHaveLength(1);

      const started = performance.now();
      await emulator.close();
      expect(performance.now() - started).toBeLessThan(2000);
      await emulator.close();
      await expect(request(`${emulator.url}/v1/jwks`)).rejects.toThrow();
    } finally {
      agent.destroy();
    }
  });

  it('releases requests waiting on latency', async () => {
    const emulator = await start({ latencyMs: 5_000 });
    const waiting = createAs(emulator).catch((err: Error) => err);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const started = performance.now();
    await emulator.close();
    expect(performance.now() - started).toBeLessThan(2000);
    expect(await settledWithin(waiting, 2000)).not.toBe('pending');
  });
});

describe('logger', () => {
  it('logs one debug line per request, without keys or tokens', async () => {
    const lines: string[] = [];
    const logger = pino({ level: 'debug' }, { write: (line: string) => lines.push(line) });
    const emulator = await start({ logger });
    const token = await createToken(emulator, 'caller');
    await verifyRaw(emulator, token.token);
    await call(emulator, 'GET', '/nope');
    const requests = lines.map((l) => JSON.parse(l)).filter((l) => l.msg === 'emulator request');
    expect(requests.map((l) => [l.operation, l.status])).toEqual([
      ['create', 201],
      ['verify', 200],
      [undefined, 404],
    ]);
    const all = lines.join('\n');
    for (const secret of [
      emulator.instanceSecretKey,
      emulator.machines.caller!.secretKey,
      token.token,
    ]) {
      expect(all).not.toContain(secret);
    }
  });
});
