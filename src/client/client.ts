import { hkdfSync } from 'node:crypto';
import { type Dispatcher, Pool } from 'undici';
import { M2MConfigError } from '../shared/config-error.js';
import { fingerprint } from '../shared/redact.js';
import { stringOption } from '../shared/validate.js';
import { M2MApiError } from './errors.js';
import { keyOption, parseClientOptions } from './options.js';
import { parseToken, parseTokenList } from './parse.js';
import { type ApiRequest, sendApiRequest } from './transport.js';
import type {
  CallOptions,
  CreateTokenParams,
  JsonWebKeySet,
  ListTokensParams,
  M2MClient,
  M2MClientOptions,
  M2MToken,
  RevokedTokenEvent,
  RevokeTokenParams,
  VerifyTokenParams,
} from './types.js';

/**
 * Creates a typed client for Clerk's four M2M operations. Options are validated here, once;
 * an invalid option throws an `M2MConfigError` naming it.
 */
export function createM2MClient(options: M2MClientOptions = {}): M2MClient {
  const config = parseClientOptions(options);
  const ownsDispatcher = config.dispatcher === undefined;
  const dispatcher: Dispatcher =
    config.dispatcher ??
    new Pool(config.origin, {
      connections: 64,
      keepAliveTimeout: 10_000,
      connectTimeout: Math.min(config.timeoutMs, 10_000),
      // Our own per-attempt deadline is the precise one; undici's coarse timers only back it up.
      headersTimeout: config.timeoutMs + 1000,
      bodyTimeout: config.timeoutMs + 1000,
    });
  const revokeListeners = new Set<(event: RevokedTokenEvent) => void>();
  let closed = false;

  /** Per-call key, then the client's machine key, then the instance key (as Clerk's SDK). */
  function keyFor(call: CallOptions | undefined): string {
    const perCall = keyOption(call?.machineSecretKey, 'machineSecretKey', 'ak_');
    const key = perCall ?? config.machineSecretKey ?? config.secretKey;
    if (!key) {
      throw new M2MConfigError(
        'machineSecretKey',
        'or `secretKey` is required (or CLERK_MACHINE_SECRET_KEY / CLERK_SECRET_KEY)',
      );
    }
    return key;
  }

  function send(
    request: Omit<ApiRequest, 'secrets' | 'signal'>,
    call: CallOptions | undefined,
    extraSecrets: string[] = [],
  ) {
    return sendApiRequest(config, dispatcher, {
      ...request,
      secrets: [request.key, ...extraSecrets],
      signal: call?.signal,
    });
  }

  const verifyKey = config.machineSecretKey ?? config.secretKey;
  const jwksPath = config.apiUrl.endsWith('/v1') ? '/jwks' : '/v1/jwks';

  return {
    apiUrl: config.apiUrl,
    hasSecretKey: config.secretKey !== undefined,
    deriveKey: (purpose) =>
      verifyKey
        ? Buffer.from(hkdfSync('sha256', verifyKey, config.apiUrl, `m2m-guard ${purpose}`, 32))
        : undefined,
    verifyIdentity: verifyKey
      ? `${config.machineSecretKey ? 'machine' : 'instance'}:${fingerprint(verifyKey)}`
      : 'none',

    async createToken(params: CreateTokenParams = {}) {
      const key =
        keyOption(params.machineSecretKey, 'machineSecretKey', 'ak_') ?? config.machineSecretKey;
      if (!key) {
        throw new M2MConfigError(
          'machineSecretKey',
          'is required to create a token (Clerk mints tokens for the machine whose key is used)',
        );
      }
      const body: Record<string, unknown> = {
        seconds_until_expiration: params.secondsUntilExpiration ?? null,
        claims: params.claims ?? null,
        token_format: params.tokenFormat ?? 'opaque',
      };
      if (params.minRemainingTtlSeconds !== undefined) {
        body.min_remaining_ttl_seconds = params.minRemainingTtlSeconds;
      }
      const res = await send(
        {
          operation: 'create',
          method: 'POST',
          path: '/m2m_tokens',
          body,
          key,
          retryMode: 'unsent-only',
        },
        params,
      );
      const token = parseToken(res.json, res.status);
      if (token.token === undefined) {
        throw parseTokenMissing(res.status);
      }
      return token as M2MToken & { token: string };
    },

    async listTokens(params: ListTokensParams) {
      const subject = stringOption(params?.subject, 'subject');
      if (!subject) throw new M2MConfigError('subject', 'is required to list tokens');
      const query = new URLSearchParams({ subject });
      for (const name of ['revoked', 'expired', 'limit', 'offset'] as const) {
        if (params[name] !== undefined) query.set(name, String(params[name]));
      }
      const res = await send(
        {
          operation: 'list',
          method: 'GET',
          path: `/m2m_tokens?${query}`,
          key: keyFor(params),
          retryMode: 'idempotent',
        },
        params,
      );
      return parseTokenList(res.json, res.status);
    },

    async revokeToken(params: RevokeTokenParams) {
      const id = stringOption(params?.m2mTokenId, 'm2mTokenId');
      if (!id) throw new M2MConfigError('m2mTokenId', 'is required to revoke a token');
      const res = await send(
        {
          operation: 'revoke',
          method: 'POST',
          path: `/m2m_tokens/${encodeURIComponent(id)}/revoke`,
          body: { revocation_reason: params.revocationReason ?? null },
          key: keyFor(params),
          retryMode: 'idempotent',
        },
        params,
      );
      const token = parseToken(res.json, res.status);
      for (const listener of revokeListeners) {
        // The token is revoked whatever a listener does; one failing must not hide that.
        try {
          listener({ id: token.id, apiUrl: config.apiUrl });
        } catch (err) {
          config.logger.error({ err: (err as Error)?.message }, 'an onRevoke listener threw');
        }
      }
      return token;
    },

    async verifyToken(params: VerifyTokenParams) {
      const token = stringOption(params?.token, 'token');
      if (!token) throw new M2MConfigError('token', 'is required to verify a token');
      const res = await send(
        {
          operation: 'verify',
          method: 'POST',
          path: '/m2m_tokens/verify',
          body: { token },
          key: keyFor(params),
          retryMode: 'idempotent',
        },
        params,
        [token],
      );
      // Only create answers carry the secret; never let a verify result hold one.
      const { token: _secret, ...verified } = parseToken(res.json, res.status);
      return verified;
    },

    async getJwks(options = {}) {
      const key = config.secretKey;
      if (!key) {
        throw new M2MConfigError(
          'secretKey',
          'is required to fetch the JWKS (a machine key cannot)',
        );
      }
      const res = await send(
        // Clerk serves the JWKS under /v1; an apiUrl that already ends in /v1 keeps it once.
        { operation: 'jwks', method: 'GET', path: jwksPath, key, retryMode: 'idempotent' },
        options,
      );
      const keys = (res.json as { keys?: unknown } | null)?.keys;
      if (
        !Array.isArray(keys) ||
        !keys.every((k) => typeof k === 'object' && k !== null && typeof k.kty === 'string')
      ) {
        throw new M2MApiError({
          status: res.status,
          code: 'invalid_response',
          message: `Clerk API answered ${res.status} to jwks with an unexpected body`,
        });
      }
      return { keys } as JsonWebKeySet;
    },

    onRevoke(listener) {
      revokeListeners.add(listener);
      return () => revokeListeners.delete(listener);
    },

    async close() {
      revokeListeners.clear();
      if (ownsDispatcher && !closed) {
        closed = true;
        await dispatcher.close();
      }
    },
  };
}

function parseTokenMissing(status: number): M2MApiError {
  return new M2MApiError({
    status,
    code: 'invalid_response',
    message: `Clerk API answered ${status} to create without a token string`,
  });
}
