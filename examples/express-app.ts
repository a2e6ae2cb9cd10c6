/**
 * An Express 5 app whose `/internal/*` routes only machines may call, and only machines whose
 * token names this service in its scopes. `/health` stays open.
 *
 * Run: npx tsx examples/express-app.ts
 */
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pathToFileURL } from 'node:url';
import express from 'express';
// In an app: from 'm2m-guard/emulator'.
import { startEmulator } from '../src/emulator/index.js';
// In an app: from 'm2m-guard'.
import { createM2MClient, m2mAuth, requireMachine } from '../src/index.js';

export async function main(log: (line: string) => void = console.log): Promise<void> {
  // The emulator stands in for Clerk: no account, no network.
  const emulator = await startEmulator();
  const api = emulator.machines.api!;
  const caller = emulator.machines.caller!;

  const app = express();
  app.get('/health', (_req, res) => {
    res.json({ ok: true });
  });
  // The instance key can verify any token of the instance, including tokens meant for other
  // services, so `requireMachine` checks that this one was minted to call us.
  app.use(
    '/internal',
    m2mAuth({ apiUrl: emulator.url, secretKey: emulator.instanceSecretKey, anyMachine: true }),
    requireMachine(api.id),
  );
  app.get('/internal/whoami', (req, res) => {
    res.json({ caller: req.m2m?.subject, tokenId: req.m2m?.id, scopes: req.m2m?.scopes });
  });

  const server = createServer(app).listen(0, '127.0.0.1');
  await once(server, 'listening');
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  // The calling side: each machine mints its own tokens with its own Machine Secret Key.
  const callerClient = createM2MClient({
    apiUrl: emulator.url,
    machineSecretKey: caller.secretKey,
  });
  const apiClient = createM2MClient({ apiUrl: emulator.url, machineSecretKey: api.secretKey });

  async function call(path: string, label: string, expected: number, token?: string) {
    const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
    const res = await fetch(`${base}${path}`, { headers });
    const body = await res.text();
    log(`GET ${path} (${label}) -> ${res.status} ${body}`);
    if (res.status !== expected)
      throw new Error(`${label}: expected ${expected}, got ${res.status}`);
    return JSON.parse(body) as Record<string, unknown>;
  }

  try {
    await call('/health', 'no token', 200);
    const { token } = await callerClient.createToken();
    const who = await call('/internal/whoami', "caller's token", 200, token);
    if (who.caller !== caller.id) throw new Error('req.m2m.subject is not the caller machine');
    await call('/internal/whoami', 'no token', 401);
    // Well formed but never issued: Clerk says it does not know it, and the answer is 401.
    await call('/internal/whoami', 'bad token', 401, `mt_${'0'.repeat(32)}`);
    // A real token of the instance, but `api` may call nobody: its scopes do not name us.
    const { token: unscoped } = await apiClient.createToken();
    await call('/internal/whoami', 'token not scoped to us', 403, unscoped);
  } finally {
    server.closeAllConnections();
    server.close();
    await Promise.all([callerClient.close(), apiClient.close()]);
    await emulator.close();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((err: unknown) => {
    console.error('express-app example failed:', err);
    process.exit(1); // a failed example ends, whatever it left running
  });
}
