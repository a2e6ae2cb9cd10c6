/**
 * Each framework example runs exactly as the README says (`npx tsx examples/<name>.ts`, no
 * environment variables: an in-process emulator stands in for Clerk), exits 0, and prints the
 * answers of the same four calls: 200 with the caller's machine id, 401, 401, 403.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../../', import.meta.url));
const cleanEnv = Object.fromEntries(
  Object.entries(process.env).filter(([name]) => !/^(CLERK_|API_MACHINE_ID$)/.test(name)),
);

const EXAMPLES = [
  'examples/fastify.ts',
  'examples/hono.ts',
  'examples/koa.ts',
  'examples/web.ts',
  'examples/nestjs.ts',
];

describe.each(EXAMPLES)('%s', (example) => {
  it('runs as a program, prints the four answers and exits 0', async () => {
    const { stdout } = await promisify(execFile)('npx', ['tsx', example], {
      cwd: root,
      env: cleanEnv,
      timeout: 30_000,
    });
    const lines = stdout.trim().split('\n');
    const calls = lines.filter((line) => line.startsWith('GET /internal/orders '));
    expect(calls).toEqual([
      expect.stringMatching(/\(caller's token\) -> 200 \{"calledBy":"mch_\w+"\}$/),
      expect.stringMatching(/\(no token\) -> 401 \{"error":"unauthorized",/),
      expect.stringMatching(/\(bad token\) -> 401 \{"error":"invalid_token",/),
      expect.stringMatching(/\(token not scoped to us\) -> 403 \{"error":"insufficient_scope",/),
    ]);
  }, 40_000);
});
