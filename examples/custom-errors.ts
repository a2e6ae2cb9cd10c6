/**
 * Answering refusals in the app's own error format, two ways:
 * - `passErrors: true`: refusals go to `next(err)`, and an Express error handler answers;
 * - `onError`: a function of yours answers, with plain `node:http` calls.
 * Either way keep `err.headers`: the `WWW-Authenticate` challenge is part of a correct 401.
 *
 * Run: npx tsx examples/custom-errors.ts
 */
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pathToFileURL } from 'node:url';
import express, { type NextFunction, type Request, type Response } from 'express';
// In an app: from 'm2m-guard/emulator'.
import { startEmulator } from '../src/emulator/index.js';
// In an app: from 'm2m-guard'.
import { createM2MClient, createTokenVerifier, M2MAuthError, m2mAuth } from '../src/index.js';

/** The app's one error format, for every error it answers. */
const appError = (code: string, message: string) => ({ ok: false, error: { code, message } });

export async function main(log: (line: string) => void = console.log): Promise<void> {
  // The emulator stands in for Clerk: no account, no network.
  const emulator = await startEmulator();
  const verifier = createTokenVerifier({
    apiUrl: emulator.url,
    machineSecretKey: emulator.machines.api!.secretKey,
  });
  const app = express();

  // 1. passErrors: the refusal becomes an ordinary Express error.
  app.use('/v1', m2mAuth({ verifier, passErrors: true }));
  // 2. onError: answered on the spot; `res` is a plain ServerResponse, not Express's.
  const answerOnTheSpot = m2mAuth({
    verifier,
    onError(err, _req, res) {
      res.writeHead(err.status, { ...err.headers, 'content-type': 'application/json' });
      res.end(JSON.stringify(appError(err.code, err.message)));
    },
  });
  app.use('/v2', answerOnTheSpot);
  app.get(['/v1/report', '/v2/report'], (req, res) => {
    res.json({ ok: true, data: { caller: req.m2m?.subject } });
  });
  // Express knows an error handler by its four parameters.
  app.use((err: unknown, _req: Request, res: Response, next: NextFunction) => {
    if (!(err instanceof M2MAuthError)) return next(err);
    res.status(err.status).set(err.headers).json(appError(err.code, err.message));
  });

  const server = createServer(app).listen(0, '127.0.0.1');
  await once(server, 'listening');
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const client = createM2MClient({
    apiUrl: emulator.url,
    machineSecretKey: emulator.machines.caller!.secretKey,
  });

  async function call(path: string, label: string, expected: number, token?: string) {
    const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
    const res = await fetch(`${base}${path}`, { headers });
    const challenge = res.headers.get('www-authenticate');
    const body = await res.text();
    log(`GET ${path} (${label}) -> ${res.status} ${body}`);
    if (challenge) log(`  WWW-Authenticate: ${challenge}`);
    if (res.status !== expected) throw new Error(`${path} ${label}: expected ${expected}`);
    if ((JSON.parse(body) as { ok?: unknown }).ok !== (expected === 200)) {
      throw new Error(`${path} ${label}: the answer is not in the app's format`);
    }
    if (expected === 401 && !challenge?.startsWith('Bearer ')) {
      throw new Error(`${path} ${label}: the 401 lost its WWW-Authenticate challenge`);
    }
  }

  try {
    const { token } = await client.createToken();
    for (const path of ['/v1/report', '/v2/report']) {
      await call(path, 'caller token', 200, token);
      await call(path, 'no token', 401);
      await call(path, 'bad token', 401, `mt_${'0'.repeat(32)}`);
    }
  } finally {
    server.closeAllConnections();
    server.close();
    await Promise.all([client.close(), verifier.close()]);
    await emulator.close();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((err: unknown) => {
    console.error('custom-errors example failed:', err);
    process.exit(1); // a failed example ends, whatever it left running
  });
}
