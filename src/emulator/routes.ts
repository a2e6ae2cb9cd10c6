import { type ClerkHttpError, methodNotAllowed, routeNotFound } from './errors.js';
import type { M2MOperation } from './faults.js';

export type Operation = M2MOperation | 'jwks';

export interface Route {
  operation: Operation;
  /** The `{m2m_token_id}` segment of the revoke path. */
  tokenIdParam?: string;
}

/**
 * Maps a request to an operation. Every path is served with and without the `/v1` prefix:
 * Clerk's JS SDK calls the M2M routes unversioned and the JWKS under `/v1`, other clients
 * use `/v1` everywhere.
 */
export function matchRoute(method: string, pathname: string): Route | ClerkHttpError {
  const path = pathname === '/v1' || pathname.startsWith('/v1/') ? pathname.slice(3) : pathname;
  const segments = path.split('/').slice(1);
  const only = (allowed: string[], route: Route): Route | ClerkHttpError =>
    allowed.includes(method) ? route : methodNotAllowed(method, allowed);

  if (segments.length === 1 && segments[0] === 'm2m_tokens') {
    if (method === 'POST') return { operation: 'create' };
    if (method === 'GET') return { operation: 'list' };
    return methodNotAllowed(method, ['GET', 'POST']);
  }
  if (segments.length === 2 && segments[0] === 'm2m_tokens' && segments[1] === 'verify') {
    return only(['POST'], { operation: 'verify' });
  }
  if (
    segments.length === 3 &&
    segments[0] === 'm2m_tokens' &&
    segments[1] !== '' &&
    segments[2] === 'revoke'
  ) {
    return only(['POST'], { operation: 'revoke', tokenIdParam: segments[1] });
  }
  if (segments.length === 1 && segments[0] === 'jwks') return only(['GET'], { operation: 'jwks' });
  return routeNotFound(method, pathname);
}
