import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect, test } from 'vitest';

/** examples/metrics.ts as a user runs it: no environment, so it starts its own emulator. */
test('metrics example: readiness, Prometheus and OpenTelemetry agree, and it exits 0', async () => {
  const root = fileURLToPath(new URL('../../', import.meta.url));
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !name.startsWith('CLERK_')),
  );
  const { stdout } = await promisify(execFile)('node_modules/.bin/tsx', ['examples/metrics.ts'], {
    cwd: root,
    env,
    timeout: 25_000,
  });
  // execFile rejects on a non-zero exit code, so reaching here means the program exited 0.
  expect(stdout).toMatch(/^GET \/ready -> \{"status":"ok","breaker":"closed",/m);
  for (const line of [
    'prometheus m2m_guard_cache_lookups_total{result="hit"} 1',
    'prometheus m2m_guard_cache_lookups_total{result="miss"} 2',
    'prometheus m2m_guard_upstream_calls_total{result="valid"} 1',
    'prometheus m2m_guard_upstream_calls_total{result="invalid"} 1',
    'otel m2m_guard.cache.lookups {"m2m_guard.cache.result":"hit"} 1',
    'otel m2m_guard.requests {"m2m_guard.outcome":"accepted"} 2',
    'otel m2m_guard.requests {"m2m_guard.outcome":"invalid_token"} 1',
    'otel spans m2m_guard.verify: 2',
  ]) {
    expect(stdout.split('\n')).toContain(line);
  }
  expect(stdout).toMatch(
    /^otel m2m_guard\.upstream\.duration \{"m2m_guard\.upstream\.result":"valid"\} count 1, /m,
  );
}, 30_000);
