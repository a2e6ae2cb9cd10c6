import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import {
  AuthenticationError,
  createM2MClient,
  ForbiddenError,
  M2MApiError,
  type M2MClient,
  M2MNetworkError,
  NotFoundError,
  RateLimitError,
  ServerError,
} from '../client/index.js';
import { M2MConfigError } from '../shared/config-error.js';
import { silentLogger } from '../shared/logger.js';
import { suggestOption } from '../shared/validate.js';
import { InvalidTokenError, VerifierUnavailableError } from '../verifier/errors.js';
import { createJwtVerifier, isJwtShaped, jwtKeyOption } from '../verifier/jwt.js';
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
  --jwt-key FILE|=PEM        Public key for JWT-format tokens (default: CLERK_JWT_KEY)
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
          An opaque token (mt_…) is verified by Clerk: with the instance key, or with the
          key of a machine the token was made to call (one in its scopes), never with the
          key of the machine that created it. A JWT-format token is verified here, with
          --jwt-key / CLERK_JWT_KEY, else with the JWKS read with the instance key.

${COMMON}
`;

class UsageError extends Error {}

const OPTIONS = {
  'api-url': { type: 'string' },
  'machine-secret-key': { type: 'string' },
  'secret-key': { type: 'string' },
  'jwt-key': { type: 'string' },
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
  verify: ['jwt-key'],
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
  let sources: Sources = {};
  let verifying = false;
  try {
    const { values, positionals } = parseFlags(argv);
    const [action, ...args] = positionals;
    if (values.help || action === undefined) {
      (values.help ? io.stdout : io.stderr).write(TOKEN_USAGE);
      return values.help ? EXIT.ok : EXIT.usage;
    }
    const allowed = ACTION_FLAGS[action];
    if (!allowed) throw new UsageError(`unknown action "${action}" (create, list, revoke, verify)`);
    for (const flag of Object.keys(values)) {
      if (!allowed.includes(flag) && !COMMON_FLAGS.includes(flag)) {
        throw new UsageError(`--${flag} does not apply to \`token ${action}\``);
      }
    }
    const env = io.env ?? process.env;
    sources = sourcesOf(values, env);
    verifying = action === 'verify';
    client = createM2MClientFromEnv(values, env);
    const result = await runAction(client, action, args, values, { ...io, env });
    io.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    return EXIT.ok;
  } catch (err) {
    return reportError(err, io, sources, verifying);
  } finally {
    await client?.close();
  }
}

/** `parseArgs`, with its messages turned into ours (and a "did you mean" for a mistyped flag). */
function parseFlags(argv: string[]) {
  try {
    return parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (err) {
    if (!isParseArgsError(err)) throw err;
    const message = (err as Error).message;
    const unknown = /Unknown option '(-{1,2})([^']+)'/.exec(message);
    if (unknown) {
      const near = suggestOption(unknown[2]!, Object.keys(OPTIONS));
      throw new UsageError(
        `unknown flag ${unknown[1]}${unknown[2]}${near ? `; did you mean --${near}?` : ''}`,
      );
    }
    const missing = /Option '(?:-\w, )?(--[\w-]+) <value>' argument missing/.exec(message);
    if (missing) throw new UsageError(`${missing[1]} needs a value`);
    const ambiguous = /Option '(--[\w-]+)' argument is ambiguous/.exec(message);
    if (ambiguous) {
      throw new UsageError(
        `${ambiguous[1]}'s value starts with "-": write it ${ambiguous[1]}=VALUE (or give a file)`,
      );
    }
    const given = /Option '(--[\w-]+)' does not take an argument/.exec(message);
    if (given) throw new UsageError(`${given[1]} takes no value`);
    throw new UsageError('could not read the command line');
  }
}

/** Where each client option came from: the flag, or the environment variable. */
type Sources = Partial<Record<'apiUrl' | 'machineSecretKey' | 'secretKey', string>>;

const FLAG_OF = {
  apiUrl: ['api-url', 'CLERK_API_URL'],
  machineSecretKey: ['machine-secret-key', 'CLERK_MACHINE_SECRET_KEY'],
  secretKey: ['secret-key', 'CLERK_SECRET_KEY'],
} as const;

function sourcesOf(values: Values, env: NodeJS.ProcessEnv): Sources {
  const sources: Sources = {};
  for (const [option, [flag, variable]] of Object.entries(FLAG_OF)) {
    if (values[flag] !== undefined) sources[option as keyof Sources] = `--${flag}`;
    else if (env[variable]) sources[option as keyof Sources] = variable;
  }
  return sources;
}

/** How a user sets an option on the command line: `--flag` or `VARIABLE`. */
function howToSet(option: keyof typeof FLAG_OF): string {
  const [flag, variable] = FLAG_OF[option];
  return `--${flag} or ${variable}`;
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
    logger: false,
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
      if (isJwtShaped(token)) return verifyJwtLocally(client, token, values, io.env ?? {});
      return client.verifyToken({ token });
    }
  }
}

