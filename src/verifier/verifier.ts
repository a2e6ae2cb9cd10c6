import { LRUCache } from 'lru-cache';
import {
  BadRequestError,
  type M2MApiError,
  type M2MToken,
  NotFoundError,
} from '../client/index.js';
import { deepFreeze } from '../shared/freeze.js';
import { fingerprint } from '../shared/redact.js';
import { TOKEN_ID_PATTERN } from '../shared/wire.js';
import { createBreaker } from './breaker.js';
import { createCacheKeyer } from './cache-key.js';
import type { Entry } from './entry.js';
import { InvalidTokenError, type InvalidTokenReason, VerifierUnavailableError } from './errors.js';
import { createJwtVerifier, isJwtShaped } from './jwt.js';
import { parseVerifierOptions } from './options.js';
import { createSharedLevel, type Invalidation } from './shared-level.js';
import { createStats } from './stats.js';
import { isOpaqueM2MToken } from './token-shape.js';
import type { TokenVerifier, TokenVerifierOptions, VerifiedM2MToken } from './types.js';
import { toUnavailable } from './upstream-error.js';

/** Revocations seen here are remembered this many at most, so a late answer cannot revive one. */
const MAX_REVOKED_IDS = 10_000;

/**
 * Creates the framework-agnostic verifier: Clerk's verify endpoint behind a bounded, hashed,
 * expiry-aware cache with negative caching, singleflight, a circuit breaker and an optional
 * stale-if-error window. Options are validated here, once.
 */
