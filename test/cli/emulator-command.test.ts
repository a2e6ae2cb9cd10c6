import { type ChildProcess, spawn } from 'node:child_process';
import { accessSync, constants, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type CliIo, runEmulatorCommand } from '../../src/cli/emulator-command.js';
import { main } from '../../src/cli/main.js';
import type { Emulator } from '../../src/emulator/index.js';

const ROOT = resolve(import.meta.dirname, '../..');
const TSX = join(ROOT, 'node_modules/.bin/tsx');
const ID_A = `mch_${'A'.repeat(27)}`;
const ID_B = `mch_${'B'.repeat(27)}`;

function captureIo(): CliIo & { out: () => string; err: () => string } {
  let out = '';
  let err = '';
  return {
    stdout: { write: (text: string) => (out += text) },
    stderr: { write: (text: string) => (err += text) },
    out: () => out,
    err: () => err,
  };
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'm2m-guard-cli-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function configFile(name: string, content: unknown): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, typeof content === 'string' ? content : JSON.stringify(content));
  return path;
}

/** Runs the command in-process until it is ready, then stops it; returns what it printed. */
async function runUntilReady(argv: string[]) {
  const io = captureIo();
  const stop = new AbortController();
  let emulator: Emulator | undefined;
  let check: Promise<void> = Promise.resolve();
  const code = await runEmulatorCommand(argv, io, {
    signal: stop.signal,
    onReady: (e) => {
      emulator = e;
      check = request(`${e.url}/v1/jwks`, {
        headers: { authorization: `Bearer ${e.instanceSecretKey}` },
      }).then(async (res) => {
        expect(res.statusCode).toBe(200);
        await res.body.text();
        stop.abort();
      });
    },
  });
  await check;
  return { code, io, emulator: emulator! };
}

describe('runEmulatorCommand in-process', () => {
  it('prints the URL, keys, machines and env lines, then stops cleanly with 0', async () => {
    const { code, io, emulator } = await runUntilReady(['--port', '0', '--latency', '5']);
    expect(code).toBe(0);
    const out = io.out();
    expect(out).toContain(`listening on ${emulator.url}`);
    expect(out).toContain(emulator.instanceSecretKey);
    for (const machine of Object.values(emulator.machines)) {
      expect(out).toContain(machine.name);
      expect(out).toContain(machine.id);
      expect(out).toContain(machine.secretKey);
    }
    expect(out).toContain(`CLERK_API_URL=${emulator.url}`);
    expect(out).toContain(`CLERK_SECRET_KEY=${emulator.instanceSecretKey}`);
    // The JWT key on one line, `\n` escaped, as CLERK_JWT_KEY takes it.
    const jwtLine = out.split('\n').find((line) => line.trim().startsWith('CLERK_JWT_KEY='));
    expect(jwtLine?.trim()).toBe(
      `CLERK_JWT_KEY="${emulator.jwtKey.trim().replaceAll('\n', '\\n')}"`,
    );
    expect(out).toContain(`CLERK_MACHINE_SECRET_KEY=${emulator.machines.caller!.secretKey}`);
    expect(out).toContain(`may call:    api (${emulator.machines.api!.id})`);
    // It closed the emulator on the way out.
    await expect(request(`${emulator.url}/v1/jwks`)).rejects.toThrow();
  });

  it('loads machines and the instance key from --config', async () => {
    const path = await configFile('machines.json', {
      instanceSecretKey: 'sk_test_fromconfig',
      machines: [
        { name: 'worker', id: ID_A, secretKey: 'ak_worker', scopedMachines: ['billing'] },
        { name: 'billing', id: ID_B, secretKey: 'ak_billing', defaultTokenTtlSeconds: null },
      ],
    });
    const { code, io, emulator } = await runUntilReady(['--config', path, '--host', '127.0.0.1']);
    expect(code).toBe(0);
    expect(emulator.instanceSecretKey).toBe('sk_test_fromconfig');
    expect(emulator.machines.worker).toEqual({
      name: 'worker',
      id: ID_A,
      secretKey: 'ak_worker',
      scopes: [ID_B],
      defaultTokenTtlSeconds: 3600,
    });
    expect(io.out()).toContain('token TTL:   never');
  });

  it('prints help with exit 0', async () => {
    const io = captureIo();
    expect(await runEmulatorCommand(['--help'], io)).toBe(0);
    expect(io.out()).toMatch(/Usage: m2m-guard emulator/);
    expect(io.out()).toContain('--config');
  });

  const badArgs: [string, string[], RegExp][] = [
    ['an unknown flag', ['--bogus'], /--bogus/],
    ['a positional argument', ['extra'], /extra/],
    ['a non-numeric port', ['--port', 'abc'], /--port/],
    ['a port out of range', ['--port', '70000'], /--port/],
    ['a negative latency', ['--latency', '-5'], /--latency/],
    ['a flag without its value', ['--port'], /--port/],
  ];
  it.each(badArgs)('refuses %s with exit 2', async (_name, argv, message) => {
    const io = captureIo();
    expect(await runEmulatorCommand(argv, io)).toBe(2);
    expect(io.err()).toMatch(message);
    expect(io.out()).toBe('');
  });

  it.each([
    ['a missing file', null, /cannot read/],
    ['invalid JSON', '{ machines: ', /not valid JSON/],
    ['a JSON array', '[]', /JSON object/],
    ['no machines array', { machines: {} }, /"machines" must be an array/],
    ['an unknown key', { machines: [], latency: 3 }, /unknown key "latency"/],
    [
      'a bad machine',
      { machines: [{ name: 'a', secretKey: 'sk_nope' }] },
      /machines\[0\]\.secretKey/,
    ],
    [
      'an unknown scope',
      { machines: [{ name: 'a', scopedMachines: ['b'] }] },
      /scopedMachines\[0\]/,
    ],
    ['a bad instance key', { machines: [], instanceSecretKey: 'nope' }, /instanceSecretKey/],
  ])('refuses a config file with %s with exit 2', async (name, content, message) => {
    const path =
      content === null
        ? join(dir, 'does-not-exist.json')
        : await configFile(`${name}.json`, content);
    const io = captureIo();
    expect(await runEmulatorCommand(['--config', path], io)).toBe(2);
    expect(io.err()).toMatch(message);
  });

  it('exits 1 when the port is taken', async () => {
    const first = await runUntilReadyKeepOpen();
    try {
      const io = captureIo();
      const port = new URL(first.emulator.url).port;
      expect(await runEmulatorCommand(['--port', port], io)).toBe(1);
      expect(io.err()).toMatch(/EADDRINUSE/);
    } finally {
      first.stop();
      await first.done;
    }
  });
});

