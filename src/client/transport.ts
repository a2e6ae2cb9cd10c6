import type { Dispatcher } from 'undici';
import { redact } from '../shared/redact.js';
import {
  type ClerkApiErrorDetail,
  errorClassForStatus,
  M2MApiError,
  M2MNetworkError,
  M2MTimeoutError,
} from './errors.js';
import type { ClientConfig } from './options.js';
import {
  backoffDelay,
  NOT_SENT_ERROR_CODES,
  parseRetryAfter,
  RETRYABLE_ERROR_CODES,
  RETRYABLE_STATUSES,
  sleep,
} from './retry.js';

/** Clerk's answers are small; anything larger is not an answer we understand. */
const MAX_BODY_BYTES = 1024 * 1024;

export interface ApiRequest {
  /** For logs and metrics: `create`, `list`, `revoke` or `verify`. */
  operation: string;
  method: 'GET' | 'POST';
  /** Path below the API URL, starting with `/`, query included. */
  path: string;
  body?: unknown;
  /** The secret key sent as the bearer credential. */
  key: string;
  /** Strings that must never appear in an error message (the key, the token). */
  secrets: readonly string[];
  /**
   * `idempotent`: retried on retryable statuses and connection errors.
   * `unsent-only`: retried only when the request provably never reached Clerk (or was refused with 429).
   */
  retryMode: 'idempotent' | 'unsent-only';
  signal?: AbortSignal;
}

export interface ApiResponse {
  status: number;
  json: unknown;
}

/** `host:port` of an origin, for messages. */
function hostOf(origin: string): string {
  return new URL(origin).host;
}

/** Marks an abort caused by our own per-attempt deadline, as opposed to the caller's signal. */
class AttemptTimeout extends Error {}

/** Sends one API request with a per-attempt deadline and the configured retries. */
export async function sendApiRequest(
  config: ClientConfig,
  dispatcher: Dispatcher,
  request: ApiRequest,
): Promise<ApiResponse> {
  const { retries, minDelayMs, maxDelayMs } = config.retry;
  const log = config.logger;
  for (let attempt = 0; ; attempt++) {
    request.signal?.throwIfAborted();
    const started = performance.now();
    let outcome: ApiResponse | M2MApiError;
    try {
      outcome = await attemptOnce(config, dispatcher, request);
    } catch (err) {
      if (!(err instanceof M2MApiError)) throw err; // the caller's abort reason
      outcome = err;
    }
    const ms = Math.round(performance.now() - started);
    const status = outcome instanceof M2MApiError ? outcome.status : outcome.status;
    log.debug({ operation: request.operation, status, attempt, ms }, 'clerk api call');
    if (!(outcome instanceof M2MApiError)) return outcome;

    const delay = retryDelay(outcome, request.retryMode, attempt, retries, minDelayMs, maxDelayMs);
    if (delay === undefined) throw outcome;
    // `info`, not `warn`: a retry happens per request during an outage, which the verifier
    // reports once; a default logger (level `warn`) must not write a line per request.
    log.info(
      { operation: request.operation, status, code: outcome.code, attempt, delayMs: delay },
      'clerk api call failed; retrying',
    );
    await sleep(delay, request.signal);
  }
}

/** The wait before the next attempt, or `undefined` when the error is final. */
function retryDelay(
  error: M2MApiError,
  mode: ApiRequest['retryMode'],
  attempt: number,
  retries: number,
  minDelayMs: number,
  maxDelayMs: number,
): number | undefined {
  if (attempt >= retries) return undefined;
  if (error instanceof M2MTimeoutError) return undefined; // the deadline already spent the budget
  if (error instanceof M2MNetworkError) {
    const codes = mode === 'idempotent' ? RETRYABLE_ERROR_CODES : NOT_SENT_ERROR_CODES;
    const cause = error.cause as { code?: string } | undefined;
    return cause?.code && codes.has(cause.code)
      ? backoffDelay(attempt, minDelayMs, maxDelayMs)
      : undefined;
  }
  const status = error.status ?? 0;
  if (mode === 'unsent-only' ? status !== 429 : !RETRYABLE_STATUSES.has(status)) return undefined;
  if (error.retryAfter !== undefined) {
    const wait = error.retryAfter * 1000;
    return wait <= maxDelayMs ? wait : undefined;
  }
  return backoffDelay(attempt, minDelayMs, maxDelayMs);
}

