import type { Logger } from 'pino';
import type { M2MClient } from '../client/index.js';
import { M2MConfigError } from '../shared/config-error.js';
import { loggerOption } from '../shared/logger.js';
import {
  assertKnownKeys,
  assertMethods,
  functionOption,
  intOption,
  optionKeys,
  optionsObject,
} from '../shared/validate.js';

/** Options of {@link createTokenProvider}. */
export interface TokenProviderOptions {
  /** The client tokens are minted through; it needs this machine's secret key. Required. */
  client: M2MClient;
  /** Lifetime of each minted token. Default: the machine's default token TTL. */
  secondsUntilExpiration?: number;
  /**
   * Mint a new token this long before the current one expires, so no request leaves with a
   * token about to die. Capped at half the token's lifetime. Default `60000` ms.
   */
  refreshBeforeMs?: number;
  /** Custom claims for every minted token. Default: none. */
  claims?: Record<string, unknown>;
  /**
   * `opaque` (verified by Clerk on each use, revocable at once) or `jwt` (verified locally by the
   * receiver, valid until it expires). Default `opaque`.
   */
  tokenFormat?: 'opaque' | 'jwt';
  /**
   * Ask Clerk to return a live token it already minted for this machine (same claims, at least
   * this many seconds left) instead of minting a new one: fewer billed mints when many processes
   * start at once (serverless). Opaque tokens only; must be less than `secondsUntilExpiration`
   * when that is set. Default: unset (every mint is new).
   */
  minRemainingTtlSeconds?: number;
  /** The clock, Unix ms. Default `Date.now`. */
  now?: () => number;
  /** A pino logger for failed refreshes. Default: pino at level `warn` on stderr (a rejected key, an unreachable Clerk; nothing per request in normal operation); `false` silences it. */
  logger?: Logger | false;
}

export interface TokenProvider {
  /** A live token: the kept one, or a fresh one minted once for all concurrent callers. */
  getToken(): Promise<string>;
  /** Forgets the kept token (say, after a 401), so the next `getToken()` mints a new one. */
  invalidate(): void;
}

export const DEFAULT_REFRESH_BEFORE_MS = 60_000;
/** Clerk's upper bound for a token's lifetime (10 years), in seconds. */
const MAX_TOKEN_TTL_SECONDS = 315_360_000;

const PROVIDER_KEYS = optionKeys<TokenProviderOptions>({
  client: true,
  secondsUntilExpiration: true,
  refreshBeforeMs: true,
  claims: true,
  tokenFormat: true,
  minRemainingTtlSeconds: true,
  now: true,
  logger: true,
});

interface Kept {
  token: string;
  expiration: number | null;
  refreshAt: number;
}

/**
 * The caller side: keeps one minted token per provider, refreshes it before it expires, and
 * lets concurrent callers share one mint. When a refresh fails while the kept token is still
 * live, the kept token is used and the failure logged; otherwise the error is thrown.
 */
export function createTokenProvider(options: TokenProviderOptions): TokenProvider {
  const opts = optionsObject<TokenProviderOptions>(options, 'options');
  assertKnownKeys(opts, PROVIDER_KEYS);
  const client = assertMethods<M2MClient>(
    opts.client,
    'client',
    ['createToken'],
    'must be a client from createM2MClient()',
  );
  const seconds =
    opts.secondsUntilExpiration === undefined
      ? undefined
      : intOption(opts.secondsUntilExpiration, 'secondsUntilExpiration', 0, { min: 1 });
  const refreshBeforeMs = intOption(
    opts.refreshBeforeMs,
    'refreshBeforeMs',
    DEFAULT_REFRESH_BEFORE_MS,
  );
  const claims = opts.claims;
  if (
    claims !== undefined &&
    (typeof claims !== 'object' || claims === null || Array.isArray(claims))
  ) {
    throw new M2MConfigError('claims', 'must be an object');
  }
  const tokenFormat = opts.tokenFormat;
  if (tokenFormat !== undefined && tokenFormat !== 'opaque' && tokenFormat !== 'jwt') {
    throw new M2MConfigError('tokenFormat', 'must be `opaque` or `jwt`');
  }
  const minRemainingTtlSeconds =
    opts.minRemainingTtlSeconds === undefined
      ? undefined
      : intOption(opts.minRemainingTtlSeconds, 'minRemainingTtlSeconds', 0, {
          max: (seconds ?? MAX_TOKEN_TTL_SECONDS + 1) - 1,
        });
  if (minRemainingTtlSeconds !== undefined && tokenFormat === 'jwt') {
    throw new M2MConfigError(
      'minRemainingTtlSeconds',
      'applies to opaque tokens only (Clerk never reuses a JWT-format token)',
    );
  }
  const now = functionOption<() => number>(opts.now, 'now') ?? Date.now;
  const log = loggerOption(opts.logger).child({ component: 'm2m-token-provider' });

  let kept: Kept | undefined;
  let minting: Promise<string> | undefined;
  /** Whether the refresh failure in progress has been logged. */
  let refreshFailing = false;

  async function mint(): Promise<string> {
    const created = await client.createToken({
      secondsUntilExpiration: seconds,
      claims,
      tokenFormat,
      minRemainingTtlSeconds,
    });
    const at = now();
    const lifetime = created.expiration === null ? null : created.expiration - at;
    const lead = lifetime === null ? 0 : Math.min(refreshBeforeMs, Math.floor(lifetime / 2));
    refreshFailing = false;
    kept = {
      token: created.token,
      expiration: created.expiration,
      refreshAt: created.expiration === null ? Number.POSITIVE_INFINITY : created.expiration - lead,
    };
    log.debug({ tokenId: created.id, expiration: created.expiration }, 'minted an m2m token');
    return created.token;
  }

  return {
    async getToken() {
      const at = now();
      if (kept && at < kept.refreshAt) return kept.token;
      if (!minting) {
        minting = mint().finally(() => {
          minting = undefined;
        });
      }
      const current = kept;
      try {
        return await minting;
      } catch (err) {
        if (current && (current.expiration === null || now() < current.expiration)) {
          // Said once until a mint succeeds again: every call retries the refresh meanwhile.
          if (!refreshFailing) {
            refreshFailing = true;
            log.warn(
              { err: (err as Error).message },
              'token refresh failed; using the kept token until it expires',
            );
          }
          return current.token;
        }
        throw err;
      }
    },
    invalidate() {
      kept = undefined;
    },
  };
}
