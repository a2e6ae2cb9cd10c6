import { bearerKey } from './auth.js';
import { authorizationMissing, clerkKeyInvalid } from './errors.js';
import type { SigningKey } from './jwt.js';

/** `GET /v1/jwks`: only with the instance's Clerk Secret Key, as at Clerk. */
export function handleJwks(
  authorization: string | undefined,
  instanceSecretKey: string,
  key: SigningKey,
): { status: number; body: unknown } {
  const presented = bearerKey(authorization);
  if (presented === undefined) throw authorizationMissing();
  if (presented !== instanceSecretKey) throw clerkKeyInvalid();
  return { status: 200, body: { keys: [key.jwk] } };
}
