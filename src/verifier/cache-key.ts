import { createHmac, randomBytes } from 'node:crypto';

/**
 * Cache keys are HMAC-SHA-256 of the token under a random per-process key, prefixed by the
 * verifier's identity (API URL and which key verifies), as Kubernetes' token cache does:
 * no raw token is ever held, a dump of the cache cannot be replayed, and two verifiers with
 * different upstreams or keys never share an answer.
 */
const PROCESS_KEY = randomBytes(32);

/**
 * With a shared store, instances must agree on keys, so `secret` is derived from the secret
 * key they verify with (`client.deriveKey`): shared by design, never stored, never sent.
 */
export function createCacheKeyer(
  identity: string,
  secret: Buffer = PROCESS_KEY,
): (token: string) => string {
  const prefix = `${identity}\u0000`;
  return (token) =>
    createHmac('sha256', secret)
      .update(prefix + token)
      .digest('base64url');
}
