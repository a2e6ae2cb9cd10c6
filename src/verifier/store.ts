/**
 * A second cache level shared by several verifier instances (such as Redis, from
 * `m2m-guard/redis`). The verifier keeps its in-process lru-cache in front of it, so a hit there
 * costs no network. Keys are keyed hashes and token ids (never a token); values are opaque
 * strings, each signed by the verifier (a value or message that fails the check is ignored).
 * Any method may reject: the verifier then carries on with its own level and Clerk.
 *
 * Every method touches exactly one key, so a store may spread keys over the nodes of a cluster
 * (Redis Cluster: no command spans slots). Values that belong together (an answer and its
 * token-id link) are written one by one, in an order that stays safe when a later write fails
 * or a revocation lands in between; the store need not make several writes atomic.
 */
export interface SharedCacheStore {
  /** A short name for logs, e.g. `redis`. */
  readonly name: string;
  get(key: string): Promise<string | undefined>;
  /**
   * Stores `value` under `key` with the absolute time-to-live `ttlMs` (set atomically with the
   * value, replacing any earlier value and its TTL); reads never extend it.
   */
  set(key: string, value: string, ttlMs: number): Promise<void>;
  delete(key: string): Promise<void>;
  /** Broadcasts an invalidation to every subscribed instance, this one included. */
  publish(message: string): Promise<void>;
  /** Receives every invalidation published. Returns a function that unsubscribes. */
  subscribe(listener: (message: string) => void): () => void;
}
