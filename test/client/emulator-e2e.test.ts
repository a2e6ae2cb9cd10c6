import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  AuthenticationError,
  BadRequestError,
  createM2MClient,
  ForbiddenError,
  type M2MApiError,
  type M2MClient,
  type M2MClientOptions,
  M2MNetworkError,
  M2MTimeoutError,
  NotFoundError,
  RateLimitError,
  type RevokedTokenEvent,
  ServerError,
} from '../../src/client/index.js';
import { type Emulator, startEmulator } from '../../src/emulator/index.js';
import { M2MConfigError } from '../../src/shared/config-error.js';
import { FAST_RETRY, isolateClerkEnv, rejection, useCleanup } from './fixtures.js';

isolateClerkEnv();
const track = useCleanup();

let emulator: Emulator;
let now = Date.parse('2026-05-12T10:00:00.000Z');
// One emulator for the file (making its signing key is slow), reset before each test.
beforeAll(async () => {
  emulator = await startEmulator({ clock: () => now });
});
afterAll(async () => {
  await emulator.close();
});
beforeEach(() => {
  now = Date.parse('2026-05-12T10:00:00.000Z');
  emulator.reset();
});

const caller = () => emulator.machines.caller!;
const api = () => emulator.machines.api!;

function client(options: M2MClientOptions = {}): M2MClient {
  return track(createM2MClient({ apiUrl: emulator.url, retry: FAST_RETRY, ...options }));
}
const callerClient = (options: M2MClientOptions = {}) =>
  client({ machineSecretKey: caller().secretKey, ...options });
const apiClient = (options: M2MClientOptions = {}) =>
  client({ machineSecretKey: api().secretKey, ...options });
const instanceClient = (options: M2MClientOptions = {}) =>
  client({ secretKey: emulator.instanceSecretKey, ...options });

describe('create', () => {
  it('mints a token for the machine whose key is used, with claims and a lifetime', async () => {
    const token = await callerClient().createToken({
      claims: { tenant: 'acme', nested: { roleIds: [1, 2] } },
      secondsUntilExpiration: 600,
    });
    expect(token).toMatchObject({
      subject: caller().id,
      scopes: [api().id],
      claims: { tenant: 'acme', nested: { roleIds: [1, 2] } },
      revoked: false,
      revocationReason: null,
      expired: false,
      expiration: now + 600_000,
      createdAt: now,
    });
    expect(token.id).toMatch(/^mt_[0-9a-f]{32}$/i);
    expect(typeof token.token).toBe('string');
    expect(token.token).not.toBe(token.id);
    expect(emulator.calls.create).toBe(1);
  });

  it("uses the machine's default lifetime and null claims by default", async () => {
    const token = await callerClient().createToken();
    expect(token.claims).toBeNull();
    expect(token.expiration).toBe(now + 3600_000);
  });

  it('mints distinct tokens', async () => {
    const c = callerClient();
    const a = await c.createToken();
    const b = await c.createToken();
    expect(a.id).not.toBe(b.id);
    expect(a.token).not.toBe(b.token);
  });

  it('reuses a live token with minRemainingTtlSeconds', async () => {
    const c = callerClient();
    const first = await c.createToken({ claims: { a: 1 }, minRemainingTtlSeconds: 60 });
    const again = await c.createToken({ claims: { a: 1 }, minRemainingTtlSeconds: 60 });
    const other = await c.createToken({ claims: { a: 2 }, minRemainingTtlSeconds: 60 });
    expect(again.id).toBe(first.id);
    expect(again.token).toBe(first.token);
    expect(other.id).not.toBe(first.id);
  });

  it('is a BadRequestError when minRemainingTtlSeconds is not below the lifetime', async () => {
    const err = await rejection(
      callerClient().createToken({ secondsUntilExpiration: 60, minRemainingTtlSeconds: 60 }),
    );
    expect(err).toBeInstanceOf(BadRequestError);
    expect((err as BadRequestError).status).toBe(400);
  });

  it('uses the per-call key over the client key', async () => {
    const token = await callerClient().createToken({ machineSecretKey: api().secretKey });
    expect(token.subject).toBe(api().id);
  });

  it('with only the instance key fails before reaching the emulator', async () => {
    const err = await rejection(instanceClient().createToken());
    expect(err).toBeInstanceOf(M2MConfigError);
    expect(emulator.calls.create).toBe(0);
  });

  it('with an unknown machine key is an AuthenticationError', async () => {
    const err = await rejection(
      client({ machineSecretKey: 'ak_0123456789abcdef0123456789abcdef' }).createToken(),
    );
    expect(err).toBeInstanceOf(AuthenticationError);
    expect((err as M2MApiError).status).toBe(401);
    expect((err as M2MApiError).code).toEqual(expect.any(String));
  });

  it('works through the /v1 path prefix', async () => {
    const c = callerClient({ apiUrl: `${emulator.url}/v1` });
    const token = await c.createToken();
    expect(
      await apiClient({ apiUrl: `${emulator.url}/v1` }).verifyToken({ token: token.token }),
    ).toMatchObject({ id: token.id });
  });
});

