import { createClerkClient } from '@clerk/backend';
import { clerkMiddleware, getAuth } from '@clerk/express';
import express from 'express';
import supertest from 'supertest';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Emulator } from '../../src/emulator/index.js';
import { closeEmulators, manualClock, start } from './helpers.js';

/** Clerk's official SDKs, unchanged, pointed at the emulator, get the answers Clerk would give. */
let emulator: Emulator;
const clock = manualClock(Date.now());

beforeAll(async () => {
  emulator = await start({ clock: clock.now });
});
afterAll(closeEmulators);
beforeEach(() => {
  emulator.reset();
  clock.set(Date.now());
});

const clientFor = (machine?: string) =>
  createClerkClient({
    secretKey: emulator.instanceSecretKey,
    machineSecretKey: machine ? emulator.machines[machine]!.secretKey : undefined,
    apiUrl: emulator.url,
  });

async function apiError(
  promise: Promise<unknown>,
): Promise<{ status: number; code: string; message: string }> {
  const err = (await promise.then(
    () => {
      throw new Error('expected the call to fail');
    },
    (e: unknown) => e,
  )) as { status: number; errors: { code: string; message: string }[] };
  return { status: err.status, code: err.errors[0]!.code, message: err.errors[0]!.message };
}

describe('@clerk/backend m2m', () => {
  it('creates, verifies, lists and revokes an opaque token', async () => {
    const { caller, api } = emulator.machines;
    const created = await clientFor('caller').m2m.createToken({
      secondsUntilExpiration: 600,
      claims: { job: 'nightly' },
    });
    expect(created.subject).toBe(caller!.id);
    expect(created.scopes).toEqual([api!.id]);
    expect(created.claims).toEqual({ job: 'nightly' });
    expect(created.expiration).toBe(created.createdAt + 600_000);
    expect(created.token).toMatch(/^mt_/);

    const verified = await clientFor('api').m2m.verify({ token: created.token! });
    expect(verified.id).toBe(created.id);
    expect(verified.token).toBeUndefined();

    const asInstance = await clientFor().m2m.verify({ token: created.token! });
    expect(asInstance.id).toBe(created.id);

    const listed = await clientFor('caller').m2m.list({ subject: caller!.id });
    expect(listed.totalCount).toBe(1);
    expect(listed.data[0]!.id).toBe(created.id);

    const revoked = await clientFor('caller').m2m.revokeToken({
      m2mTokenId: created.id,
      revocationReason: 'done',
    });
    expect(revoked.revoked).toBe(true);
    expect(revoked.revocationReason).toBe('done');

    expect(await apiError(clientFor('api').m2m.verify({ token: created.token! }))).toMatchObject({
      status: 404,
      code: 'resource_not_found',
    });
  });

  it('refuses to create with only the instance key', async () => {
    expect(await apiError(clientFor().m2m.createToken())).toEqual({
      status: 401,
      code: 'machine_secret_key_invalid',
      message:
        'The provided Machine Secret Key is invalid. Make sure that your Machine Secret Key is correct.',
    });
  });

  it('honours per-call machine keys and scope checks', async () => {
    const { caller, api } = emulator.machines;
    const token = await clientFor().m2m.createToken({ machineSecretKey: api!.secretKey });
    expect(token.subject).toBe(api!.id);
    // api's tokens have no scopes: caller may not verify them.
    expect(
      await apiError(
        clientFor().m2m.verify({ token: token.token!, machineSecretKey: caller!.secretKey }),
      ),
    ).toMatchObject({ status: 404 });
    expect(await apiError(clientFor('caller').m2m.list({ subject: api!.id }))).toMatchObject({
      status: 403,
    });
  });

  it('reuses a token with minRemainingTtlSeconds', async () => {
    const first = await clientFor('caller').m2m.createToken({ minRemainingTtlSeconds: 240 });
    const second = await clientFor('caller').m2m.createToken({ minRemainingTtlSeconds: 240 });
    expect(second.id).toBe(first.id);
    expect(second.token).toBe(first.token);
    expect(
      await apiError(clientFor('caller').m2m.createToken({ minRemainingTtlSeconds: 3600 })),
    ).toMatchObject({
      status: 400,
    });
  });

  it('reports an unknown machine key as 401', async () => {
    const client = createClerkClient({ machineSecretKey: 'ak_wrong', apiUrl: emulator.url });
    expect(await apiError(client.m2m.createToken())).toMatchObject({
      status: 401,
      code: 'machine_secret_key_invalid',
    });
  });
});

