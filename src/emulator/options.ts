import type { Logger } from 'pino';
import { M2MConfigError } from '../shared/config-error.js';
import { loggerOption } from '../shared/logger.js';
import {
  assertKnownKeys,
  functionOption,
  intOption,
  optionKeys,
  optionsObject,
  stringOption,
} from '../shared/validate.js';
import { MACHINE_ID_PATTERN } from '../shared/wire.js';
import { newInstanceSecretKey, newMachineId, newMachineSecretKey } from './ids.js';

/** A fixed-window request budget shared by all M2M routes of the instance. */
export interface RateLimitOptions {
  /** Requests allowed per window (integer ≥ 1). */
  limit: number;
  /** Window length in milliseconds (integer ≥ 1). */
  windowMs: number;
}

/** One machine of the emulated instance. */
export interface MachineConfig<Name extends string = string> {
  /** Unique name, used to refer to the machine in `scopedMachines` and `Emulator.machines`. */
  name: Name;
  /** Machine id. Default: generated `mch_` + 27 word characters. Must match `^mch_\w{27}$`. */
  id?: string;
  /** Machine Secret Key. Default: generated `ak_` + 32 hex digits. Must start with `ak_`. */
  secretKey?: string;
  /** Names or ids of the machines this one may call (its tokens' `scopes`). Default `[]`. */
  scopedMachines?: string[];
  /**
   * Lifetime of tokens created without `seconds_until_expiration`, in seconds (1 to 315360000).
   * Default 3600. `null` means such tokens never expire.
   */
  defaultTokenTtlSeconds?: number | null;
}

/** Options of {@link startEmulator}. Every option is validated at start. */
export interface EmulatorOptions<Name extends string = string> {
  /** TCP port. Default 0: an ephemeral port, read it back from `Emulator.url`. */
  port?: number;
  /** Interface to listen on. Default `'127.0.0.1'`. */
  host?: string;
  /**
   * The instance's machines. Default: two machines, `caller` (which may call `api`) and `api`
   * (which may call nothing).
   */
  machines?: MachineConfig<Name>[];
  /** The instance's Clerk Secret Key. Default: generated `sk_test_` + random. Must start with `sk_`. */
  instanceSecretKey?: string;
  /** Current time in ms since the epoch. Default `Date.now`. Tests move time with it. */
  clock?: () => number;
  /** Delay before every answer, in ms, applied to each request independently. Default 0. */
  latencyMs?: number;
  /** Per-instance rate limit of the M2M routes (not of the JWKS). Default `false` (none). */
  rateLimit?: RateLimitOptions | false;
  /**
   * pino logger for request lines (`debug`) and handler failures (`error`). Default: pino at
   * level `warn` on stderr; `false` silences it.
   */
  logger?: Logger | false;
}

/** A machine as the emulator runs it, with every default filled in. */
export interface EmulatedMachine {
  name: string;
  id: string;
  secretKey: string;
  /** Ids of the machines this one may call; copied into each new token's `scopes`. */
  scopes: string[];
  /** Default token lifetime in seconds; `null` = never expires. */
  defaultTokenTtlSeconds: number | null;
}

export interface ResolvedOptions {
  port: number;
  host: string;
  machines: EmulatedMachine[];
  instanceSecretKey: string;
  clock: () => number;
  latencyMs: number;
  rateLimit: RateLimitOptions | false;
  logger: Logger;
}

/** Clerk's upper bound for a machine's `default_token_ttl` (10 years). */
export const MAX_TOKEN_TTL_SECONDS = 315_360_000;
/** Latency and windows above an hour are certainly mistakes in a test setup. */
const MAX_DELAY_MS = 3_600_000;

const OPTION_KEYS = optionKeys<EmulatorOptions>({
  port: true,
  host: true,
  machines: true,
  instanceSecretKey: true,
  clock: true,
  latencyMs: true,
  rateLimit: true,
  logger: true,
});
const MACHINE_KEYS = optionKeys<MachineConfig>({
  name: true,
  id: true,
  secretKey: true,
  scopedMachines: true,
  defaultTokenTtlSeconds: true,
});
const RATE_LIMIT_KEYS = optionKeys<RateLimitOptions>({ limit: true, windowMs: true });

const DEFAULT_MACHINES: MachineConfig[] = [
  { name: 'caller', scopedMachines: ['api'] },
  { name: 'api', scopedMachines: [] },
];