describe('list', () => {
  it('pages through all tokens of a machine', async () => {
    const c = callerClient();
    const created: string[] = [];
    for (let i = 0; i < 5; i++) {
      now += 1000;
      created.push((await c.createToken({ claims: { i } })).id);
    }
    const seen: string[] = [];
    for (const offset of [0, 2, 4]) {
      const page = await c.listTokens({ subject: caller().id, limit: 2, offset });
      expect(page.totalCount).toBe(5);
      expect(page.data.length).toBe(offset === 4 ? 1 : 2);
      for (const token of page.data) {
        expect(token.subject).toBe(caller().id);
        expect(token).not.toHaveProperty('token');
      }
      seen.push(...page.data.map((t) => t.id));
    }
    // Newest first, each token once.
    expect(seen).toEqual([...created].reverse());
    expect((await c.listTokens({ subject: caller().id, offset: 5 })).data).toEqual([]);
  });

  it("a machine key may list only its own machine's tokens", async () => {
    await callerClient().createToken();
    const err = await rejection(callerClient().listTokens({ subject: api().id }));
    expect(err).toBeInstanceOf(ForbiddenError);
    expect((err as M2MApiError).status).toBe(403);
  });

  it("the instance key may list any machine's tokens", async () => {
    await callerClient().createToken();
    const page = await instanceClient().listTokens({ subject: caller().id });
    expect(page.totalCount).toBe(1);
    expect((await instanceClient().listTokens({ subject: api().id })).totalCount).toBe(0);
  });

  it('leaves revoked and expired tokens out unless asked', async () => {
    const c = callerClient();
    const revoked = await c.createToken({ claims: { n: 'revoked' } });
    await c.createToken({ claims: { n: 'short' }, secondsUntilExpiration: 10 });
    const live = await c.createToken({ claims: { n: 'live' } });
    await c.revokeToken({ m2mTokenId: revoked.id });
    now += 60_000;
    const subject = caller().id;
    expect((await c.listTokens({ subject })).data.map((t) => t.id)).toEqual([live.id]);
    expect((await c.listTokens({ subject, revoked: true })).totalCount).toBe(2);
    expect((await c.listTokens({ subject, expired: true })).totalCount).toBe(2);
    const all = await c.listTokens({ subject, revoked: true, expired: true });
    expect(all.totalCount).toBe(3);
    expect(all.data.find((t) => t.id === revoked.id)).toMatchObject({ revoked: true });
    expect(all.data.find((t) => t.claims?.n === 'short')).toMatchObject({ expired: true });
  });
});

describe('revoke and verify', () => {
  it('verifies a live token for a machine in its scopes, without the token string', async () => {
    const created = await callerClient().createToken({ claims: { x: 1 } });
    now += 5000;
    const verified = await apiClient().verifyToken({ token: created.token });
    expect(verified).toMatchObject({
      id: created.id,
      subject: caller().id,
      scopes: [api().id],
      claims: { x: 1 },
      revoked: false,
    });
    expect('token' in verified).toBe(false);
    expect(emulator.calls.verify).toBe(1);
  });

  it('a machine outside the scopes gets NotFoundError; the instance key verifies any token', async () => {
    const created = await callerClient().createToken();
    const err = await rejection(callerClient().verifyToken({ token: created.token }));
    expect(err).toBeInstanceOf(NotFoundError);
    expect(await instanceClient().verifyToken({ token: created.token })).toMatchObject({
      id: created.id,
    });
  });

  it('an unknown token is a NotFoundError, not retried', async () => {
    const err = await rejection(
      apiClient().verifyToken({ token: 'mt_thisTokenWasNeverIssued000000000' }),
    );
    expect(err).toBeInstanceOf(NotFoundError);
    expect((err as M2MApiError).status).toBe(404);
    expect(emulator.calls.verify).toBe(1);
  });

  it('an expired token is a NotFoundError', async () => {
    const created = await callerClient().createToken({ secondsUntilExpiration: 30 });
    now += 31_000;
    await expect(apiClient().verifyToken({ token: created.token })).rejects.toBeInstanceOf(
      NotFoundError,
    );
  });

  it('revokes a token: the answer, onRevoke, then verify fails', async () => {
    const owner = callerClient();
    const created = await owner.createToken();
    const events: RevokedTokenEvent[] = [];
    owner.onRevoke((event) => events.push(event));
    const revoked = await owner.revokeToken({ m2mTokenId: created.id, revocationReason: 'leaked' });
    expect(revoked).toMatchObject({ id: created.id, revoked: true, revocationReason: 'leaked' });
    expect('token' in revoked).toBe(false);
    expect(events).toEqual([{ id: created.id, apiUrl: emulator.url }]);
    await expect(apiClient().verifyToken({ token: created.token })).rejects.toBeInstanceOf(
      NotFoundError,
    );
    await expect(instanceClient().verifyToken({ token: created.token })).rejects.toBeInstanceOf(
      NotFoundError,
    );
  });

  it("a machine key cannot revoke another machine's token; the instance key can", async () => {
    const created = await callerClient().createToken();
    const events: RevokedTokenEvent[] = [];
    const other = apiClient();
    other.onRevoke((event) => events.push(event));
    await expect(other.revokeToken({ m2mTokenId: created.id })).rejects.toBeInstanceOf(
      NotFoundError,
    );
    expect(events).toEqual([]);
    await expect(apiClient().verifyToken({ token: created.token })).resolves.toBeDefined();
    await instanceClient().revokeToken({ m2mTokenId: created.id });
    await expect(apiClient().verifyToken({ token: created.token })).rejects.toBeInstanceOf(
      NotFoundError,
    );
  });

  it('an unknown token id is a NotFoundError', async () => {
    const err = await rejection(
      instanceClient().revokeToken({ m2mTokenId: 'mt_00000000000000000000000000000000' }),
    );
    expect(err).toBeInstanceOf(NotFoundError);
  });
});

