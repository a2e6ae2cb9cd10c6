import diagnostics from 'node:diagnostics_channel';
import type { VerifierStats } from './types.js';

/**
 * Counters behind `verifier.stats()`, mirrored on `node:diagnostics_channel` so users can feed
 * their own metrics. Every message carries no token, only the event's own fields.
 */
export const CHANNELS = {
  /**
   * `{ event }`: `hit`, `miss`, `negative-hit`, `coalesced`, `stale-served`, and with a shared
   * store `shared-hit` and `invalidation-received`.
   */
  cache: 'm2m-guard:verifier:cache',
  /**
   * `{ outcome: 'valid' | 'invalid' | 'error', ms, reason? }`, one per upstream call, and
   * `{ outcome: 'budget_refused', ms: 0 }` per call the upstream budget held back.
   */
  upstream: 'm2m-guard:verifier:upstream',
  /** `{ state: 'closed' | 'open' | 'half-open' }` when the breaker changes state. */
  breaker: 'm2m-guard:verifier:breaker',
} as const;

const cacheChannel = diagnostics.channel(CHANNELS.cache);
const upstreamChannel = diagnostics.channel(CHANNELS.upstream);
const breakerChannel = diagnostics.channel(CHANNELS.breaker);

export type CacheEvent = 'hit' | 'miss' | 'negative-hit' | 'coalesced' | 'stale-served';
const FIELD: Record<CacheEvent, keyof VerifierStats> = {
  hit: 'hits',
  miss: 'misses',
  'negative-hit': 'negativeHits',
  coalesced: 'coalesced',
  'stale-served': 'staleServed',
};

export function createStats() {
  const counts: Omit<VerifierStats, 'size' | 'bytes'> = {
    hits: 0,
    misses: 0,
    negativeHits: 0,
    coalesced: 0,
    upstreamCalls: 0,
    upstreamErrors: 0,
    upstreamInvalid: 0,
    staleServed: 0,
    sharedHits: 0,
    invalidationsReceived: 0,
    budgetRefused: 0,
    sharedRejected: 0,
  };
  return {
    cache(event: CacheEvent) {
      counts[FIELD[event] as keyof typeof counts]++;
      if (cacheChannel.hasSubscribers) cacheChannel.publish({ event });
    },
    upstream(outcome: 'valid' | 'invalid' | 'error', ms: number, reason?: string) {
      counts.upstreamCalls++;
      if (outcome === 'error') counts.upstreamErrors++;
      if (outcome === 'invalid') counts.upstreamInvalid++;
      if (upstreamChannel.hasSubscribers) upstreamChannel.publish({ outcome, ms, reason });
    },
    sharedHit() {
      counts.sharedHits++;
      if (cacheChannel.hasSubscribers) cacheChannel.publish({ event: 'shared-hit' });
    },
    invalidationReceived() {
      counts.invalidationsReceived++;
      if (cacheChannel.hasSubscribers) cacheChannel.publish({ event: 'invalidation-received' });
    },
    /** A verify call for a never-seen token held back by the upstream budget. */
    budgetRefused() {
      counts.budgetRefused++;
      if (upstreamChannel.hasSubscribers) {
        upstreamChannel.publish({ outcome: 'budget_refused', ms: 0 });
      }
    },
    sharedRejected() {
      counts.sharedRejected++;
    },
    breaker(state: string) {
      if (breakerChannel.hasSubscribers) breakerChannel.publish({ state });
    },
    snapshot(size: number, bytes: number): VerifierStats {
      return { ...counts, size, bytes };
    },
  };
}
