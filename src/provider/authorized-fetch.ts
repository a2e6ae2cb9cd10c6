import { fetch as undiciFetch } from 'undici';
import { M2MConfigError } from '../shared/config-error.js';
import { assertMethods } from '../shared/validate.js';
import type { TokenProvider } from './token-provider.js';

type Fetch = typeof undiciFetch;

/**
 * Wraps `fetch` (undici's by default) so every request carries `Authorization: Bearer <token>`
 * from the provider. On a 401 the kept token is dropped, so the next request mints a new one;
 * the request itself is not replayed, since its body may not be replayable.
 */
export function createAuthorizedFetch(
  provider: TokenProvider,
  fetchImpl: Fetch = undiciFetch,
): Fetch {
  assertMethods(
    provider,
    'provider',
    ['getToken', 'invalidate'],
    'must be a provider from createTokenProvider()',
  );
  if (typeof fetchImpl !== 'function') throw new M2MConfigError('fetch', 'must be a function');
  return (async (input: Parameters<Fetch>[0], init?: Parameters<Fetch>[1]) => {
    const token = await provider.getToken();
    const headers = new Headers(init?.headers as ConstructorParameters<typeof Headers>[0]);
    headers.set('authorization', `Bearer ${token}`);
    const response = await fetchImpl(input, { ...init, headers } as Parameters<Fetch>[1]);
    if (response.status === 401) provider.invalidate();
    return response;
  }) as Fetch;
}
