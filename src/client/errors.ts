/**
 * One error family for everything the client can meet. Statuses mirror the tables of Clerk's
 * spec; {@link M2MNetworkError} and {@link M2MTimeoutError} mean no answer came at all.
 * No message, `toString()` or `toJSON()` ever carries a secret key or a token string: messages
 * from Clerk are redacted against the secrets of the call before they are stored.
 */

/** One entry of Clerk's `errors` array, camelCased. */
export interface ClerkApiErrorDetail {
  code: string;
  message: string;
  longMessage?: string;
  meta?: Record<string, unknown>;
}

export interface M2MApiErrorInit {
  status?: number;
  code: string;
  message: string;
  errors?: ClerkApiErrorDetail[];
  clerkTraceId?: string;
  retryAfter?: number;
  cause?: unknown;
}

/** Base of every error the client throws. */
export class M2MApiError extends Error {
  override name = 'M2MApiError';
  /** HTTP status of Clerk's answer; `undefined` when there was no answer. */
  readonly status: number | undefined;
  /** Clerk's first error code, or one of ours (`invalid_response`, `network_error`, `timeout`). */
  readonly code: string;
  readonly errors: ClerkApiErrorDetail[];
  /** Clerk's trace id (`clerk_trace_id`, else `cf-ray`), for support requests. */
  readonly clerkTraceId: string | undefined;
  /** Seconds Clerk asked us to wait (`Retry-After`), when it said. */
  readonly retryAfter: number | undefined;

  constructor(init: M2MApiErrorInit) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.status = init.status;
    this.code = init.code;
    this.errors = init.errors ?? [];
    this.clerkTraceId = init.clerkTraceId;
    this.retryAfter = init.retryAfter;
  }

  toJSON(): Record<string, unknown> {
    return {
      name: this.name,
      message: this.message,
      status: this.status,
      code: this.code,
      errors: this.errors,
      clerkTraceId: this.clerkTraceId,
      retryAfter: this.retryAfter,
    };
  }
}

/** 400: Clerk rejected the request's parameters. */
export class BadRequestError extends M2MApiError {
  override name = 'BadRequestError';
}
/** 401: the secret key was missing, unknown, or of the wrong kind for the operation. */
export class AuthenticationError extends M2MApiError {
  override name = 'AuthenticationError';
}
/** 403: the key may not act on that resource. */
export class ForbiddenError extends M2MApiError {
  override name = 'ForbiddenError';
}
/** 404: no such token (for verify: unknown, revoked, expired or not granted to this machine). */
export class NotFoundError extends M2MApiError {
  override name = 'NotFoundError';
}
/** 409: Clerk reported a conflict. */
export class ConflictError extends M2MApiError {
  override name = 'ConflictError';
}
/** 429: rate limited; see `retryAfter`. */
export class RateLimitError extends M2MApiError {
  override name = 'RateLimitError';
}
/** 5xx: Clerk failed. */
export class ServerError extends M2MApiError {
  override name = 'ServerError';
}
/** No answer: the connection failed or was cut. */
export class M2MNetworkError extends M2MApiError {
  override name = 'M2MNetworkError';
}
/** No answer within `timeoutMs`. */
export class M2MTimeoutError extends M2MNetworkError {
  override name = 'M2MTimeoutError';
}

const BY_STATUS: Record<number, typeof M2MApiError> = {
  400: BadRequestError,
  401: AuthenticationError,
  403: ForbiddenError,
  404: NotFoundError,
  409: ConflictError,
  429: RateLimitError,
};

/** The error class for an HTTP status. */
export function errorClassForStatus(status: number): typeof M2MApiError {
  return BY_STATUS[status] ?? (status >= 500 ? ServerError : M2MApiError);
}