export function resolveOptions(input: unknown): ResolvedOptions {
  const options = optionsObject<EmulatorOptions>(input, 'options');
  assertKnownKeys(options, OPTION_KEYS);
  const instanceSecretKey = stringOption(options.instanceSecretKey, 'instanceSecretKey');
  if (instanceSecretKey !== undefined && !/^sk_\S+$/.test(instanceSecretKey)) {
    throw new M2MConfigError('instanceSecretKey', 'must start with `sk_` and contain no spaces');
  }
  const host = stringOption(options.host, 'host') ?? '127.0.0.1';
  const resolved: ResolvedOptions = {
    port: intOption(options.port, 'port', 0, { min: 0, max: 65_535 }),
    host,
    instanceSecretKey: instanceSecretKey ?? newInstanceSecretKey(),
    machines: [],
    clock: functionOption<() => number>(options.clock, 'clock') ?? Date.now,
    latencyMs: latencyOption(options.latencyMs, 'latencyMs', 0),
    rateLimit: rateLimitOption(options.rateLimit, 'rateLimit'),
    logger: loggerOption(options.logger),
  };
  resolved.machines = machinesOption(options.machines, resolved.instanceSecretKey);
  return resolved;
}

export function latencyOption(value: unknown, name: string, fallback: number): number {
  return intOption(value, name, fallback, { min: 0, max: MAX_DELAY_MS });
}

export function rateLimitOption(value: unknown, name: string): RateLimitOptions | false {
  if (value === undefined || value === false) return false;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new M2MConfigError(name, 'must be `false` or `{ limit, windowMs }`');
  }
  assertKnownKeys(value, RATE_LIMIT_KEYS, `${name}.`);
  const raw = value as Partial<RateLimitOptions>;
  if (raw.limit === undefined) throw new M2MConfigError(`${name}.limit`, 'is required');
  if (raw.windowMs === undefined) throw new M2MConfigError(`${name}.windowMs`, 'is required');
  return {
    limit: intOption(raw.limit, `${name}.limit`, 1, { min: 1 }),
    windowMs: intOption(raw.windowMs, `${name}.windowMs`, 1, { min: 1, max: MAX_DELAY_MS }),
  };
}

function machinesOption(value: unknown, instanceSecretKey: string): EmulatedMachine[] {
  const configs = value === undefined ? DEFAULT_MACHINES : value;
  if (!Array.isArray(configs)) throw new M2MConfigError('machines', 'must be an array');

  // First pass: identities, so that scopedMachines may name machines listed later.
  const machines: EmulatedMachine[] = [];
  const seen = new Set<string>([instanceSecretKey]);
  configs.forEach((config: unknown, index) => {
    const at = `machines[${index}]`;
    if (config === null || typeof config !== 'object' || Array.isArray(config)) {
      throw new M2MConfigError(at, 'must be an object');
    }
    assertKnownKeys(config, MACHINE_KEYS, `${at}.`);
    const raw = config as Partial<MachineConfig>;
    const name = stringOption(raw.name, `${at}.name`);
    if (name === undefined) throw new M2MConfigError(`${at}.name`, 'is required');
    const id = stringOption(raw.id, `${at}.id`) ?? newMachineId();
    if (!MACHINE_ID_PATTERN.test(id)) {
      throw new M2MConfigError(`${at}.id`, 'must match ^mch_\\w{27}$');
    }
    const secretKey = stringOption(raw.secretKey, `${at}.secretKey`) ?? newMachineSecretKey();
    if (!/^ak_\S+$/.test(secretKey)) {
      throw new M2MConfigError(`${at}.secretKey`, 'must start with `ak_` and contain no spaces');
    }
    for (const [field, key] of [
      ['name', `name:${name}`],
      ['id', `id:${id}`],
      ['secretKey', secretKey],
    ] as const) {
      if (seen.has(key)) {
        throw new M2MConfigError(`${at}.${field}`, 'must be unique among machines and keys');
      }
      seen.add(key);
    }
    let ttl: number | null = 3600;
    if (raw.defaultTokenTtlSeconds === null) ttl = null;
    else {
      ttl = intOption(raw.defaultTokenTtlSeconds, `${at}.defaultTokenTtlSeconds`, 3600, {
        min: 1,
        max: MAX_TOKEN_TTL_SECONDS,
      });
    }
    machines.push({ name, id, secretKey, scopes: [], defaultTokenTtlSeconds: ttl });
  });

  // Second pass: resolve scopedMachines (names or ids) to ids.
  configs.forEach((config: MachineConfig, index) => {
    const at = `machines[${index}].scopedMachines`;
    const scoped: unknown = config.scopedMachines ?? [];
    if (!Array.isArray(scoped)) throw new M2MConfigError(at, 'must be an array of strings');
    const ids = new Set<string>();
    scoped.forEach((ref: unknown, refIndex) => {
      const target = machines.find((m) => m.name === ref || m.id === ref);
      if (!target) {
        throw new M2MConfigError(
          `${at}[${refIndex}]`,
          'must be the name or id of a machine in `machines`',
        );
      }
      ids.add(target.id);
    });
    machines[index]!.scopes = [...ids];
  });
  return machines;
}
