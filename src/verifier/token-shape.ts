/**
 * The cheap checks made before any network call, so garbage never costs a billed,
 * rate-limited upstream request.
 */

/** Longest opaque token accepted. Clerk's are `mt_` + a few dozen characters. */
export const MAX_OPAQUE_TOKEN_LENGTH = 256;

/** Opaque M2M tokens: `mt_` then URL-safe characters. */
const OPAQUE_TOKEN = /^mt_[A-Za-z0-9_-]{16,253}$/;

/** True when `token` can be an opaque Clerk M2M token. */
export function isOpaqueM2MToken(token: unknown): token is string {
  return (
    typeof token === 'string' && token.length <= MAX_OPAQUE_TOKEN_LENGTH && OPAQUE_TOKEN.test(token)
  );
}
