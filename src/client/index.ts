/**
 * The client: a typed, retrying, deadline-bound client for Clerk's four M2M operations
 * (create, list, revoke, verify). Knows nothing of caches or HTTP frameworks.
 */
export { createM2MClient } from './client.js';
export {
  AuthenticationError,
  BadRequestError,
  type ClerkApiErrorDetail,
  ConflictError,
  ForbiddenError,
  M2MApiError,
  M2MNetworkError,
  M2MTimeoutError,
  NotFoundError,
  RateLimitError,
  ServerError,
} from './errors.js';
export {
  CLIENT_OPTION_KEYS,
  DEFAULT_API_URL,
  DEFAULT_RETRY,
  DEFAULT_TIMEOUT_MS,
} from './options.js';
export type {
  CallOptions,
  CreateTokenParams,
  JsonWebKeySet,
  ListTokensParams,
  M2MClient,
  M2MClientOptions,
  M2MToken,
  M2MTokenList,
  RetryOptions,
  RevokedTokenEvent,
  RevokeTokenParams,
  VerifyTokenParams,
} from './types.js';
