/**
 * Whether the Redis tests run: they need `REDIS_URL` (`bash .ci/run` starts a redis-server and
 * sets it). Without it every Redis test file is skipped and the run says so, once.
 */
import { closeSync, openSync, statSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The shared Redis server of the run, or `undefined`. */
export const REDIS_URL: string | undefined = process.env.REDIS_URL || undefined;

/**
 * The nodes of the run's Redis Cluster (`REDIS_CLUSTER_URLS`, comma-separated; `bash .ci/run`
 * starts a three-node cluster and sets it), or `undefined`.
 */
export const REDIS_CLUSTER_URLS: string[] | undefined = process.env.REDIS_CLUSTER_URLS
  ? process.env.REDIS_CLUSTER_URLS.split(',').map((url) => url.trim())
  : undefined;

export const CLUSTER_SKIP_LINE =
  'Redis Cluster tests skipped: REDIS_CLUSTER_URLS is not set (bash .ci/run starts a three-node cluster and sets it)';

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
  return skippedOnce(SKIP_REDIS, 'redis', SKIP_LINE);
}

/** {@link redisSkipped} for the Redis Cluster tests: `CLUSTER_SKIP_LINE` once per run. */
export function clusterSkipped(): boolean {
  return skippedOnce(REDIS_CLUSTER_URLS === undefined, 'cluster', CLUSTER_SKIP_LINE);
}

function skippedOnce(skip: boolean, what: string, line: string): boolean {
  if (!skip) return false;
  // Workers are forked by the vitest process (or are threads of it): its pid names the run.
  const runner = typeof process.send === 'function' ? process.ppid : process.pid;
  const marker = join(tmpdir(), `m2m-guard-${what}-skip-${runner}`);
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
  console.warn(line);
  return true;
}
