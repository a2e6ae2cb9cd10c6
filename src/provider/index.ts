/**
 * The caller side: a token provider that keeps, refreshes and shares minted tokens, and a
 * `fetch` wrapper that sends them. Built on the client only.
 */
export { createAuthorizedFetch } from './authorized-fetch.js';
export {
  createTokenProvider,
  DEFAULT_REFRESH_BEFORE_MS,
  type TokenProvider,
  type TokenProviderOptions,
} from './token-provider.js';
