import type { KeyObject } from 'node:crypto';
import type { Logger } from 'pino';
import { CLIENT_OPTION_KEYS, createM2MClient, type M2MClient } from '../client/index.js';
import { fromVariable, M2MConfigError } from '../shared/config-error.js';
import { loggerOption } from '../shared/logger.js';
import {
  assertKnownKeys,
  assertMethods,
  boolOption,
  functionOption,
  intOption,
  optionKeys,
  optionsObject,
  stringOption,
} from '../shared/validate.js';
import { MACHINE_ID_PATTERN } from '../shared/wire.js';
import { DEFAULT_UPSTREAM_BUDGET, type UpstreamBudgetOptions } from './budget.js';
import { jwtKeyOption } from './jwt.js';
import type { SharedCacheStore } from './store.js';
import type {
  TokenVerifierOptions,
  VerifierBreakerOptions,
  VerifierCacheOptions,
} from './types.js';

const CLIENT_EXPECTED = 'must be a client from createM2MClient()';

export const DEFAULT_CACHE = {
  max: 10_000,
  maxBytes: 64 * 1024 * 1024,
  ttlMs: 10_000,
  negativeTtlMs: 5_000,
  staleIfErrorMs: 0,
};
export const DEFAULT_BREAKER = { failures: 5, cooldownMs: 5_000 };
export const DEFAULT_CLOCK_SKEW_MS = 5_000;
export const DEFAULT_JWKS_REFRESH_MIN_MS = 30_000;

/** The client's options, taken here to build a client; `logger` is the verifier's own. */
const CLIENT_KEYS = CLIENT_OPTION_KEYS.filter(
  (key): key is Exclude<(typeof CLIENT_OPTION_KEYS)[number], 'logger'> => key !== 'logger',
);
/** The verifier's own options, from {@link TokenVerifierOptions}: the compiler keeps it complete. */
const VERIFIER_KEYS = optionKeys<Omit<TokenVerifierOptions, (typeof CLIENT_KEYS)[number]>>({
  client: true,
  machineId: true,
  allowedSubjects: true,
  clockSkewMs: true,
  now: true,
  logger: true,
  cache: true,
  breaker: true,
  jwtKey: true,
  jwksRefreshMinMs: true,
  store: true,
  upstreamBudget: true,
  anyMachine: true,
});
const CACHE_KEYS = optionKeys<VerifierCacheOptions>({
  max: true,
  maxBytes: true,
  ttlMs: true,
  negativeTtlMs: true,
  staleIfErrorMs: true,
});
const BREAKER_KEYS = optionKeys<VerifierBreakerOptions>({ failures: true, cooldownMs: true });
const BUDGET_KEYS = optionKeys<UpstreamBudgetOptions>({ perSecond: true, burst: true });
/** Every key {@link createTokenVerifier} accepts; the middleware reuses it. */
export const TOKEN_VERIFIER_KEYS: readonly string[] = [...VERIFIER_KEYS, ...CLIENT_KEYS];

export interface VerifierConfig {
  client: M2MClient;
  ownsClient: boolean;
  machineId: string | undefined;
  allowedSubjects: ReadonlySet<string> | undefined;
  clockSkewMs: number;
  now: () => number;
  logger: Logger;
  cache: Required<VerifierCacheOptions> | false;
  breaker: Required<VerifierBreakerOptions>;
  jwtKey: KeyObject | undefined;
  jwksRefreshMinMs: number;
  store: SharedCacheStore | undefined;
  upstreamBudget: Required<UpstreamBudgetOptions> | false;
  anyMachine: boolean;
}

function machineIdOption(value: unknown, name: string): string | undefined {
  const id = stringOption(value, name);
  if (id !== undefined && !MACHINE_ID_PATTERN.test(id)) {
    throw new M2MConfigError(name, 'must be a machine id (`mch_` + 27 characters)');
  }
  return id;
}

function cacheOption(value: unknown): Required<VerifierCacheOptions> | false {
  if (value === false) return false;
  const cache = optionsObject<VerifierCacheOptions>(value, 'cache');
  assertKnownKeys(cache, CACHE_KEYS, 'cache.');
  const day = 86_400_000;
  return {
    max: intOption(cache.max, 'cache.max', DEFAULT_CACHE.max, { min: 1, max: 10_000_000 }),
    maxBytes: intOption(cache.maxBytes, 'cache.maxBytes', DEFAULT_CACHE.maxBytes, {
      min: 1024,
      max: 2 ** 40,
    }),
    ttlMs: intOption(cache.ttlMs, 'cache.ttlMs', DEFAULT_CACHE.ttlMs, { max: day }),
    negativeTtlMs: intOption(
      cache.negativeTtlMs,
      'cache.negativeTtlMs',
      DEFAULT_CACHE.negativeTtlMs,
      {
        max: day,
      },
    ),
    staleIfErrorMs: intOption(
      cache.staleIfErrorMs,
      'cache.staleIfErrorMs',
      DEFAULT_CACHE.staleIfErrorMs,
      { max: day },
    ),
  };
}

function breakerOption(value: unknown): Required<VerifierBreakerOptions> {
  if (value === false) return { failures: 0, cooldownMs: 0 };
  const breaker = optionsObject<VerifierBreakerOptions>(value, 'breaker');
  assertKnownKeys(breaker, BREAKER_KEYS, 'breaker.');
  return {
    failures: intOption(breaker.failures, 'breaker.failures', DEFAULT_BREAKER.failures, {
      max: 1000,
    }),
    cooldownMs: intOption(breaker.cooldownMs, 'breaker.cooldownMs', DEFAULT_BREAKER.cooldownMs, {
      max: 3_600_000,
    }),
  };
}

