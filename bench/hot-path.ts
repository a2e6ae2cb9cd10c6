/**
 * The middleware's own cost on a cache hit, measured in process with no HTTP or Express around
 * it: `npx tsx bench/hot-path.ts [--calls N]`. Each call gets a fresh `IncomingMessage` (as a
 * server would), and the figure is process CPU time per call, minus the same loop without
 * the middleware. Interleaved rounds; the median is printed.
 */
import { IncomingMessage, type ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import { parseArgs } from 'node:util';
import { startEmulator } from '../src/emulator/index.js';
import { createM2MClient, m2mAuth } from '../src/index.js';

const { values } = parseArgs({
  options: { calls: { type: 'string' }, rounds: { type: 'string' } },
});
const calls = Number(values.calls ?? 200_000);
const rounds = Number(values.rounds ?? 5);

const emulator = await startEmulator();
const caller = createM2MClient({
  apiUrl: emulator.url,
  machineSecretKey: emulator.machines.caller.secretKey,
});
const { token } = await caller.createToken();
const middleware = m2mAuth({
  apiUrl: emulator.url,
  machineSecretKey: emulator.machines.api.secretKey,
});
const socket = new Socket();
const request = () => {
  const req = new IncomingMessage(socket);
  req.headers = { authorization: `Bearer ${token}` };
  req.rawHeaders = ['Authorization', `Bearer ${token}`];
  req.method = 'GET';
  req.url = '/internal/ping';
  return req;
};
const res = {} as ServerResponse;
// The first call asks the emulator; every later one is a cache hit.
await new Promise<void>((resolve) => middleware(request(), res, () => resolve()));

let passed = 0;
const next = () => {
  passed++;
};
function cpuPerCall(withMiddleware: boolean): number {
  const start = process.cpuUsage();
  for (let i = 0; i < calls; i++) {
    const req = request();
    if (withMiddleware) middleware(req, res, next);
  }
  const { user, system } = process.cpuUsage(start);
  return (user + system) / calls;
}

const costs: number[] = [];
for (let round = 0; round < rounds; round++) {
  const baseline = cpuPerCall(false);
  costs.push(cpuPerCall(true) - baseline);
}
costs.sort((a, b) => a - b);
const median = costs[Math.floor(costs.length / 2)]!;
console.log(
  `m2mAuth() on a cache hit: ${median.toFixed(2)} µs CPU per request (median of ${rounds} rounds ` +
    `of ${calls.toLocaleString('en-US')}; all rounds ${costs.map((c) => c.toFixed(2)).join(', ')})`,
);
if (passed !== calls * rounds) throw new Error(`only ${passed} of ${calls * rounds} calls passed`);
await middleware.close();
await caller.close();
await emulator.close();
