import { parseArgs } from 'node:util';
import {
  AuthenticationError,
  createM2MClient,
  ForbiddenError,
  M2MApiError,
  type M2MClient,
  M2MNetworkError,
  RateLimitError,
  ServerError,
} from '../client/index.js';
import { M2MConfigError } from '../shared/config-error.js';
import type { CliIo } from './io.js';

/**
 * `m2m-guard token create|list|revoke|verify`: the client on the command line. Prints JSON on
 * stdout; errors go to stderr, and the exit code says what happened (see EXIT).
 */
export const EXIT = {
  ok: 0,
  /** Clerk refused: not found (for verify: the token is not valid), bad request, conflict. */
  refused: 1,
  usage: 2,
  /** Clerk rejected the secret key (401/403). */
  auth: 3,
  /** No answer: network, timeout, rate limit, 5xx, unreadable answer. */
  unavailable: 4,
} as const;

const COMMON = `Common options:
  --api-url URL              Clerk API URL (default: CLERK_API_URL, else https://api.clerk.com)
  --machine-secret-key KEY   Machine secret key ak_… (default: CLERK_MACHINE_SECRET_KEY)
  --secret-key KEY           Instance secret key sk_… (default: CLERK_SECRET_KEY)
  --timeout-ms MS            Deadline per attempt (default 5000)
  -h, --help                 Show this help
Prefer the environment variables to flags: flags are visible to other users in \`ps\`.

Exit codes: 0 ok, 1 refused by Clerk (verify: token not valid), 2 usage error,
3 secret key rejected, 4 Clerk unavailable.`;

export const TOKEN_USAGE = `Usage: m2m-guard token <create|list|revoke|verify> [options]

  create  [--seconds N] [--claims JSON] [--format opaque|jwt] [--min-remaining-ttl N]
          Mint a token for the machine whose key is used (needs a machine secret key).
  list    --subject mch_… [--revoked] [--expired] [--limit N] [--offset N]
          List a machine's tokens (revoked and expired ones only when asked).
  revoke  <token id mt_…> [--reason TEXT]
          Revoke a token by its id.
  verify  <token | ->
          Verify a token; \`-\` reads it from standard input (keeps it out of \`ps\`).

${COMMON}
`;

class UsageError extends Error {}

const OPTIONS = {
  'api-url': { type: 'string' },
  'machine-secret-key': { type: 'string' },
  'secret-key': { type: 'string' },
  'timeout-ms': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  seconds: { type: 'string' },
  claims: { type: 'string' },
  format: { type: 'string' },
  'min-remaining-ttl': { type: 'string' },
  subject: { type: 'string' },
  revoked: { type: 'boolean' },
  expired: { type: 'boolean' },
  limit: { type: 'string' },
  offset: { type: 'string' },
  reason: { type: 'string' },
} as const;

/** Which flags each action takes, beyond the common ones. */
const ACTION_FLAGS: Record<string, readonly string[]> = {
  create: ['seconds', 'claims', 'format', 'min-remaining-ttl'],
  list: ['subject', 'revoked', 'expired', 'limit', 'offset'],
  revoke: ['reason'],
  verify: [],
};
const COMMON_FLAGS = ['api-url', 'machine-secret-key', 'secret-key', 'timeout-ms', 'help'];

function integer(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) throw new UsageError(`--${flag} must be a whole number`);
  return Number(value);
}

async function readStdin(stdin: AsyncIterable<Buffer | string>): Promise<string> {
  let text = '';
  for await (const chunk of stdin) text += chunk.toString();
  return text.trim();
}

export interface TokenCommandIo extends CliIo {
  stdin?: AsyncIterable<Buffer | string>;
  env?: NodeJS.ProcessEnv;
}

