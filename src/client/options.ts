import type { Logger } from 'pino';
import type { Dispatcher } from 'undici';
import { fromVariable, M2MConfigError } from '../shared/config-error.js';
import { loggerOption } from '../shared/logger.js';
import {
  assertKnownKeys,
  assertMethods,
  intOption,
  optionKeys,
  optionsObject,
  stringOption,
} from '../shared/validate.js';
import { VERSION } from '../shared/version.js';
import { DEFAULT_CLERK_API_VERSION } from '../shared/wire.js';
import type { M2MClientOptions, RetryOptions } from './types.js';

/** Client options after validation, with every default applied. */
export interface ClientConfig {
  apiUrl: string;
  /** `apiUrl` split once, so no request parses it again. */
  origin: string;
  basePath: string;
  apiVersion: string;
  machineSecretKey: string | undefined;
  secretKey: string | undefined;
  timeoutMs: number;
  retry: Required<RetryOptions>;
  dispatcher: Dispatcher | undefined;
  logger: Logger;
  userAgent: string;
}

export const DEFAULT_API_URL = 'https://api.clerk.com';
export const DEFAULT_TIMEOUT_MS = 5000;
export const DEFAULT_RETRY: Required<RetryOptions> = {
  retries: 2,
  minDelayMs: 100,
  maxDelayMs: 2000,
};

/**
 * Every option of `createM2MClient()`; the verifier accepts them too, to build its client. Built
 * from {@link M2MClientOptions}, so the compiler keeps it complete.
 */
export const CLIENT_OPTION_KEYS = optionKeys<M2MClientOptions>({
  apiUrl: true,
  apiVersion: true,
  machineSecretKey: true,
  secretKey: true,
  timeoutMs: true,
  retry: true,
  dispatcher: true,
  logger: true,
  userAgent: true,
});
const RETRY_KEYS = optionKeys<RetryOptions>({ retries: true, minDelayMs: true, maxDelayMs: true });

/** Checks a key's prefix without ever echoing the key. */
export function keyOption(value: unknown, name: string, prefix: string): string | undefined {
  const key = stringOption(value, name);
  if (key !== undefined && (!key.startsWith(prefix) || !/^[\x21-\x7e]+$/.test(key))) {
    throw new M2MConfigError(name, `must be a key starting with \`${prefix}\``);
  }
  return key;
}

/** A string sent as a header value: printable ASCII only, so no header can be split or refused. */
function headerValueOption(value: unknown, name: string): string | undefined {
  const text = stringOption(value, name);
  if (text !== undefined && !/^[\x20-\x7e]+$/.test(text)) {
    throw new M2MConfigError(name, 'must be printable ASCII (it is sent as a header)');
  }
  return text;
}

function apiUrlOption(value: unknown): string {
  const raw = stringOption(value, 'apiUrl') ?? DEFAULT_API_URL;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new M2MConfigError('apiUrl', 'must be an absolute http(s) URL');
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.search || url.hash) {
    throw new M2MConfigError('apiUrl', 'must be an http(s) URL without query or fragment');
  }
  if (url.username || url.password) {
    throw new M2MConfigError('apiUrl', 'must not carry credentials');
  }
  return `${url.origin}${url.pathname}`.replace(/\/+$/, '');
}

function retryOption(value: unknown): Required<RetryOptions> {
  if (value === false) return { ...DEFAULT_RETRY, retries: 0 };
  const retry = optionsObject<RetryOptions>(value, 'retry');
  assertKnownKeys(retry, RETRY_KEYS, 'retry.');
  const parsed = {
    retries: intOption(retry.retries, 'retry.retries', DEFAULT_RETRY.retries, { max: 10 }),
    minDelayMs: intOption(retry.minDelayMs, 'retry.minDelayMs', DEFAULT_RETRY.minDelayMs, {
      max: 60_000,
    }),
    maxDelayMs: intOption(retry.maxDelayMs, 'retry.maxDelayMs', DEFAULT_RETRY.maxDelayMs, {
      max: 300_000,
    }),
  };
  if (parsed.maxDelayMs < parsed.minDelayMs) {
    throw new M2MConfigError('retry.maxDelayMs', 'must not be less than `retry.minDelayMs`');
  }
  return parsed;
}

/** Validates the client's options once, with environment fallbacks, and applies defaults. */
export function parseClientOptions(
  input: unknown,
  env: NodeJS.ProcessEnv = process.env,
): ClientConfig {
  const options = optionsObject<M2MClientOptions>(input, 'options');
  assertKnownKeys(options, CLIENT_OPTION_KEYS);
  const dispatcher = options.dispatcher;
  if (dispatcher !== undefined) {
    assertMethods<Dispatcher>(
      dispatcher,
      'dispatcher',
      ['request'],
      'must be an undici Dispatcher',
    );
  }
  // Keys given in code win whole: the environment's keys fill in only when none is given,
  // so a CLERK_MACHINE_SECRET_KEY in the shell never overrides an explicit `secretKey`.
  const keysFromEnv = options.machineSecretKey === undefined && options.secretKey === undefined;
  const apiUrl =
    options.apiUrl === undefined && env.CLERK_API_URL
      ? fromVariable('CLERK_API_URL', () => apiUrlOption(env.CLERK_API_URL))
      : apiUrlOption(options.apiUrl);
  const { origin, pathname } = new URL(apiUrl);
  return {
    apiUrl,
    origin,
    basePath: pathname.replace(/\/+$/, ''),
    apiVersion: headerValueOption(options.apiVersion, 'apiVersion') ?? DEFAULT_CLERK_API_VERSION,
    machineSecretKey: keysFromEnv
      ? fromVariable('CLERK_MACHINE_SECRET_KEY', () =>
          keyOption(env.CLERK_MACHINE_SECRET_KEY || undefined, 'machineSecretKey', 'ak_'),
        )
      : keyOption(options.machineSecretKey, 'machineSecretKey', 'ak_'),
    secretKey: keysFromEnv
      ? fromVariable('CLERK_SECRET_KEY', () =>
          keyOption(env.CLERK_SECRET_KEY || undefined, 'secretKey', 'sk_'),
        )
      : keyOption(options.secretKey, 'secretKey', 'sk_'),
    timeoutMs: intOption(options.timeoutMs, 'timeoutMs', DEFAULT_TIMEOUT_MS, {
      min: 1,
      max: 600_000,
    }),
    retry: retryOption(options.retry),
    dispatcher,
    logger: loggerOption(options.logger),
    userAgent: headerValueOption(options.userAgent, 'userAgent') ?? `m2m-guard/${VERSION}`,
  };
}
