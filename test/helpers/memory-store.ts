/**
 * An in-memory {@link SharedCacheStore} on a clock of the test's choosing: one Map shared by the
 * verifiers given the same store, messages delivered synchronously to every subscriber.
 */
import type { SharedCacheStore } from '../../src/verifier/index.js';

export interface MemoryStore {
  readonly store: SharedCacheStore;
  /** What the store holds: key → value and absolute expiry (ms on `now`). */
  readonly data: Map<string, { value: string; until: number }>;
}

export function memoryStore(now: () => number = Date.now): MemoryStore {
  const data = new Map<string, { value: string; until: number }>();
  const listeners = new Set<(message: string) => void>();
  const store: SharedCacheStore = {
    name: 'memory',
    async get(key) {
      const found = data.get(key);
      if (!found || now() >= found.until) return undefined;
      return found.value;
    },
    async set(key, value, ttlMs) {
      data.set(key, { value, until: now() + Math.max(1, Math.ceil(ttlMs)) });
    },
    async delete(key) {
      data.delete(key);
    },
    async publish(message) {
      for (const listener of listeners) listener(message);
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
  return { store, data };
}
