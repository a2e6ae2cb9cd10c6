import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * What the tarball holds besides code: the licence its package.json claims, and source maps a
 * debugger can follow. Packed from a copy of the package under `.tarball-test/` (inside the
 * repository, so the compiler resolves from our node_modules), so that it never builds into
 * the `dist/` another test is packing at the same time.
 */
const root = resolve(import.meta.dirname, '../..');
const work = join(root, '.tarball-test');
const copy = join(work, 'source');
const unpacked = join(work, 'unpacked');

const run = (cmd: string, args: string[], cwd: string) =>
  execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

beforeAll(() => {
  rmSync(work, { recursive: true, force: true });
  mkdirSync(unpacked, { recursive: true });
  for (const entry of [
    'package.json',
    'README.md',
    'LICENSE',
    'bin',
    'src',
    'tsconfig.json',
    'tsconfig.build.json',
  ]) {
    if (existsSync(join(root, entry)))
      cpSync(join(root, entry), join(copy, entry), { recursive: true });
  }
  run(join(root, 'node_modules/.bin/tsc'), ['-p', 'tsconfig.build.json'], copy);
  const out = run(
    'npm',
    ['pack', '--ignore-scripts', '--silent', '--pack-destination', work],
    copy,
  );
  run('tar', ['xzf', join(work, out.trim().split('\n').at(-1)!), '-C', unpacked], work);
}, 120_000);

afterAll(() => rmSync(work, { recursive: true, force: true }));

const pkg = () => join(unpacked, 'package');

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).map((file) => join(dir, file));
}

describe('the tarball', () => {
  it('holds the MIT licence that package.json names', () => {
    expect(JSON.parse(readFileSync(join(pkg(), 'package.json'), 'utf8')).license).toBe('MIT');
    const licence = readFileSync(join(pkg(), 'LICENSE'), 'utf8');
    expect(licence).toMatch(/^MIT License\n/);
    expect(licence).toContain('Copyright (c) 2026 m2m-guard contributors');
    expect(licence).toContain('THE SOFTWARE IS PROVIDED "AS IS"');
  });

  it('has a source map for every .js file, and every source of every map resolves inside it', () => {
    const files = filesUnder(join(pkg(), 'dist'));
    const scripts = files.filter((file) => file.endsWith('.js'));
    expect(scripts.length).toBeGreaterThan(40);
    for (const script of scripts) {
      const url = /\/\/# sourceMappingURL=(\S+)\s*$/.exec(readFileSync(script, 'utf8'))?.[1];
      expect(url, `${relative(pkg(), script)} names no source map`).toBeDefined();
      const mapFile = join(dirname(script), url!);
      expect(existsSync(mapFile), `${relative(pkg(), mapFile)} is missing`).toBe(true);
      const map = JSON.parse(readFileSync(mapFile, 'utf8'));
      expect(map.sources.length).toBeGreaterThan(0);
      map.sources.forEach((source: string, i: number) => {
        const path = resolve(dirname(mapFile), map.sourceRoot ?? '', source);
        // Either the file ships, or its text is inside the map: a debugger shows it either way.
        const shipped = path.startsWith(`${pkg()}/`) && existsSync(path);
        const inlined = typeof map.sourcesContent?.[i] === 'string';
        expect(shipped || inlined, `${source} of ${relative(pkg(), mapFile)}`).toBe(true);
        if (inlined) {
          // ...and it is the source the code was built from.
          const original = join(root, relative(pkg(), path));
          expect(map.sourcesContent[i]).toBe(readFileSync(original, 'utf8'));
        }
      });
    }
  });
});
