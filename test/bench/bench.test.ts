/**
 * Proves the benchmark harness works end to end (quick mode, two scenarios). Asserts that it
 * ran and measured, never how fast anything was.
 */
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

interface ScenarioRow {
  name: string;
  reqPerSec2xx: number;
  reqPerSecTotal: number;
  requests: number;
  ok2xx: number;
  p50Ms: number;
  p99Ms: number;
  upstreamPer1000: number | null;
  peakRssMiB: number;
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

it('npm run bench -- --quick runs scenarios none and m2m-guard and writes results.json', async () => {
  const args = ['run', 'bench', '--', '--quick', '--only', 'none,m2m-guard', '--duration', '1'];
  const { code, output } = await run('npm', args);
  expect(code, output).toBe(0);
  expect(output).toContain('| scenario |');

  const results = JSON.parse(await readFile(join(ROOT, 'bench', 'results.json'), 'utf8')) as {
    ok: boolean;
    failures: string[];
    machine: { node: string; cpuCount: number };
    options: { durationSec: number; quick: boolean };
    scenarios: ScenarioRow[];
  };
  expect(results.ok).toBe(true);
  expect(results.failures).toEqual([]);
  expect(results.machine.node).toBe(process.version);
  expect(results.machine.cpuCount).toBeGreaterThan(0);
  expect(results.options).toMatchObject({ durationSec: 1, quick: true });
  expect(results.scenarios.map((s) => s.name)).toEqual(['none', 'm2m-guard']);
  for (const s of results.scenarios) {
    expect(s.reqPerSec2xx, s.name).toBeGreaterThan(0);
    expect(s.reqPerSecTotal, s.name).toBeGreaterThan(0);
    expect(s.requests, s.name).toBeGreaterThan(0);
    expect(s.ok2xx, s.name).toBeGreaterThan(0);
    expect(s.peakRssMiB, s.name).toBeGreaterThan(0);
    expect(Number.isFinite(s.p50Ms) && Number.isFinite(s.p99Ms), s.name).toBe(true);
  }
  const guard = results.scenarios.find((s) => s.name === 'm2m-guard')!;
  // Cache warm, one token: a handful of upstream calls at most, far from one per request.
  expect(guard.upstreamPer1000).not.toBeNull();
  expect(guard.upstreamPer1000!).toBeLessThan(100);
}, 300_000);
