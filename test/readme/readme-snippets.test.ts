import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import express from 'express';
import request from 'supertest';
import { afterEach, describe, expect, it } from 'vitest';
import { startEmulator } from '../../src/emulator/index.js';
import {
  createAuthorizedFetch,
  createM2MClient,
  createTokenProvider,
  createTokenVerifier,
  m2mAuth,
} from '../../src/index.js';
import { createRedisStore } from '../../src/redis/index.js';

/** The README's code, run as written (the README test checks the text matches). */
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function emulatorWithApi() {
  const emulator = await startEmulator();
  cleanups.push(() => emulator.close());
  const app = express();
  const mw = m2mAuth({ apiUrl: emulator.url, machineSecretKey: emulator.machines.api.secretKey });
  cleanups.push(() => mw.close());
  app.use(mw);
  app.get('/internal/orders', (req, res) => res.json({ calledBy: req.m2m?.subject }));
  const server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(() => {
    server.closeAllConnections();
    server.close();
  });
  return { emulator, internalUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

describe('README snippets', () => {
  it('quick start: examples/quick-start.ts protects /internal with the env key', async () => {
    const emulator = await startEmulator();
    cleanups.push(() => emulator.close());
    const saved = { ...process.env };
    cleanups.push(() => {
      process.env = saved;
    });
    process.env.CLERK_API_URL = emulator.url;
    process.env.CLERK_MACHINE_SECRET_KEY = emulator.machines.api.secretKey;
    delete process.env.CLERK_SECRET_KEY;
    process.env.PORT = '0';
    const { server } = await import('../../examples/quick-start.js');
    cleanups.push(() => {
      server.closeAllConnections();
      server.close();
    });
    if (!server.listening) await once(server, 'listening');
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/internal/orders`;
    const caller = createM2MClient({
      apiUrl: emulator.url,
      machineSecretKey: emulator.machines.caller.secretKey,
    });
    cleanups.push(() => caller.close());
    const { token } = await caller.createToken({ claims: { job: 'nightly' } });
    const ok = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({
      calledBy: emulator.machines.caller.id,
      claims: { job: 'nightly' },
    });
    expect((await fetch(url)).status).toBe(401);
  });

  it('the caller side: provider and authorized fetch', async () => {
    const { emulator, internalUrl } = await emulatorWithApi();
    const apiUrl = emulator.url;
    const callerKey = emulator.machines.caller.secretKey;
    const client = createM2MClient({ apiUrl, machineSecretKey: callerKey });
    const provider = createTokenProvider({ client, secondsUntilExpiration: 3600 });
    const callInternal = createAuthorizedFetch(provider);
    const res = await callInternal(`${internalUrl}/internal/orders`);
    cleanups.push(() => client.close());
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ calledBy: emulator.machines.caller.id });
  });

  it.skipIf(!process.env.REDIS_URL)('scale-out: a Redis store shared by instances', async () => {
    const emulator = await startEmulator();
    cleanups.push(() => emulator.close());
    const apiUrl = emulator.url;
    const instanceKey = emulator.instanceSecretKey;
    const apiMachineId = emulator.machines.api.id;
    const redisUrl = process.env.REDIS_URL!;
    const app = express();
    const store = createRedisStore({ url: redisUrl, keyPrefix: 'orders-service:' });
    const verifier = createTokenVerifier({
      apiUrl,
      secretKey: instanceKey,
      machineId: apiMachineId,
      store,
    });
    app.use('/internal', m2mAuth({ verifier }));
    cleanups.push(() => store.close());
    cleanups.push(() => verifier.close());
    app.get('/internal/orders', (req, res) => res.json({ calledBy: req.m2m?.subject }));
    const caller = createM2MClient({
      apiUrl,
      machineSecretKey: emulator.machines.caller.secretKey,
    });
    cleanups.push(() => caller.close());
    const { token } = await caller.createToken();
    const res = await request(app).get('/internal/orders').set('authorization', `Bearer ${token}`);
    expect(res.status).toBe(200);
  });

  it('testing your own service with the emulator', async () => {
    const emulator = await startEmulator(); // machines `caller` (may call `api`) and `api`
    const caller = createM2MClient({
      apiUrl: emulator.url,
      machineSecretKey: emulator.machines.caller.secretKey,
    });
    const { token } = await caller.createToken();
    const app = express();
    app.use(m2mAuth({ apiUrl: emulator.url, machineSecretKey: emulator.machines.api.secretKey }));
    app.get('/', (req, res) => res.json(req.m2m));
    const res = await request(app).get('/').set('authorization', `Bearer ${token}`);
    expect(res.body.subject).toBe(emulator.machines.caller.id);
    cleanups.push(
      () => emulator.close(),
      () => caller.close(),
    );
  });
});
