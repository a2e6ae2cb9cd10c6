/**
 * `npm run bench`: each scenario of `scenarios.ts` in turn, each against a server process of its
 * own (`server.ts`), loaded by autocannon from this process, which also runs the emulator with
 * an injected upstream latency. Then the cold-start check (`cold-start.ts`). Prints a markdown
 * table (or, with --json, only JSON) and writes everything to bench/results.json.
 *
 * Options: --latency <ms> (25) --connections <n> (50) --duration <s> (10) --warmup <s> (2)
 *          --quick (duration 1 s, warm-up 0.5 s) --only <name,…> (scenarios and/or cold-start)
 *          --json
 * Exits 1 when the harness fails (a server that does not start, a scenario without a single
 * successful request, a failed cold-start check); never because of a figure.
 */
import { writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { setTimeout } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { type Emulator, startEmulator } from '../src/emulator/index.js';
import { createM2MClient, type M2MClient } from '../src/index.js';
import { ROOT, runColdStartChild, startServer } from './child.js';
import type { ColdStartResult } from './cold-start.js';
import { runLoad } from './load.js';
import {
  COLD_START,
  fakePublishableKey,
  PRODUCTION_RATE_LIMIT,
  ROUTE,
  SCENARIOS,
  type Scenario,
} from './scenarios.js';
import { type MeasuredScenario, markdownTable, round, withRatios } from './table.js';

interface Options {
  latencyMs: number;
  connections: number;
  durationSec: number;
  warmupSec: number;
  quick: boolean;
  only: string[] | null;
  json: boolean;
}

const log = (line: string) => process.stderr.write(`[bench] ${line}\n`);

function number(value: string | undefined, name: string, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n < min) throw new Error(`--${name} must be a number ≥ ${min}`);
  return n;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      latency: { type: 'string' },
      connections: { type: 'string' },
      duration: { type: 'string' },
      warmup: { type: 'string' },
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  });
  const quick = values.quick ?? false;
  const only = values.only ? values.only.split(',').map((s) => s.trim()) : null;
  const known = [...SCENARIOS.map((s) => s.name), COLD_START];
  const unknown = only?.filter((name) => !known.includes(name)) ?? [];
  if (unknown.length > 0) {
    throw new Error(`--only: unknown ${unknown.join(', ')}; known: ${known.join(', ')}`);
  }
  return {
    latencyMs: Math.round(number(values.latency, 'latency', 25, 0)),
    connections: Math.round(number(values.connections, 'connections', 50, 1)),
    durationSec: number(values.duration, 'duration', quick ? 1 : 10, 0.1),
    warmupSec: number(values.warmup, 'warmup', quick ? 0.5 : 2, 0),
    quick,
    only,
    json: values.json ?? false,
  };
}

/** Mints `count` tokens with the caller machine's key (at 0 latency: setup, not measured). */
async function mint(minter: M2MClient, count: number): Promise<string[]> {
  const tokens: string[] = [];
  let left = count;
  const worker = async () => {
    while (left-- > 0) tokens.push((await minter.createToken()).token);
  };
  await Promise.all(Array.from({ length: Math.min(count, 50) }, worker));
  return tokens;
}

/** One request per token (or one without), each must be 2xx: proves the setup, warms caches. */
async function touch(origin: string, tokens: readonly string[]): Promise<void> {
  const pool = new Pool(origin, { connections: 50 });
  try {
    const send = async (token?: string) => {
      const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
      const res = await pool.request({ method: 'GET', path: ROUTE, headers });
      const body = await res.body.text();
      if (res.statusCode !== 200) {
        throw new Error(`warming request answered ${res.statusCode}: ${body.slice(0, 200)}`);
      }
    };
    if (tokens.length === 0) return await send();
    let next = 0;
    const worker = async () => {
      while (next < tokens.length) await send(tokens[next++]);
    };
    await Promise.all(Array.from({ length: Math.min(tokens.length, 50) }, worker));
  } finally {
    await pool.close();
  }
}

async function runScenario(
  scenario: Scenario,
  emulator: Emulator,
  minter: M2MClient,
  options: Options,
): Promise<MeasuredScenario> {
  emulator.reset(); // tokens, counters, rate limit
  emulator.setLatency(0);
  const tokens = await mint(minter, scenario.tokens);
  emulator.setLatency(options.latencyMs);
  const server = await startServer(scenario.server, {
    BENCH_API_URL: emulator.url,
    BENCH_SECRET_KEY: emulator.instanceSecretKey,
    BENCH_MACHINE_SECRET_KEY: emulator.machines.api!.secretKey,
    BENCH_PUBLISHABLE_KEY: fakePublishableKey(),
    CLERK_TELEMETRY_DISABLED: '1',
    NODE_ENV: 'production',
  });
  try {
    const touchStarted = performance.now();
    await touch(server.origin, tokens);
    const touchSec = round((performance.now() - touchStarted) / 1000, 2);
    // Past the cache's 10 s default TTL, the first tokens are cold again when measuring starts.
    log(`  ${Math.max(tokens.length, 1)} warming request(s) answered 200 in ${touchSec} s`);
    const load = { origin: server.origin, connections: options.connections, tokens };
    if (options.warmupSec > 0) {
      await runLoad({ ...load, durationSec: options.warmupSec });
      // Let the requests the warm-up left in flight finish outside the measured window.
      await setTimeout(250);
    }
    // A fresh rate-limit window starts with the measured one.
    if (scenario.rateLimit) emulator.setRateLimit(PRODUCTION_RATE_LIMIT);
    const before = emulator.calls.verify;
    const result = await runLoad({ ...load, durationSec: options.durationSec });
    const upstreamCalls = emulator.calls.verify - before;
    const stats = await server.stats();
    // Kept in the table with its figures, and failed: every scenario expects successes.
    const failure =
      result.ok2xx === 0
        ? `no successful request in the measured window (sent ${result.sent}, ` +
          `statuses ${JSON.stringify(result.statusCodes)}, errors ${result.errors})`
        : undefined;
    return {
      name: scenario.name,
      description: scenario.description,
      ...result,
      reqPerSec2xx: round(result.reqPerSec2xx),
      reqPerSecTotal: round(result.reqPerSecTotal),
      upstreamCalls,
      // The emulator counts a call when it arrives, so count requests when they are sent too:
      // requests still in flight at the end have made their call but will never complete.
      upstreamPer1000: result.sent > 0 ? round((upstreamCalls / result.sent) * 1000, 3) : null,
      peakRssMiB: round(stats.peakRssBytes / 2 ** 20),
      touchSec,
      failure,
    };
  } finally {
    await server.stop();
    emulator.setRateLimit(false);
  }
}

