/**
 * The answers of `m2mAuth()` and its guards, as RFC 6750 errors: each carries the HTTP
 * `status`, the OAuth `code` and the response `headers` (the `WWW-Authenticate` challenge and,
 * for 503, `Retry-After`), so an error handler of yours can answer with them as they are.
 * Descriptions are fixed strings of ours: nothing from the request or from Clerk is echoed.
 */

/** What went wrong, for logs: the caller only ever sees the status and code. */
export type RefusalReason =
  | 'missing'
  | 'malformed'
  | 'unknown'
  | 'revoked'
  | 'expired'
  | 'out_of_scope'
  | 'forbidden'
  | 'unavailable';

export interface M2MAuthErrorInit {
  realm: string;
  reason: RefusalReason;
  tokenId?: string;
  subject?: string;
  retryAfter?: number;
  cause?: unknown;
}

export abstract class M2MAuthError extends Error {
  abstract readonly status: number;
  /** OAuth error code: `invalid_request`, `invalid_token`, `insufficient_scope`, … */
  abstract readonly code: string;
  /** Whether the challenge names the code (RFC 6750 §3.1: not when credentials are missing). */
  protected readonly challengeHasCode: boolean = true;
  readonly reason: RefusalReason;
  readonly realm: string;
  /** Token id (`mt_…`) when known; safe to log. */
  readonly tokenId: string | undefined;
  readonly subject: string | undefined;
  readonly retryAfter: number | undefined;
  readonly expose = true;

  constructor(description: string, init: M2MAuthErrorInit) {
    super(description, init.cause === undefined ? undefined : { cause: init.cause });
    this.reason = init.reason;
    this.realm = init.realm;
    this.tokenId = init.tokenId;
    this.subject = init.subject;
    this.retryAfter = init.retryAfter;
  }

  /** Same as `status`, for frameworks that read `statusCode`. */
  get statusCode(): number {
    return this.status;
  }

  /** Response headers for this error. */
  get headers(): Record<string, string> {
    // Refusals are about this request's credentials: no cache may keep them.
    const headers: Record<string, string> = { 'Cache-Control': 'no-store' };
    if (this.status === 401 || this.status === 403 || this.status === 400) {
      const parts = [`Bearer realm="${this.realm}"`];
      if (this.challengeHasCode) {
        parts.push(`error="${this.code}"`, `error_description="${this.message}"`);
      }
      headers['WWW-Authenticate'] = parts.join(', ');
    }
    if (this.retryAfter !== undefined) headers['Retry-After'] = String(this.retryAfter);
    return headers;
  }

  /** The default JSON body. */
  toJSON(): { error: string; error_description: string } {
    return { error: this.code, error_description: this.message };
  }
}

/** 401 without an error code: no credentials were presented. */
export class UnauthorizedError extends M2MAuthError {
  override name = 'UnauthorizedError';
  readonly status = 401;
  readonly code = 'unauthorized';
  protected override readonly challengeHasCode = false;
  constructor(init: Omit<M2MAuthErrorInit, 'reason'>) {
    super('A bearer token is required', { ...init, reason: 'missing' });
  }
}

/** 400 `invalid_request`: malformed `Authorization`, several of them, or a token in several places. */
export class InvalidRequestError extends M2MAuthError {
  override name = 'InvalidRequestError';
  readonly status = 400;
  readonly code = 'invalid_request';
}

/** 401 `invalid_token`: unknown, revoked, expired, out of scope or malformed. One answer for all. */
export class TokenRejectedError extends M2MAuthError {
  override name = 'TokenRejectedError';
  readonly status = 401;
  readonly code = 'invalid_token';
  constructor(init: M2MAuthErrorInit) {
    super('The access token is not valid', init);
  }
}

/** 403 `insufficient_scope`: a valid token from a machine that a guard refuses. */
export class InsufficientScopeError extends M2MAuthError {
  override name = 'InsufficientScopeError';
  readonly status = 403;
  readonly code = 'insufficient_scope';
  constructor(init: Omit<M2MAuthErrorInit, 'reason'>) {
    super('The token does not grant access to this resource', { ...init, reason: 'forbidden' });
  }
}

/** 503 `temporarily_unavailable`: Clerk could not be asked. Never a pass. */
export class AuthUnavailableError extends M2MAuthError {
  override name = 'AuthUnavailableError';
  readonly status = 503;
  readonly code = 'temporarily_unavailable';
  constructor(init: Omit<M2MAuthErrorInit, 'reason'>) {
    super('Token verification is temporarily unavailable', { ...init, reason: 'unavailable' });
  }
}
