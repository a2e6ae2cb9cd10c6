/**
 * m2m-guard in Hono: `m2mAuth()` is a Hono middleware, the auth is `c.get('m2m')` (typed by
 * `M2MEnv`), `requireMachine()` a middleware too. Served here by `@hono/node-server`; the same
 * app runs on any fetch runtime.
 *
 * Run: npx tsx examples/hono.ts (an in-process emulator stands in for Clerk)
 */
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
// In an app: from 'm2m-guard/hono'.
import { type M2MEnv, m2mAuth, requireMachine } from '../src/hono/index.js';
import { callAll, overHttp, runAsProgram, startScenario } from './support/scenario.js';

export async function main(log: (line: string) => void = console.log): Promise<void> {
  const scenario = await startScenario();
  const { apiMachineId } = scenario;
  const auth = m2mAuth(scenario.options);

  const app = new Hono<M2MEnv>();
  app.use('/internal/*', auth);
  app.get('/internal/orders', requireMachine(apiMachineId), (c) =>
    c.json({ calledBy: c.get('m2m')?.subject }),
  );
  app.get('/health', (c) => c.json({ ok: true }));

  const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' });
  try {
    await new Promise((resolve) => server.once('listening', resolve));
    const { port } = server.address() as { port: number };
    await callAll(overHttp(`http://127.0.0.1:${port}`), '/internal/orders', scenario, log);
    // The same app, without a server: app.request() takes a path or a Request.
    const res = await app.request('/internal/orders');
    log(`app.request('/internal/orders') (no token) -> ${res.status} ${await res.text()}`);
  } finally {
    server.close();
    await auth.close();
    await scenario.close();
  }
}

runAsProgram(import.meta.url, 'hono', main);
