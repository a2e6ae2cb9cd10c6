import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, test } from 'vitest';
import { main as customErrors } from '../../examples/custom-errors.js';
import { main as expressApp } from '../../examples/express-app.js';
import { main as nodeHttp } from '../../examples/node-http.js';
import { main as optionalAuth } from '../../examples/optional-auth.js';
import { main as serviceToService } from '../../examples/service-to-service.js';

/** Runs an example in-process and returns its transcript, one entry per line. */
async function transcriptOf(main: (log: (line: string) => void) => Promise<void>) {
  const lines: string[] = [];
  await main((line) => lines.push(line));
  return lines;
}

describe('examples, run in-process', () => {
  test('express-app: open health, 200 with req.m2m, 401 without or with a bad token', async () => {
    const lines = await transcriptOf(expressApp);
    expect(lines).toHaveLength(5);
    expect(lines[0]).toMatch(/^GET \/health \(no token\) -> 200 /);
    expect(lines[1]).toMatch(/^GET \/internal\/whoami \(caller's token\) -> 200 .*"caller":"mch_/);
    expect(lines[2]).toMatch(/\(no token\) -> 401 .*"unauthorized"/);
    expect(lines[3]).toMatch(/\(bad token\) -> 401 .*"invalid_token"/);
    expect(lines[4]).toMatch(/\(token not scoped to us\) -> 403 .*"insufficient_scope"/);
  });

  test('node-http: the same middleware guards node:http and Connect', async () => {
    const lines = await transcriptOf(nodeHttp);
    for (const server of ['node:http', 'connect']) {
      const own = lines.filter((line) => line.startsWith(`${server} `));
      expect(own).toHaveLength(2);
      expect(own[0]).toMatch(
        new RegExp(`\\(caller token\\) -> 200 .*"server":"${server}","caller":"mch_`),
      );
      expect(own[1]).toMatch(/\(no token\) -> 401 /);
    }
  });

  test('service-to-service: concurrent calls cost one mint and one verify', async () => {
    const lines = await transcriptOf(serviceToService);
    expect(lines.filter((line) => / -> 200 .*"servedTo":"mch_/.test(line))).toHaveLength(6);
    expect(lines).toContain('tokens minted: 1');
    expect(lines).toContain('verify calls that reached Clerk: 1');
  });

  test('custom-errors: both ways answer in the app format and keep the challenge', async () => {
    const lines = await transcriptOf(customErrors);
    for (const path of ['/v1/report', '/v2/report']) {
      const own = lines.filter((line) => line.startsWith(`GET ${path} `));
      expect(own).toEqual([
        expect.stringMatching(/\(caller token\) -> 200 \{"ok":true,/),
        expect.stringMatching(/\(no token\) -> 401 \{"ok":false,"error":\{"code":"unauthorized"/),
        expect.stringMatching(/\(bad token\) -> 401 \{"ok":false,"error":\{"code":"invalid_token"/),
      ]);
    }
    const challenges = lines.filter((line) => line.startsWith('  WWW-Authenticate: Bearer '));
    expect(challenges).toHaveLength(4);
    expect(challenges.filter((line) => line.includes('error="invalid_token"'))).toHaveLength(2);
  });

  test('optional-auth: anonymous or named, and a bad token is still refused', async () => {
    const lines = await transcriptOf(optionalAuth);
    expect(lines).toEqual([
      expect.stringMatching(/\(no token\) -> 200 .*hello, anonymous/),
      expect.stringMatching(/\(caller token\) -> 200 .*hello, machine mch_/),
      expect.stringMatching(/\(bad token\) -> 401 .*"invalid_token"/),
      expect.stringMatching(/\(not a bearer header\) -> 400 .*"invalid_request"/),
    ]);
  });
});

test('an example runs as a program and exits 0', async () => {
  const root = fileURLToPath(new URL('../../', import.meta.url));
  const { stdout } = await promisify(execFile)(
    'node_modules/.bin/tsx',
    ['examples/express-app.ts'],
    { cwd: root, timeout: 25_000 },
  );
  // execFile rejects on a non-zero exit code, so reaching here means the program exited 0.
  expect(stdout).toMatch(/\(caller's token\) -> 200 /);
  expect(stdout).toMatch(/\(bad token\) -> 401 /);
}, 30_000);
