import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VERSION } from '../../src/shared/version.js';

/**
 * Builds and packs the package as npm would publish it, unpacks it under `.pack-test/`
 * (inside the repository, so its dependencies resolve from our node_modules), and uses it the
 * ways a user would: `import`, `require`, the emulator sub-path, the types and the bin.
 */
const root = resolve(import.meta.dirname, '../..');
const work = join(root, '.pack-test');
const consumer = join(work, 'consumer');
const installed = join(consumer, 'node_modules', 'm2m-guard');

const run = (cmd: string, args: string[], cwd = consumer) =>
  execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

beforeAll(() => {
  rmSync(work, { recursive: true, force: true });
  mkdirSync(join(consumer, 'node_modules'), { recursive: true });
  run('npm', ['run', 'build', '--silent'], root);
  const out = run(
    'npm',
    ['pack', '--ignore-scripts', '--silent', '--pack-destination', work],
    root,
  );
  const tarball = join(work, out.trim().split('\n').at(-1)!);
  run('tar', ['xzf', tarball, '-C', consumer]);
  execFileSync('mv', [join(consumer, 'package'), installed]);
}, 120_000);

afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('the published package', () => {
  it('ships dist, bin, README and LICENSE only, and no test or source files', () => {
    const top = readdirSync(installed).sort();
    expect(top).toEqual(['LICENSE', 'README.md', 'bin', 'dist', 'package.json']);
    expect(readdirSync(join(installed, 'dist'))).toContain('index.d.ts');
  });

  it('keeps VERSION equal to package.json', () => {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
    expect(VERSION).toBe(pkg.version);
  });

  it('loads with import, including the emulator, redis and prometheus sub-paths', () => {
    const out = run('node', [
      '--input-type=module',
      '-e',
      `import * as g from 'm2m-guard';
       import { startEmulator } from 'm2m-guard/emulator';
       import { createRedisStore } from 'm2m-guard/redis';
       import { registerMetrics } from 'm2m-guard/prometheus';
       console.log([typeof g.m2mAuth, typeof g.createTokenVerifier, typeof g.createM2MClient, typeof startEmulator, typeof createRedisStore, typeof registerMetrics].join());`,
    ]);
    expect(out.trim()).toBe('function,function,function,function,function,function');
  });

  it('loads with require on Node 20.19+', () => {
    const out = run('node', [
      '--no-warnings',
      '-e',
      `const g = require('m2m-guard');
       const e = require('m2m-guard/emulator');
       console.log([typeof g.m2mAuth, typeof g.InvalidTokenError, typeof e.startEmulator].join());`,
    ]);
    expect(out.trim()).toBe('function,function,function');
  });

  it('type-checks a TypeScript consumer against the shipped declarations', () => {
    writeFileSync(
      join(consumer, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          strict: true,
          noEmit: true,
          types: ['node'],
          typeRoots: [join(root, 'node_modules/@types')],
          skipLibCheck: false,
        },
        files: ['consumer.ts'],
      }),
    );
    writeFileSync(join(consumer, 'package.json'), JSON.stringify({ type: 'module' }));
    writeFileSync(
      join(consumer, 'consumer.ts'),
      `import type { IncomingMessage } from 'node:http';
import { m2mAuth, type M2MRequestAuth } from 'm2m-guard';
import { startEmulator } from 'm2m-guard/emulator';
const auth = m2mAuth({ apiUrl: 'http://127.0.0.1:1', secretKey: 'sk_test_x' });
const subject = (req: IncomingMessage): string | undefined => req.m2m?.subject;
const seen: M2MRequestAuth | undefined = undefined;
void auth; void subject; void seen; void startEmulator;
`,
    );
    const tsc = join(root, 'node_modules/.bin/tsc');
    expect(() => run(tsc, ['-p', consumer])).not.toThrow();
  });

  it('runs the m2m-guard bin', () => {
    const out = run('node', [join(installed, 'bin/m2m-guard.js'), '--version']);
    expect(out.trim()).toBe(VERSION);
  });
});
