/**
 * Revocation and correctness at the exact millisecond: a token revoked through the client a
 * verifier uses is refused by that instance on the very next request; a second instance (its own
 * verifier and cache, `cache.ttlMs: 1000`) accepts it until its revocation budget has passed and
 * not a millisecond longer; an expired token is refused the millisecond its expiration passes;
 * a token minted for another machine is refused by `requireMachine`. One injected clock drives
 * the emulator and every verifier.
 */
import express from 'express';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { type CreateTokenParams, createM2MClient, type M2MClient } from '../../src/client/index.js';
import { type Emulator, startEmulator } from '../../src/emulator/index.js';
import { m2mAuth, requireMachine } from '../../src/middleware/index.js';
import {
  createTokenVerifier,
  type TokenVerifier,
  type TokenVerifierOptions,
} from '../../src/verifier/index.js';
import {
  challengePattern,
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
const http = httpClient();
const CHALLENGE = challengePattern('api');

let emulator: Emulator;
/** Mints as `caller`: tokens scoped to `api`. */
let minter: M2MClient;
/** Mints as `other`: tokens scoped to `caller` only. */
let otherMinter: M2MClient;
/** The instance key, unrelated to any verifier: revocations "elsewhere". */
let admin: M2MClient;
const closers: Array<() => Promise<void>> = [];

beforeAll(async () => {
  watch.secret('instance secret key', instance.instanceSecretKey!);
  for (const m of instance.machines) watch.secret(`${m.name} machine secret key`, m.secretKey);
  emulator = await startEmulator({ ...instance, clock, logger });
  const client = (key: { machineSecretKey?: string; secretKey?: string }) => {
    const c = createM2MClient({ apiUrl: emulator.url, logger, ...key });
    closers.push(() => c.close());
    return c;
  };
  minter = client({ machineSecretKey: emulator.machines.caller!.secretKey });
  otherMinter = client({ machineSecretKey: emulator.machines.other!.secretKey });
  admin = client({ secretKey: emulator.instanceSecretKey });
});

afterAll(async () => {
  for (const close of closers.splice(0).reverse()) await close();
  await http.close();
  await emulator?.close();
});

async function mint(params: CreateTokenParams = {}, as = minter) {
  const created = await as.createToken(params);
  watch.secret('minted token', created.token);
  return created;
}

interface Instance {
  readonly name: string;
  readonly client: M2MClient;
  readonly verifier: TokenVerifier;
  call(token: string): Promise<HttpAnswer>;
}

/**
 * One service instance: its own client (the instance key unless told), verifier and in-process
 * cache, behind an Express app with `m2mAuth` + `requireMachine(api)`.
 */
async function service(
  name: string,
  options: Omit<TokenVerifierOptions, 'client'> & { key?: string } = {},
): Promise<Instance> {
  const { key, ...verifierOptions } = options;
  const client = createM2MClient({
    apiUrl: emulator.url,
    ...(key === undefined ? { secretKey: emulator.instanceSecretKey } : { machineSecretKey: key }),
    logger,
  });
  const verifier = createTokenVerifier({
    client,
    anyMachine: true,
    now: clock,
    logger,
    ...verifierOptions,
  });
  const app = express();
  app.get(
    '/r',
    m2mAuth({ verifier, logger, onError: watch.onError }),
    requireMachine(emulator.machines.api!.id),
    (req, res) => {
      res.json({ auth: req.m2m });
    },
  );
  const server = await listen(app);
  closers.push(async () => {
    watch.record(`${name} verifier.stats()`, verifier.stats());
    await server.close();
    await verifier.close();
    await client.close();
  });
  return {
    name,
    client,
    verifier,
    async call(token: string) {
      const answer = await http.get(`${server.url}/r`, { authorization: `Bearer ${token}` });
      watch.recordAnswer(`${name} GET /r -> ${answer.status}`, answer);
      return answer;
    },
  };
}

function expectRefused(answer: HttpAnswer, what: string): void {
  expect(answer.status, what).toBe(401);
  expect(answer.json).toEqual({ error: 'invalid_token', error_description: expect.any(String) });
  expect(answer.headers['www-authenticate']).toMatch(CHALLENGE);
  expect(answer.headers['www-authenticate']).toContain('error="invalid_token"');
}

function expectAccepted(answer: HttpAnswer, what: string, id?: string): void {
  expect(answer.status, what).toBe(200);
  if (id !== undefined) expect(answer.json.auth.id).toBe(id);
}

describe('revocation', () => {
  test('revoked through the verifier’s client: refused by that instance on the very next request; a second instance refuses it once its TTL has passed', async () => {
    const first = await service('first', { cache: { ttlMs: 1000 } });
    const second = await service('second', { cache: { ttlMs: 1000 } });
    const { token, id } = await mint();
    const t0 = clock();
    expectAccepted(await first.call(token), 'first, before', id);
    expectAccepted(await second.call(token), 'second, before', id);

    await first.client.revokeToken({ m2mTokenId: id });
    const before = emulator.calls.verify;
    expectRefused(await first.call(token), 'first, the very next request');
    expect(emulator.calls.verify, 'first refused it without asking Clerk').toBe(before);

    expectAccepted(await second.call(token), 'second, same millisecond', id);
    clock.set(t0 + 999);
    expectAccepted(await second.call(token), 'second at +999 ms', id);
    expect(emulator.calls.verify, 'second served it from its cache').toBe(before);
    expectRefused(await first.call(token), 'first at +999 ms');

    clock.set(t0 + 1000);
    expectRefused(await second.call(token), 'second at +1000 ms');
    expect(emulator.calls.verify - before).toBe(1);
    expectRefused(await first.call(token), 'first at +1000 ms');

    // Long after: still refused everywhere.
    clock.set(t0 + 60_000);
    expectRefused(await first.call(token), 'first at +60 s');
    expectRefused(await second.call(token), 'second at +60 s');
  });

  test('revoked elsewhere (another client): both instances refuse it at +1000 ms, not before', async () => {
    const first = await service('first', { cache: { ttlMs: 1000 } });
    const second = await service('second', { cache: { ttlMs: 1000 } });
    const { token, id } = await mint();
    const t0 = clock();
    expectAccepted(await first.call(token), 'first, before');
    expectAccepted(await second.call(token), 'second, before');
    await admin.revokeToken({ m2mTokenId: id, revocationReason: 'rotated' });
    clock.set(t0 + 999);
    expectAccepted(await first.call(token), 'first at +999 ms');
    expectAccepted(await second.call(token), 'second at +999 ms');
    clock.set(t0 + 1000);
    expectRefused(await first.call(token), 'first at +1000 ms');
    expectRefused(await second.call(token), 'second at +1000 ms');
  });

  test('revoked through the verifier’s client before that instance ever saw it', async () => {
    const first = await service('first', { cache: { ttlMs: 1000 } });
    const { token, id } = await mint();
    await first.client.revokeToken({ m2mTokenId: id });
    expectRefused(await first.call(token), 'first, never cached');
  });

  test('a verification in flight when the token is revoked through the same client is refused', async () => {
    const first = await service('first', { cache: { ttlMs: 10_000 } });
    const { token, id } = await mint();
    // Clerk answers "valid" (computed on arrival), but only after the revocation is known here.
    emulator.setLatency(300);
    const before = emulator.calls.verify;
    const pending = first.call(token);
    await until(() => emulator.calls.verify > before, 'the verify call to reach the emulator');
    emulator.setLatency(0);
    await first.client.revokeToken({ m2mTokenId: id });
    expectRefused(await pending, 'the answer that arrived after the revocation');
    expectRefused(await first.call(token), 'the next request');
  });
});

describe('expiration', () => {
  test('refused at the millisecond its expiration passes (cache off, cache bounded, default skew)', async () => {
    const off = await service('cache off', { cache: false, clockSkewMs: 0 });
    const bounded = await service('cache 1 s', { cache: { ttlMs: 1000 }, clockSkewMs: 0 });
    const skewed = await service('default skew', { cache: { ttlMs: 1000 } });
    const { token, expiration } = await mint({ secondsUntilExpiration: 30 });
    expect(expiration).toBe(clock() + 30_000);
    const all = [off, bounded, skewed];
    for (const s of all) expectAccepted(await s.call(token), `${s.name}, at creation`);

    clock.set(expiration! - 1);
    for (const s of all) expectAccepted(await s.call(token), `${s.name} at expiration − 1 ms`);
    clock.set(expiration!);
    for (const s of all) expectRefused(await s.call(token), `${s.name} at expiration`);
    clock.set(expiration! + 1);
    for (const s of all) expectRefused(await s.call(token), `${s.name} at expiration + 1 ms`);
  });

  test('a cached answer is served until expiration − 1 ms and never at expiration', async () => {
    const long = await service('cache 1 min', { cache: { ttlMs: 60_000 }, clockSkewMs: 0 });
    const { token, expiration } = await mint({ secondsUntilExpiration: 10 });
    expectAccepted(await long.call(token), 'at creation');
    const before = emulator.calls.verify;
    clock.set(expiration! - 1);
    expectAccepted(await long.call(token), 'at expiration − 1 ms, from the cache');
    expect(emulator.calls.verify).toBe(before);
    clock.set(expiration!);
    expectRefused(await long.call(token), 'at expiration');
  });
});

describe('scope', () => {
  test('a token minted for another machine is refused by requireMachine (403)', async () => {
    const first = await service('first');
    const foreign = await mint({}, otherMinter);
    expect(foreign.scopes).toEqual([emulator.machines.caller!.id]);
    const answer = await first.call(foreign.token);
    expect(answer.status).toBe(403);
    expect(answer.json).toEqual({
      error: 'insufficient_scope',
      error_description: expect.any(String),
    });
    expect(answer.headers['www-authenticate']).toMatch(
      /^Bearer realm="api", error="insufficient_scope", error_description="[^"\\]*"$/,
    );
    // A token of the right machine still passes on the same app.
    const own = await mint();
    expectAccepted(await first.call(own.token), 'own token', own.id);
  });

  test('refused as well when the verifier checks the scope itself (machineId, machine key)', async () => {
    const apiMachine = emulator.machines.api!;
    const byMachineId = await service('machineId', { machineId: apiMachine.id });
    const byMachineKey = await service('machine key', { key: apiMachine.secretKey });
    const foreign = await mint({}, otherMinter);
    expectRefused(await byMachineId.call(foreign.token), 'verifier with machineId');
    expectRefused(await byMachineKey.call(foreign.token), 'verifier with the api machine key');
    const own = await mint();
    expectAccepted(await byMachineId.call(own.token), 'own token, machineId', own.id);
    expectAccepted(await byMachineKey.call(own.token), 'own token, machine key', own.id);
  });
});

test('no token or secret key appears in logs, errors, answers or stats', async () => {
  for (const close of closers.splice(3).reverse()) await close();
  const self = watch.selfCheck();
  expect(self.missed).toEqual([]);
  expect(self.secrets).toBeGreaterThanOrEqual(12);
  expect(self.records).toBeGreaterThan(0);
  expect(self.logLines).toBeGreaterThan(0);
  expect(watch.findLeaks()).toEqual([]);
});
