/**
 * `npm run bench`: each scenario of `scenarios.ts` in turn, each against a server process of its
 * own (`server.ts`), loaded by autocannon from this process, which also runs the emulator with
 * an injected upstream latency. Then the cold-start check (`cold-start.ts`). Prints a markdown
 * table (or, with --json, only JSON) and writes everything to bench/results.json.
 *
 * Options: --latency <ms> (25) --connections <n> (50) --duration <s> (10) --warmup <s> (2)
 *          --quick (duration 1 s, warm-up 0.5 s) --only <name,…> (scenarios and/or cold-start)
 *          --rounds <n> (1: passes interleaved; rows are median rounds, ratios paired per round)
 *          --json
 * Environment: REDIS_URL, the Redis server of scenario `two-instances-redis`, and
 * REDIS_CLUSTER_URLS (comma-separated), the Redis Cluster of `two-instances-cluster` (each
 * skipped without it, which is no failure); keys go under a prefix unique to the run. With
 * either, `revocation-lag` measures the lag of a revocation across two processes over it.
 *
 * Scenarios with several instances start that many server processes of the same kind and split
 * the load between them (one autocannon run each, in parallel, half the connections each); their
 * figures are combined (rates added, the worse latency percentiles).
 * Exits 1 when the harness fails (a server that does not start, a scenario without a single
 * successful request, a failed cold-start check); never because of a figure.
 */
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { setTimeout } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { type Emulator, startEmulator } from '../src/emulator/index.js';
import { createM2MClient, type M2MClient } from '../src/index.js';
import {
  type LoadProcess,
  ROOT,
  runColdStartChild,
  type ServerProcess,
  startLoadProcess,
  startServer,
} from './child.js';
import type { ColdStartResult } from './cold-start.js';
import { combineLoads, type LoadOptions, type LoadResult, runLoad } from './load.js';
import { measureRevocationLag, type RevocationLag } from './revocation-lag.js';
import {
  COLD_START,
  fakePublishableKey,
  PRODUCTION_RATE_LIMIT,
  REVOCATION_LAG,
  ROUTE,
  SCENARIOS,
  type Scenario,
} from './scenarios.js';
import { fmt, type MeasuredScenario, markdownTable, round, withRatios } from './table.js';

interface Options {
  latencyMs: number;
  connections: number;
  durationSec: number;
  warmupSec: number;
  quick: boolean;
  only: string[] | null;
  json: boolean;
  /** Passes over the scenario list, interleaved; each scenario reports its median round. */
  rounds: number;
}

/** What every scenario of one run shares beyond the options. */
interface RunContext {
  /** `REDIS_URL`, when set. */
  redisUrl: string | undefined;
  /** `REDIS_CLUSTER_URLS`, when set. */
  clusterUrls: string[] | undefined;
  /** Unique to this run: the Redis key prefix, so no earlier run's answers are found. */
  redisPrefix: string;
}

interface Skipped {
  name: string;
  reason: string;
}

const SEPARATE = 'two-instances-separate';
const SHARED = 'two-instances-redis';
const SHARED_CLUSTER = 'two-instances-cluster';

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
      rounds: { type: 'string' },
    },
  });
  const quick = values.quick ?? false;
  const only = values.only ? values.only.split(',').map((s) => s.trim()) : null;
  const known = [...SCENARIOS.map((s) => s.name), COLD_START, REVOCATION_LAG];
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
    rounds: Math.round(number(values.rounds, 'rounds', 1, 1)),
  };
}

/** The round with the median 2xx req/s (the lower middle for an even count), whole. */
function medianRound(results: MeasuredScenario[]): MeasuredScenario {
  const sorted = [...results].sort((a, b) => a.reqPerSec2xx - b.reqPerSec2xx);
  return {
    ...sorted[Math.floor((sorted.length - 1) / 2)]!,
    rounds: results.length,
    roundRates: results.map((r) => r.reqPerSec2xx),
    roundCpu: results.map((r) => r.cpuUsPerReq),
  };
}

