import { execFile } from 'node:child_process';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/main.js';
import { EXIT, runTokenCommand } from '../../src/cli/token-command.js';
import { type Emulator, startEmulator } from '../../src/emulator/index.js';

let emulator: Emulator<'caller' | 'api'>;
beforeAll(async () => {
  emulator = await startEmulator();
});
afterAll(() => emulator.close());
beforeEach(() => emulator.reset());

/** Runs `m2m-guard token …` in process with its own environment and captured output. */
async function token(argv: string[], env: NodeJS.ProcessEnv = {}, stdin?: string) {
  let out = '';
  let err = '';
  const code = await runTokenCommand(argv, {
    stdout: { write: (t: string) => (out += t) },
    stderr: { write: (t: string) => (err += t) },
    env: { CLERK_API_URL: emulator.url, ...env },
    stdin: stdin === undefined ? undefined : Readable.from([stdin]),
  });
  // biome-ignore lint/suspicious/noExplicitAny: the JSON a command printed, read by the tests
  let json: any;
  try {
    json = JSON.parse(out);
  } catch {
    json = undefined;
  }
  return { code, out, err, json };
}

const callerEnv = () => ({ CLERK_MACHINE_SECRET_KEY: emulator.machines.caller.secretKey });
const instanceEnv = () => ({ CLERK_SECRET_KEY: emulator.instanceSecretKey });

describe('m2m-guard token', () => {
  it('create mints a token for the machine whose key is used, with claims and lifetime', async () => {
    const r = await token(
      ['create', '--claims', '{"job":"nightly"}', '--seconds', '60'],
      callerEnv(),
    );
    expect(r.code).toBe(EXIT.ok);
    expect(r.json).toMatchObject({
      subject: emulator.machines.caller.id,
      claims: { job: 'nightly' },
      revoked: false,
    });
    expect(r.json.token).toMatch(/^mt_/);
    expect(r.json.expiration - r.json.createdAt).toBe(60_000);
  });

  it('create without a machine key is a usage error, sent nowhere', async () => {
    const r = await token(['create'], instanceEnv());
    expect(r.code).toBe(EXIT.usage);
    expect(r.err).toContain('machineSecretKey');
    expect(emulator.calls.create).toBe(0);
  });

  it('list, revoke and verify', async () => {
    const created = (await token(['create'], callerEnv())).json;
    const listed = await token(['list', '--subject', emulator.machines.caller.id], instanceEnv());
    expect(listed.code).toBe(EXIT.ok);
    expect(listed.json.totalCount).toBe(1);
    expect(listed.json.data[0].id).toBe(created.id);

    const verified = await token(['verify', created.token], instanceEnv());
    expect(verified.code).toBe(EXIT.ok);
    expect(verified.json.id).toBe(created.id);
    expect(verified.json.token).toBeUndefined();

    const revoked = await token(['revoke', created.id, '--reason', 'rotated'], instanceEnv());
    expect(revoked.code).toBe(EXIT.ok);
    expect(revoked.json).toMatchObject({ revoked: true, revocationReason: 'rotated' });

    const again = await token(['verify', '-'], instanceEnv(), `${created.token}\n`);
    expect(again.code).toBe(EXIT.refused);
    expect(again.err).toContain('404');
    expect(again.err).not.toContain(created.token);
  });

  it('exit codes: refused 1, usage 2, key rejected 3, unavailable 4', async () => {
    expect((await token(['revoke', `mt_${'0'.repeat(32)}`], instanceEnv())).code).toBe(
      EXIT.refused,
    );
    expect((await token(['list'], instanceEnv())).code).toBe(EXIT.usage);
    expect((await token(['explode'], instanceEnv())).code).toBe(EXIT.usage);
    expect((await token(['list', '--bogus'], instanceEnv())).code).toBe(EXIT.usage);
    expect((await token(['verify', 'x', '--subject', 'y'], instanceEnv())).code).toBe(EXIT.usage);
    expect((await token(['create', '--format', 'xml'], callerEnv())).code).toBe(EXIT.usage);
    expect((await token(['create', '--seconds', 'soon'], callerEnv())).code).toBe(EXIT.usage);
    const wrongKey = await token(['verify', 'mt_aaaaaaaaaaaaaaaaaaaaaaaa'], {
      CLERK_SECRET_KEY: 'sk_test_not_a_real_key',
    });
    expect(wrongKey.code).toBe(EXIT.auth);
    expect(wrongKey.err).not.toContain('sk_test_not_a_real_key');
    emulator.failNext(3, 503);
    const down = await token(['verify', 'mt_aaaaaaaaaaaaaaaaaaaaaaaa'], instanceEnv());
    expect(down.code).toBe(EXIT.unavailable);
  });

  it('--help for the command, and `token` is listed by the top-level help', async () => {
    const help = await token(['--help']);
    expect(help.code).toBe(EXIT.ok);
    expect(help.out).toContain('Usage: m2m-guard token <create|list|revoke|verify>');
    let out = '';
    const code = await main(['--help'], {
      stdout: { write: (t: string) => (out += t) },
      stderr: { write: () => undefined },
    });
    expect(code).toBe(0);
    expect(out).toMatch(/token\s+Create, list, revoke or verify/);
  });

  it('runs as a program with flags', async () => {
    const run = promisify(execFile);
    const { stdout } = await run(
      'node_modules/.bin/tsx',
      [
        'src/cli/main.ts',
        'token',
        'create',
        '--api-url',
        emulator.url,
        '--machine-secret-key',
        emulator.machines.caller.secretKey,
      ],
      { env: { ...process.env, CLERK_SECRET_KEY: '', CLERK_MACHINE_SECRET_KEY: '' } },
    );
    expect(JSON.parse(stdout).subject).toBe(emulator.machines.caller.id);
  }, 30_000);
});