async function runUntilReadyKeepOpen() {
  const stop = new AbortController();
  let ready!: (e: Emulator) => void;
  const emulatorReady = new Promise<Emulator>((r) => {
    ready = r;
  });
  const done = runEmulatorCommand(['--port', '0'], captureIo(), {
    signal: stop.signal,
    onReady: ready,
  });
  return { emulator: await emulatorReady, stop: () => stop.abort(), done };
}

describe('main', () => {
  it('dispatches, prints usage and refuses unknown commands', async () => {
    const help = captureIo();
    expect(await main(['--help'], help)).toBe(0);
    expect(help.out()).toMatch(/Usage: m2m-guard <command>/);
    expect(help.out()).toMatch(/emulator/);

    const none = captureIo();
    expect(await main([], none)).toBe(2);
    expect(none.err()).toMatch(/Usage/);

    const unknown = captureIo();
    expect(await main(['frobnicate'], unknown)).toBe(2);
    expect(unknown.err()).toMatch(/unknown command "frobnicate"/);

    const inherited = captureIo();
    expect(await main(['toString'], inherited)).toBe(2);

    const sub = captureIo();
    expect(await main(['emulator', '--help'], sub)).toBe(0);
    expect(sub.out()).toMatch(/Usage: m2m-guard emulator/);
  });

  it('ships bin/m2m-guard.js as an executable that imports the built CLI', () => {
    const bin = join(ROOT, 'bin/m2m-guard.js');
    accessSync(bin, constants.X_OK);
    const text = readFileSync(bin, 'utf8');
    expect(text.startsWith('#!/usr/bin/env node\n')).toBe(true);
    expect(text).toContain("import '../dist/cli/main.js';");
  });
});

describe('the CLI as a process', () => {
  const children: ChildProcess[] = [];
  afterEach(() => {
    for (const child of children.splice(0)) if (child.exitCode === null) child.kill('SIGKILL');
  });

  function run(args: string[]) {
    const child = spawn(TSX, ['src/cli/main.ts', ...args], {
      cwd: ROOT,
      env: { ...process.env, CLERK_TELEMETRY_DISABLED: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (chunk) => {
      stdout += chunk;
    });
    child.stderr!.on('data', (chunk) => {
      stderr += chunk;
    });
    const exited = new Promise<number | null>((resolve) =>
      child.on('exit', (code) => resolve(code)),
    );
    const waitFor = (pattern: RegExp) =>
      new Promise<RegExpMatchArray>((resolve, reject) => {
        const check = () => {
          const match = stdout.match(pattern);
          if (match) {
            child.stdout!.off('data', check);
            resolve(match);
          }
        };
        child.stdout!.on('data', check);
        child.on('exit', () => reject(new Error(`exited before printing ${pattern}: ${stderr}`)));
        check();
      });
    return { child, exited, waitFor, output: () => ({ stdout, stderr }) };
  }

  it('starts, serves requests, and exits 0 on SIGINT', async () => {
    const cli = run(['emulator', '--port', '0']);
    const [, url] = await cli.waitFor(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
    const [, machineKey] = await cli.waitFor(
      /CLERK_MACHINE_SECRET_KEY=(ak_[0-9a-f]{32}) +# as caller/,
    );
    const res = await request(`${url}/m2m_tokens`, {
      method: 'POST',
      headers: { authorization: `Bearer ${machineKey}`, 'content-type': 'application/json' },
      body: '{}',
    });
    expect(res.statusCode).toBe(201);
    expect(((await res.body.json()) as { token: string }).token).toMatch(/^mt_/);
    cli.child.kill('SIGINT');
    expect(await cli.exited).toBe(0);
    expect(cli.output().stderr).toMatch(/SIGINT, stopping/);
  });

  it('exits 0 on SIGTERM', async () => {
    const cli = run(['emulator']);
    await cli.waitFor(/listening on/);
    cli.child.kill('SIGTERM');
    expect(await cli.exited).toBe(0);
  });

  it('refuses a bad flag with exit 2', async () => {
    const cli = run(['emulator', '--prot', '3000']);
    expect(await cli.exited).toBe(2);
    expect(cli.output().stderr).toMatch(/--prot/);
    expect(cli.output().stdout).toBe('');
  });

  it('refuses a bad config file with exit 2', async () => {
    const path = await configFile('bad.json', { machines: [{ name: 'x', id: 'mch_nope' }] });
    const cli = run(['emulator', '--config', path]);
    expect(await cli.exited).toBe(2);
    expect(cli.output().stderr).toMatch(/machines\[0\]\.id/);
  });
});
