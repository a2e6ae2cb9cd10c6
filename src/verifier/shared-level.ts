import { createHmac, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
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
  /**
   * When the token expires (Unix ms), if the sender knew it: a revocation need not be
   * remembered past it.
   */
  expiresAt?: number;
}

export interface SharedLevelOptions {
  /** Prefix of every key of this level: the verifier's identity (API URL and verify key). */
  namespace: string;
  /**
   * Key of the MAC on every value and message, derived from the secret key the instances
   * verify with (`client.deriveKey('shared-mac')`). Without one (no secret key), a random key:
   * this instance then trusts nothing but what it wrote itself.
   */
  macKey: Buffer | undefined;
  log: Logger;
  /** The verifier's clock (Unix ms). */
  now: () => number;
  /** Called for each value or message that fails its check (`stats().sharedRejected`). */
  onRejected: () => void;
}

/**
 * How old (or how far ahead, for clock differences) a message may be. The channel keeps no
 * history, but anyone who can publish on it can record a message and send it again: without
 * a time, one recorded "invalidate" replayed in a loop would evict an answer forever and cost
 * a Clerk call per replay. Within the window a replay is caught by its MAC having been seen.
 */
export const MESSAGE_MAX_AGE_MS = 60_000;
/** A store outage is over once commands have succeeded without a failure for this long. */
export const OUTAGE_QUIET_MS = 5_000;
/** Rejections are logged at most once per this long. */
const REJECTION_LOG_INTERVAL_MS = 60_000;
/** Messages remembered for the replay check, at most. */
const MAX_SEEN_MESSAGES = 10_000;

/**
 * Signs `payload` for `where` (the key it is stored under, or the channel's namespace):
 * `<base64url HMAC-SHA-256>.<payload>`. The MAC covers the whole payload and where it belongs,
 * so a value changed, copied to another key, or taken from another verifier's namespace fails.
 */
function mac(key: Buffer, where: string, payload: string): string {
  return createHmac('sha256', key).update(`${where}\n${payload}`).digest('base64url');
}

function seal(key: Buffer, where: string, payload: string): string {
  return `${mac(key, where, payload)}.${payload}`;
}

/** The payload of `text` if its MAC is right for `where`, else `undefined`. Constant time. */
function open(key: Buffer, where: string, text: string): string | undefined {
  const dot = text.indexOf('.');
  if (dot < 1) return undefined;
  const payload = text.slice(dot + 1);
  const given = Buffer.from(text.slice(0, dot), 'base64url');
  const expected = Buffer.from(mac(key, where, payload), 'base64url');
  return given.length === expected.length && timingSafeEqual(given, expected) ? payload : undefined;
}

/**
 * The verifier's view of a {@link SharedCacheStore}: entries as signed JSON under a namespace,
 * signed token id → key links so a revocation by id finds the answer, signed invalidation
 * messages, and store failures swallowed (logged once per outage) so that Redis down never
 * fails a request that Clerk can answer. Whatever fails its MAC is ignored as if absent.
 *
 * Every command touches one key, so the level works on Redis Cluster; see {@link set} and
 * {@link revoke} for the order of the writes that belong together.
 */
