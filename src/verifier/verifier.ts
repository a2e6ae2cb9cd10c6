import { LRUCache } from 'lru-cache';
import {
  BadRequestError,
  type M2MApiError,
  type M2MToken,
  NotFoundError,
  RateLimitError,
} from '../client/index.js';
import { ValueTooLargeError } from '../shared/freeze.js';
import { TOKEN_ID_PATTERN } from '../shared/wire.js';
import { createBreaker } from './breaker.js';
import { createTokenBucket } from './budget.js';
import { createCacheKeyer } from './cache-key.js';
import { type Entry, type GoodEntry, type Refusal, toVerified } from './entry.js';
import { InvalidTokenError, type InvalidTokenReason, VerifierUnavailableError } from './errors.js';
import { createJwtVerifier, isJwtShaped } from './jwt.js';
import {
  freshUntilOf,
  isServableStale,
  jwtUntilOf,
  type LifetimeRules,
  negativeUntilOf,
  retainUntil,
  revocationMemoryMs,
  revokedUntilOf,
  sharedTtl,
  staleUntilOf,
} from './lifetime.js';
import { parseVerifierOptions } from './options.js';
import { createOutageLog } from './outage-log.js';
import { createSharedLevel, type Invalidation } from './shared-level.js';
import { createStats } from './stats.js';
import { createVerifierTelemetry } from './telemetry.js';
import { isOpaqueM2MToken } from './token-shape.js';
import type { TokenVerifier, TokenVerifierOptions, VerifiedM2MToken } from './types.js';
import { toUnavailable } from './upstream-error.js';

/** Revocations seen here are remembered this many at most, so a late answer cannot revive one. */
const MAX_REVOKED_IDS = 10_000;
/** A Clerk 429 without `Retry-After` pauses upstream calls this long. */
const DEFAULT_RATE_LIMIT_PAUSE_MS = 1_000;
/**
 * A good answer larger than this is served but not cached: one caller's huge claims cannot
 * push every other caller's answer out of the byte-bounded cache.
 */
