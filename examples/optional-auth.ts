/**
 * `required: false`: a route open to everyone that recognises machines. No token means
 * anonymous; a token that fails verification is still refused, never downgraded to anonymous,
 * so a caller with an expired or revoked token learns it at once instead of silently getting
 * the anonymous answer.
 *
 * Run: npx tsx examples/optional-auth.ts
 */
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pathToFileURL } from 'node:url';
import express from 'express';
// In an app: from 'm2m-guard/emulator'.
import { startEmulator } from '../src/emulator/index.js';
// In an app: from 'm2m-guard'.
import { createM2MClient, createTokenVerifier, m2mAuth } from '../src/index.js';

export async function main(log: (line: string) => void = console.log): Promise<void> {
  // The emulator stands in for Clerk: no account, no network.
  const emulator = await startEmulator();
  const caller = emulator.machines.caller!;
  const verifier = createTokenVerifier({
    apiUrl: emulator.url,
    machineSecretKey: emulator.machines.api!.secretKey,
  });

  const app = express();
  app.use(m2mAuth({ verifier, required: false }));
  app.get('/hello', (req, res) => {
    // `req.m2m` is set only after a successful verification, so its absence means anonymous.
    const greeting = req.m2m ? `hello, machine ${req.m2m.subject}` : 'hello, anonymous';
    res.json({ greeting });
  });
  const server = createServer(app).listen(0, '127.0.0.1');
  await once(server, 'listening');
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const client = createM2MClient({ apiUrl: emulator.url, machineSecretKey: caller.secretKey });

  async function call(label: string, expected: number, authorization?: string) {
    const res = await fetch(`${base}/hello`, { headers: authorization ? { authorization } : {} });
    const body = await res.text();
    log(`GET /hello (${label}) -> ${res.status} ${body}`);
    if (res.status !== expected)
      throw new Error(`${label}: expected ${expected}, got ${res.status}`);
    return body;
  }

  try {
    const anonymous = await call('no token', 200);
    if (!anonymous.includes('hello, anonymous')) throw new Error('anonymous caller not greeted');
    const { token } = await client.createToken();
    const named = await call('caller token', 200, `Bearer ${token}`);
    if (!named.includes(caller.id)) throw new Error('verified machine not named');
    // A token Clerk does not know (never issued, revoked or expired: one answer for all).
    await call('bad token', 401, `Bearer mt_${'0'.repeat(32)}`);
    // Something was sent, so it is not anonymous either: a malformed header is a 400.
    await call('not a bearer header', 400, 'Basic dXNlcjpwYXNz');
  } finally {
    server.closeAllConnections();
    server.close();
    await Promise.all([client.close(), verifier.close()]);
    await emulator.close();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((err: unknown) => {
    console.error('optional-auth example failed:', err);
    process.exit(1); // a failed example ends, whatever it left running
  });
}