export function createSharedLevel(store: SharedCacheStore, options: SharedLevelOptions) {
  const { namespace, log, now, onRejected } = options;
  const macKey = options.macKey ?? randomBytes(32);
  const instance = randomUUID();
  let down = false;
  const entryKey = (key: string) => `${namespace}:t:${key}`;
  const idKey = (id: string) => `${namespace}:id:${id}`;
  /** A revocation marker: the "revoked" entry of a token id, for writers racing the revoker. */
  const revokedKey = (id: string) => `${namespace}:rv:${id}`;
  let sequence = 0;
  /** MACs of the messages accepted within {@link MESSAGE_MAX_AGE_MS}, oldest first. */
  const seen = new Map<string, number>();
  let rejectedSinceLog = 0;
  let lastRejectionLog = Number.NEGATIVE_INFINITY;

  function rejected(what: 'value' | 'message') {
    onRejected();
    rejectedSinceLog++;
    const at = now();
    if (at - lastRejectionLog < REJECTION_LOG_INTERVAL_MS) return;
    lastRejectionLog = at;
    log.warn(
      { store: store.name, what, rejected: rejectedSinceLog },
      'shared cache store gave a value or message that fails its integrity check; ignored',
    );
    rejectedSinceLog = 0;
  }

  let lastFailure = Number.NEGATIVE_INFINITY;
  /**
   * Store failures are swallowed and logged once per outage. An outage ends after a success
   * with no failure for {@link OUTAGE_QUIET_MS}: with one node of a cluster down, commands to
   * the others succeed in between, which is not the end of it.
   */
  async function guarded<T>(op: () => Promise<T>): Promise<T | undefined> {
    try {
      const result = await op();
      if (down && now() - lastFailure >= OUTAGE_QUIET_MS) {
        down = false;
        log.info({ store: store.name }, 'shared cache store is back');
      }
      return result;
    } catch (err) {
      lastFailure = now();
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

  /** Reads a signed value; a missing one is `undefined`, a forged one too (and counted). */
  async function read(storeKey: string): Promise<string | undefined> {
    const text = await store.get(storeKey);
    if (text === undefined) return undefined;
    const payload = open(macKey, storeKey, text);
    if (payload === undefined) rejected('value');
    return payload;
  }

  const write = (storeKey: string, payload: string, ttlMs: number) =>
    store.set(storeKey, seal(macKey, storeKey, payload), ttlMs);

  /** The entry under `storeKey`, checked (MAC, then shape). */
  async function readEntry(storeKey: string): Promise<Entry | undefined> {
    const payload = await read(storeKey);
    if (payload === undefined) return undefined;
    const entry = parseEntry(payload);
    if (!entry) rejected('value');
    return entry;
  }

  async function publish(message: Invalidation): Promise<void> {
    const payload = JSON.stringify({
      ns: namespace,
      kind: message.kind,
      key: message.key,
      id: message.id,
      expiresAt: message.expiresAt,
      from: instance,
      at: now(),
      n: ++sequence,
    });
    await guarded(() => store.publish(seal(macKey, `message\n${namespace}`, payload)));
  }

  return {
    /** Whether the store's last operation failed (until one succeeds again). */
    get down(): boolean {
      return down;
    },

    async get(key: string): Promise<Entry | undefined> {
      return guarded(() => readEntry(entryKey(key)));
    },

    /**
     * Shares an answer. A good answer takes three single-key commands (no transaction, which
     * on a cluster would span slots):
     *
     * 1. its token-id link and the answer itself, sent together (one round trip, so another
     *    instance finds the answer as soon as it could before);
     * 2. then a read of the token id's revocation marker: if a revocation began meanwhile, it may
     *    have read the link before it landed or overwritten the answer before the good one
     *    landed, so the answer is overwritten here with the revoker's "revoked" entry.
     *
     * The revoker ({@link revoke}) writes the marker before it reads the link, so however the
     * two interleave, one of them writes "revoked" after the good answer: either the revoker's
     * link read comes after the link landed (it then overwrites the answer; if the good answer
     * lands after that, step 2 comes later still and sees the marker), or it comes before, and
     * then step 2, later still, sees the marker. A good answer never resurrects a revoked one.
     * When the link cannot be written, the answer is deleted again: no answer stays without the
     * link a revocation by id needs to find it. When the answer or step 2 fails, the store is
     * failing: a link without an answer is harmless.
     */
    async set(key: string, entry: Entry, ttlMs: number): Promise<void> {
      if (ttlMs < 1) return;
      const storeKey = entryKey(key);
      if (entry.kind !== 'valid') {
        await guarded(() => write(storeKey, JSON.stringify(entry), ttlMs));
        return;
      }
      const id = entry.value.id;
      await guarded(async () => {
        const [link, answer] = await Promise.allSettled([
          write(idKey(id), key, ttlMs),
          write(storeKey, JSON.stringify(entry), ttlMs),
        ]);
        if (link.status === 'rejected') {
          await store.delete(storeKey).catch(() => {});
          throw link.reason;
        }
        if (answer.status === 'rejected') throw answer.reason;
        const marker = await readEntry(revokedKey(id));
        if (marker?.kind === 'invalid') {
          const left = marker.freshUntil - now();
          if (left >= 1) await write(storeKey, JSON.stringify(marker), left);
          else await store.delete(storeKey);
        }
      });
    },

    /** The cache key of a token id's answer, from this level's links. */
    async keyOfId(id: string): Promise<string | undefined> {
      return guarded(() => read(idKey(id)));
    },

    /**
     * Shares a revocation: the marker first (see {@link set} for why), then the answer found
     * through `key` or the token-id link is overwritten with `entry` ("revoked"), the link
     * goes, and every instance is told. Nothing is read back from the store as good afterwards.
     */
    async revoke(
      id: string,
      key: string | undefined,
      entry: Entry,
      ttlMs: number,
      expiresAt?: number,
    ): Promise<void> {
      const payload = JSON.stringify(entry);
      // Kept at least as long as a writer that fetched before the revocation can still be busy.
      const markerTtl = Math.max(ttlMs, MESSAGE_MAX_AGE_MS);
      const found = await guarded(async () => {
        await write(
          revokedKey(id),
          JSON.stringify({ ...entry, freshUntil: now() + markerTtl }),
          markerTtl,
        );
        const sharedKey = key ?? (await read(idKey(id)));
        if (sharedKey !== undefined && ttlMs >= 1) await write(entryKey(sharedKey), payload, ttlMs);
        await store.delete(idKey(id));
        return sharedKey;
      });
      // Told even when a write failed: the running instances then refuse the token anyway.
      await publish({ kind: 'revoke', id, key: found ?? key, expiresAt });
    },

    async delete(key: string | undefined, id: string | undefined): Promise<void> {
      await guarded(async () => {
        if (key !== undefined) await store.delete(entryKey(key));
        if (id !== undefined) await store.delete(idKey(id));
      });
    },

    publish,

    /** Calls `listener` for invalidations published by other instances (checked, not replayed). */
    subscribe(listener: (message: Invalidation) => void): () => void {
      return store.subscribe((text) => {
        const dot = text.indexOf('.');
        let message: Record<string, unknown> | undefined;
        try {
          message = JSON.parse(text.slice(dot + 1));
        } catch {
          // Not ours: checked below.
        }
        // Several verifiers (other keys, other namespaces) may share one channel: theirs are
        // not for us, and not forgeries either.
        if (message && typeof message === 'object' && 'ns' in message && message.ns !== namespace) {
          return;
        }
        if (dot < 1 || open(macKey, `message\n${namespace}`, text) === undefined || !message) {
          rejected('message');
          return;
        }
        if (message.from === instance) return;
        const at = now();
        if (typeof message.at !== 'number' || Math.abs(at - message.at) > MESSAGE_MAX_AGE_MS) {
          rejected('message');
          return;
        }
        const tag = text.slice(0, dot);
        if (seen.has(tag)) {
          rejected('message');
          return;
        }
        seen.set(tag, at);
        for (const [old, when] of seen) {
          if (seen.size <= MAX_SEEN_MESSAGES && at - when <= MESSAGE_MAX_AGE_MS) break;
          seen.delete(old);
        }
        if (message.kind !== 'revoke' && message.kind !== 'invalidate') return;
        listener({
          kind: message.kind,
          key: typeof message.key === 'string' ? message.key : undefined,
          id: typeof message.id === 'string' ? message.id : undefined,
          expiresAt:
            typeof message.expiresAt === 'number' && Number.isFinite(message.expiresAt)
              ? message.expiresAt
              : undefined,
        });
      });
    },
  };
}

export type SharedLevel = ReturnType<typeof createSharedLevel>;
