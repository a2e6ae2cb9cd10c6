/**
 * The middleware's own cost on a cache hit: `npx tsx bench/hot-path.ts [--calls N] [--rounds N]`.
 * Two ways, so they can be compared: in process with no HTTP around it (each call gets a fresh
 * `IncomingMessage`, as a server would; process CPU time per call minus the same loop without
 * the middleware), and inside a real `node:http` server loop (`server-loop.ts`: real parser,
 * real socket, the same difference). Interleaved rounds; medians are printed.
 *
 * Twice: without OpenTelemetry, and with an SDK registered (a MeterProvider with a reader and a
 * TracerProvider) before its own middleware was created, as an application would. The two
 * alternate round by round, and each round's ratio is paired.
 */
import { IncomingMessage, type ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import { parseArgs } from 'node:util';
import { metrics, trace } from '@opentelemetry/api';
import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider } from '@opentelemetry/sdk-trace-base';
import { startEmulator } from '../src/emulator/index.js';
import { createM2MClient, m2mAuth } from '../src/index.js';
import { serverLoopCpu } from './server-loop.js';

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
const newMiddleware = () =>
  m2mAuth({ apiUrl: emulator.url, machineSecretKey: emulator.machines.api.secretKey });

class Reader extends MetricReader {
  protected override async onShutdown() {}
  protected override async onForceFlush() {}
}
const reader = new Reader();
const meterProvider = new MeterProvider({ readers: [reader] });
const tracerProvider = new BasicTracerProvider();
/** Registers the SDK globally, or leaves the API a no-op. */
function useSdk(on: boolean) {
  metrics.disable();
  trace.disable();
  if (on) {
    metrics.setGlobalMeterProvider(meterProvider);
    trace.setGlobalTracerProvider(tracerProvider);
  }
}
useSdk(false);
const plain = newMiddleware();
useSdk(true);
const instrumented = newMiddleware();
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
for (const middleware of [plain, instrumented]) {
  await new Promise<void>((resolve) => middleware(request(), res, () => resolve()));
}

let passed = 0;
const next = () => {
  passed++;
};
function cpuPerCall(middleware: typeof plain | undefined): number {
  const start = process.cpuUsage();
  for (let i = 0; i < calls; i++) {
    const req = request();
    if (middleware) middleware(req, res, next);
  }
  const { user, system } = process.cpuUsage(start);
  return (user + system) / calls;
}

const costs: number[] = [];
const sdkCosts: number[] = [];
const ratios: number[] = [];
for (let round = 0; round < rounds; round++) {
  useSdk(false);
  const baseline = cpuPerCall(undefined);
  costs.push(cpuPerCall(plain) - baseline);
  useSdk(true);
  sdkCosts.push(cpuPerCall(instrumented) - cpuPerCall(undefined));
  ratios.push(sdkCosts[round]! / costs[round]!);
}
const median = (values: number[]) =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const row = (label: string, values: number[]) =>
  console.log(
    `m2mAuth() on a cache hit, ${label}: ${median(values).toFixed(2)} µs CPU per request ` +
      `(median of ${rounds} rounds of ${calls.toLocaleString('en-US')}; all rounds ` +
      `${values.map((c) => c.toFixed(2)).join(', ')})`,
  );
row('no OpenTelemetry SDK', costs);
row('OpenTelemetry SDK registered', sdkCosts);
console.log(`  with SDK / without, median of paired rounds: ${median(ratios).toFixed(3)}`);

if (passed !== 2 * calls * rounds) {
  throw new Error(`only ${passed} of ${2 * calls * rounds} calls passed`);
}
// The SDK did see the hits: its instruments are live, read at collection and not per request.
const { resourceMetrics } = await reader.collect();
const lookups = resourceMetrics.scopeMetrics
  .flatMap((s) => s.metrics)
  .find((m) => m.descriptor.name === 'm2m_guard.cache.lookups');
const hits = lookups?.dataPoints.find((p) => p.attributes['m2m_guard.cache.result'] === 'hit');
if (hits?.value !== 2 * calls * rounds) throw new Error('the SDK did not count the hits');
// Inside a real server loop, the SDK off, the middleware against the bare route, paired rounds.
useSdk(false);
const loopAdded: number[] = [];
const loopBare: number[] = [];
const loopRequests = Math.max(10_000, Math.round(calls / 4));
for (let round = 0; round < rounds; round++) {
  const bare = await serverLoopCpu(undefined, `Bearer ${token}`, loopRequests);
  const guarded = await serverLoopCpu(plain, `Bearer ${token}`, loopRequests);
  loopBare.push(bare);
  loopAdded.push(guarded - bare);
}
console.log(
  `node:http server loop: bare route ${median(loopBare).toFixed(2)} µs CPU per request; ` +
    `m2mAuth() on a cache hit adds ${median(loopAdded).toFixed(2)} µs (median of ${rounds} ` +
    `paired rounds of ${loopRequests.toLocaleString('en-US')}; all rounds ` +
    `${loopAdded.map((c) => c.toFixed(2)).join(', ')})`,
);
await Promise.all([plain.close(), instrumented.close(), meterProvider.shutdown()]);
await caller.close();
await emulator.close();