describe('key precedence', () => {
  it('verify uses the per-call key, then the machine key, then the instance key', async () => {
    const created = await callerClient().createToken();
    // The caller's machine is not in the token's scopes, the api machine is, and the
    // instance key skips the scope check: which key was used shows in the outcome.
    const both = client({
      machineSecretKey: caller().secretKey,
      secretKey: emulator.instanceSecretKey,
    });
    await expect(both.verifyToken({ token: created.token })).rejects.toBeInstanceOf(NotFoundError);
    await expect(
      both.verifyToken({ token: created.token, machineSecretKey: api().secretKey }),
    ).resolves.toMatchObject({ id: created.id });
    await expect(instanceClient().verifyToken({ token: created.token })).resolves.toMatchObject({
      id: created.id,
    });
    await expect(
      instanceClient().verifyToken({ token: created.token, machineSecretKey: caller().secretKey }),
    ).rejects.toBeInstanceOf(NotFoundError);
  });

  it('list uses the per-call key over the instance key', async () => {
    await callerClient().createToken();
    const c = instanceClient();
    expect((await c.listTokens({ subject: caller().id })).totalCount).toBe(1);
    await expect(
      c.listTokens({ subject: caller().id, machineSecretKey: api().secretKey }),
    ).rejects.toBeInstanceOf(ForbiddenError);
  });

  it('a client without any key fails before reaching the emulator', async () => {
    const c = client();
    await expect(c.verifyToken({ token: 'mt_x' })).rejects.toBeInstanceOf(M2MConfigError);
    await expect(c.listTokens({ subject: caller().id })).rejects.toBeInstanceOf(M2MConfigError);
    expect(emulator.calls).toMatchObject({ create: 0, list: 0, revoke: 0, verify: 0 });
  });
});

describe('faults', () => {
  it('verify is retried through an injected 503 and a reset', async () => {
    const created = await callerClient().createToken();
    emulator.failNext(1, 503, { operation: 'verify' });
    emulator.failNext(1, 'reset', { operation: 'verify' });
    await expect(apiClient().verifyToken({ token: created.token })).resolves.toMatchObject({
      id: created.id,
    });
    expect(emulator.calls.verify).toBe(3);
  });

  it('create is not retried after an injected 503 or reset, but is after a 429', async () => {
    const c = callerClient();
    emulator.failNext(1, 503, { operation: 'create' });
    await expect(c.createToken()).rejects.toBeInstanceOf(ServerError);
    emulator.failNext(1, 'reset', { operation: 'create' });
    await expect(c.createToken()).rejects.toBeInstanceOf(M2MNetworkError);
    expect(emulator.calls.create).toBe(2);
    emulator.failNext(1, 429, { operation: 'create', retryAfter: 0 });
    await expect(c.createToken()).resolves.toHaveProperty('token');
    expect(emulator.calls.create).toBe(4);
  });

  it('a Retry-After beyond maxDelayMs ends the retries with a RateLimitError', async () => {
    emulator.failNext(3, 429, { retryAfter: 30 });
    const err = await rejection(instanceClient().listTokens({ subject: caller().id }));
    expect(err).toBeInstanceOf(RateLimitError);
    expect((err as RateLimitError).retryAfter).toBe(30);
    expect(emulator.calls.list).toBe(1);
  });

  it.each(['not-json', 'wrong-shape'] as const)('%s is an invalid_response', async (fault) => {
    emulator.failNext(1, fault);
    const err = await rejection(instanceClient().listTokens({ subject: caller().id }));
    expect((err as M2MApiError).code).toBe('invalid_response');
    expect(emulator.calls.list).toBe(1);
  });

  it('a hanging answer is an M2MTimeoutError', async () => {
    emulator.failNext(1, 'hang');
    const err = await rejection(
      instanceClient({ timeoutMs: 100 }).listTokens({ subject: caller().id }),
    );
    expect(err).toBeInstanceOf(M2MTimeoutError);
    expect(emulator.calls.list).toBe(1);
  });
});

describe('getJwks', () => {
  it("returns the emulator's signing key with the instance key", async () => {
    const jwks = await instanceClient().getJwks();
    expect(jwks.keys.map((k) => k.kid)).toContain(emulator.jwks.keys[0]!.kid);
    expect(emulator.calls.jwks).toBe(1);
  });
});
