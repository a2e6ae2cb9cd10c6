import { execFileSync } from 'node:child_process';
import {
  cpSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
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
// m2m-guard/koa is left out: @types/koa itself fails skipLibCheck: false (content-disposition).
import type { FastifyRequest } from 'fastify';
import { m2mAuth as fastifyAuth } from 'm2m-guard/fastify';
import { type M2MEnv } from 'm2m-guard/hono';
import { M2MAuthGuard } from 'm2m-guard/nestjs';
import { withM2MAuth } from 'm2m-guard/web';
const fromFastify = (request: FastifyRequest): string | undefined => request.m2m?.subject;
const fromHono = (vars: M2MEnv['Variables']): string | undefined => vars.m2m?.subject;
void fastifyAuth; void fromFastify; void fromHono; void M2MAuthGuard; void withM2MAuth;
`,
    );
    const tsc = join(root, 'node_modules/.bin/tsc');
    try {
      run(tsc, ['-p', consumer]);
    } catch (err) {
      throw new Error(String((err as { stdout?: string }).stdout ?? err));
    }
  });

  const ADAPTERS = ['fastify', 'hono', 'koa', 'nestjs', 'web'] as const;
  /** What each adapter sub-path must export (the guards are the same three everywhere). */
  const adapterExport = (name: (typeof ADAPTERS)[number]) =>
    name === 'nestjs' ? 'M2MAuthGuard' : 'm2mAuth';

  it('loads every framework sub-path with import and with require', () => {
    const names = ADAPTERS.map((name) => `${name}:${adapterExport(name)},requireMachine`);
    const imported = run('node', [
      '--input-type=module',
      '-e',
      `const out = [];
       for (const name of ${JSON.stringify(ADAPTERS)}) {
         const m = await import('m2m-guard/' + name);
         out.push(name + ':' + Object.keys(m).filter((k) => k === 'm2mAuth' || k === 'M2MAuthGuard' || k === 'requireMachine').sort((a, b) => a.localeCompare(b)).join());
       }
       console.log(out.join(' '));`,
    ]);
    expect(imported.trim()).toBe(names.join(' '));
    const required = run('node', [
      '--no-warnings',
      '-e',
      `console.log(${JSON.stringify(ADAPTERS)}.map((name) => {
         const m = require('m2m-guard/' + name);
         return name + ':' + [typeof m.m2mAuth === 'function' || typeof m.M2MAuthGuard === 'function', typeof m.requireMachine].join();
       }).join(' '));`,
    ]);
    expect(required.trim()).toBe(ADAPTERS.map((name) => `${name}:true,function`).join(' '));
  });

  /** The framework packages each sub-path needs beside the package (peers of peers included). */
  const FRAMEWORK: Record<(typeof ADAPTERS)[number], string[]> = {
    fastify: ['fastify', 'fastify-plugin'],
    hono: ['hono'],
    koa: ['koa'],
    nestjs: ['@nestjs/common', 'reflect-metadata', 'rxjs'],
    web: [],
  };

  it.each(ADAPTERS)(
    'm2m-guard/%s loads with only its framework installed beside the package',
    (name) => {
      // Outside the repository, so nothing resolves from its node_modules: the package and its
      // dependencies and this one framework are linked in, nothing else.
      const alone = mkdtempSync(join(tmpdir(), `m2m-guard-${name}-`));
      try {
        const modules = join(alone, 'node_modules');
        cpSync(installed, join(modules, 'm2m-guard'), { recursive: true });
        const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
        for (const dep of [...Object.keys(pkg.dependencies), ...FRAMEWORK[name]]) {
          mkdirSync(dirname(join(modules, dep)), { recursive: true });
          symlinkSync(join(root, 'node_modules', dep), join(modules, dep), 'dir');
        }
        // Hono and Koa are imported for their types only: fastify and nestjs load theirs.
        const other = name === 'fastify' ? 'nestjs' : 'fastify';
        const out = run(
          'node',
          [
            '--input-type=module',
            '-e',
            `const m = await import('m2m-guard/${name}');
             let other = 'loaded';
             try { await import('m2m-guard/${other}'); } catch (err) { other = err.code; }
             console.log([typeof m.requireMachine, other].join());`,
          ],
          alone,
        );
        expect(out.trim()).toBe('function,ERR_MODULE_NOT_FOUND');
      } finally {
        rmSync(alone, { recursive: true, force: true });
      }
    },
  );

  it('runs the m2m-guard bin', () => {
    const out = run('node', [join(installed, 'bin/m2m-guard.js'), '--version']);
    expect(out.trim()).toBe(VERSION);
  });
});