export function createTokenVerifier(options: TokenVerifierOptions = {}): TokenVerifier {
  const config = parseVerifierOptions(options);
  const { client, now, logger, clockSkewMs, machineId, allowedSubjects } = config;
  const log = logger.child({ component: 'm2m-verifier' });
  const stats = createStats();
  const identity = `${client.apiUrl}|${client.verifyIdentity}`;
  // With a shared store, every instance that verifies with the same key must hash tokens alike,
  // so the HMAC key is derived from that secret key rather than drawn at random.
  // Every value and message in it is signed with a key derived from that secret too.
  const shared = config.store
    ? createSharedLevel(config.store, {
        namespace: `v2:${client.verifyIdentity}`,
        macKey: client.deriveKey('shared-mac'),
        log,
        now,
        onRejected: () => stats.sharedRejected(),
      })
    : undefined;
  const keyOf = createCacheKeyer(identity, shared ? client.deriveKey('cache-key') : undefined);
  const breaker = createBreaker(
    config.breaker.failures,
    config.breaker.cooldownMs,
    now,
    (state) => {
      stats.breaker(state);
      log.warn({ state }, 'clerk verify circuit breaker changed state');
    },
  );
  const inflight = new Map<string, Promise<Entry>>();
  const verifyJwt = createJwtVerifier({
    client,
    jwtKey: config.jwtKey,
    jwksRefreshMinMs: config.jwksRefreshMinMs,
    clockSkewMs,
    now,
    logger: log,
    canFetchJwks: client.hasSecretKey,
    scopeUncheckable: client.verifyIdentity.startsWith('machine:') && machineId === undefined,
  });
  const revokedIds = new LRUCache<string, true>({ max: MAX_REVOKED_IDS });
  // Token id -> cache key of its good answer, so a revocation by id can drop it.
  const keyById = new Map<string, string>();
  const cache =
    config.cache === false
      ? undefined
      : new LRUCache<string, Entry>({
          max: config.cache.max,
          perf: { now },
          ttlResolution: 0,
          dispose: (entry, key) => {
            if (entry.kind === 'valid' && keyById.get(entry.value.id) === key) {
              keyById.delete(entry.value.id);
            }
          },
        });
  const cacheConfig = config.cache === false ? undefined : config.cache;

  const pending = new Set<Promise<void>>();
  // With only a jwtKey, opaque tokens cannot be checked at all: they are refused, not "unavailable".
  const canVerifyOpaque = client.verifyIdentity !== 'none';
  let warnedOpaque = false;
  /** Keys and token ids whose shared copies `invalidate()` is deleting right now. */
  const invalidating = new Set<string>();
  /** Keeps background work (shared-store writes) tracked, so close() can wait for it. */
  function track(work: Promise<void>) {
    pending.add(work);
    work.finally(() => pending.delete(work));
  }

  const unsubscribeRevocations = client.onRevoke(({ id }) => {
    revokedIds.set(id, true);
    // Keep the answer as a definite "revoked", so the next request is refused with the right
    // reason and without asking Clerk.
    const key = keyById.get(id);
    const previous = key === undefined ? undefined : cache?.get(key, { allowStale: true });
    const subject = previous?.kind === 'valid' ? previous.value.subject : undefined;
    const revoked = (at: number): Entry => ({
      kind: 'invalid',
      reason: 'revoked',
      tokenId: id,
      subject,
      freshUntil: at + Math.max(cacheConfig?.ttlMs ?? 0, cacheConfig?.negativeTtlMs ?? 0),
    });
    if (key !== undefined) {
      keyById.delete(id);
      remember(key, revoked(now()), now(), false);
    }
    if (shared) {
      // Overwrite the shared answer before telling the others, so none can re-read it as good.
      const at = now();
      const entry = revoked(at);
      const expiresAt = previous?.kind === 'valid' ? previous.value.expiration : null;
      track(shared.revoke(id, key, entry, entry.freshUntil - at, expiresAt ?? undefined));
    }
    log.debug({ tokenId: id }, 'token revoked through this client');
  });

  const unsubscribeShared = shared?.subscribe((message: Invalidation) => {
    stats.invalidationReceived();
    if (message.kind === 'revoke' && message.id !== undefined) revokedIds.set(message.id, true);
    dropLocally(message.key, message.id);
  });

  /**
   * Invalidations are numbered, so an upstream answer that was asked for before one arrived is
   * not kept afterwards: the answer in flight may be exactly what was invalidated.
   */
  let generation = 0;
  const invalidatedAt = new LRUCache<string, number>({ max: MAX_REVOKED_IDS });
  function dropLocally(key: string | undefined, id: string | undefined) {
    generation++;
    if (key !== undefined) {
      invalidatedAt.set(key, generation);
      cache?.delete(key);
    }
    if (id !== undefined) {
      invalidatedAt.set(id, generation);
      dropById(id);
    }
  }
  function invalidatedSince(since: number, key: string, id?: string): boolean {
    if (generation === since) return false;
    return (
      (invalidatedAt.get(key) ?? 0) > since ||
      (id !== undefined && (invalidatedAt.get(id) ?? 0) > since)
    );
  }

  function dropById(id: string) {
    const key = keyById.get(id);
    if (key !== undefined) cache?.delete(key);
  }

  /** Whether the token is opaque (else a JWT); throws for anything that is neither. */
  function classify(token: string): boolean {
    const opaque = isOpaqueM2MToken(token);
    if (!opaque && !isJwtShaped(token)) throw new InvalidTokenError('malformed');
    if (opaque && !canVerifyOpaque) {
      if (!warnedOpaque) {
        warnedOpaque = true;
        log.warn(
          'an opaque M2M token was refused: set machineSecretKey or secretKey to verify them',
        );
      }
      throw new InvalidTokenError('unknown');
    }
    return opaque;
  }

  function serveHit(cached: Entry, at: number): VerifiedM2MToken {
    stats.cache(cached.kind === 'valid' ? 'hit' : 'negative-hit');
    return settle(cached, at);
  }

  /** The checks every good answer passes on every use, cached or fresh. */
  function accept(value: VerifiedM2MToken, at: number): VerifiedM2MToken {
    // The hot path: allocate nothing unless refusing.
    const refuse = (reason: InvalidTokenReason) =>
      new InvalidTokenError(reason, { tokenId: value.id, subject: value.subject });
    if (revokedIds.size > 0 && revokedIds.has(value.id)) throw refuse('revoked');
    if (value.expiration !== null && at >= value.expiration + clockSkewMs) throw refuse('expired');
    if (machineId !== undefined && !value.scopes.includes(machineId)) throw refuse('out_of_scope');
    if (allowedSubjects !== undefined && !allowedSubjects.has(value.subject)) {
      throw refuse('out_of_scope');
    }
    return value;
  }

  function settle(entry: Entry, at: number): VerifiedM2MToken {
    if (entry.kind === 'invalid') {
      throw new InvalidTokenError(entry.reason, { tokenId: entry.tokenId, subject: entry.subject });
    }
    return accept(entry.value, at);
  }

  /** Keeps an answer in process and, unless it came from there, in the shared store. */
  function remember(key: string, entry: Entry, at: number, share = true) {
    if (!cache) return;
    // A good answer is kept past its freshness, until its token expires (never served from
    // then on, unless stale-if-error allows it), so that Clerk's later 404 can be told apart
    // as revoked or expired in the logs. `cache.max` still bounds the memory.
    const budget = cacheConfig?.ttlMs ?? 0;
    const until =
      entry.kind === 'valid'
        ? Math.max(
            entry.staleUntil,
            entry.freshUntil + budget,
            (entry.value.expiration ?? 0) + budget,
          )
        : entry.freshUntil;
    const ttl = until - at;
    if (ttl < 1) return;
    cache.set(key, entry, { ttl });
    if (entry.kind === 'valid') keyById.set(entry.value.id, key);
    if (share && shared) {
      // Other instances get only the window in which the answer may be served.
      const servable = (entry.kind === 'valid' ? entry.staleUntil : entry.freshUntil) - at;
      track(shared.set(key, entry, servable));
    }
  }

  /** A miss in process: the shared store's answer if it has a fresh one, else Clerk's. */
  async function resolveEntry(
    key: string,
    token: string,
    opaque: boolean,
    previous: Entry | undefined,
  ): Promise<Entry> {
    if (shared) {
      const found = await shared.get(key);
      const at = now();
      const dropped =
        invalidating.has(key) || (found?.kind === 'valid' && invalidating.has(found.value.id));
      if (found && !dropped && at < found.freshUntil) {
        stats.sharedHit();
        remember(key, found, at, false);
        return found;
      }
      previous ??= found;
    }
    return opaque ? fetchEntry(key, token, previous) : jwtEntry(key, token);
  }

  /** One upstream call, shared by every concurrent caller of the same token. */
  async function fetchEntry(
    key: string,
    token: string,
    previous: Entry | undefined,
  ): Promise<Entry> {
    const started = now();
    const asked = generation;
    if (!breaker.allow()) {
      const retryAfter = Math.max(1, Math.ceil(breaker.retryInMs() / 1000));
      return staleOr(
        previous,
        started,
        new VerifierUnavailableError('circuit_open', { retryAfter }),
      );
    }
    const t0 = performance.now();
    let answer: M2MToken;
    try {
      answer = await client.verifyToken({ token });
    } catch (err) {
      const ms = Math.round(performance.now() - t0);
      const at = now();
      if (err instanceof NotFoundError || err instanceof BadRequestError) {
        breaker.success();
        // A token we held as good and Clerk now refuses was revoked or has expired.
        const was = previous?.kind === 'valid' ? previous.value : undefined;
        const reason: InvalidTokenReason =
          err instanceof BadRequestError
            ? 'malformed'
            : !was
              ? 'unknown'
              : was.expiration !== null && at >= was.expiration
                ? 'expired'
                : 'revoked';
        stats.upstream('invalid', ms, reason);
        const entry: Entry = {
          kind: 'invalid',
          reason,
          tokenId: was?.id,
          subject: was?.subject,
          freshUntil: at + (cacheConfig?.negativeTtlMs ?? 0),
        };
        if (err instanceof NotFoundError && !invalidatedSince(asked, key)) remember(key, entry, at);
        if (was) keyById.delete(was.id);
        return entry;
      }
      breaker.failure();
      const unavailable = toUnavailable(err);
      stats.upstream('error', ms, unavailable.reason);
      const level = unavailable.reason === 'misconfigured' ? 'error' : 'warn';
      log[level](
        { reason: unavailable.reason, status: (err as M2MApiError).status, fp: fingerprint(token) },
        unavailable.reason === 'misconfigured'
          ? 'clerk rejected our own secret key: check machineSecretKey/secretKey'
          : 'clerk verify unavailable',
      );
      return staleOr(previous, at, unavailable);
    }
    breaker.success();
    const at = now();
    stats.upstream('valid', Math.round(performance.now() - t0), undefined);
    const details = { tokenId: answer.id, subject: answer.subject };
    // Clerk answers non-2xx for dead tokens; check the body anyway rather than trust it blindly.
    if (answer.revoked || answer.expired) {
      return {
        kind: 'invalid',
        reason: answer.revoked ? 'revoked' : 'expired',
        ...details,
        freshUntil: at,
      };
    }
    const value = freezeVerified(answer);
    const ttl = cacheConfig?.ttlMs ?? 0;
    const freshUntil = Math.min(
      at + ttl,
      value.expiration === null ? Number.POSITIVE_INFINITY : value.expiration - clockSkewMs,
    );
    const staleUntil = Math.min(
      freshUntil + (cacheConfig?.staleIfErrorMs ?? 0),
      value.expiration ?? Number.POSITIVE_INFINITY,
    );
    const entry: Entry = { kind: 'valid', value, freshUntil, staleUntil };
    const revoked = revokedIds.size > 0 && revokedIds.has(value.id);
    if (!revoked && !invalidatedSince(asked, key, value.id)) remember(key, entry, at);
    return entry;
  }

  /** Verifies a JWT-format token locally; the answer is cached until the token expires. */
  async function jwtEntry(key: string, token: string): Promise<Entry> {
    let value: VerifiedM2MToken;
    try {
      value = await verifyJwt(token);
    } catch (err) {
      if (!(err instanceof InvalidTokenError)) throw err;
      const at = now();
      const { reason, tokenId, subject } = err;
      const entry: Entry = {
        kind: 'invalid',
        reason,
        tokenId,
        subject,
        freshUntil: at + (cacheConfig?.negativeTtlMs ?? 0),
      };
      remember(key, entry, at);
      return entry;
    }
    const until = (value.expiration ?? 0) + clockSkewMs;
    const entry: Entry = { kind: 'valid', value, freshUntil: until, staleUntil: until };
    remember(key, entry, now());
    return entry;
  }

  /** Serves a recently good answer when Clerk cannot answer, within the stale-if-error rules. */
  function staleOr(
    previous: Entry | undefined,
    at: number,
    error: VerifierUnavailableError,
  ): Entry {
    if (
      previous?.kind === 'valid' &&
      at < previous.staleUntil &&
      (previous.value.expiration === null || at < previous.value.expiration) &&
      !revokedIds.has(previous.value.id)
    ) {
      stats.cache('stale-served');
      log.warn({ tokenId: previous.value.id, reason: error.reason }, 'served a stale answer');
      return previous;
    }
    throw error;
  }

  return {
    verifyCached(token) {
      classify(token);
      const at = now();
      const cached = cache?.get(keyOf(token));
      return cached && at < cached.freshUntil ? serveHit(cached, at) : undefined;
    },

    async verify(token, { signal } = {}) {
      signal?.throwIfAborted(); // a caller who gave up costs no billed request
      const opaque = classify(token);
      const key = keyOf(token);
      const at = now();
      const cached = cache?.get(key);
      if (cached && at < cached.freshUntil) return serveHit(cached, at);
      stats.cache('miss');
      let flight = inflight.get(key);
      if (flight) {
        stats.cache('coalesced');
      } else {
        flight = resolveEntry(key, token, opaque, cached).finally(() => inflight.delete(key));
        flight.catch(() => {}); // every caller may have gone; the rejection is theirs, not the process's
        inflight.set(key, flight);
      }
      const entry = await (signal ? untilAborted(flight, signal) : flight);
      return settle(entry, now());
    },

    invalidate(tokenOrTokenId) {
      if (typeof tokenOrTokenId !== 'string' || tokenOrTokenId === '') return;
      const key = keyOf(tokenOrTokenId);
      // A token id is remembered as such; a token string never is (only its keyed hash).
      dropLocally(key, TOKEN_ID_PATTERN.test(tokenOrTokenId) ? tokenOrTokenId : undefined);
      if (shared) {
        const id = TOKEN_ID_PATTERN.test(tokenOrTokenId) ? tokenOrTokenId : undefined;
        // Until the shared copy is gone, a miss here must not read it back.
        const marks = id === undefined ? [key] : [key, id];
        for (const mark of marks) invalidating.add(mark);
        track(
          (async () => {
            const idKey = id === undefined ? undefined : await shared.keyOfId(id);
            await shared.delete(key, id);
            if (idKey !== undefined) await shared.delete(idKey, undefined);
            await shared.publish({ kind: 'invalidate', key, id });
          })().finally(() => {
            for (const mark of marks) invalidating.delete(mark);
          }),
        );
      }
    },

    stats() {
      return stats.snapshot(cache?.size ?? 0);
    },

    async close() {
      unsubscribeRevocations();
      unsubscribeShared?.();
      await Promise.all(pending);
      cache?.clear();
      if (config.ownsClient) await client.close();
    },
  };
}

function freezeVerified(token: M2MToken): VerifiedM2MToken {
  return Object.freeze({
    id: token.id,
    subject: token.subject,
    scopes: Object.freeze([...token.scopes]),
    claims: token.claims === null ? null : deepFreeze(token.claims),
    expiration: token.expiration,
    createdAt: token.createdAt,
  });
}

/** Resolves like `promise`, or rejects with the signal's reason when it aborts first. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}