export async function runTokenCommand(argv: string[], io: TokenCommandIo): Promise<number> {
  let client: M2MClient | undefined;
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      options: OPTIONS,
      allowPositionals: true,
      strict: true,
    });
    const [action, ...args] = positionals;
    if (values.help || action === undefined) {
      (values.help ? io.stdout : io.stderr).write(TOKEN_USAGE);
      return values.help ? EXIT.ok : EXIT.usage;
    }
    const allowed = ACTION_FLAGS[action];
    if (!allowed) throw new UsageError(`unknown action "${action}"`);
    for (const flag of Object.keys(values)) {
      if (!allowed.includes(flag) && !COMMON_FLAGS.includes(flag)) {
        throw new UsageError(`--${flag} does not apply to \`token ${action}\``);
      }
    }
    const env = io.env ?? process.env;
    client = createM2MClientFromEnv(values, env);
    const result = await runAction(client, action, args, values, io);
    io.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    return EXIT.ok;
  } catch (err) {
    return reportError(err, io);
  } finally {
    await client?.close();
  }
}

type Values = {
  [K in keyof typeof OPTIONS]?: (typeof OPTIONS)[K]['type'] extends 'boolean' ? boolean : string;
};

function createM2MClientFromEnv(values: Values, env: NodeJS.ProcessEnv): M2MClient {
  const apiUrl = values['api-url'] ?? (env.CLERK_API_URL || undefined);
  const machineSecretKey =
    values['machine-secret-key'] ?? (env.CLERK_MACHINE_SECRET_KEY || undefined);
  const secretKey = values['secret-key'] ?? (env.CLERK_SECRET_KEY || undefined);
  return createM2MClient({
    apiUrl,
    machineSecretKey,
    secretKey,
    timeoutMs: integer(values['timeout-ms'], 'timeout-ms'),
  });
}

async function runAction(
  client: M2MClient,
  action: string,
  args: string[],
  values: Values,
  io: TokenCommandIo,
): Promise<unknown> {
  const expectArgs = (n: number, what: string) => {
    if (args.length !== n) throw new UsageError(`\`token ${action}\` takes ${what}`);
  };
  switch (action) {
    case 'create': {
      expectArgs(0, 'no positional argument');
      let claims: Record<string, unknown> | undefined;
      if (values.claims !== undefined) {
        try {
          claims = JSON.parse(values.claims);
        } catch {
          throw new UsageError('--claims must be a JSON object');
        }
        if (typeof claims !== 'object' || claims === null || Array.isArray(claims)) {
          throw new UsageError('--claims must be a JSON object');
        }
      }
      const format = values.format;
      if (format !== undefined && format !== 'opaque' && format !== 'jwt') {
        throw new UsageError('--format must be opaque or jwt');
      }
      return client.createToken({
        secondsUntilExpiration: integer(values.seconds, 'seconds'),
        claims,
        tokenFormat: format,
        minRemainingTtlSeconds: integer(values['min-remaining-ttl'], 'min-remaining-ttl'),
      });
    }
    case 'list': {
      expectArgs(0, 'no positional argument');
      if (!values.subject) throw new UsageError('`token list` needs --subject mch_…');
      return client.listTokens({
        subject: values.subject,
        revoked: values.revoked,
        expired: values.expired,
        limit: integer(values.limit, 'limit'),
        offset: integer(values.offset, 'offset'),
      });
    }
    case 'revoke':
      expectArgs(1, 'one token id (mt_…)');
      return client.revokeToken({ m2mTokenId: args[0]!, revocationReason: values.reason });
    default: {
      expectArgs(1, 'one token, or - to read it from standard input');
      const token = args[0] === '-' ? await readStdin(io.stdin ?? process.stdin) : args[0]!;
      if (!token) throw new UsageError('no token given');
      return client.verifyToken({ token });
    }
  }
}

function reportError(err: unknown, io: CliIo): number {
  const say = (message: string) => io.stderr.write(`m2m-guard token: ${message}\n`);
  if (err instanceof UsageError || err instanceof M2MConfigError || isParseArgsError(err)) {
    say(`${(err as Error).message}\nRun \`m2m-guard token --help\` for usage.`);
    return EXIT.usage;
  }
  if (err instanceof M2MApiError) {
    say(err.message);
    if (err instanceof AuthenticationError || err instanceof ForbiddenError) return EXIT.auth;
    if (
      err instanceof M2MNetworkError ||
      err instanceof RateLimitError ||
      err instanceof ServerError ||
      err.code === 'invalid_response'
    ) {
      return EXIT.unavailable;
    }
    return EXIT.refused;
  }
  throw err;
}

function isParseArgsError(err: unknown): boolean {
  const code = (err as { code?: string })?.code;
  return typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS');
}
