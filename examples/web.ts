/**
 * m2m-guard for Web-standard handlers (a Next.js route handler, Bun, Deno, Workers):
 * `withM2MAuth()` wraps a `(request, auth) => Response` handler, and the guards are functions of
 * the auth returning a refusal `Response` or `undefined`. Called here with real `Request`
 * objects, as Next.js calls `GET`.
 *
 * Run: npx tsx examples/web.ts (an in-process emulator stands in for Clerk)
 */
// In an app: from 'm2m-guard/web'.
import { requireMachine, withM2MAuth } from '../src/web/index.js';
import { callAll, runAsProgram, type Scenario, startScenario } from './support/scenario.js';

/** app/internal/orders/route.ts, in a Next.js app. */
function ordersRoute({ options, apiMachineId }: Scenario) {
  const onlyForUs = requireMachine(apiMachineId);
  return withM2MAuth(options, (_request, auth) => {
    const refusal = onlyForUs(auth);
    if (refusal) return refusal;
    return Response.json({ calledBy: auth?.subject });
  });
}

export async function main(log: (line: string) => void = console.log): Promise<void> {
  const scenario = await startScenario();
  const GET = ordersRoute(scenario);
  try {
    const send = (path: string, headers: Record<string, string>) =>
      GET(new Request(`http://localhost${path}`, { headers }));
    await callAll(send, '/internal/orders', scenario, log);
  } finally {
    await GET.close();
    await scenario.close();
  }
}

runAsProgram(import.meta.url, 'web', main);