function upstreamBudgetOption(value: unknown): Required<UpstreamBudgetOptions> | false {
  if (value === false) return false;
  const budget = optionsObject<UpstreamBudgetOptions>(value, 'upstreamBudget');
  assertKnownKeys(budget, BUDGET_KEYS, 'upstreamBudget.');
  const perSecond = intOption(
    budget.perSecond,
    'upstreamBudget.perSecond',
    DEFAULT_UPSTREAM_BUDGET.perSecond,
    { min: 1, max: 100_000 },
  );
  return {
    perSecond,
    burst: intOption(budget.burst, 'upstreamBudget.burst', DEFAULT_UPSTREAM_BUDGET.burst, {
      min: 1,
      max: 1_000_000,
    }),
  };
}

/**
 * Refuses a verifier that would let in tokens minted for any machine of the instance, unless
 * `anyMachine: true` says so: Clerk scope-checks opaque tokens only against a machine key,
 * and a JWT is checked here alone.
 */
function assertScoped(
  config: Pick<VerifierConfig, 'machineId' | 'allowedSubjects' | 'anyMachine'>,
  client: M2MClient,
): void {
  const scopedByClerk = client.verifyIdentity.startsWith('machine:');
  if (scopedByClerk || config.anyMachine) return;
  if (config.machineId !== undefined || config.allowedSubjects !== undefined) return;
  throw new M2MConfigError(
    'machineId',
    "must be set (this service's own `mch_…` id), or `allowedSubjects`: with the instance " +
      'secret key (CLERK_SECRET_KEY) or only a jwtKey, tokens minted for any machine of the ' +
      'instance would be accepted. Set `anyMachine: true` if that is intended',
  );
}

function storeOption(value: unknown, cache: unknown): SharedCacheStore | undefined {
  if (value === undefined) return undefined;
  const store = assertMethods<SharedCacheStore>(
    value,
    'store',
    ['get', 'set', 'delete', 'publish', 'subscribe'],
    'must be a shared cache store, e.g. createRedisStore()',
  );
  if (cache === false) {
    throw new M2MConfigError('store', 'needs the in-process cache (`cache` is false)');
  }
  return store;
}

export function parseVerifierOptions(
  input: unknown,
  env: NodeJS.ProcessEnv = process.env,
): VerifierConfig {
  const options = optionsObject<TokenVerifierOptions>(input, 'options');
  assertKnownKeys(options, TOKEN_VERIFIER_KEYS);
  const logger = loggerOption(options.logger);
  const clientOptions = Object.fromEntries(
    CLIENT_KEYS.filter((k) => options[k] !== undefined).map((k) => [k, options[k]]),
  );
  let client = options.client;
  if (client !== undefined) {
    assertMethods(client, 'client', ['verifyToken', 'onRevoke'], CLIENT_EXPECTED);
    const both = Object.keys(clientOptions);
    if (both.length > 0) {
      throw new M2MConfigError(both[0]!, 'cannot be combined with `client`; set it on the client');
    }
  }
  const ownsClient = client === undefined;
  const allowed = options.allowedSubjects;
  if (allowed !== undefined && (!Array.isArray(allowed) || allowed.length === 0)) {
    throw new M2MConfigError('allowedSubjects', 'must be a non-empty array of machine ids');
  }
  const config: Omit<VerifierConfig, 'client'> = {
    ownsClient,
    machineId: machineIdOption(options.machineId, 'machineId'),
    allowedSubjects: allowed
      ? new Set(allowed.map((id, i) => machineIdOption(id, `allowedSubjects[${i}]`)!))
      : undefined,
    clockSkewMs: intOption(options.clockSkewMs, 'clockSkewMs', DEFAULT_CLOCK_SKEW_MS, {
      max: 600_000,
    }),
    now: functionOption<() => number>(options.now, 'now') ?? Date.now,
    logger,
    cache: cacheOption(options.cache),
    breaker: breakerOption(options.breaker),
    store: storeOption(options.store, options.cache),
    jwtKey:
      options.jwtKey === undefined && env.CLERK_JWT_KEY
        ? fromVariable('CLERK_JWT_KEY', () => jwtKeyOption(env.CLERK_JWT_KEY))
        : jwtKeyOption(options.jwtKey),
    upstreamBudget: upstreamBudgetOption(options.upstreamBudget),
    anyMachine: boolOption(options.anyMachine, 'anyMachine', false),
    jwksRefreshMinMs: intOption(
      options.jwksRefreshMinMs,
      'jwksRefreshMinMs',
      DEFAULT_JWKS_REFRESH_MIN_MS,
      {
        max: 86_400_000,
      },
    ),
  };
  // Built last, so an invalid verifier option never leaves an open client behind.
  client ??= createM2MClient({ ...clientOptions, logger });
  if (client.verifyIdentity === 'none' && config.jwtKey === undefined) {
    if (ownsClient) void client.close();
    throw new M2MConfigError(
      'machineSecretKey',
      'or `secretKey` is needed to verify tokens (or CLERK_MACHINE_SECRET_KEY / CLERK_SECRET_KEY)',
    );
  }
  try {
    assertScoped(config, client);
  } catch (err) {
    if (ownsClient) void client.close();
    throw err;
  }
  return { ...config, client };
}