function machine() {
  const cpus = os.cpus();
  return {
    node: process.version,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    cpuCount: cpus.length,
    cpuModel: cpus[0]?.model ?? 'unknown',
    totalMemMiB: Math.round(os.totalmem() / 2 ** 20),
    loadAvgAtStart: os.loadavg().map((n) => round(n, 2)),
  };
}

function coldStartSummary(result: ColdStartResult): string {
  const { coalescing: c, bound: b } = result;
  return [
    `cold start (a): ${c.requests} concurrent requests, one new token -> ${c.upstreamCalls} ` +
      `upstream call(s): ${c.pass ? 'PASS' : 'FAIL'}`,
    `cold start (b): ${b.tokens} tokens, cache.max ${b.cacheMax} -> size ${b.size} ` +
      `(${b.sizeAfterOverflow} after 1 000 more), heap ${b.heapMiBPer100k.toFixed(1)} MiB ` +
      `per 100 000 entries: ${b.pass ? 'PASS' : 'FAIL'}`,
  ].join('\n');
}

async function main(): Promise<number> {
  const options = parseOptions(process.argv.slice(2));
  const startedAt = new Date().toISOString();
  const info = machine();
  const selected = SCENARIOS.filter((s) => !options.only || options.only.includes(s.name));
  const withColdStart = !options.only || options.only.includes(COLD_START);
  const failures: string[] = [];
  const measured: MeasuredScenario[] = [];

  if (selected.length > 0) {
    const emulator = await startEmulator({ latencyMs: options.latencyMs });
    const minter = createM2MClient({
      apiUrl: emulator.url,
      machineSecretKey: emulator.machines.caller!.secretKey,
    });
    try {
      for (const scenario of selected) {
        log(`${scenario.name}: ${scenario.description}`);
        try {
          const result = await runScenario(scenario, emulator, minter, options);
          measured.push(result);
          log(`  ${result.reqPerSec2xx} 2xx req/s, upstream/1k ${result.upstreamPer1000}`);
          if (result.failure) {
            failures.push(`${scenario.name}: ${result.failure}`);
            log(`  FAILED: ${result.failure}`);
          }
        } catch (err) {
          const message = err instanceof Error ? err.message : String(err);
          failures.push(`${scenario.name}: ${message}`);
          log(`  FAILED: ${message}`);
        }
      }
    } finally {
      await minter.close();
      await emulator.close();
    }
  }

  let coldStart: ColdStartResult | null = null;
  if (withColdStart) {
    log('cold-start check');
    const { code, result } = await runColdStartChild(options.latencyMs);
    coldStart = result ?? null;
    if (!result) failures.push(`${COLD_START}: no result (exit code ${code})`);
    else if (!result.pass) failures.push(`${COLD_START}: a check failed`);
  }

  const scenarios = withRatios(measured);
  const results = {
    startedAt,
    finishedAt: new Date().toISOString(),
    machine: { ...info, loadAvgAtEnd: os.loadavg().map((n) => round(n, 2)) },
    options: {
      ...options,
      serverEnv: { NODE_ENV: 'production' },
      rateLimit: PRODUCTION_RATE_LIMIT,
      route: ROUTE,
    },
    scenarios,
    coldStart,
    failures,
    ok: failures.length === 0,
  };
  await writeFile(join(ROOT, 'bench', 'results.json'), `${JSON.stringify(results, null, 2)}\n`);

  if (options.json) {
    process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
  } else {
    const lines = [
      `m2m-guard benchmark: node ${info.node}, ${info.cpuCount} CPU, upstream latency ` +
        `${options.latencyMs} ms, ${options.connections} connections, ${options.durationSec} s ` +
        `per scenario after ${options.warmupSec} s warm-up`,
      '',
      markdownTable(scenarios),
    ];
    if (coldStart) lines.push('', coldStartSummary(coldStart));
    if (failures.length > 0) lines.push('', 'FAILURES:', ...failures.map((f) => `- ${f}`));
    lines.push('', 'written to bench/results.json');
    process.stdout.write(`${lines.join('\n')}\n`);
  }
  return failures.length === 0 ? 0 : 1;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error('bench failed:', err);
    process.exitCode = 1;
  },
);
