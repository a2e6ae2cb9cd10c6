import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { type Emulator, type MachineConfig, startEmulator } from '../emulator/index.js';
import { M2MConfigError } from '../shared/config-error.js';
import type { CliIo } from './io.js';

export type { CliIo } from './io.js';

/** Hooks for running the command in-process (tests); the CLI uses neither. */
export interface EmulatorCommandHooks {
  /** Stops the emulator when aborted, like SIGINT. */
  signal?: AbortSignal;
  /** Called once the emulator listens. */
  onReady?: (emulator: Emulator) => void;
}

/** The shape of `--config`: the emulator's machines and, optionally, its instance key. */
interface ConfigFile {
  machines?: MachineConfig[];
  instanceSecretKey?: string;
}

export const EMULATOR_USAGE = `Usage: m2m-guard emulator [--port N] [--host H] [--config FILE] [--latency MS]

Runs a local emulator of Clerk's M2M token endpoints (create, list, revoke, verify) and
JWKS, in the foreground. Point Clerk's SDK or m2m-guard at the printed URL. Ctrl+C stops it.

Options:
  --port N        Port to listen on (default 0: any free port)
  --host H        Interface to listen on (default 127.0.0.1)
  --config FILE   JSON file: { "machines": [{ "name", "id"?, "secretKey"?,
                  "scopedMachines"?, "defaultTokenTtlSeconds"? }], "instanceSecretKey"? }
                  (default: machines "caller", allowed to call "api", and "api")
  --latency MS    Delay every answer by MS milliseconds (default 0)
  -h, --help      Show this help
`;

/** A bad command line or config file: the message is for the user, the exit code is 2. */
class UsageError extends Error {}

/**
 * `m2m-guard emulator`: starts the emulator, prints how to use it, and runs until SIGINT or
 * SIGTERM (or `hooks.signal`). Resolves to the exit code: 0 after a clean stop, 2 for a bad
 * flag or config, 1 when the emulator cannot start (port in use…).
 */
export async function runEmulatorCommand(
  argv: string[],
  io: CliIo,
  hooks: EmulatorCommandHooks = {},
): Promise<number> {
  let emulator: Emulator;
  try {
    const flags = parseFlags(argv);
    if (flags.help) {
      io.stdout.write(EMULATOR_USAGE);
      return 0;
    }
    const config = flags.config === undefined ? {} : await readConfig(flags.config);
    try {
      emulator = await startEmulator({
        port: flags.port,
        host: flags.host,
        latencyMs: flags.latency,
        ...config,
      });
    } catch (err) {
      if (err instanceof M2MConfigError && flags.config !== undefined) {
        throw new UsageError(`${flags.config}: ${err.message}`);
      }
      throw err;
    }
  } catch (err) {
    if (err instanceof UsageError || err instanceof M2MConfigError) {
      io.stderr.write(`m2m-guard emulator: ${err.message}\nRun \`m2m-guard emulator --help\`.\n`);
      return 2;
    }
    io.stderr.write(`m2m-guard emulator: could not start: ${(err as Error).message}\n`);
    return 1;
  }

  io.stdout.write(describe(emulator));
  hooks.onReady?.(emulator);
  const reason = await waitForStop(hooks.signal);
  io.stderr.write(`\nm2m-guard emulator: ${reason}, stopping.\n`);
  await emulator.close();
  return 0;
}

interface Flags {
  port?: number;
  host?: string;
  config?: string;
  latency?: number;
  help: boolean;
}

function parseFlags(argv: string[]): Flags {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        port: { type: 'string' },
        host: { type: 'string' },
        config: { type: 'string' },
        latency: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  return {
    port: integerFlag(values.port, '--port', 65_535),
    host: values.host as string | undefined,
    config: values.config as string | undefined,
    latency: integerFlag(values.latency, '--latency', 3_600_000),
    help: values.help === true,
  };
}

function integerFlag(value: unknown, name: string, max: number): number | undefined {
  if (value === undefined) return undefined;
  const n = typeof value === 'string' && /^\d{1,10}$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isInteger(n) || n > max) {
    throw new UsageError(`${name} must be an integer from 0 to ${max}`);
  }
  return n;
}

async function readConfig(path: string): Promise<ConfigFile> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new UsageError(
      `cannot read --config ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`${path} is not valid JSON: ${(err as Error).message}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new UsageError(`${path} must hold a JSON object { "machines": [...] }`);
  }
  for (const key of Object.keys(parsed)) {
    if (key !== 'machines' && key !== 'instanceSecretKey') {
      throw new UsageError(
        `${path}: unknown key "${key}" (expected "machines", "instanceSecretKey")`,
      );
    }
  }
  const config = parsed as ConfigFile;
  if (!Array.isArray(config.machines)) {
    throw new UsageError(`${path}: "machines" must be an array of machines`);
  }
  return config;
}

/** What a newcomer needs: the URL, the keys, each machine and the env lines to copy. */
function describe(emulator: Emulator): string {
  const machines = Object.values(emulator.machines);
  const nameOf = (id: string): string => machines.find((m) => m.id === id)?.name ?? id;
  const lines = [
    `m2m-guard emulator listening on ${emulator.url}`,
    '',
    `Instance secret key (CLERK_SECRET_KEY): ${emulator.instanceSecretKey}`,
    '',
    'Machines:',
  ];
  for (const m of machines) {
    const scopes = m.scopes.length === 0 ? '(none)' : m.scopes.map(nameOf).join(', ');
    const ttl = m.defaultTokenTtlSeconds === null ? 'never' : `${m.defaultTokenTtlSeconds}s`;
    lines.push(`  ${m.name}`);
    lines.push(`    id:          ${m.id}`);
    lines.push(`    secret key:  ${m.secretKey}`);
    lines.push(`    may call:    ${scopes}${m.scopes.length ? ` (${m.scopes.join(', ')})` : ''}`);
    lines.push(`    token TTL:   ${ttl}`);
  }
  lines.push('', 'Environment for a service using Clerk (pick the machine it runs as):');
  lines.push(`  CLERK_API_URL=${emulator.url}`);
  lines.push(`  CLERK_SECRET_KEY=${emulator.instanceSecretKey}`);
  // One line, `\n` escaped, as .env files hold it; the verifier reads either form.
  lines.push(`  CLERK_JWT_KEY="${emulator.jwtKey.trim().replaceAll('\n', '\\n')}"`);
  for (const m of machines)
    lines.push(`  CLERK_MACHINE_SECRET_KEY=${m.secretKey}   # as ${m.name}`);
  lines.push('', 'Press Ctrl+C to stop.', '');
  return lines.join('\n');
}

function waitForStop(signal: AbortSignal | undefined): Promise<string> {
  return new Promise((resolve) => {
    const stop = (reason: string): void => {
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
      signal?.removeEventListener('abort', onAbort);
      resolve(reason);
    };
    const onInt = (): void => stop('SIGINT');
    const onTerm = (): void => stop('SIGTERM');
    const onAbort = (): void => stop('aborted');
    process.once('SIGINT', onInt);
    process.once('SIGTERM', onTerm);
    if (signal?.aborted) stop('aborted');
    else signal?.addEventListener('abort', onAbort, { once: true });
  });
}
