import { randomBytes } from 'node:crypto';

const ALPHANUMERIC = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
// Largest multiple of 62 below 256: bytes at or above it are dropped so every character is
// equally likely (these strings are secrets, a modulo bias would weaken them).
const UNBIASED_LIMIT = 248;

/** `length` random characters from [A-Za-z0-9], drawn from the CSPRNG without bias. */
export function randomAlphanumeric(length: number): string {
  let out = '';
  while (out.length < length) {
    for (const byte of randomBytes(length * 2)) {
      if (byte < UNBIASED_LIMIT) out += ALPHANUMERIC[byte % ALPHANUMERIC.length];
      if (out.length === length) break;
    }
  }
  return out;
}

export function randomHex(bytes: number): string {
  return randomBytes(bytes).toString('hex');
}

/** `mch_` + 27 word characters, like Clerk's machine ids. */
export const newMachineId = (): string => `mch_${randomAlphanumeric(27)}`;

/** `ak_` + 32 hex digits, the shape of a Clerk Machine Secret Key. */
export const newMachineSecretKey = (): string => `ak_${randomHex(16)}`;

/** `sk_test_` + random, the shape of a development-instance Clerk Secret Key. */
export const newInstanceSecretKey = (): string => `sk_test_${randomAlphanumeric(40)}`;

/** `mt_` + 32 hex digits: the token's id (not its secret). */
export const newTokenId = (): string => `mt_${randomHex(16)}`;

/**
 * `mt_` + 40 alphanumerics: the opaque token string. Longer than an id and not hex-only, so it
 * can never be mistaken for one.
 */
export const newTokenSecret = (): string => `mt_${randomAlphanumeric(40)}`;

/** `ins_` + 27 word characters: Clerk uses the instance id as the JWT `kid`. */
export const newInstanceId = (): string => `ins_${randomAlphanumeric(27)}`;

/** Value of `clerk_trace_id` in error bodies. */
export const newTraceId = (): string => randomHex(16);