export const MAX_CACHED_ANSWER_BYTES = 64 * 1024;
/** What the cache key (43 characters) costs besides the answer itself. */
const ENTRY_OVERHEAD_BYTES = 64;

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
  const cacheConfig = config.cache === false ? undefined : config.cache;
  const rules: LifetimeRules = {
    ttlMs: cacheConfig?.ttlMs ?? 0,
    negativeTtlMs: cacheConfig?.negativeTtlMs ?? 0,
    staleIfErrorMs: cacheConfig?.staleIfErrorMs ?? 0,
    clockSkewMs,
  };
  const breaker = createBreaker(
    config.breaker.failures,
    config.breaker.cooldownMs,
    now,
    (state) => {
      stats.breaker(state);
      log.warn({ state }, 'clerk verify circuit breaker changed state');
    },
  );
  const outage = createOutageLog(log, client.apiUrl, client.verifyIdentity);
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
  // Each remembered revocation expires with its token (see revocationMemoryMs).
  const revokedIds = new LRUCache<string, true>({ max: MAX_REVOKED_IDS, perf: { now } });
  // Token id -> cache key of its good answer, so a revocation by id can drop it.
  const keyById = new Map<string, string>();
  /**
   * Two spaces, bounded apart: good answers (by count and bytes) and refusals (by count).
   * Anyone can send refusals by the thousand; only Clerk or a valid signature makes a good
   * answer, so no flood of bad tokens can push a good answer out.
   */
  const good = cacheConfig
    ? new LRUCache<string, GoodEntry>({
        max: cacheConfig.max,
        maxSize: cacheConfig.maxBytes,
        maxEntrySize: Math.min(cacheConfig.maxBytes, MAX_CACHED_ANSWER_BYTES),
        sizeCalculation: (entry) => entry.bytes + ENTRY_OVERHEAD_BYTES,
        perf: { now },
        ttlResolution: 0,
        dispose: (entry, key) => {
          if (keyById.get(entry.value.id) === key) keyById.delete(entry.value.id);
        },
      })
    : undefined;
  const refusals = cacheConfig
    ? new LRUCache<string, Refusal>({ max: cacheConfig.max, perf: { now }, ttlResolution: 0 })
    : undefined;
  const budget = config.upstreamBudget ? createTokenBucket(config.upstreamBudget, now) : undefined;
  /** Whether the budget is refusing calls now: logged once per such episode. */
  let budgetExhausted = false;
  /** Until when a 429 from Clerk holds back every upstream call. */
  let pausedUntil = 0;
  const snapshot = () =>
    stats.snapshot((good?.size ?? 0) + (refusals?.size ?? 0), good?.calculatedSize ?? 0);
  const telemetry = createVerifierTelemetry({
    stats: snapshot,
    breaker: () => breaker.state,
    store: () => (shared ? (shared.down ? 'down' : 'up') : 'none'),
    now,
  });

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

  /** Remembers a revocation by token id until the token expires (or the retention window). */
  function rememberRevoked(id: string, expiration: number | null | undefined) {
    revokedIds.set(id, true, { ttl: revocationMemoryMs(now(), expiration, rules) });
  }

  const unsubscribeRevocations = client.onRevoke(({ id }) => {
    // Keep the answer as a definite "revoked", so the next request is refused with the right
    // reason and without asking Clerk.
    const key = keyById.get(id);
    const entry = key === undefined ? undefined : good?.get(key, { allowStale: true });
    const expiration = entry?.value.expiration;
    rememberRevoked(id, expiration);
    const revoked = (at: number): Refusal => ({
      kind: 'invalid',
      reason: 'revoked',
      tokenId: id,
      subject: entry?.value.subject,
      freshUntil: revokedUntilOf(at, rules),
    });
    if (key !== undefined) {
      keyById.delete(id);
      remember(key, revoked(now()), now(), false);
    }
    if (shared) {
      // Overwrite the shared answer before telling the others, so none can re-read it as good.
      const at = now();
      const refusal = revoked(at);
      track(
        shared.revoke(id, key, refusal, sharedTtl(refusal.freshUntil, at), expiration ?? undefined),
      );
    }
    log.debug({ tokenId: id }, 'token revoked through this client');
  });

  const unsubscribeShared = shared?.subscribe((message: Invalidation) => {
    stats.invalidationReceived();
    if (message.kind === 'revoke' && message.id !== undefined) {
      rememberRevoked(message.id, message.expiresAt);
    }
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
      good?.delete(key);
      refusals?.delete(key);
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
    if (key !== undefined) good?.delete(key);
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
    // The hot path: allocate nothing (not even a closure) unless refusing.
    const refusal = acceptRefusal(value, at);
    if (refusal !== undefined) {
      throw new InvalidTokenError(refusal, { tokenId: value.id, subject: value.subject });
    }
    return value;
  }

  function acceptRefusal(value: VerifiedM2MToken, at: number): InvalidTokenReason | undefined {
    if (revokedIds.size > 0 && revokedIds.has(value.id)) return 'revoked';
    if (value.expiration !== null && at >= value.expiration + clockSkewMs) return 'expired';
    if (machineId !== undefined && !value.scopes.includes(machineId)) return 'out_of_scope';
    if (allowedSubjects !== undefined && !allowedSubjects.has(value.subject)) return 'out_of_scope';
    return undefined;
  }

  function settle(entry: Entry, at: number): VerifiedM2MToken {
    if (entry.kind === 'invalid') {
      throw new InvalidTokenError(entry.reason, { tokenId: entry.tokenId, subject: entry.subject });
    }
    return accept(entry.value, at);
  }

  /**
   * Keeps an answer in its space in process and, when `share` is set, in the shared store.
   * A key holds a good answer or a refusal, never both.
   */
  function remember(key: string, entry: Entry, at: number, share: boolean) {
    if (!good || !refusals) return;
    if (entry.kind === 'valid') {
      const ttl = retainUntil(entry, rules) - at;
      if (ttl < 1) return;
      refusals.delete(key);
      good.set(key, entry, { ttl });
      if (good.has(key)) keyById.set(entry.value.id, key);
    } else {
      const ttl = entry.freshUntil - at;
      if (ttl < 1) return;
      good.delete(key);
      refusals.set(key, entry, { ttl });
    }
    if (share && shared) {
      const servableUntil = entry.kind === 'valid' ? entry.staleUntil : entry.freshUntil;
      track(shared.set(key, entry, sharedTtl(servableUntil, at)));
    }
  }

  /** The freshest answer held in process for a key: a good one, else a refusal. */
  function cachedEntry(key: string): Entry | undefined {
    return good?.get(key) ?? refusals?.get(key);
  }

  /**
   * A miss in process: for an opaque token, the shared store's answer if it has a fresh one,
   * else Clerk's. A JWT is verified here only: its answer is never shared, so no verifier is
   * ever served an answer that its own keys would not have produced.
   */
  async function resolveEntry(
    key: string,
    token: string,
    opaque: boolean,
    previous: Entry | undefined,
  ): Promise<Entry> {
    if (!opaque) return jwtEntry(key, token);
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
    return fetchEntry(key, token, previous);
  }

  /**
   * Admits an upstream call for a token never seen valid, or explains why not. A token seen
   * valid (its answer retained here or servable in the shared store) is never held back:
   * legitimate callers keep being served through a flood of made-up tokens.
   */
  function budgetRefusal(previous: Entry | undefined): VerifierUnavailableError | undefined {
    if (!budget || previous?.kind === 'valid') return undefined;
    const waitMs = budget.take();
    if (waitMs === 0) {
      if (budgetExhausted) {
        budgetExhausted = false;
        log.info('upstream budget for never-seen tokens is available again');
      }
      return undefined;
    }
    stats.budgetRefused();
    if (!budgetExhausted) {
      budgetExhausted = true;
      log.warn(
        { budget: config.upstreamBudget },
        'upstream budget for never-seen tokens spent: refusing them with 503 until it refills',
      );
    }
    return new VerifierUnavailableError('budget_exhausted', {
      retryAfter: Math.max(1, Math.ceil(waitMs / 1000)),
    });
  }

  /** One upstream call, shared by every concurrent caller of the same token. */
  async function fetchEntry(
    key: string,
    token: string,
    previous: Entry | undefined,
  ): Promise<Entry> {
    const started = now();
    const asked = generation;
    if (started < pausedUntil) {
      const retryAfter = Math.max(1, Math.ceil((pausedUntil - started) / 1000));
      return staleOr(
        previous,
        started,
        new VerifierUnavailableError('rate_limited', { retryAfter }),
      );
    }
    // Before the breaker, whose half-open state hands out a single trial call.
    const refused = budgetRefusal(previous);
    if (refused) throw refused;
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
      answer = await telemetry.traceUpstream(() => client.verifyToken({ token }));
    } catch (err) {
      const ms = Math.round(performance.now() - t0);
      const at = now();
      if (err instanceof NotFoundError || err instanceof BadRequestError) {
        breaker.success();
        outage.answered();
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
        const entry: Refusal = {
          kind: 'invalid',
          reason,
          tokenId: was?.id,
          subject: was?.subject,
          freshUntil: negativeUntilOf(at, rules),
        };
        if (was) {
          keyById.delete(was.id);
          good?.delete(key);
        }
        if (err instanceof NotFoundError && !invalidatedSince(asked, key)) {
          remember(key, entry, at, true);
        }
        return entry;
      }
      if (err instanceof RateLimitError) {
        // Clerk's limit is per instance, shared with every service on it: stop asking for as
        // long as it says. Cached answers keep being served; this is no breaker failure.
        pausedUntil = at + (err.retryAfter ?? DEFAULT_RATE_LIMIT_PAUSE_MS / 1000) * 1000;
        breaker.success();
        stats.upstream('error', ms, 'rate_limited');
        const limited = toUnavailable(err);
        outage.failed(limited, err.status);
        return staleOr(previous, at, limited);
      }
      breaker.failure();
      const unavailable = toUnavailable(err);
      stats.upstream('error', ms, unavailable.reason);
      outage.failed(unavailable, (err as M2MApiError).status);
      return staleOr(previous, at, unavailable);
    }
    const at = now();
    const ms = Math.round(performance.now() - t0);
    let verified: ReturnType<typeof toVerified>;
    try {
      verified = toVerified(answer);
    } catch (err) {
      if (!(err instanceof ValueTooLargeError)) throw err;
      // Too deep or too large to hold: as unreadable as a broken body, and as much a failure.
      breaker.failure();
      stats.upstream('error', ms, 'invalid_response');
      const unreadable = new VerifierUnavailableError('invalid_response', { cause: err });
      outage.failed(unreadable, undefined);
      return staleOr(previous, at, unreadable);
    }
    breaker.success();
    outage.answered();
    stats.upstream('valid', ms, undefined);
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
    const { value, bytes } = verified;
    const freshUntil = freshUntilOf(at, value.expiration, rules);
    const staleUntil = staleUntilOf(freshUntil, value.expiration, rules);
    const entry: Entry = { kind: 'valid', value, freshUntil, staleUntil, bytes };
    const revoked = revokedIds.size > 0 && revokedIds.has(value.id);
    if (!revoked && !invalidatedSince(asked, key, value.id)) remember(key, entry, at, true);
    return entry;
  }

  /** Verifies a JWT-format token locally; the answer is cached until the token expires. */
  async function jwtEntry(key: string, token: string): Promise<Entry> {
    let verified: ReturnType<typeof toVerified>;
    try {
      verified = toVerified(await verifyJwt(token));
    } catch (err) {
      if (!(err instanceof InvalidTokenError) && !(err instanceof ValueTooLargeError)) throw err;
      const at = now();
      const { reason, tokenId, subject } =
        err instanceof InvalidTokenError ? err : new InvalidTokenError('malformed');
      const entry: Entry = {
        kind: 'invalid',
        reason,
        tokenId,
        subject,
        freshUntil: negativeUntilOf(at, rules),
      };
      remember(key, entry, at, false);
      return entry;
    }
    const until = jwtUntilOf(verified.value.expiration ?? 0, rules);
    const entry: Entry = { kind: 'valid', ...verified, freshUntil: until, staleUntil: until };
    remember(key, entry, now(), false);
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
      isServableStale(previous, at) &&
      !revokedIds.has(previous.value.id)
    ) {
      stats.cache('stale-served');
      log.warn({ tokenId: previous.value.id, reason: error.reason }, 'served a stale answer');
      return previous;
    }
    throw error;
  }

  return telemetry.attach<TokenVerifier>({
    verifyCached(token) {
      classify(token);
      const at = now();
      const cached = cachedEntry(keyOf(token));
      return cached && at < cached.freshUntil ? serveHit(cached, at) : undefined;
    },

    async verify(token, { signal } = {}) {
      signal?.throwIfAborted(); // a caller who gave up costs no billed request
      const opaque = classify(token);
      const key = keyOf(token);
      const at = now();
      const cached = cachedEntry(key);
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

    stats: snapshot,

    health() {
      return telemetry.health();
    },

    async close() {
      unsubscribeRevocations();
      unsubscribeShared?.();
      telemetry.close();
      await Promise.all(pending);
      good?.clear();
      refusals?.clear();
      if (config.ownsClient) await client.close();
    },
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
