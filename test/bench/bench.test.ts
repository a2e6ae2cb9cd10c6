/**
 * Proves the benchmark harness works end to end: one quick run of the scenarios below (plus
 * `two-instances-redis` when REDIS_URL is set, `two-instances-cluster` when REDIS_CLUSTER_URLS
 * is, and the revocation lag over each). Asserts that each ran and measured, never how fast
 * anything was.
 */
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const REDIS_URL = process.env.REDIS_URL;
const REDIS_CLUSTER_URLS = process.env.REDIS_CLUSTER_URLS;

interface ScenarioRow {
  name: string;
  instances: number;
  reqPerSec2xx: number;
  reqPerSecTotal: number;
  requests: number;
  ok2xx: number;
  p50Ms: number;
  p99Ms: number;
  upstreamCalls: number;
  upstreamPer1000: number | null;
  jwksCalls: number;
  peakRssMiB: number;
  notes: string[];
}

function run(command: string, args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.once('error', reject);
    child.once('exit', (code) => resolve({ code, output }));
  });
}

const names = [
  'none',
  'm2m-guard',
  'm2m-guard-jwt',
  'two-instances-separate',
  ...(REDIS_URL ? ['two-instances-redis'] : []),
  ...(REDIS_CLUSTER_URLS ? ['two-instances-cluster'] : []),
];
const lagStores = [
  ...(REDIS_URL ? ['Redis'] : []),
  ...(REDIS_CLUSTER_URLS ? ['Redis Cluster (3 nodes)'] : []),
];

it(`npm run bench -- --quick runs ${names.join(', ')} and writes results.json`, async () => {
  const only = [...names, ...(lagStores.length > 0 ? ['revocation-lag'] : [])].join(',');
  const args = ['run', 'bench', '--', '--quick', '--only', only, '--duration', '1'];
  const { code, output } = await run('npm', args);
  expect(code, output).toBe(0);
  expect(output).toContain('| scenario |');

  const results = JSON.parse(await readFile(join(ROOT, 'bench', 'results.json'), 'utf8')) as {
    ok: boolean;
    failures: string[];
    skipped: { name: string; reason: string }[];
    machine: { node: string; cpuCount: number };
    options: { durationSec: number; quick: boolean };
    scenarios: ScenarioRow[];
    twoInstances: { upstreamCallsRatio: number | null } | null;
    twoInstancesCluster: { upstreamCallsRatio: number | null } | null;
    revocationLag: { store: string; revocations: number; p50Ms: number; maxMs: number }[];
  };
  expect(results.ok).toBe(true);
  expect(results.failures).toEqual([]);
  expect(results.skipped).toEqual([]);
  expect(results.machine.node).toBe(process.version);
  expect(results.machine.cpuCount).toBeGreaterThan(0);
  expect(results.options).toMatchObject({ durationSec: 1, quick: true });
  expect(results.scenarios.map((s) => s.name)).toEqual(names);
  for (const s of results.scenarios) {
    expect(s.reqPerSec2xx, s.name).toBeGreaterThan(0);
    expect(s.reqPerSecTotal, s.name).toBeGreaterThan(0);
    expect(s.requests, s.name).toBeGreaterThan(0);
    expect(s.ok2xx, s.name).toBeGreaterThan(0);
    expect(s.peakRssMiB, s.name).toBeGreaterThan(0);
    expect(Number.isFinite(s.p50Ms) && Number.isFinite(s.p99Ms), s.name).toBe(true);
    expect(s.upstreamPer1000, s.name).not.toBeNull();
  }
  const row = (name: string) => results.scenarios.find((s) => s.name === name)!;

  // Cache warm, one token: a handful of upstream calls at most, far from one per request.
  expect(row('m2m-guard').upstreamPer1000!).toBeLessThan(100);

  // JWT-format tokens are verified locally: no verify call at all, the JWKS fetched.
  const jwt = row('m2m-guard-jwt');
  expect(jwt.upstreamPer1000).toBe(0);
  expect(jwt.upstreamCalls).toBe(0);
  expect(jwt.jwksCalls).toBeGreaterThan(0);

  // Two instances, caches cold: each must have asked Clerk.
  const pair = names.filter((name) => name.startsWith('two-instances-')).map(row);
  for (const s of pair) {
    expect(s.instances, s.name).toBe(2);
    expect(s.upstreamCalls, s.name).toBeGreaterThan(0);
    expect(s.upstreamPer1000!, s.name).toBeGreaterThan(0);
  }
  if (REDIS_URL) {
    expect(results.twoInstances?.upstreamCallsRatio).toBeGreaterThan(0);
    expect(row('two-instances-redis').notes.join(' ')).toContain('shared/separate');
  }
  if (REDIS_CLUSTER_URLS) {
    expect(results.twoInstancesCluster?.upstreamCallsRatio).toBeGreaterThan(0);
    expect(row('two-instances-cluster').notes.join(' ')).toContain('shared/separate');
  }
  expect(results.revocationLag.map((lag) => lag.store)).toEqual(lagStores);
  for (const lag of results.revocationLag) {
    expect(lag.revocations).toBe(20);
    expect(lag.maxMs).toBeGreaterThanOrEqual(lag.p50Ms);
  }
}, 600_000);
