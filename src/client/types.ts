import type { Logger } from 'pino';
import type { Dispatcher } from 'undici';

/** An M2M token as m2m-guard returns it: Clerk's token object in camelCase. Times are Unix ms. */
export interface M2MToken {
  /** Token id, `mt_` + 32 hex. Not a secret: safe to log. */
  id: string;
  /** The machine that created the token (`mch_…`): the caller. */
  subject: string;
  /** Machine ids the token may call. Clerk snapshots them when the token is created. */
  scopes: string[];
  /** Custom claims given at creation, or `null`. */
  claims: Record<string, unknown> | null;
  /** The secret token string. Only present on the result of {@link M2MClient.createToken}. */
  token?: string;
  revoked: boolean;
  revocationReason: string | null;
  expired: boolean;
  /** When the token expires, or `null` for a token that never expires. */
  expiration: number | null;
  lastUsedAt: number | null;
  createdAt: number;
  updatedAt: number;
}

/** Retry policy for calls that may be repeated safely. */
export interface RetryOptions {
  /** How many times a failed call is tried again. Default `2`; `0` turns retries off. */
  retries?: number;
  /** Base of the jittered exponential backoff. Default `100` ms. */
  minDelayMs?: number;
  /**
   * Longest wait between two attempts. A `Retry-After` longer than this ends the retries
   * (the error carries `retryAfter`) rather than being cut short. Default `2000` ms.
   */
  maxDelayMs?: number;
}

/** Options of {@link createM2MClient}. Every option is validated when the client is built. */
export interface M2MClientOptions {
  /**
   * Clerk's Backend API origin, optionally with a path prefix. Default: `CLERK_API_URL`,
   * else `https://api.clerk.com`. Requests go to `{apiUrl}/m2m_tokens…`, as Clerk's JS SDK sends them.
   */
  apiUrl?: string;
  /** Sent as `Clerk-API-Version`. Default `2026-05-12`. */
  apiVersion?: string;
  /**
   * This machine's secret key (`ak_…`). Default: `CLERK_MACHINE_SECRET_KEY`, read only when
   * neither key is given in code.
   */
  machineSecretKey?: string;
  /**
   * The instance secret key (`sk_…`). Default: `CLERK_SECRET_KEY`, read only when neither key
   * is given in code.
   */
  secretKey?: string;
  /** Deadline of each attempt, from sending to the last byte of the answer. Default `5000` ms. */
  timeoutMs?: number;
  /** Retry policy; `false` is the same as `{ retries: 0 }`. Default `{ retries: 2, minDelayMs: 100, maxDelayMs: 2000 }`. */
  retry?: RetryOptions | false;
  /**
   * The undici dispatcher requests go through. Default: one keep-alive `Pool` for the API
   * origin, created by the client and closed by {@link M2MClient.close}. A dispatcher you pass
   * is yours to close.
   */
  dispatcher?: Dispatcher;
  /**
   * A pino logger. Keys, tokens and bodies are never logged. Default: pino at level `warn` on stderr (a rejected key, an unreachable Clerk; nothing per request in normal operation); `false` silences it.
   */
  logger?: Logger | false;
  /** Sent as `User-Agent`. Default `m2m-guard/<version>`. */
  userAgent?: string;
}

/** Options every call accepts. */
export interface CallOptions {
  /** Aborts the call (and any retry wait). The call rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Overrides the client's keys for this call (`ak_…`). */
  machineSecretKey?: string;
}

export interface CreateTokenParams extends CallOptions {
  /** Lifetime in seconds (> 0). Default: the machine's default token TTL. */
  secondsUntilExpiration?: number | null;
  /** Custom claims carried by the token. Default `null`. */
  claims?: Record<string, unknown> | null;
  /** `opaque` (verified by Clerk) or `jwt` (verified locally). Default `opaque`. */
  tokenFormat?: 'opaque' | 'jwt';
  /** Reuse a live token with the same claims and at least this many seconds left (opaque only). */
  minRemainingTtlSeconds?: number;
}

export interface ListTokensParams extends CallOptions {
  /** The machine whose tokens to list (`mch_…`). Required. */
  subject: string;
  /** Include revoked tokens. Default `false`. */
  revoked?: boolean;
  /** Include expired tokens. Default `false`. */
  expired?: boolean;
  /** Page size, 1 to 100. Default `10`. */
  limit?: number;
  /** Tokens to skip. Default `0`. */
  offset?: number;
}

export interface RevokeTokenParams extends CallOptions {
  /** The token id (`mt_…`), not the token string. */
  m2mTokenId: string;
  revocationReason?: string | null;
}

export interface VerifyTokenParams extends CallOptions {
  /** The token string presented by a caller. */
  token: string;
}

export interface M2MTokenList {
  data: M2MToken[];
  totalCount: number;
}

/** A JSON Web Key Set as served by `GET /v1/jwks`. */
export interface JsonWebKeySet {
  keys: Array<Record<string, unknown> & { kid?: string; kty: string }>;
}

/** A token that has been revoked through a client; see {@link M2MClient.onRevoke}. */
export interface RevokedTokenEvent {
  /** The token id. */
  id: string;
  /** The API origin the revocation went to. */
  apiUrl: string;
}

/** The typed client for Clerk's four M2M operations. */
export interface M2MClient {
  createToken(params?: CreateTokenParams): Promise<M2MToken & { token: string }>;
  listTokens(params: ListTokensParams): Promise<M2MTokenList>;
  revokeToken(params: RevokeTokenParams): Promise<M2MToken>;
  verifyToken(params: VerifyTokenParams): Promise<M2MToken>;
  /**
   * Subscribes to successful revocations made through this client, so a cache in front of it
   * can drop the token at once. Returns a function that unsubscribes.
   */
  /**
   * Fetches the instance's public signing keys (`GET {apiUrl}/v1/jwks`) for JWT-format tokens.
   * Needs the instance secret key (`secretKey`); a machine key cannot read them.
   */
  getJwks(options?: { signal?: AbortSignal }): Promise<JsonWebKeySet>;
  onRevoke(listener: (event: RevokedTokenEvent) => void): () => void;
  /** The API URL in use (normalised, without a trailing slash). */
  readonly apiUrl: string;
  /**
   * Which key verify calls are made with, as a non-secret label: `machine:<fingerprint>`,
   * `instance:<fingerprint>` or `none`. Used by caches to keep answers per verifier identity.
   */
  readonly verifyIdentity: string;
  /**
   * A 32-byte key derived (HKDF-SHA-256) from the key verify calls are made with, for
   * `purpose`. Instances sharing a secret key derive the same bytes; the bytes reveal nothing
   * of the key. `undefined` when the client has no key.
   */
  deriveKey(purpose: string): Buffer | undefined;
  /** Whether the client holds the instance secret key (needed for {@link M2MClient.getJwks}). */
  readonly hasSecretKey: boolean;
  /** Closes the dispatcher the client created. A dispatcher passed in is left open. */
  close(): Promise<void>;
}
