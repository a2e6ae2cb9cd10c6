/**
 * A second cache level shared by several verifier instances (such as Redis, from
 * `m2m-guard/redis`). The verifier keeps its in-process lru-cache in front of it, so a hit there
 * costs no network. Keys are keyed hashes (never a token); values are opaque strings.
 * Any method may reject: the verifier then carries on with its own level and Clerk.
 */
export interface SharedCacheStore {
  /** A short name for logs, e.g. `redis`. */
  readonly name: string;
  get(key: string): Promise<string | undefined>;
  /**
   * Stores every `[key, value]` together (all or none visible), each with the absolute
   * time-to-live `ttlMs`, set atomically with the value; reads never extend it.
   */
  set(entries: ReadonlyArray<readonly [key: string, value: string]>, ttlMs: number): Promise<void>;
  delete(key: string): Promise<void>;
  /** Broadcasts an invalidation to every subscribed instance, this one included. */
  publish(message: string): Promise<void>;
  /** Receives every invalidation published. Returns a function that unsubscribes. */
  subscribe(listener: (message: string) => void): () => void;
}
