import { hash, randomBytes } from 'node:crypto';

/**
 * Cache keys are a keyed SHA-256 (NMAC) of the token under a random per-process key, prefixed by the
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
  // NMAC, the construction HMAC is built on: H(k_o ‖ H(k_i ‖ m)), with independent inner and
  // outer keys and the identity inside. Two one-shot hashes cost half of one createHmac() (an
  // object per call), and the outer hash rules out length extension as HMAC's does.
  const key = secret.toString('base64');
  const inner = `${key}\u0000inner\u0000${identity}\u0000`;
  const outer = `${key}\u0000outer\u0000`;
  return (token) => hash('sha256', outer + hash('sha256', inner + token, 'base64url'), 'base64url');
}