describe('@clerk/express clerkMiddleware + getAuth', () => {
  const publishableKey = `pk_test_${Buffer.from('clerk.example.test$').toString('base64')}`;

  function app(machineSecretKey?: string) {
    const server = express();
    server.use(
      clerkMiddleware({
        secretKey: emulator.instanceSecretKey,
        publishableKey,
        apiUrl: emulator.url,
        ...(machineSecretKey ? { machineSecretKey } : {}),
      }),
    );
    server.get('/protected', (req, res) => {
      const auth = getAuth(req, { acceptsToken: 'm2m_token' });
      if (!auth.isAuthenticated) {
        res.status(401).json({ isAuthenticated: false });
        return;
      }
      res.json({
        isAuthenticated: true,
        tokenType: auth.tokenType,
        subject: auth.subject,
        scopes: auth.scopes,
        claims: auth.claims,
      });
    });
    return server;
  }

  const get = (server: express.Express, token?: string) => {
    const req = supertest(server).get('/protected');
    return token === undefined ? req : req.set('authorization', `Bearer ${token}`);
  };

  it('authenticates a good token with subject, scopes and claims', async () => {
    const { caller, api } = emulator.machines;
    const token = await clientFor('caller').m2m.createToken({ claims: { role: 'sync' } });
    const res = await get(app(api!.secretKey), token.token);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      isAuthenticated: true,
      tokenType: 'm2m_token',
      subject: caller!.id,
      scopes: [api!.id],
      claims: { role: 'sync' },
    });
    expect(emulator.calls.verify).toBe(1);
  });

  it('does not authenticate without a token, and makes no BAPI call', async () => {
    const res = await get(app(emulator.machines.api!.secretKey));
    expect(res.status).toBe(401);
    expect(emulator.calls.verify).toBe(0);
  });

  it('does not authenticate an unknown token (token-invalid)', async () => {
    const res = await get(
      app(emulator.machines.api!.secretKey),
      'mt_unknowntoken1234567890abcdefghij',
    );
    expect(res.status).toBe(401);
    expect(res.headers['x-clerk-auth-reason']).toBe('token-invalid');
    expect(emulator.calls.verify).toBe(1);
  });

  it('does not authenticate a revoked token', async () => {
    const token = await clientFor('caller').m2m.createToken();
    await clientFor().m2m.revokeToken({ m2mTokenId: token.id });
    const res = await get(app(emulator.machines.api!.secretKey), token.token);
    expect(res.status).toBe(401);
    expect(res.headers['x-clerk-auth-reason']).toBe('token-invalid');
  });

  it('does not authenticate an expired token', async () => {
    const token = await clientFor('caller').m2m.createToken({ secondsUntilExpiration: 30 });
    clock.advance(30_000);
    const res = await get(app(emulator.machines.api!.secretKey), token.token);
    expect(res.status).toBe(401);
  });

  it('does not authenticate an out-of-scope token with a machine key, but does with the instance key', async () => {
    const apiToken = await clientFor('api').m2m.createToken(); // scopes []
    const scoped = await get(app(emulator.machines.caller!.secretKey), apiToken.token);
    expect(scoped.status).toBe(401);
    expect(scoped.headers['x-clerk-auth-reason']).toBe('token-invalid');
    const instance = await get(app(), apiToken.token);
    expect(instance.status).toBe(200);
    expect(instance.body.subject).toBe(emulator.machines.api!.id);
  });

  it('reports a wrong machine key as an invalid secret key', async () => {
    const token = await clientFor('caller').m2m.createToken();
    const res = await get(app('ak_not_a_real_key'), token.token);
    expect(res.status).toBe(401);
    expect(res.headers['x-clerk-auth-reason']).toMatch(/secret-key/);
  });

  it('authenticates a JWT-format token through the JWKS', async () => {
    const { caller, api } = emulator.machines;
    const token = await clientFor('caller').m2m.createToken({
      tokenFormat: 'jwt',
      claims: { role: 'jwt' },
    });
    const res = await get(app(), token.token);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      subject: caller!.id,
      scopes: [api!.id],
      tokenType: 'm2m_token',
    });
    expect(res.body.claims).toMatchObject({ role: 'jwt' });
    expect(emulator.calls.verify).toBe(0);
  });
});
