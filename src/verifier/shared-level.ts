import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { type Entry, parseEntry } from './entry.js';
import type { SharedCacheStore } from './store.js';

/** An invalidation as it travels between instances. */
export interface Invalidation {
  kind: 'revoke' | 'invalidate';
  /** Cache key (a keyed hash), when known. */
  key?: string;
  /** Token id, when known. */
  id?: string;
  /** The token's expiration (Unix ms) when known, so a revocation is remembered just as long. */
  expiresAt?: number | null;
}

/**
 * The verifier's view of a {@link SharedCacheStore}: entries as JSON under a namespace, token
 * id → key links so a revocation by id finds the answer, invalidations as messages, and store
 * failures swallowed (logged once per outage) so that Redis down never fails a request that
 * Clerk can answer.
 */
export function createSharedLevel(store: SharedCacheStore, namespace: string, log: Logger) {
  const instance = randomUUID();
  let down = false;
  const entryKey = (key: string) => `${namespace}:t:${key}`;
  const idKey = (id: string) => `${namespace}:id:${id}`;

  async function guarded<T>(op: () => Promise<T>): Promise<T | undefined> {
    try {
      const result = await op();
      if (down) {
        down = false;
        log.info({ store: store.name }, 'shared cache store is back');
      }
      return result;
    } catch (err) {
      if (!down) {
        down = true;
        log.warn(
          { store: store.name, err: (err as Error)?.message },
          'shared cache store failed; carrying on with the in-process cache and Clerk',
        );
      }
      return undefined;
    }
  }

  return {
    /** Whether the store's last operation failed (until one succeeds again). */
    get down(): boolean {
      return down;
    },

    async get(key: string): Promise<Entry | undefined> {
      const text = await guarded(() => store.get(entryKey(key)));
      return text ? parseEntry(text) : undefined;
    },

    async set(key: string, entry: Entry, ttlMs: number): Promise<void> {
      if (ttlMs < 1) return;
      const entries: [string, string][] = [[entryKey(key), JSON.stringify(entry)]];
      // The token-id link travels with the answer, so a revocation by id always finds it.
      if (entry.kind === 'valid') entries.push([idKey(entry.value.id), key]);
      await guarded(() => store.set(entries, ttlMs));
    },

    /** The cache key of a token id's answer, from this level's links. */
    async keyOfId(id: string): Promise<string | undefined> {
      return guarded(() => store.get(idKey(id)));
    },

    async delete(key: string | undefined, id: string | undefined): Promise<void> {
      await guarded(async () => {
        if (key !== undefined) await store.delete(entryKey(key));
        if (id !== undefined) await store.delete(idKey(id));
      });
    },

    async publish(message: Invalidation): Promise<void> {
      await guarded(() => store.publish(JSON.stringify({ ...message, from: instance })));
    },

    /** Calls `listener` for invalidations published by other instances. */
    subscribe(listener: (message: Invalidation) => void): () => void {
      return store.subscribe((text) => {
        let message: (Invalidation & { from?: string }) | undefined;
        try {
          message = JSON.parse(text);
        } catch {
          return;
        }
        if (!message || message.from === instance) return;
        if (message.kind !== 'revoke' && message.kind !== 'invalidate') return;
        listener({
          kind: message.kind,
          key: typeof message.key === 'string' ? message.key : undefined,
          id: typeof message.id === 'string' ? message.id : undefined,
        });
      });
    },
  };
}

export type SharedLevel = ReturnType<typeof createSharedLevel>;
