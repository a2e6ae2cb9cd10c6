import type { ClerkErrorItemJson, ClerkErrorJson } from '../shared/wire.js';
import { newTraceId } from './ids.js';

/**
 * An error answer in Clerk's shape. Handlers throw it; the server turns it into
 * `{ errors: [{ message, long_message, code }], clerk_trace_id }`.
 */
export class ClerkHttpError extends Error {
  readonly status: number;
  readonly code: string;
  readonly longMessage: string;
  readonly meta: Record<string, unknown> | undefined;
  readonly headers: Record<string, string>;

  constructor(
    status: number,
    code: string,
    message: string,
    options: {
      longMessage?: string;
      meta?: Record<string, unknown>;
      headers?: Record<string, string>;
    } = {},
  ) {
    super(message);
    this.status = status;
    this.code = code;
    this.longMessage = options.longMessage ?? message;
    this.meta = options.meta;
    this.headers = options.headers ?? {};
  }

  toJson(): ClerkErrorJson {
    const item: ClerkErrorItemJson = {
      message: this.message,
      long_message: this.longMessage,
      code: this.code,
    };
    if (this.meta) item.meta = this.meta;
    return { errors: [item], clerk_trace_id: newTraceId() };
  }
}

// Factories for every error the emulator answers, so codes and wording live in one place.

export const authorizationMissing = (): ClerkHttpError =>
  new ClerkHttpError(401, 'authorization_missing', 'Authorization header missing', {
    longMessage:
      'The request must carry an `Authorization: Bearer <key>` header with a Clerk Secret Key or a Machine Secret Key.',
  });

export const authorizationFormatInvalid = (): ClerkHttpError =>
  new ClerkHttpError(401, 'authorization_header_format_invalid', 'Invalid Authorization header', {
    longMessage: 'The Authorization header must have the form `Bearer <key>`.',
  });

/** Clerk's wording, from the mock in its own SDK tests. */
export const machineSecretKeyInvalid = (): ClerkHttpError =>
  new ClerkHttpError(
    401,
    'machine_secret_key_invalid',
    'The provided Machine Secret Key is invalid. Make sure that your Machine Secret Key is correct.',
  );

export const secretKeyInvalid = (): ClerkHttpError =>
  new ClerkHttpError(
    401,
    'secret_key_invalid',
    'The provided Clerk Secret Key is invalid. Make sure that your Clerk Secret Key is correct.',
  );

/** `clerk_key_invalid` is the code Clerk's SDK looks for in a failed JWKS fetch. */
export const clerkKeyInvalid = (): ClerkHttpError =>
  new ClerkHttpError(
    401,
    'clerk_key_invalid',
    'The provided Clerk Secret Key is invalid. Make sure that your Clerk Secret Key is correct.',
  );

export const forbidden = (longMessage: string): ClerkHttpError =>
  new ClerkHttpError(403, 'forbidden', 'Forbidden', { longMessage });

/** One generic body for unknown, revoked, expired and out-of-scope tokens: no oracle. */
export const tokenNotFound = (): ClerkHttpError =>
  new ClerkHttpError(404, 'resource_not_found', 'Resource not found', {
    longMessage: 'The requested M2M token was not found.',
  });

export const machineNotFound = (): ClerkHttpError =>
  new ClerkHttpError(404, 'resource_not_found', 'Resource not found', {
    longMessage: 'No machine with this id exists on the instance.',
  });

export const routeNotFound = (method: string, path: string): ClerkHttpError =>
  new ClerkHttpError(404, 'resource_not_found', 'Resource not found', {
    longMessage: `No route matches ${method} ${path}.`,
  });

export const methodNotAllowed = (method: string, allowed: readonly string[]): ClerkHttpError =>
  new ClerkHttpError(405, 'method_not_allowed', 'Method not allowed', {
    longMessage: `${method} is not allowed on this path; use ${allowed.join(' or ')}.`,
    headers: { allow: allowed.join(', ') },
  });

export const bodyTooLarge = (limit: number): ClerkHttpError =>
  new ClerkHttpError(413, 'request_body_too_large', 'Request body too large', {
    longMessage: `The request body must not exceed ${limit} bytes.`,
  });

export const unsupportedMediaType = (): ClerkHttpError =>
  new ClerkHttpError(415, 'unsupported_media_type', 'Unsupported media type', {
    longMessage: 'The request body must be sent with `Content-Type: application/json`.',
  });

export const malformedBody = (longMessage: string): ClerkHttpError =>
  new ClerkHttpError(400, 'malformed_request_body', 'Malformed request body', { longMessage });

export const paramUnknown = (param: string): ClerkHttpError =>
  new ClerkHttpError(400, 'form_param_unknown', 'is unknown', {
    longMessage: `${param} is not a valid parameter for this request.`,
    meta: { param_name: param },
  });

export const paramMissing = (param: string): ClerkHttpError =>
  new ClerkHttpError(400, 'form_param_missing', 'is missing', {
    longMessage: `${param} must be included.`,
    meta: { param_name: param },
  });

export const paramInvalid = (param: string, expectation: string): ClerkHttpError =>
  new ClerkHttpError(400, 'form_param_value_invalid', 'is invalid', {
    longMessage: `${param} ${expectation}.`,
    meta: { param_name: param },
  });

export const paramFormatInvalid = (param: string, pattern: string): ClerkHttpError =>
  new ClerkHttpError(400, 'form_param_format_invalid', 'Bad Request', {
    longMessage: `Invalid '${param}': Failed regex check (${pattern})`,
    meta: { param_name: param },
  });

export const tooManyRequests = (retryAfterSeconds: number): ClerkHttpError =>
  new ClerkHttpError(429, 'too_many_requests', 'Too Many Requests', {
    longMessage: `Rate limit exceeded. Retry after ${retryAfterSeconds} seconds.`,
    headers: { 'retry-after': String(retryAfterSeconds) },
  });

/** Codes for statuses injected with `failNext`, so the body looks like Clerk's for that status. */
const FAULT_CODES: Record<number, [string, string]> = {
  400: ['bad_request', 'Bad Request'],
  401: ['authorization_invalid', 'Unauthorized'],
  403: ['forbidden', 'Forbidden'],
  404: ['resource_not_found', 'Resource not found'],
  409: ['conflict', 'Conflict'],
  422: ['unprocessable_entity', 'Unprocessable Entity'],
  429: ['too_many_requests', 'Too Many Requests'],
  500: ['internal_clerk_error', 'Internal Server Error'],
  502: ['bad_gateway', 'Bad Gateway'],
  503: ['service_unavailable', 'Service Unavailable'],
  504: ['gateway_timeout', 'Gateway Timeout'],
};

export function injectedError(status: number, retryAfter: number | undefined): ClerkHttpError {
  const [code, message] = FAULT_CODES[status] ?? ['emulated_fault', `HTTP ${status}`];
  return new ClerkHttpError(status, code, message, {
    longMessage: `${message} (injected by the emulator's failNext).`,
    headers: retryAfter === undefined ? {} : { 'retry-after': String(retryAfter) },
  });
}

export const internalError = (): ClerkHttpError =>
  new ClerkHttpError(500, 'internal_clerk_error', 'Something went wrong', {
    longMessage: 'The emulator hit an unexpected error; see its log.',
  });
