import { realpathSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { VERSION } from '../shared/version.js';
import { runEmulatorCommand } from './emulator-command.js';
import type { CliIo } from './io.js';
import { runTokenCommand } from './token-command.js';

/** One subcommand: `run` gets the arguments after its name and resolves to the exit code. */
interface Command {
  summary: string;
  run: (argv: string[], io: CliIo) => Promise<number>;
}

/** The subcommands; add new ones here. */
const COMMANDS: Record<string, Command> = {
  emulator: {
    summary: "Run a local emulator of Clerk's M2M token endpoints",
    run: (argv, io) => runEmulatorCommand(argv, io),
  },
  token: {
    summary: 'Create, list, revoke or verify M2M tokens through the API (JSON output)',
    run: (argv, io) => runTokenCommand(argv, io),
  },
};

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((name) => name.length));
  const commands = Object.entries(COMMANDS)
    .map(([name, command]) => `  ${name.padEnd(width)}  ${command.summary}`)
    .join('\n');
  return `Usage: m2m-guard <command> [options]

Commands:
${commands}

Run \`m2m-guard <command> --help\` for a command's options.
`;
}

/** The CLI: dispatches `argv` (without node and the script) and resolves to the exit code. */
export async function main(
  argv: string[] = process.argv.slice(2),
  io: CliIo = { stdout: process.stdout, stderr: process.stderr },
): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    io.stderr.write(usage());
    return 2;
  }
  if (name === '--help' || name === '-h' || name === 'help') {
    io.stdout.write(usage());
    return 0;
  }
  if (name === '--version' || name === '-v') {
    io.stdout.write(`${VERSION}\n`);
    return 0;
  }
  const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!command) {
    io.stderr.write(`m2m-guard: unknown command "${name}"\n\n${usage()}`);
    return 2;
  }
  return command.run(rest, io);
}

/**
 * True when this module is the program: run directly (`tsx src/cli/main.ts`, `node
 * dist/cli/main.js`) or through `bin/m2m-guard.js`, which only imports it. Importing it from a
 * test or another module must not start the CLI.
 */
function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    const entry = realpathSync(script);
    const self = realpathSync(fileURLToPath(import.meta.url));
    return entry === self || entry === resolve(dirname(self), '../../bin/m2m-guard.js');
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`m2m-guard: ${(err as Error)?.stack ?? String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