/** A JWT-format token is never sent to Clerk's verify endpoint (it answers 404): checked here. */
async function verifyJwtLocally(
  client: M2MClient,
  token: string,
  values: Values,
  env: NodeJS.ProcessEnv,
): Promise<unknown> {
  const given = values['jwt-key'];
  const pem =
    given === undefined
      ? env.CLERK_JWT_KEY || undefined
      : given.includes('-----BEGIN')
        ? given
        : readKeyFile(given);
  let jwtKey: ReturnType<typeof jwtKeyOption>;
  try {
    jwtKey = jwtKeyOption(pem);
  } catch (err) {
    const source = given === undefined ? 'CLERK_JWT_KEY' : '--jwt-key';
    throw new UsageError(`${source} ${(err as M2MConfigError).expectation}`);
  }
  if (!jwtKey && !client.hasSecretKey) {
    throw new UsageError(
      'a JWT-format token is verified locally: give its public key with --jwt-key or ' +
        'CLERK_JWT_KEY (`m2m-guard emulator` prints it), or the instance key with ' +
        `${howToSet('secretKey')} to read the JWKS (a machine key cannot)`,
    );
  }
  const verify = createJwtVerifier({
    client,
    jwtKey,
    jwksRefreshMinMs: 0,
    clockSkewMs: 5_000,
    now: Date.now,
    logger: silentLogger(),
    canFetchJwks: client.hasSecretKey,
    // The command reports the scopes; which machine may accept the token is the receiver's call.
    scopeUncheckable: false,
  });
  return { format: 'jwt', ...(await verify(token)) };
}

function readKeyFile(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsageError(
      `cannot read --jwt-key ${path}: ${(err as NodeJS.ErrnoException).code ?? 'unreadable'}`,
    );
  }
}

function reportError(err: unknown, io: CliIo, sources: Sources, verifying: boolean): number {
  const say = (message: string) => io.stderr.write(`m2m-guard token: ${message}\n`);
  if (err instanceof UsageError || isParseArgsError(err)) {
    say(`${(err as Error).message}\nRun \`m2m-guard token --help\` for usage.`);
    return EXIT.usage;
  }
  if (err instanceof M2MConfigError) {
    say(`${configMessage(err, sources)}\nRun \`m2m-guard token --help\` for usage.`);
    return EXIT.usage;
  }
  if (err instanceof InvalidTokenError) {
    say(`the JWT-format token is not valid (${err.reason})`);
    return EXIT.refused;
  }
  if (err instanceof VerifierUnavailableError) {
    say(`could not read the JWKS: ${(err.cause as Error | undefined)?.message ?? err.reason}`);
    return err.reason === 'misconfigured' ? EXIT.auth : EXIT.unavailable;
  }
  if (err instanceof M2MApiError) {
    say(err.message);
    if (err instanceof AuthenticationError || err instanceof ForbiddenError) {
      const key = sources.machineSecretKey ?? sources.secretKey;
      if (key) say(`Clerk rejected the key given by ${key}`);
      return EXIT.auth;
    }
    if (
      err instanceof M2MNetworkError ||
      err instanceof RateLimitError ||
      err instanceof ServerError ||
      err.code === 'invalid_response'
    ) {
      return EXIT.unavailable;
    }
    if (err instanceof NotFoundError && verifying && sources.machineSecretKey) {
      say(
        `verified with the machine key from ${sources.machineSecretKey}: Clerk answers 404 when ` +
          "that machine is not in the token's scopes, which is the case for the machine that " +
          'created the token (its key mints, it does not receive). Verify with the key of the ' +
          `machine the token was made to call, or with the instance key (${howToSet('secretKey')}).`,
      );
    }
    return EXIT.refused;
  }
  throw err;
}

/** An option error in command-line terms: the flag or variable the value came from. */
function configMessage(err: M2MConfigError, sources: Sources): string {
  const option = err.option as keyof Sources;
  if (err.option === 'machineSecretKey' && err.expectation.startsWith('is required to create')) {
    return (
      `\`token create\` needs this machine's secret key: ${howToSet('machineSecretKey')} ` +
      '(Clerk mints tokens for the machine whose key is used)'
    );
  }
  if (
    err.option === 'machineSecretKey' &&
    err.expectation.startsWith('or `secretKey` is required')
  ) {
    return `a key is needed: ${howToSet('machineSecretKey')}, or ${howToSet('secretKey')}`;
  }
  if (err.option === 'timeoutMs') return `--timeout-ms ${err.expectation}`;
  const source = sources[option] ?? err.variable;
  return source === undefined
    ? err.message.replace(/^m2m-guard: /, '')
    : `${source} ${err.expectation}`;
}

function isParseArgsError(err: unknown): boolean {
  const code = (err as { code?: string })?.code;
  return typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS');
}
