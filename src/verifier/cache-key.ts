import { createHmac, randomBytes } from 'node:crypto';

/**
 * Cache keys are HMAC-SHA-256 of the token under a random per-process key, prefixed by the
 * verifier's identity (API URL and which key verifies), as Kubernetes' token cache does:
 * no raw token is ever held, a dump of the cache cannot be replayed, and two verifiers with
 * different upstreams or keys never share an answer.
 */
const PROCESS_KEY = randomBytes(32);

export function createCacheKeyer(identity: string): (token: string) => string {
  const prefix = `${identity}\u0000`;
  return (token) =>
    createHmac('sha256', PROCESS_KEY).update(prefix).update(token).digest('base64url');
}
