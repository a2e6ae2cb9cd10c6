import type { IncomingMessage } from 'node:http';

/**
 * Finds the bearer token of a request: the `Authorization` header, and the `access_token`
 * query parameter only when allowed (RFC 6750 §2.3 advises against it). The result is a token,
 * nothing, or the reason the request is malformed; nothing here throws.
 */
export type Extraction =
  | { kind: 'token'; token: string }
  | { kind: 'none' }
  | { kind: 'malformed'; description: string };

/** RFC 6750 `b64token`. */
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;
/** `Bearer`, any case, then one or more spaces (RFC 9110 `1*SP`), then the token. */
const BEARER = /^bearer +(\S+)$/i;

const MALFORMED_HEADER = 'The Authorization header must be: Bearer <token>';
const SEVERAL_HEADERS = 'Only one Authorization header is allowed';
const SEVERAL_PLACES = 'The token must be sent in one place only';
const BAD_TOKEN = 'The bearer token contains characters that are not allowed';

export function isBearerToken(value: string): boolean {
  return value.length > 0 && B64TOKEN.test(value);
}

/**
 * How many `Authorization` headers the request carried. Node keeps only the first in
 * `req.headers`; counting in `rawHeaders` costs no allocation, where `headersDistinct` would
 * build an array for every header of every request.
 */
function authorizationHeaderCount(req: IncomingMessage): number {
  const raw = req.rawHeaders;
  if (!Array.isArray(raw)) return req.headersDistinct?.authorization?.length ?? 1;
  let count = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 13 && name.toLowerCase() === 'authorization') count++;
  }
  return count;
}

export function fromAuthorizationHeader(req: IncomingMessage): Extraction {
  const header = req.headers.authorization;
  if (header === undefined) return { kind: 'none' };
  if (authorizationHeaderCount(req) > 1) return SEVERAL;
  return fromAuthorizationValue(header);
}

const SEVERAL: Extraction = Object.freeze({ kind: 'malformed', description: SEVERAL_HEADERS });

/**
 * One `Authorization` value. A comma can never be part of a bearer token, so a value holding one
 * is several headers joined (as Web `Headers` and some frameworks join them): the same answer as
 * two headers.
 */
export function fromAuthorizationValue(header: string): Extraction {
  if (header.includes(',')) return SEVERAL;
  const token = bearerCredentials(header);
  if (token !== undefined && B64TOKEN.test(token)) return { kind: 'token', token };
  // Only a refusal pays for telling a malformed header from a token of bad characters.
  return BEARER.test(header) ? BAD : MALFORMED;
}

const MALFORMED: Extraction = Object.freeze({ kind: 'malformed', description: MALFORMED_HEADER });
const BAD: Extraction = Object.freeze({ kind: 'malformed', description: BAD_TOKEN });

/**
 * What follows `Bearer` (any case) and one or more spaces, read without a regular expression
 * (the hot path: one substring, no match array); `undefined` when the value does not start so.
 */
function bearerCredentials(header: string): string | undefined {
  if (header.length < 8) return undefined;
  for (let i = 0; i < 6; i++) {
    if ((header.charCodeAt(i) | 0x20) !== BEARER_CODES[i]) return undefined;
  }
  let at = 6;
  while (at < header.length && header.charCodeAt(at) === 0x20) at++;
  return at === 6 ? undefined : header.slice(at);
}
const BEARER_CODES = [0x62, 0x65, 0x61, 0x72, 0x65, 0x72]; // b e a r e r

/** The `Authorization` values as a framework hands them: one, several, or none. */
export function fromAuthorizationValues(
  values: string | readonly string[] | null | undefined,
): Extraction {
  if (values === undefined || values === null) return { kind: 'none' };
  if (typeof values === 'string') return fromAuthorizationValue(values);
  if (values.length === 0) return { kind: 'none' };
  if (values.length > 1) return SEVERAL;
  return fromAuthorizationValue(values[0]!);
}

export function fromQuery(req: IncomingMessage): Extraction {
  return fromQueryOf(req.url);
}

/** The `access_token` query parameter of a URL (absolute, or a path with its query). */
export function fromQueryOf(url: string | undefined): Extraction {
  const q = url === undefined ? -1 : url.indexOf('?');
  if (q === -1) return { kind: 'none' };
  const values = new URLSearchParams(url!.slice(q + 1)).getAll('access_token');
  if (values.length === 0) return { kind: 'none' };
  if (values.length > 1) return { kind: 'malformed', description: SEVERAL_PLACES };
  const token = values[0]!;
  if (!isBearerToken(token)) return { kind: 'malformed', description: BAD_TOKEN };
  return { kind: 'token', token };
}

/** The default extraction: the header, and the query when allowed; both at once is malformed. */
export function extractToken(req: IncomingMessage, allowQueryToken: boolean): Extraction {
  const header = fromAuthorizationHeader(req);
  if (!allowQueryToken || header.kind === 'malformed') return header;
  return withQuery(header, fromQuery(req));
}

/** Combines what the header and the query hold: one place only. */
export function withQuery(header: Extraction, query: Extraction): Extraction {
  if (header.kind === 'malformed' || query.kind === 'none') return header;
  if (header.kind === 'token' || query.kind === 'malformed') {
    return query.kind === 'malformed' ? query : { kind: 'malformed', description: SEVERAL_PLACES };
  }
  return query;
}

/** Checks what a custom `getToken` returned. */
export function fromCustomValue(value: unknown): Extraction {
  if (value === undefined || value === null || value === '') return { kind: 'none' };
  if (typeof value !== 'string' || !isBearerToken(value)) {
    return { kind: 'malformed', description: BAD_TOKEN };
  }
  return { kind: 'token', token: value };
}
