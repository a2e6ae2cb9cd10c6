/**
 * m2m-guard in Fastify: the `m2mAuth()` plugin verifies every request of the context it is
 * registered in and sets `request.m2m`; `requireMachine()` is a `preHandler` hook.
 *
 * Run: npx tsx examples/fastify.ts (an in-process emulator stands in for Clerk)
 */
import Fastify from 'fastify';
// In an app: from 'm2m-guard/fastify'.
import { m2mAuth, requireMachine } from '../src/fastify/index.js';
import { callAll, overHttp, runAsProgram, startScenario } from './support/scenario.js';

export async function main(log: (line: string) => void = console.log): Promise<void> {
  const scenario = await startScenario();
  const { apiMachineId } = scenario;
  const auth = m2mAuth(scenario.options);

  const app = Fastify();
  await app.register(async (internal) => {
    await internal.register(auth); // only routes of this context need a token
    internal.get(
      '/internal/orders',
      { preHandler: requireMachine(apiMachineId) },
      async (request) => ({ calledBy: request.m2m?.subject }),
    );
  });
  app.get('/health', async () => ({ ok: true }));

  try {
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    const health = await fetch(`${url}/health`);
    log(`GET /health (no token) -> ${health.status} ${await health.text()}`);
    await callAll(overHttp(url), '/internal/orders', scenario, log);
  } finally {
    await app.close();
    await auth.close();
    await scenario.close();
  }
}

runAsProgram(import.meta.url, 'fastify', main);