async function attemptOnce(
  config: ClientConfig,
  dispatcher: Dispatcher,
  request: ApiRequest,
): Promise<ApiResponse> {
  const deadline = new AbortController();
  const timer = setTimeout(() => deadline.abort(new AttemptTimeout()), config.timeoutMs);
  const signal = request.signal
    ? AbortSignal.any([request.signal, deadline.signal])
    : deadline.signal;
  const headers: Record<string, string> = {
    authorization: `Bearer ${request.key}`,
    'clerk-api-version': config.apiVersion,
    'user-agent': config.userAgent,
    accept: 'application/json',
  };
  let body: string | undefined;
  if (request.body !== undefined) {
    body = JSON.stringify(request.body);
    headers['content-type'] = 'application/json';
  }
  try {
    const res = await dispatcher.request({
      origin: config.origin,
      path: `${config.basePath}${request.path}`,
      method: request.method,
      headers,
      body,
      signal,
    });
    const text = await readBody(res.body, res.statusCode);
    return interpret(res.statusCode, res.headers, text, request.secrets);
  } catch (err) {
    if (err instanceof M2MApiError) throw err;
    if (request.signal?.aborted) throw request.signal.reason;
    if (deadline.signal.aborted) {
      throw new M2MTimeoutError({
        code: 'timeout',
        message: `Clerk API ${request.operation} call got no answer from ${hostOf(config.origin)} within ${config.timeoutMs} ms`,
      });
    }
    const code = (err as { code?: string }).code ?? 'unknown';
    throw new M2MNetworkError({
      code: 'network_error',
      // The host only: the origin never holds credentials (`apiUrl` refuses them).
      message: `Clerk API ${request.operation} call failed: no answer from ${hostOf(config.origin)} (${code})`,
      cause: err,
    });
  } finally {
    clearTimeout(timer);
  }
}

async function readBody(
  body: AsyncIterable<Buffer> & { destroy?: () => void },
  status: number,
): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) {
      body.destroy?.();
      throw new M2MApiError({
        status,
        code: 'invalid_response',
        message: `Clerk API answer exceeded ${MAX_BODY_BYTES} bytes`,
      });
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function interpret(
  status: number,
  headers: Record<string, string | string[] | undefined>,
  text: string,
  secrets: readonly string[],
): ApiResponse {
  let json: unknown;
  let parsed = true;
  try {
    json = text === '' ? undefined : JSON.parse(text);
  } catch {
    parsed = false;
  }
  if (status >= 200 && status < 300) {
    if (!parsed) {
      throw new M2MApiError({
        status,
        code: 'invalid_response',
        message: `Clerk API answered ${status} with a body that is not JSON`,
      });
    }
    return { status, json };
  }
  const errors = parsed ? clerkErrors(json, secrets) : [];
  const first = errors[0];
  const code = first?.code ?? `http_${status}`;
  const traceId = (json as { clerk_trace_id?: unknown } | undefined)?.clerk_trace_id;
  const ErrorClass = errorClassForStatus(status);
  throw new ErrorClass({
    status,
    code,
    message: `Clerk API answered ${status} ${code}${first ? `: ${first.message}` : ''}`,
    errors,
    clerkTraceId: traceIdOf(typeof traceId === 'string' ? traceId : headers['cf-ray'], secrets),
    retryAfter: parseRetryAfter(headers['retry-after'], Date.now()),
  });
}

/** A trace id is an opaque label: kept only when it looks like one, so it cannot carry a secret. */
function traceIdOf(value: unknown, secrets: readonly string[]): string | undefined {
  if (typeof value !== 'string' || !/^[A-Za-z0-9_-]{1,100}$/.test(value)) return undefined;
  return secrets.some((secret) => secret && (value.includes(secret) || secret.includes(value)))
    ? undefined
    : value;
}

/** Reads Clerk's `errors` array defensively, redacting anything that looks like our secrets. */
function clerkErrors(json: unknown, secrets: readonly string[]): ClerkApiErrorDetail[] {
  const list = (json as { errors?: unknown } | undefined)?.errors;
  if (!Array.isArray(list)) return [];
  const clean = (v: unknown) =>
    typeof v === 'string' ? redact(v, secrets).slice(0, 500) : undefined;
  return list.slice(0, 10).flatMap((item): ClerkApiErrorDetail[] => {
    if (typeof item !== 'object' || item === null) return [];
    const { code, message, long_message, meta } = item as Record<string, unknown>;
    const detail: ClerkApiErrorDetail = {
      code: clean(code) ?? 'unknown',
      message: clean(message) ?? '',
    };
    const longMessage = clean(long_message);
    if (longMessage !== undefined) detail.longMessage = longMessage;
    if (typeof meta === 'object' && meta !== null) {
      detail.meta = JSON.parse(redact(JSON.stringify(meta), secrets)) as Record<string, unknown>;
    }
    return [detail];
  });
}
