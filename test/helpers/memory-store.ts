/** A shared cache store in memory: the store contract with nothing but a Map behind it. */
import type { SharedCacheStore } from '../../src/verifier/index.js';

/** A SharedCacheStore in memory, with absolute TTLs on the given clock. */
export function memoryStore(now: () => number) {
  const data = new Map<string, { value: string; until: number }>();
  const listeners = new Set<(message: string) => void>();
  const store: SharedCacheStore = {
    name: 'memory',
    async get(key) {
      const found = data.get(key);
      if (!found || now() >= found.until) return undefined;
      return found.value;
    },
    async set(entries, ttlMs) {
      for (const [key, value] of entries) data.set(key, { value, until: now() + ttlMs });
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
