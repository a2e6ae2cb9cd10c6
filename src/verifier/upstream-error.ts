import {
  AuthenticationError,
  ForbiddenError,
  M2MApiError,
  M2MNetworkError,
  M2MTimeoutError,
  RateLimitError,
} from '../client/index.js';
import { M2MConfigError } from '../shared/config-error.js';
import { type UnavailableReason, VerifierUnavailableError } from './errors.js';

/** Maps a client failure (no answer, or an answer that is not about the token) to "unavailable". */
export function toUnavailable(err: unknown): VerifierUnavailableError {
  let reason: UnavailableReason = 'upstream_error';
  if (err instanceof M2MTimeoutError) reason = 'timeout';
  else if (err instanceof M2MNetworkError) reason = 'network';
  else if (err instanceof RateLimitError) reason = 'rate_limited';
  else if (err instanceof AuthenticationError || err instanceof ForbiddenError)
    reason = 'misconfigured';
  else if (err instanceof M2MConfigError) reason = 'misconfigured';
  else if (err instanceof M2MApiError && err.code === 'invalid_response')
    reason = 'invalid_response';
  const retryAfter = err instanceof M2MApiError ? err.retryAfter : undefined;
  return new VerifierUnavailableError(reason, { retryAfter, cause: err });
}
