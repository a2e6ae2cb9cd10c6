/**
 * Logging that speaks up: with no `logger` option, a rejected key reaches stderr at once, in one
 * line that says what to fix; an outage is said once, naming Clerk's host, not once per request.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { createTokenVerifier } from '../../src/verifier/index.js';
import {
  captureLogger,
  expectUnavailable,
  UNKNOWN_MACHINE_KEY,
  useHarness,
} from '../helpers/verifier-helpers.js';

const h = useHarness();
const root = fileURLToPath(new URL('../../', import.meta.url));

describe('with no logger configured', () => {
  it('a rejected machine key is one error line on stderr naming the variable to fix', async () => {
    const minted = await h.mint();
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME };
    env.CLERK_API_URL = h.emulator.url;
    env.CLERK_MACHINE_SECRET_KEY = UNKNOWN_MACHINE_KEY;
    env.TOKEN = minted.token;
    const { stdout, stderr } = await promisify(execFile)(
      'node_modules/.bin/tsx',
      ['test/verifier/fixtures/no-logger-app.ts'],
      { cwd: root, env, timeout: 25_000 },
    );
    expect(stdout.trim()).toBe('503 503 503');
    const lines = stderr
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line));
    // Three refused requests, one line: the first, at `error`, saying which key and where.
    expect(lines).toHaveLength(1);
    const [line] = lines;
    expect(line.level).toBe(50);
    expect(line.msg).toContain(
      `clerk at ${new URL(h.emulator.url).host} rejected our own secret key`,
    );
    expect(line.msg).toContain('CLERK_MACHINE_SECRET_KEY');
    expect(stderr).not.toContain(UNKNOWN_MACHINE_KEY);
    expect(stderr).not.toContain(minted.token);
  }, 30_000);
});

describe('an outage', () => {
  it('is said once when it starts, naming the host, and once when it ends', async () => {
    const log = captureLogger();
    const verifier = h.verifier({ logger: log.logger, cache: false, breaker: false });
    const minted = await h.mint();
    h.emulator.failNext(5, 503, { operation: 'verify' });
    for (let i = 0; i < 5; i++)
      await expectUnavailable(verifier.verify(minted.token), 'upstream_error');
    await verifier.verify(minted.token);
    const loud = log.records().filter((r) => r.level >= 40);
    expect(loud).toHaveLength(1);
    expect(loud[0]!.host).toBe(new URL(h.emulator.url).host);
    expect(loud[0]!.msg).toMatch(/^clerk at 127\.0\.0\.1:\d+ is unavailable \(upstream_error\)/);
    expect(log.records().filter((r) => /answers again/.test(String(r.msg)))).toHaveLength(1);

    // A second outage is said again.
    h.emulator.failNext(2, 503, { operation: 'verify' });
    for (let i = 0; i < 2; i++)
      await expectUnavailable(verifier.verify(minted.token), 'upstream_error');
    expect(log.records().filter((r) => r.level >= 40)).toHaveLength(2);
  });

  it('a network failure names the host in the error, without any secret', async () => {
    const log = captureLogger();
    const verifier = h.track(
      createTokenVerifier({
        apiUrl: 'http://127.0.0.1:9',
        machineSecretKey: UNKNOWN_MACHINE_KEY,
        retry: false,
        breaker: false,
        logger: log.logger,
      }),
    );
    const minted = await h.mint();
    const err = await expectUnavailable(verifier.verify(minted.token), 'network');
    expect((err.cause as Error).message).toBe(
      'Clerk API verify call failed: no answer from 127.0.0.1:9 (ECONNREFUSED)',
    );
    const [line] = log.records().filter((r) => r.level >= 40);
    expect(line!.msg).toContain('clerk at 127.0.0.1:9 is unavailable (network)');
    expect(JSON.stringify(log.records())).not.toContain(UNKNOWN_MACHINE_KEY);
  });
});

describe('the startup line about JWT-format tokens', () => {
  const setupLines = (options: Parameters<typeof createTokenVerifier>[0]) => {
    const log = captureLogger();
    h.track(createTokenVerifier({ apiUrl: h.emulator.url, ...options, logger: log.logger }));
    return log.records().filter((r) => /^JWT-format tokens/.test(String(r.msg)));
  };
  const machineKey = () => h.machine('api').secretKey;

  it('says once, at construction, what each setup does with them', () => {
    const quickStart = setupLines({ machineSecretKey: machineKey() });
    expect(quickStart).toHaveLength(1);
    expect(quickStart[0]).toMatchObject({ level: 30 });
    expect(quickStart[0]!.msg).toContain('set `machineId`');
    expect(quickStart[0]!.msg).toContain('`jwtKey` (CLERK_JWT_KEY)');

    const withId = setupLines({ machineSecretKey: machineKey(), machineId: h.machine('api').id });
    expect(withId[0]!.msg).toContain("a machine key cannot read Clerk's JWKS");

    const complete = setupLines({
      machineSecretKey: machineKey(),
      machineId: h.machine('api').id,
      jwtKey: h.emulator.jwtKey,
    });
    expect(complete[0]).toMatchObject({
      level: 30,
      msg: 'JWT-format tokens are verified locally with `jwtKey`',
    });

    const instance = setupLines({ secretKey: h.emulator.instanceSecretKey, anyMachine: true });
    expect(instance[0]!.msg).toContain("keys from Clerk's JWKS");
  });

  it('warns when a jwtKey is given but cannot be used (a machine key without machineId)', () => {
    const [line] = setupLines({ machineSecretKey: machineKey(), jwtKey: h.emulator.jwtKey });
    expect(line).toMatchObject({ level: 40 });
    expect(line!.msg).toMatch(
      /^JWT-format tokens will be refused: verifying with a machine key, set `machineId`/,
    );
  });
});
