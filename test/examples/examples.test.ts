/**
 * Every example runs as the README says, `npx tsx examples/<name>.ts`, with no variable set:
 * each starts the emulator by itself, prints what it shows, and exits 0.
 */
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../../', import.meta.url));

/** The environment minus every variable an example reads: a fresh shell, as a new user has. */
function bareEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!/^(CLERK_|REDIS_URL$|PORT$|DEMO_)/.test(name)) env[name] = value;
  }
  return env;
}

/** Runs one example exactly as the README says; rejects unless it exits 0. Its stdout lines. */
async function run(name: string): Promise<string[]> {
  const { stdout } = await promisify(execFile)('npx', ['tsx', `examples/${name}.ts`], {
    cwd: root,
    env: bareEnv(),
    timeout: 55_000,
  });
  return stdout.trimEnd().split('\n');
}

const RUN = 60_000;

describe('examples, each run as `npx tsx examples/<name>.ts` with no variable set', () => {
  it('leaves no example untested: each runs here or in another test file', () => {
    const here = [
      'custom-errors',
      'demo',
      'express-app',
      'node-http',
      'optional-auth',
      'quick-start',
      'service-to-service',
    ];
    const elsewhere = readdirSync(join(root, 'test'), { recursive: true, encoding: 'utf8' })
      .filter((file) => file.endsWith('.test.ts') && file !== join('examples', 'examples.test.ts'))
      .map((file) => readFileSync(join(root, 'test', file), 'utf8'))
      .join('\n');
    const examples = readdirSync(join(root, 'examples')).filter((file) => file.endsWith('.ts'));
    for (const file of examples) {
      const name = file.slice(0, -'.ts'.length);
      expect(
        here.includes(name) || elsewhere.includes(`examples/${name}`),
        `examples/${file} is run by no test`,
      ).toBe(true);
    }
  });

  it(
    'quick-start: serves as the emulator machine `api`, 200 with a caller token, 401 without',
    async () => {
      const lines = await run('quick-start');
      expect(lines).toEqual([
        expect.stringMatching(
          /^no CLERK_MACHINE_SECRET_KEY set: serving as the emulator's machine/,
        ),
        expect.stringMatching(
          /^GET \/internal\/orders \(caller's token\) -> 200 \{"calledBy":"mch_\w+","claims":\{"job":"nightly"\}\}$/,
        ),
        expect.stringMatching(/^GET \/internal\/orders \(no token\) -> 401 .*"unauthorized"/),
      ]);
    },
    RUN,
  );

  it(
    'demo: every step behaves as shown',
    async () => {
      const transcript = (await run('demo')).join('\n');
      expect(transcript).not.toContain('✘');
      expect(transcript).toContain('status 200 (expected 200)');
      expect(transcript).toContain('status 503 (expected 503)');
      expect(transcript).toContain('Every step behaved as shown.');
    },
    RUN,
  );

  it(
    'express-app: open health, 200 with req.m2m, 401 without or with a bad token',
    async () => {
      const lines = await run('express-app');
      expect(lines).toHaveLength(5);
      expect(lines[0]).toMatch(/^GET \/health \(no token\) -> 200 /);
      expect(lines[1]).toMatch(
        /^GET \/internal\/whoami \(caller's token\) -> 200 .*"caller":"mch_/,
      );
      expect(lines[2]).toMatch(/\(no token\) -> 401 .*"unauthorized"/);
      expect(lines[3]).toMatch(/\(bad token\) -> 401 .*"invalid_token"/);
      expect(lines[4]).toMatch(/\(token not scoped to us\) -> 403 .*"insufficient_scope"/);
    },
    RUN,
  );

  it(
    'node-http: the same middleware guards node:http and Connect',
    async () => {
      const lines = await run('node-http');
      for (const server of ['node:http', 'connect']) {
        const own = lines.filter((line) => line.startsWith(`${server} `));
        expect(own).toHaveLength(2);
        expect(own[0]).toMatch(
          new RegExp(`\\(caller token\\) -> 200 .*"server":"${server}","caller":"mch_`),
        );
        expect(own[1]).toMatch(/\(no token\) -> 401 /);
      }
    },
    RUN,
  );

  it(
    'service-to-service: concurrent calls cost one mint and one verify',
    async () => {
      const lines = await run('service-to-service');
      expect(lines.filter((line) => / -> 200 .*"servedTo":"mch_/.test(line))).toHaveLength(6);
      expect(lines).toContain('tokens minted: 1');
      expect(lines).toContain('verify calls that reached Clerk: 1');
    },
    RUN,
  );

  it(
    'custom-errors: both ways answer in the app format and keep the challenge',
    async () => {
      const lines = await run('custom-errors');
      for (const path of ['/v1/report', '/v2/report']) {
        const own = lines.filter((line) => line.startsWith(`GET ${path} `));
        expect(own).toEqual([
          expect.stringMatching(/\(caller token\) -> 200 \{"ok":true,/),
          expect.stringMatching(/\(no token\) -> 401 \{"ok":false,"error":\{"code":"unauthorized"/),
          expect.stringMatching(
            /\(bad token\) -> 401 \{"ok":false,"error":\{"code":"invalid_token"/,
          ),
        ]);
      }
      const challenges = lines.filter((line) => line.startsWith('  WWW-Authenticate: Bearer '));
      expect(challenges).toHaveLength(4);
      expect(challenges.filter((line) => line.includes('error="invalid_token"'))).toHaveLength(2);
    },
    RUN,
  );

  it(
    'optional-auth: anonymous or named, and a bad token is still refused',
    async () => {
      const lines = await run('optional-auth');
      expect(lines).toEqual([
        expect.stringMatching(/\(no token\) -> 200 .*hello, anonymous/),
        expect.stringMatching(/\(caller token\) -> 200 .*hello, machine mch_/),
        expect.stringMatching(/\(bad token\) -> 401 .*"invalid_token"/),
        expect.stringMatching(/\(not a bearer header\) -> 400 .*"invalid_request"/),
      ]);
    },
    RUN,
  );
});
