/**
 * Service to service: the `caller` service calls the `api` service through a `fetch` that adds
 * its M2M token. Many concurrent requests cost one minted token and one verify call to Clerk.
 *
 * Run: npx tsx examples/service-to-service.ts
 */
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pathToFileURL } from 'node:url';
import express from 'express';
// In an app: from 'm2m-guard/emulator'.
import { startEmulator } from '../src/emulator/index.js';
// In an app: from 'm2m-guard'.
import {
  createAuthorizedFetch,
  createM2MClient,
  createTokenProvider,
  createTokenVerifier,
  m2mAuth,
} from '../src/index.js';

const CONCURRENT = 5;

export async function main(log: (line: string) => void = console.log): Promise<void> {
  // The emulator stands in for Clerk: no account, no network.
  const emulator = await startEmulator();
  const api = emulator.machines.api!;
  const caller = emulator.machines.caller!;

  // --- The `api` service: verifies with its own Machine Secret Key, so Clerk only accepts
  // tokens minted to call `api`. The verifier caches good answers (10 s by default).
  const verifier = createTokenVerifier({ apiUrl: emulator.url, machineSecretKey: api.secretKey });
  const app = express();
  app.use('/internal', m2mAuth({ verifier }));
  app.get('/internal/orders/:id', (req, res) => {
    res.json({ order: req.params.id, servedTo: req.m2m?.subject });
  });
  const server = createServer(app).listen(0, '127.0.0.1');
  await once(server, 'listening');
  const apiUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  // --- The `caller` service: one provider per process keeps its token and shares each mint.
  const client = createM2MClient({ apiUrl: emulator.url, machineSecretKey: caller.secretKey });
  const authorizedFetch = createAuthorizedFetch(createTokenProvider({ client }));

  try {
    // All requests start before any token exists: they still share a single mint, and the
    // api's verifier shares a single verify call among them.
    const results = await Promise.all(
      Array.from({ length: CONCURRENT }, async (_, i) => {
        const res = await authorizedFetch(`${apiUrl}/internal/orders/${i + 1}`);
        return { path: `/internal/orders/${i + 1}`, status: res.status, body: await res.text() };
      }),
    );
    // A later request finds the token kept by the provider and the answer cached by the api.
    const later = await authorizedFetch(`${apiUrl}/internal/orders/99`);
    results.push({ path: '/internal/orders/99', status: later.status, body: await later.text() });

    for (const { path, status, body } of results) {
      log(`GET ${path} -> ${status} ${body}`);
      if (status !== 200) throw new Error(`GET ${path}: expected 200, got ${status}`);
    }
    const { create, verify } = emulator.calls;
    log(`tokens minted: ${create}`);
    log(`verify calls that reached Clerk: ${verify}`);
    if (create !== 1) throw new Error(`expected 1 token minted, saw ${create}`);
    if (verify !== 1) throw new Error(`expected 1 verify call, saw ${verify}`);
  } finally {
    server.closeAllConnections();
    server.close();
    await Promise.all([client.close(), verifier.close()]);
    await emulator.close();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((err: unknown) => {
    console.error('service-to-service example failed:', err);
    process.exit(1); // a failed example ends, whatever it left running
  });
}
