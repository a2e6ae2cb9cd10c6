import { createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import {
  decodeJwt,
  decodeProtectedHeader,
  type JWTPayload,
  errors as joseErrors,
  jwtVerify,
} from 'jose';
import type { Logger } from 'pino';
import type { M2MClient } from '../client/index.js';
import { M2MConfigError } from '../shared/config-error.js';
import { InvalidTokenError } from './errors.js';
import type { VerifiedM2MToken } from './types.js';
import { toUnavailable } from './upstream-error.js';

/**
 * JWT-format M2M tokens, verified locally with `jose`: RS256/384/512 only, `typ` JWT and `cat`
 * M2M when present, `exp` required, `nbf` and clock skew honoured. Keys come from `jwtKey`
 * (no network at all) or from Clerk's JWKS with the instance key, refetched on an unknown `kid`
 * no more than once per `jwksRefreshMinMs` in all, so forged `kid`s cannot hammer Clerk.
 */

/** Clerk's JWT category for M2M tokens. */
export const M2M_JWT_CATEGORY = 'cl_B7d4PD333AAA';
const ALGORITHMS = ['RS256', 'RS384', 'RS512'];
/** Claims Clerk sets itself; what is left of the payload is the token's custom claims. */
const RESERVED = new Set(['iss', 'sub', 'aud', 'scopes', 'iat', 'nbf', 'exp', 'jti', 'azp']);
/** Keys older than this are refetched (subject to `jwksRefreshMinMs`), to follow rotations. */
const JWKS_MAX_AGE_MS = 5 * 60_000;
export const MAX_JWT_LENGTH = 8192;
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

export function isJwtShaped(token: unknown): token is string {
  return typeof token === 'string' && token.length <= MAX_JWT_LENGTH && JWT_SHAPE.test(token);
}

/** Parses a PEM public key once, at construction. */
export function jwtKeyOption(value: unknown): KeyObject | undefined {
  if (value === undefined || value === '') return undefined;
  if (typeof value !== 'string') throw new M2MConfigError('jwtKey', 'must be a PEM public key');
  // A private key would be turned into its public half silently: refuse it, it is a mistake.
  if (value.includes('PRIVATE KEY')) {
    throw new M2MConfigError('jwtKey', 'must be a public key, never a private one');
  }
  let key: KeyObject;
  try {
    key = createPublicKey(value.includes('\\n') ? value.replaceAll('\\n', '\n') : value);
  } catch {
    throw new M2MConfigError('jwtKey', 'must be an RSA public key in PEM (SPKI) form');
  }
  // jose refuses RSA keys under 2048 bits: such a key could never verify a token.
  if (key.asymmetricKeyType !== 'rsa' || (key.asymmetricKeyDetails?.modulusLength ?? 0) < 2048) {
    throw new M2MConfigError('jwtKey', 'must be an RSA public key of 2048 bits or more');
  }
  return key;
}

export interface JwtVerifierConfig {
  client: M2MClient;
  jwtKey: KeyObject | undefined;
  jwksRefreshMinMs: number;
  clockSkewMs: number;
  now: () => number;
  logger: Logger;
  /** Whether the client has the instance key, without which the JWKS cannot be read. */
  canFetchJwks: boolean;
  /**
   * Clerk scope-checks opaque tokens verified with a machine key; a JWT is checked here alone.
   * Without `machineId` that check cannot be made, so JWTs are then refused, not let through.
   */
  scopeUncheckable: boolean;
}

/**
 * What this setup does with JWT-format tokens, said once at construction: `warn` when a key was
 * given for them that cannot be used, `info` otherwise. Clerk lets only the instance key read the
 * JWKS, so a service verifying with its machine key needs `jwtKey` and `machineId` for JWTs.
 */
export function jwtSetupLine(
  config: Pick<JwtVerifierConfig, 'jwtKey' | 'canFetchJwks' | 'scopeUncheckable'>,
): { level: 'info' | 'warn'; message: string } {
  const { jwtKey, canFetchJwks, scopeUncheckable } = config;
  if (scopeUncheckable) {
    return {
      level: jwtKey ? 'warn' : 'info',
      message:
        'JWT-format tokens will be refused: verifying with a machine key, set `machineId` ' +
        "(this service's machine id, so a JWT's scope can be checked) and `jwtKey` (CLERK_JWT_KEY) " +
        'to accept them',
    };
  }
  if (jwtKey) {
    return { level: 'info', message: 'JWT-format tokens are verified locally with `jwtKey`' };
  }
  if (canFetchJwks) {
    return {
      level: 'info',
      message: "JWT-format tokens are verified with keys from Clerk's JWKS (read with `secretKey`)",
    };
  }
  return {
    level: 'info',
    message:
      "JWT-format tokens will be refused: a machine key cannot read Clerk's JWKS; set `jwtKey` " +
      "(CLERK_JWT_KEY, the instance's PEM public key) to accept them",
  };
}

export function createJwtVerifier(config: JwtVerifierConfig) {
  const { client, jwtKey, now, logger } = config;
  const setup = jwtSetupLine(config);
  logger[setup.level](setup.message);
  let keys = new Map<string, KeyObject>();
  let fetchedAt = Number.NEGATIVE_INFINITY;
  let lastAttempt = Number.NEGATIVE_INFINITY;
  /** Why the last JWKS fetch failed, while it has not succeeded since. */
  let lastFailure: Error | undefined;
  let refreshing: Promise<void> | undefined;
  let warnedNoKeys = false;
  let warnedNoScope = false;

  async function refresh(): Promise<void> {
    lastAttempt = now();
    let set: Awaited<ReturnType<M2MClient['getJwks']>>;
    try {
      set = await client.getJwks();
    } catch (err) {
      logger.warn(
        { err: (err as Error).message, host: new URL(client.apiUrl).host },
        'could not fetch the JWKS',
      );
      lastFailure = toUnavailable(err);
      throw lastFailure;
    }
    lastFailure = undefined;
    const next = new Map<string, KeyObject>();
    for (const jwk of set.keys) {
      if (jwk.kty !== 'RSA' || typeof jwk.kid !== 'string') continue;
      try {
        next.set(jwk.kid, createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' }));
      } catch {
        logger.warn({ kid: jwk.kid }, 'skipped an unusable JWKS key');
      }
    }
    keys = next;
    fetchedAt = now();
  }

  /** Refetches unless one was tried within `jwksRefreshMinMs`; concurrent callers share it. */
  async function maybeRefresh(): Promise<void> {
    if (refreshing) return refreshing;
    if (now() - lastAttempt < config.jwksRefreshMinMs) return;
    refreshing = refresh().finally(() => {
      refreshing = undefined;
    });
    return refreshing;
  }

  async function keyFor(kid: string | undefined): Promise<KeyObject> {
    if (jwtKey) return jwtKey;
    if (!config.canFetchJwks) {
      if (!warnedNoKeys) {
        warnedNoKeys = true;
        logger.warn(
          'a JWT M2M token was refused: set `jwtKey` (CLERK_JWT_KEY) to accept JWT-format tokens ' +
            "(a machine key cannot read Clerk's JWKS; the instance `secretKey` can)",
        );
      }
      throw new InvalidTokenError('unknown');
    }
    if (kid === undefined) throw new InvalidTokenError('malformed');
    const stale = now() - fetchedAt >= JWKS_MAX_AGE_MS;
    if (!keys.has(kid) || stale) {
      try {
        await maybeRefresh();
      } catch (err) {
        // With keys still in hand, a failed refresh does not stop verification.
        if (keys.size === 0) throw err;
      }
    }
    // No key ever loaded and the refetch held back after a failure: Clerk is unavailable,
    // which says nothing about the token.
    if (keys.size === 0 && lastFailure) throw lastFailure;
    const key = keys.get(kid);
    if (!key) throw new InvalidTokenError('unknown');
    return key;
  }

  return async function verifyJwt(token: string): Promise<VerifiedM2MToken> {
    let header: ReturnType<typeof decodeProtectedHeader>;
    let claimed: JWTPayload;
    try {
      header = decodeProtectedHeader(token);
      claimed = decodeJwt(token);
    } catch {
      throw new InvalidTokenError('malformed');
    }
    const subject = claimed.sub;
    if (typeof subject !== 'string' || !subject.startsWith('mch_')) {
      throw new InvalidTokenError('malformed');
    }

    if (
      !ALGORITHMS.includes(String(header.alg)) ||
      (header.typ !== undefined && header.typ !== 'JWT') ||
      (header.cat !== undefined && header.cat !== M2M_JWT_CATEGORY)
    ) {
      throw new InvalidTokenError('malformed');
    }
    if (config.scopeUncheckable) {
      if (!warnedNoScope) {
        warnedNoScope = true;
        logger.warn(
          'a JWT M2M token was refused: with a machine key, set `machineId` (this service) so its ' +
            'scope can be checked, and `jwtKey` (CLERK_JWT_KEY)',
        );
      }
      throw new InvalidTokenError('out_of_scope');
    }
    const key = await keyFor(header.kid);
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, key, {
        algorithms: ALGORITHMS,
        clockTolerance: config.clockSkewMs / 1000,
        currentDate: new Date(now()),
        requiredClaims: ['exp', 'sub'],
      }));
    } catch (err) {
      // Claims are named in logs only once the signature is known good (jose checks `exp`
      // after the signature); a forger must not write what the logs say.
      if (err instanceof joseErrors.JWTExpired) {
        const jti = typeof claimed.jti === 'string' ? claimed.jti : undefined;
        throw new InvalidTokenError('expired', { tokenId: jti, subject });
      }
      throw new InvalidTokenError('malformed');
    }
    return toVerified(payload, subject);
  };
}

/** The answer's fields; the verifier copies and deep-freezes them (entry.ts `toVerified`). */
function toVerified(payload: JWTPayload, subject: string): VerifiedM2MToken {
  const scopes =
    typeof payload.scopes === 'string'
      ? payload.scopes.split(' ').filter(Boolean)
      : Array.isArray(payload.aud)
        ? payload.aud.filter((a): a is string => typeof a === 'string')
        : [];
  const custom = Object.entries(payload).filter(([name]) => !RESERVED.has(name));
  return {
    id: typeof payload.jti === 'string' ? payload.jti : '',
    subject,
    scopes,
    claims: custom.length === 0 ? null : Object.fromEntries(custom),
    expiration: (payload.exp as number) * 1000,
    createdAt: typeof payload.iat === 'number' ? payload.iat * 1000 : 0,
  };
}
