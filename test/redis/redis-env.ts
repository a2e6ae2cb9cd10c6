/**
 * Whether the Redis tests run: they need `REDIS_URL` (`bash .ci/run` starts a redis-server and
 * sets it). Without it every Redis test file is skipped and the run says so, once.
 */
import { closeSync, openSync, statSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The shared Redis server of the run, or `undefined`. */
export const REDIS_URL: string | undefined = process.env.REDIS_URL || undefined;

/** True when the Redis tests are skipped. */
export const SKIP_REDIS = REDIS_URL === undefined;

export const SKIP_LINE =
  'Redis tests skipped: REDIS_URL is not set (bash .ci/run starts a redis-server and sets it)';

/** A notice older than this belongs to an earlier run whose process id was reused. */
const NOTICE_STALE_MS = 10 * 60_000;

/**
 * Prints {@link SKIP_LINE} when the Redis tests are skipped: once per vitest run, however many
 * Redis test files there are (each runs in its own worker; the first one to claim the marker
 * file of the run prints). Returns `SKIP_REDIS`, for `describe.skipIf`.
 */
export function redisSkipped(): boolean {
  if (!SKIP_REDIS) return false;
  // Workers are forked by the vitest process (or are threads of it): its pid names the run.
  const runner = typeof process.send === 'function' ? process.ppid : process.pid;
  const marker = join(tmpdir(), `m2m-guard-redis-skip-${runner}`);
  try {
    if (Date.now() - statSync(marker).mtimeMs > NOTICE_STALE_MS) unlinkSync(marker);
  } catch {
    // No marker yet.
  }
  try {
    closeSync(openSync(marker, 'wx'));
  } catch {
    return true; // another file of this run printed it
  }
  console.warn(SKIP_LINE);
  return true;
}
