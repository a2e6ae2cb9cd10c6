import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
    // One prefix, and the flag and the variable that would fix it.
    expect(r.err).toBe(
      "m2m-guard token: `token create` needs this machine's secret key: --machine-secret-key or " +
        'CLERK_MACHINE_SECRET_KEY (Clerk mints tokens for the machine whose key is used)\n' +
        'Run `m2m-guard token --help` for usage.\n',
    );
    expect(emulator.calls.create).toBe(0);
  });

  it('names the variable or the flag a wrong key came from, never the key', async () => {
    const fromEnv = await token(['create'], { CLERK_MACHINE_SECRET_KEY: 'sk_test_wrongKind' });
    expect(fromEnv.code).toBe(EXIT.usage);
    expect(fromEnv.err).toMatch(
      /^m2m-guard token: CLERK_MACHINE_SECRET_KEY must be a key starting with `ak_`\n/,
    );
    const fromFlag = await token(['create', '--machine-secret-key', 'sk_test_wrongKind']);
    expect(fromFlag.err).toMatch(/^m2m-guard token: --machine-secret-key must be a key starting/);
    const noKey = await token(['verify', 'mt_aaaaaaaaaaaaaaaaaaaaaaaa']);
    expect(noKey.err).toMatch(
      /^m2m-guard token: a key is needed: --machine-secret-key or CLERK_MACHINE_SECRET_KEY, or --secret-key or CLERK_SECRET_KEY\n/,
    );
    for (const r of [fromEnv, fromFlag, noKey]) {
      expect(r.err.match(/m2m-guard/g)).toHaveLength(2); // the prefix and the --help hint
      expect(r.err).not.toContain('sk_test_wrongKind');
    }
  });

  it("turns the parser's messages into its own", async () => {
    const claim = await token(['create', '--claim', '{}'], callerEnv());
    expect(claim.code).toBe(EXIT.usage);
    expect(claim.err).toMatch(/^m2m-guard token: unknown flag --claim; did you mean --claims\?\n/);
    const bare = await token(['create', '--seconds'], callerEnv());
    expect(bare.err).toMatch(/^m2m-guard token: --seconds needs a value\n/);
    const valued = await token(['list', '--revoked=yes'], instanceEnv());
    expect(valued.err).toMatch(/^m2m-guard token: --revoked takes no value\n/);
    expect(emulator.calls.create + emulator.calls.list).toBe(0);
  });

  it('verify with the key of the machine that created the token says why Clerk answers 404', async () => {
    const created = (await token(['create'], callerEnv())).json;
    const own = await token(['verify', created.token], callerEnv());
    expect(own.code).toBe(EXIT.refused);
    expect(own.err).toContain('404');
    expect(own.err).toContain(
      "verified with the machine key from CLERK_MACHINE_SECRET_KEY: Clerk answers 404 when that machine is not in the token's scopes",
    );
    expect(own.err).toContain('--secret-key or CLERK_SECRET_KEY');
    const receiver = await token(['verify', created.token], {
      CLERK_MACHINE_SECRET_KEY: emulator.machines.api.secretKey,
    });
    expect(receiver.code).toBe(EXIT.ok);
    expect(receiver.json.subject).toBe(emulator.machines.caller.id);
  });

  it('verifies a JWT-format token locally: CLERK_JWT_KEY, --jwt-key, or the JWKS', async () => {
    const created = (
      await token(['create', '--format', 'jwt', '--claims', '{"job":"x"}'], callerEnv())
    ).json;
    expect(created.token.split('.')).toHaveLength(3);
    const expected = {
      format: 'jwt',
      subject: emulator.machines.caller.id,
      scopes: [emulator.machines.api.id],
      claims: { job: 'x' },
    };
    const withEnvKey = await token(['verify', created.token], {
      ...callerEnv(),
      CLERK_JWT_KEY: emulator.jwtKey,
    });
    expect(withEnvKey.code).toBe(EXIT.ok);
    expect(withEnvKey.json).toMatchObject(expected);
    const withFlag = await token(['verify', `--jwt-key=${emulator.jwtKey}`, created.token]);
    expect(withFlag.json).toMatchObject(expected);
    const file = join(mkdtempSync(join(tmpdir(), 'm2m-guard-')), 'jwt-key.pem');
    writeFileSync(file, emulator.jwtKey);
    const withFile = await token(['verify', '--jwt-key', file, created.token]);
    expect(withFile.json).toMatchObject(expected);
    const ambiguous = await token(['verify', '--jwt-key', emulator.jwtKey, created.token]);
    expect(ambiguous.err).toMatch(
      /^m2m-guard token: --jwt-key's value starts with "-": write it --jwt-key=VALUE/,
    );
    const withJwks = await token(['verify', created.token], instanceEnv());
    expect(withJwks.json).toMatchObject(expected);
    expect(emulator.calls.verify).toBe(0);
    expect(emulator.calls.jwks).toBe(1);

    const machineOnly = await token(['verify', created.token], callerEnv());
    expect(machineOnly.code).toBe(EXIT.usage);
    expect(machineOnly.err).toContain('give its public key with --jwt-key or CLERK_JWT_KEY');
    const other = await startEmulator();
    try {
      const forged = await token(['verify', created.token], { CLERK_JWT_KEY: other.jwtKey });
      expect(forged.code).toBe(EXIT.refused);
      expect(forged.err).toBe('m2m-guard token: the JWT-format token is not valid (malformed)\n');
    } finally {
      await other.close();
    }
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
