import { M2MConfigError } from './config-error.js';

/**
 * Small option validators shared by every factory. Each returns the validated value or the
 * default, and throws an {@link M2MConfigError} that names the option otherwise.
 */

/** Rejects keys that are not options, so a typo (`ttlMS`) fails loudly instead of being ignored. */
export function assertKnownKeys(value: object, known: readonly string[], prefix = ''): void {
  for (const key of Object.keys(value)) {
    if (!known.includes(key)) {
      const near = known.find((k) => k.toLowerCase() === key.toLowerCase());
      throw new M2MConfigError(
        `${prefix}${key}`,
        near ? `is not an option; did you mean \`${prefix}${near}\`?` : 'is not an option',
      );
    }
  }
}

export function optionsObject<T extends object>(value: unknown, name: string): Partial<T> {
  if (value === undefined) return {};
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new M2MConfigError(name, 'must be an object');
  }
  return value as Partial<T>;
}

export function intOption(
  value: unknown,
  name: string,
  fallback: number,
  { min = 0, max = Number.MAX_SAFE_INTEGER }: { min?: number; max?: number } = {},
): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new M2MConfigError(name, `must be an integer from ${min} to ${max}`);
  }
  return value;
}

export function boolOption(value: unknown, name: string, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw new M2MConfigError(name, 'must be true or false');
  return value;
}

export function stringOption(value: unknown, name: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value.length === 0) {
    throw new M2MConfigError(name, 'must be a non-empty string');
  }
  return value;
}

/**
 * Accepts an object that has every one of `methods` (duck typing: a logger, a client, a store
 * from another copy of the library still passes), or throws `expectation` for the option.
 */
export function assertMethods<T>(
  value: unknown,
  name: string,
  methods: readonly string[],
  expectation: string,
): T {
  const candidate = value as Record<string, unknown> | null | undefined;
  if (
    typeof candidate !== 'object' ||
    candidate === null ||
    methods.some((method) => typeof candidate[method] !== 'function')
  ) {
    throw new M2MConfigError(name, expectation);
  }
  return value as T;
}

export function functionOption<F extends (...args: never[]) => unknown>(
  value: unknown,
  name: string,
): F | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'function') throw new M2MConfigError(name, 'must be a function');
  return value as F;
}
