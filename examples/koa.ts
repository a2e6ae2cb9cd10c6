/**
 * m2m-guard in Koa: `m2mAuth()` is a Koa middleware, the auth is `ctx.state.m2m` (typed by
 * `M2MState`), `requireMachine()` a middleware too.
 *
 * Run: npx tsx examples/koa.ts (an in-process emulator stands in for Clerk)
 */
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
// In an app: from 'm2m-guard/koa'.
import { type M2MState, m2mAuth, requireMachine } from '../src/koa/index.js';
import { callAll, overHttp, runAsProgram, startScenario } from './support/scenario.js';

export async function main(log: (line: string) => void = console.log): Promise<void> {
  const scenario = await startScenario();
  const { apiMachineId } = scenario;
  const auth = m2mAuth(scenario.options);

  const app = new Koa<M2MState>();
  app.use(auth);
  app.use(requireMachine(apiMachineId));
  app.use((ctx) => {
    ctx.body = { calledBy: ctx.state.m2m?.subject };
  });

  const server = app.listen(0, '127.0.0.1');
  try {
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    await callAll(overHttp(`http://127.0.0.1:${port}`), '/internal/orders', scenario, log);
  } finally {
    server.closeAllConnections();
    server.close();
    await auth.close();
    await scenario.close();
  }
}

runAsProgram(import.meta.url, 'koa', main);
