/**
 * The middleware needs nothing but `IncomingMessage` and `ServerResponse`: here it guards a
 * plain `node:http` server (called by hand, with a `next`) and a Connect app, side by side.
 *
 * Run: npx tsx examples/node-http.ts
 */
import { once } from 'node:events';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pathToFileURL } from 'node:url';
import connect from 'connect';
// In an app: from 'm2m-guard/emulator'.
import { startEmulator } from '../src/emulator/index.js';
// In an app: from 'm2m-guard'.
import { createM2MClient, createTokenVerifier, m2mAuth } from '../src/index.js';

async function listen(server: Server): Promise<string> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function fail(res: ServerResponse, err: unknown): void {
  // Only a bug reaches here: refusals are answered by the middleware itself.
  console.error(err);
  res.statusCode = 500;
  res.end();
}

export async function main(log: (line: string) => void = console.log): Promise<void> {
  // The emulator stands in for Clerk: no account, no network.
  const emulator = await startEmulator();
  // One verifier (and one cache) behind both servers; built here so we can close it.
  // With `api`'s own Machine Secret Key, Clerk only accepts tokens whose scopes name `api`.
  const verifier = createTokenVerifier({
    apiUrl: emulator.url,
    machineSecretKey: emulator.machines.api!.secretKey,
  });
  const auth = m2mAuth({ verifier });

  // Plain node:http: on a refusal `auth` answers and never calls `next`.
  const plain = createServer((req, res) => {
    auth(req, res, (err) => {
      if (err) return fail(res, err);
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ server: 'node:http', caller: req.m2m?.subject }));
    });
  });

  // Connect: the same function, mounted like any other middleware.
  const app = connect();
  app.use('/internal', auth);
  app.use('/internal', (req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ server: 'connect', caller: req.m2m?.subject }));
  });
  const servers = [plain, createServer(app)];
  const [plainUrl, connectUrl] = await Promise.all(servers.map(listen));

  const client = createM2MClient({
    apiUrl: emulator.url,
    machineSecretKey: emulator.machines.caller!.secretKey,
  });

  async function call(name: string, url: string, label: string, expected: number, token?: string) {
    const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
    const res = await fetch(url, { headers });
    log(`${name.padEnd(9)} GET /internal/ping (${label}) -> ${res.status} ${await res.text()}`);
    if (res.status !== expected) throw new Error(`${name} ${label}: expected ${expected}`);
  }

  try {
    const { token } = await client.createToken();
    for (const [name, base] of [
      ['node:http', plainUrl!],
      ['connect', connectUrl!],
    ] as const) {
      await call(name, `${base}/internal/ping`, 'caller token', 200, token);
      await call(name, `${base}/internal/ping`, 'no token', 401);
    }
  } finally {
    for (const server of servers) {
      server.closeAllConnections();
      server.close();
    }
    await Promise.all([client.close(), verifier.close()]);
    await emulator.close();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((err: unknown) => {
    console.error('node-http example failed:', err);
    process.exit(1); // a failed example ends, whatever it left running
  });
}