/** Mints `count` tokens with the caller machine's key (at 0 latency: setup, not measured). */
async function mint(
  minter: M2MClient,
  count: number,
  tokenFormat: 'opaque' | 'jwt',
): Promise<string[]> {
  const tokens: string[] = [];
  let left = count;
  const worker = async () => {
    while (left-- > 0) tokens.push((await minter.createToken({ tokenFormat })).token);
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

/** Starts `count` children at once; all or none (the started ones are stopped on a failure). */
async function startAll<T extends { stop(): Promise<void> }>(
  count: number,
  start: () => Promise<T>,
): Promise<T[]> {
  const started = await Promise.allSettled(Array.from({ length: count }, start));
  const children = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    await Promise.all(children.map((child) => child.stop()));
    throw failed.reason;
  }
  return children;
}

/** The connections of part `part` when `total` are split in `parts`: as even as can be. */
function share(total: number, parts: number, part: number): number {
  return Math.max(1, Math.floor(total / parts) + (part < total % parts ? 1 : 0));
}

/** Drives the servers of a scenario: one load, split between them. */
interface Loader {
  /** One autocannon run per server, all at once; one result per server. */
  run(durationSec: number): Promise<LoadResult[]>;
  close(): Promise<void>;
}

/**
 * One server: autocannon in this process, as ever. Several: one load process per server, so
 * that the runs start together (autocannon blocks its event loop while it builds its requests:
 * in one process, the second run's set-up would eat into the first one's window) and none
 * stalls the emulator, which answers from this process's event loop.
 */
async function openLoader(
  servers: readonly ServerProcess[],
  tokens: readonly string[],
  connections: number,
): Promise<Loader> {
  const parts = servers.length;
  const optionsFor = (part: number, durationSec: number): LoadOptions => ({
    origin: servers[part]!.origin,
    connections: share(connections, parts, part),
    durationSec,
    tokens,
    split: { part, parts },
  });
  if (parts === 1) {
    return {
      run: async (durationSec) => [await runLoad(optionsFor(0, durationSec))],
      close: async () => {},
    };
  }
  const generators: LoadProcess[] = await startAll(parts, () => startLoadProcess());
  return {
    run: (durationSec) =>
      Promise.all(
        generators.map((generator, part) => generator.run(optionsFor(part, durationSec))),
      ),
    close: async () => {
      await Promise.all(generators.map((generator) => generator.stop()));
    },
  };
}

async function runScenario(
  scenario: Scenario,
  emulator: Emulator,
  minter: M2MClient,
  options: Options,
  context: RunContext,
): Promise<MeasuredScenario> {
  emulator.reset(); // tokens, counters, rate limit
  emulator.setLatency(0);
  const tokens = await mint(minter, scenario.tokens, scenario.tokenFormat ?? 'opaque');
  emulator.setLatency(options.latencyMs);
  const instances = scenario.instances ?? 1;
  const env: Record<string, string> = {
    BENCH_API_URL: emulator.url,
    BENCH_SECRET_KEY: emulator.instanceSecretKey,
    BENCH_MACHINE_SECRET_KEY: emulator.machines.api!.secretKey,
    BENCH_API_MACHINE_ID: emulator.machines.api!.id,
    BENCH_PUBLISHABLE_KEY: fakePublishableKey(),
    // A key from the shell would replace the emulator's JWKS (and refuse its tokens).
    CLERK_JWT_KEY: '',
    CLERK_TELEMETRY_DISABLED: '1',
    NODE_ENV: 'production',
  };
  if (scenario.needsRedis) {
    if (!context.redisUrl) throw new Error('REDIS_URL is not set');
    env.BENCH_REDIS_URL = context.redisUrl;
    env.BENCH_REDIS_PREFIX = context.redisPrefix;
  }
  if (scenario.needsCluster) {
    if (!context.clusterUrls) throw new Error('REDIS_CLUSTER_URLS is not set');
    env.BENCH_REDIS_CLUSTER_URLS = context.clusterUrls.join(',');
    env.BENCH_REDIS_PREFIX = context.redisPrefix;
  }
  const jwksAtStart = emulator.calls.jwks;
  const servers = await startAll(instances, () => startServer(scenario.server, env));
  let loader: Loader | undefined;
  try {
    loader = await openLoader(servers, tokens, options.connections);
    let touchSec: number | null = null;
    if (scenario.cold) {
      log(`  ${instances} instance(s), no warming request, no warm-up: every cache starts empty`);
    } else {
      const touchStarted = performance.now();
      for (const server of servers) await touch(server.origin, tokens);
      touchSec = round((performance.now() - touchStarted) / 1000, 2);
      // Past the cache's 10 s default TTL, the first tokens are cold again when measuring starts.
      log(`  ${Math.max(tokens.length, 1)} warming request(s) answered 200 in ${touchSec} s`);
      if (options.warmupSec > 0) {
        await loader.run(options.warmupSec);
        // Let the requests the warm-up left in flight finish outside the measured window.
        await setTimeout(250);
      }
    }
    // A fresh rate-limit window starts with the measured one.
    if (scenario.rateLimit) emulator.setRateLimit(PRODUCTION_RATE_LIMIT);
    const before = { ...emulator.calls };
    const cpuBefore = await Promise.all(servers.map((server) => server.stats()));
    const parts = await loader.run(options.durationSec);
    const upstreamCalls = emulator.calls.verify - before.verify;
    const windowJwksCalls = emulator.calls.jwks - before.jwks;
    const jwksCalls = emulator.calls.jwks - jwksAtStart;
    const result = combineLoads(parts);
    const stats = await Promise.all(servers.map((server) => server.stats()));
    const peaks = stats.map((s) => round(s.peakRssBytes / 2 ** 20));
    // In-flight requests at the window's edges cost CPU too; over 10 s they are noise.
    const cpuMicros = stats.reduce((sum, s, i) => sum + s.cpuMicros - cpuBefore[i]!.cpuMicros, 0);
    const completed = parts.reduce((sum, part) => sum + part.requests, 0);
    const notes: string[] = [];
    if (scenario.tokenFormat === 'jwt') {
      notes.push(
        `upstream verify calls in window: ${upstreamCalls}; JWKS calls: ${jwksCalls} ` +
          `(${windowJwksCalls} in window)`,
      );
    }
    if (instances > 1) {
      const split = parts.map((_part, i) => share(options.connections, instances, i));
      const rates = parts.map((part) => fmt(part.reqPerSec2xx, 0));
      notes.push(
        `${instances} instances × ${split.join('/')} connections` +
          `${scenario.cold ? ', caches cold' : ''}; 2xx req/s ${rates.join(' + ')}; ` +
          `upstream verify calls in window: ${upstreamCalls}; peak RSS ${peaks.join(' / ')} MiB`,
      );
    }
    // Kept in the table with its figures, and failed: every scenario expects successes, from
    // every instance.
    const idle = parts.findIndex((part) => part.ok2xx === 0);
    const where = instances > 1 ? ` on instance ${idle + 1}` : '';
    const failure =
      idle >= 0
        ? `no successful request in the measured window${where} (sent ${parts[idle]!.sent}, ` +
          `statuses ${JSON.stringify(parts[idle]!.statusCodes)}, errors ${parts[idle]!.errors})`
        : undefined;
    return {
      name: scenario.name,
      description: scenario.description,
      ...result,
      reqPerSec2xx: round(result.reqPerSec2xx),
      reqPerSecTotal: round(result.reqPerSecTotal),
      instances,
      upstreamCalls,
      // The emulator counts a call when it arrives, so count requests when they are sent too:
      // requests still in flight at the end have made their call but will never complete.
      upstreamPer1000: result.sent > 0 ? round((upstreamCalls / result.sent) * 1000, 3) : null,
      jwksCalls,
      peakRssMiB: Math.max(...peaks),
      cpuUsPerReq: completed > 0 ? round(cpuMicros / completed, 1) : null,
      rounds: 1,
      roundRates: [round(result.reqPerSec2xx)],
      roundCpu: [completed > 0 ? round(cpuMicros / completed, 1) : null],
      bare: scenario.bare ?? (scenario.server === 'none' ? scenario.name : 'none'),
      touchSec,
      notes,
      failure,
    };
  } finally {
    await loader?.close();
    await Promise.all(servers.map((server) => server.stop()));
    emulator.setRateLimit(false);
  }
}

/** Shared over separate upstream verify calls (in all, per 1 000 requests); noted on the row. */
function sharedRatio(measured: readonly MeasuredScenario[], sharedName: string) {
  const separate = measured.find((s) => s.name === SEPARATE);
  const shared = measured.find((s) => s.name === sharedName);
  if (!separate || !shared) return null;
  const per1000 =
    separate.upstreamPer1000 && shared.upstreamPer1000 !== null
      ? round(shared.upstreamPer1000 / separate.upstreamPer1000, 3)
      : null;
  const calls =
    separate.upstreamCalls > 0 ? round(shared.upstreamCalls / separate.upstreamCalls, 3) : null;
  const ratio = (value: number | null) => (value === null ? '–' : fmt(value, 2));
  shared.notes.push(
    `shared/separate: upstream calls ${ratio(calls)} (${shared.upstreamCalls} / ` +
      `${separate.upstreamCalls}), per 1k req ${ratio(per1000)}`,
  );
  return { upstreamPer1000Ratio: per1000, upstreamCallsRatio: calls };
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
  const context: RunContext = {
    redisUrl: process.env.REDIS_URL || undefined,
    clusterUrls: process.env.REDIS_CLUSTER_URLS
      ? process.env.REDIS_CLUSTER_URLS.split(',')
      : undefined,
    redisPrefix: `m2m-guard-bench:${Date.now().toString(36)}-${randomBytes(4).toString('hex')}:`,
  };
  const skipped: Skipped[] = [];
  const selected = SCENARIOS.filter((s) => !options.only || options.only.includes(s.name)).filter(
    (s) => {
      if (s.needsCluster && !context.clusterUrls) {
        const reason =
          'REDIS_CLUSTER_URLS is not set (bash .ci/run starts a cluster); not a failure';
        skipped.push({ name: s.name, reason });
        log(`${s.name}: SKIPPED: ${reason}`);
        return false;
      }
      if (!s.needsRedis || context.redisUrl) return true;
      const reason = 'REDIS_URL is not set (e.g. REDIS_URL=redis://127.0.0.1:6379); not a failure';
      skipped.push({ name: s.name, reason });
      log(`${s.name}: SKIPPED: ${reason}`);
      return false;
    },
  );
  const withColdStart = !options.only || options.only.includes(COLD_START);
  const lagTargets = [
    ...(context.redisUrl ? [{ name: 'Redis', store: { redisUrl: context.redisUrl } }] : []),
    ...(context.clusterUrls
      ? [{ name: 'Redis Cluster (3 nodes)', store: { clusterUrls: context.clusterUrls } }]
      : []),
  ];
  const withLag = (!options.only || options.only.includes(REVOCATION_LAG)) && lagTargets.length > 0;
  const revocationLag: Array<RevocationLag & { store: string }> = [];
  const failures: string[] = [];
  const measured: MeasuredScenario[] = [];

  if (selected.length > 0 || withLag) {
    const emulator = await startEmulator({ latencyMs: options.latencyMs });
    const minter = createM2MClient({
      apiUrl: emulator.url,
      machineSecretKey: emulator.machines.caller!.secretKey,
    });
    try {
      // Rounds interleave the scenarios, so a slow spell of the shared machine hits all of them.
      const byScenario = new Map<string, MeasuredScenario[]>();
      for (let round = 1; round <= options.rounds; round++) {
        for (const scenario of selected) {
          log(
            `${scenario.name}: ${scenario.description}${options.rounds > 1 ? ` (round ${round})` : ''}`,
          );
          try {
            const result = await runScenario(scenario, emulator, minter, options, context);
            byScenario.set(scenario.name, [...(byScenario.get(scenario.name) ?? []), result]);
            log(
              `  ${result.reqPerSec2xx} 2xx req/s, upstream/1k ${result.upstreamPer1000}, ` +
                `server CPU ${result.cpuUsPerReq} µs/req`,
            );
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
      }
      for (const results of byScenario.values()) measured.push(medianRound(results));
      if (withLag) {
        emulator.reset();
        emulator.setLatency(0);
        for (const target of lagTargets) {
          log(`${REVOCATION_LAG}: ${target.name}, two processes, 20 revocations`);
          try {
            const lag = await measureRevocationLag({
              emulator,
              minter,
              store: target.store,
              keyPrefix: `${context.redisPrefix}lag:`,
              revocations: 20,
            });
            revocationLag.push({ store: target.name, ...lag });
            log(`  p50 ${lag.p50Ms} ms, max ${lag.maxMs} ms`);
          } catch (err) {
            const message = err instanceof Error ? err.message : String(err);
            failures.push(`${REVOCATION_LAG} (${target.name}): ${message}`);
            log(`  FAILED: ${message}`);
          }
        }
        emulator.setLatency(options.latencyMs);
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

  const twoInstances = sharedRatio(measured, SHARED);
  const twoInstancesCluster = sharedRatio(measured, SHARED_CLUSTER);
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
      // The URL stays out: it may carry a password.
      redis: context.redisUrl ? { keyPrefix: context.redisPrefix } : null,
    },
    scenarios,
    skipped,
    twoInstances,
    twoInstancesCluster,
    revocationLag,
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
    if (skipped.length > 0) lines.push('', ...skipped.map((s) => `skipped ${s.name}: ${s.reason}`));
    if (revocationLag.length > 0) {
      lines.push(
        '',
        'revocation lag across processes (revokeToken() resolved in A -> refused in B):',
        ...revocationLag.map(
          (lag) =>
            `- ${lag.store}: p50 ${fmt(lag.p50Ms, 2)} ms, max ${fmt(lag.maxMs, 2)} ms over ` +
            `${lag.revocations} revocations`,
        ),
      );
    }
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
