import { M2MConfigError } from './config-error.js';

/**
 * Small option validators shared by every factory. Each returns the validated value or the
 * default, and throws an {@link M2MConfigError} that names the option otherwise.
 */

/**
 * The keys of an options type as a list, from an object that must name every key of `T` and no
 * other (express-rate-limit's `KeysEnum`): adding an option to the type without adding it here
 * is a compile error, so the unknown-key check can never refuse a real option.
 *
 * @example
 * const KEYS = optionKeys<RetryOptions>({ retries: true, minDelayMs: true, maxDelayMs: true });
 */
export function optionKeys<T>(keys: { [K in keyof Required<T>]: true }): (keyof T & string)[] {
  return Object.keys(keys) as (keyof T & string)[];
}

/** `apiURL`, `api_url` and `ApiUrl` all squash to `apiurl`. */
const squash = (name: string) => name.toLowerCase().replace(/[_-]/g, '');

/**
 * Optimal string alignment distance (Levenshtein plus adjacent transpositions), stopping early
 * once it must exceed `limit`: option names are short, so this stays trivially cheap.
 */
export function editDistance(a: string, b: string, limit = Number.POSITIVE_INFINITY): number {
  if (Math.abs(a.length - b.length) > limit) return limit + 1;
  let prev2: number[] = [];
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    let rowMin = i;
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d = Math.min(d, prev2[j - 2]! + 1);
      }
      row.push(d);
      rowMin = Math.min(rowMin, d);
    }
    if (rowMin > limit) return limit + 1;
    prev2 = prev;
    prev = row;
  }
  return prev[b.length]!;
}

/**
 * The option a mistyped `key` most likely meant: one equal but for case, `_` or `-`
 * (`api_url` → `apiUrl`), else the closest within an edit distance of 2 (`loger` → `logger`),
 * else `undefined`.
 */
export function suggestOption(key: string, known: readonly string[]): string | undefined {
  const variant = known.find((k) => squash(k) === squash(key));
  if (variant !== undefined) return variant;
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of known) {
    const distance = editDistance(key.toLowerCase(), candidate.toLowerCase(), 2);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

/**
 * Rejects keys that are not options, so a typo (`ttlMS`) fails loudly instead of being ignored:
 * with a "did you mean" when one option is close, else with the list of valid options.
 */
export function assertKnownKeys(value: object, known: readonly string[], prefix = ''): void {
  for (const key of Object.keys(value)) {
    if (!known.includes(key)) {
      const near = suggestOption(key, known);
      throw new M2MConfigError(
        `${prefix}${key}`,
        near !== undefined
          ? `is not an option; did you mean \`${prefix}${near}\`?`
          : `is not an option; valid options: ${known.map((k) => `\`${prefix}${k}\``).join(', ')}`,
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
