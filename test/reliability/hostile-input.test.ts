/**
 * Hostile input, as property tests: whatever a client sends as `Authorization` (random bytes
 * Node lets through, control characters over a raw socket, latin1, odd spacing, other schemes,
 * huge values, several headers, tokens in the query and the header), m2mAuth answers 400 or 401
 * (431 from Node itself for oversized headers), never 5xx, never hangs, always with a strict
 * `WWW-Authenticate`, and makes no upstream call for anything that cannot be a token.
 * The emulator gets the same treatment on its own routes.
 *
 * Servers are started once; requests reuse keep-alive agents. `FC_SEED` replays a run.
 */
import { Agent as HttpAgent, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { connect } from 'node:net';
import express from 'express';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createM2MClient, type M2MClient } from '../../src/client/index.js';
import { type Emulator, startEmulator } from '../../src/emulator/index.js';
import { m2mAuth } from '../../src/middleware/index.js';
import { createTokenVerifier, type TokenVerifier } from '../../src/verifier/index.js';
import {
  challengePattern,
  fixedInstance,
  LeakWatch,
  type Listening,
  listen,
  parseJson,
  TOKEN_SHAPE,
  within,
} from './support.js';

if (process.env.FC_SEED) fc.configureGlobal({ seed: Number(process.env.FC_SEED) });

const REALM = 'reliability';
const CHALLENGE = challengePattern(REALM);
const HANG_MS = 5000;

const watch = new LeakWatch();
const logger = watch.logger;
let emulator: Emulator;
let minter: M2MClient;
let verifier: TokenVerifier;
let app: Listening;
let plain: Listening;
/** A live token the emulator knows: accepted alone in the header, refused in every mix. */
let realToken = '';
const agent = new HttpAgent({ keepAlive: true, maxSockets: 8 });
/** Tally of generated requests, reported at the end of the file. */
const sent = { middleware: 0, emulator: 0 };

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
}

/** One request with `node:http`, which sends an array header value as several header lines. */
function send(
  port: number,
  options: { method?: string; path?: string; headers?: Record<string, string | string[]> },
  body?: Buffer,
): Promise<Answer> {
  const headers = { ...options.headers };
  // Node sends a GET body without a length (as a second, garbage request) unless told.
  if (body !== undefined) headers['content-length'] = String(body.length);
  const exchange = new Promise<Answer>((resolve, reject) => {
    const req = httpRequest(
      {
        host: '127.0.0.1',
        port,
        method: options.method ?? 'GET',
        path: options.path ?? '/',
        headers,
        agent,
        timeout: HANG_MS,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            text: Buffer.concat(chunks).toString('utf8'),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    req.end(body);
  });
  return within(HANG_MS + 1000, `${options.method ?? 'GET'} ${options.path}`, exchange);
}

/**
 * Writes raw bytes on a fresh connection and reads everything until the server closes it (every
 * raw request asks for `Connection: close`). No half-close: Node aborts a request on FIN.
 */
function sendRaw(port: number, bytes: Buffer): Promise<string> {
  const exchange = new Promise<string>((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.write(bytes);
    });
    const chunks: Buffer[] = [];
    socket.setTimeout(HANG_MS, () => socket.destroy(new Error('raw request timed out')));
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      // The server may reset after answering a request it could not parse: keep what arrived.
      if (err.code === 'ECONNRESET' || err.code === 'EPIPE') return;
      reject(err);
    });
  });
  return within(HANG_MS + 1000, 'raw request', exchange);
}

/** The first answer in a raw HTTP/1.1 byte stream. */
function parseRawAnswer(raw: string): Answer {
  const match = /^HTTP\/1\.1 (\d{3})[^\r\n]*\r\n/.exec(raw);
  if (!match) throw new Error(`no HTTP answer in ${JSON.stringify(raw.slice(0, 200))}`);
  const end = raw.indexOf('\r\n\r\n');
  const headers: IncomingHttpHeaders = {};
  for (const line of raw.slice(match[0].length, end).split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
  }
  const length = Number(headers['content-length'] ?? 0);
  return { status: Number(match[1]), headers, text: raw.slice(end + 4, end + 4 + length) };
}

/** The credential after the scheme, as m2mAuth could read it (Node trims outer spaces and tabs). */
function afterScheme(value: string): string | undefined {
  const trimmed = value.replace(/^[ \t]+|[ \t]+$/g, '');
  return /^bearer[ \t]+(.*)$/is.exec(trimmed)?.[1];
}

/** Whether a single header value may legitimately cost an upstream call. */
function mayGoUpstream(value: string): boolean {
  const candidate = afterScheme(value);
  return candidate !== undefined && TOKEN_SHAPE.test(candidate);
}

/** A cheap assertion for hot property loops (vitest's `expect` costs ~0.3 ms a call). */
function check(condition: boolean, what: string, detail: unknown): asserts condition {
  if (!condition) throw new Error(`${what}: ${JSON.stringify(detail)}`);
}

/**
 * The checks every refusal passes: 400/401 (431 only where allowed), the strict challenge, the
 * JSON body, `no-store`; 400 means `invalid_request`; a 401 to a request that carried
 * credentials names `invalid_token` (RFC 6750 §3.1: a bare challenge only without credentials).
 */
function expectRefusal(
  answer: Answer,
  options: { credentials: boolean; allow431?: boolean; source: string },
): void {
  watch.recordAnswer(options.source, answer);
  if (answer.status === 431 && options.allow431) return;
  const seen = { source: options.source, status: answer.status, headers: answer.headers };
  check(answer.status === 400 || answer.status === 401, 'status is 400 or 401', seen);
  const challenge = answer.headers['www-authenticate'];
  check(typeof challenge === 'string' && CHALLENGE.test(challenge), 'strict challenge', seen);
  check(answer.headers['content-type'] === 'application/json', 'JSON content type', seen);
  check(answer.headers['cache-control'] === 'no-store', 'Cache-Control: no-store', seen);
  const body = parseJson(answer.text) as { error?: unknown; error_description?: unknown };
  check(
    typeof body?.error === 'string' &&
      typeof body.error_description === 'string' &&
      Object.keys(body).length === 2,
    'body is { error, error_description }',
    { ...seen, body: answer.text },
  );
  if (answer.status === 400) {
    check(challenge.includes('error="invalid_request"'), 'challenge names invalid_request', seen);
    check(body.error === 'invalid_request', 'body names invalid_request', seen);
  } else if (options.credentials) {
    check(challenge.includes('error="invalid_token"'), 'challenge names invalid_token', seen);
    check(body.error === 'invalid_token', 'body names invalid_token', seen);
  } else {
    check(challenge === `Bearer realm="${REALM}"`, 'bare challenge without credentials', seen);
  }
}

/** Runs `fn` and asserts the emulator saw no verify call (or at most one when allowed). */
async function upstreamCalls<T>(allowed: boolean, what: string, fn: () => Promise<T>): Promise<T> {
  const before = emulator.calls.verify;
  const result = await fn();
  const calls = emulator.calls.verify - before;
  if (allowed) check(calls <= 1, 'at most one verify call', { what, calls });
  else check(calls === 0, 'no verify call for what cannot be a token', { what, calls });
  return result;
}

// ---------------------------------------------------------------------------------------------
// Arbitraries
// ---------------------------------------------------------------------------------------------

/** Every character Node's client lets through in a header value: HTAB, printable ASCII, latin1. */
const sendableChar = fc
  .oneof(
    { weight: 6, arbitrary: fc.integer({ min: 0x20, max: 0x7e }) },
    { weight: 1, arbitrary: fc.constant(0x09) },
    { weight: 2, arbitrary: fc.integer({ min: 0x80, max: 0xff }) },
  )
  .map((code) => String.fromCharCode(code));
const sendable = (maxLength: number) => fc.string({ unit: sendableChar, maxLength });

const TOKEN_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-';
const tokenChar = fc.constantFrom(...TOKEN_ALPHABET);
/** Token-shaped but unknown to Clerk: the only kind allowed to go upstream. */
const tokenShaped = fc
  .string({ unit: tokenChar, minLength: 16, maxLength: 253 })
  .map((s) => `mt_${s}`);
/** Close to a token, but not one. */
const nearMiss = fc.oneof(
  fc.string({ unit: tokenChar, maxLength: 15 }).map((s) => `mt_${s}`),
  fc.string({ unit: tokenChar, minLength: 254, maxLength: 320 }).map((s) => `mt_${s}`),
  fc
    .tuple(
      tokenShaped,
      fc.constantFrom('.', '~', '+', '/', '=', '==', '%', '!', '"', '\\', 'é', '\t', ' ', ','),
      fc.nat(),
    )
    .map(([t, c, at]) => {
      const i = 3 + (at % (t.length - 2));
      return t.slice(0, i) + c + t.slice(i);
    }),
  fc
    .tuple(
      fc.constantFrom('MT_', 'Mt_', 'mt-', 'mt', 'oat_', 'ak_', 'sk_test_', 'mch_', 'jwt.', ''),
      fc.string({ unit: tokenChar, minLength: 16, maxLength: 60 }),
    )
    .map(([prefix, s]) => prefix + s),
);
const b64token = fc.stringMatching(/^[A-Za-z0-9\-._~+/]{1,80}=*$/);
const scheme = fc.oneof(
  fc.constantFrom(
    'Bearer',
    'bearer',
    'BEARER',
    'Basic',
    'Token',
    'DPoP',
    'MAC',
    'Digest',
    'Negotiate',
    'Bearer:',
    'Bearer,',
    'Bear',
    'Bearerr',
    'Béarer',
    '',
  ),
  fc.mixedCase(fc.constant('bearer')),
  sendable(12),
);
const separator = fc.constantFrom('', ' ', '  ', '     ', '\t', ' \t ', ',', '=', ':', ' , ');
const edge = fc.constantFrom('', ' ', '  ', '\t', ' \t');
const trailer = fc.oneof(
  fc.constantFrom('', '', '', ' x', ',', ', Bearer x', ' realm="x"', '\u00a0', '=', '"'),
  sendable(20),
);
const credential = fc.oneof(
  { weight: 2, arbitrary: tokenShaped },
  { weight: 3, arbitrary: nearMiss },
  { weight: 2, arbitrary: b64token },
  { weight: 2, arbitrary: sendable(300) },
  { weight: 1, arbitrary: fc.constant('') },
);
/** Authorization values built from parts, or plain random ones. */
const authorizationValue = fc.oneof(
  {
    weight: 4,
    arbitrary: fc
      .tuple(edge, scheme, separator, credential, trailer, edge)
      .map((parts) => parts.join('')),
  },
  { weight: 1, arbitrary: sendable(400) },
);

// ---------------------------------------------------------------------------------------------
// Set-up
// ---------------------------------------------------------------------------------------------

beforeAll(async () => {
  const instance = fixedInstance();
  watch.secret('instance secret key', instance.instanceSecretKey!);
  for (const m of instance.machines) watch.secret(`${m.name} machine secret key`, m.secretKey);
  emulator = await startEmulator({ ...instance, logger });
  minter = createM2MClient({
    apiUrl: emulator.url,
    machineSecretKey: emulator.machines.caller!.secretKey,
    logger,
  });
  realToken = watch.secret('minted token', (await minter.createToken()).token);
  verifier = createTokenVerifier({
    apiUrl: emulator.url,
    secretKey: emulator.instanceSecretKey,
    anyMachine: true,
    // Header parsing is under test here; the upstream budget has its own flood test.
    upstreamBudget: false,
    retry: false,
    timeoutMs: 2000,
    logger,
  });

  const ok = (req: express.Request, res: express.Response) => {
    res.json({ id: req.m2m?.id });
  };
  const web = express();
  web.get('/h', m2mAuth({ verifier, realm: REALM, logger }), ok);
  web.get('/q', m2mAuth({ verifier, realm: REALM, logger, allowQueryToken: true }), ok);
  // Optional auth: no credentials pass, but bad credentials are still refused.
  web.get('/o', m2mAuth({ verifier, realm: REALM, logger, required: false }), ok);
  app = await listen(web);

  const bare = m2mAuth({ verifier, realm: REALM, logger });
  plain = await listen((req, res) =>
    bare(req, res, (err) => {
      res.statusCode = err === undefined ? 200 : 500;
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(err === undefined ? { id: req.m2m?.id } : { error: 'next(err)' }));
    }),
  );
});

afterAll(async () => {
  agent.destroy();
  await app?.close();
  await plain?.close();
  await verifier?.close();
  await minter?.close();
  await emulator?.close();
});

// ---------------------------------------------------------------------------------------------
// m2mAuth
// ---------------------------------------------------------------------------------------------

describe('m2mAuth under hostile Authorization headers', () => {
  test('controls: the real token alone passes, no header gets a bare 401', async () => {
    for (const port of [app.port, plain.port]) {
      const path = port === app.port ? '/h' : '/';
      const ok = await send(port, { path, headers: { authorization: `Bearer ${realToken}` } });
      watch.recordAnswer('control 200', ok);
      expect(ok.status).toBe(200);
      const none = await send(port, { path });
      expectRefusal(none, { credentials: false, source: 'no header' });
    }
    const raw = parseRawAnswer(
      await sendRaw(
        app.port,
        Buffer.from(
          `GET /h HTTP/1.1\r\nHost: x\r\nAuthorization: bEaReR   ${realToken}\r\nConnection: close\r\n\r\n`,
          'latin1',
        ),
      ),
    );
    expect(raw.status).toBe(200);
  });

  test('any sendable Authorization value (required or optional auth): 400/401, strict challenge, no upstream call unless token-shaped', async () => {
    await fc.assert(
      fc.asyncProperty(
        authorizationValue,
        fc.constantFrom('/h', '/q', '/o'),
        async (value, path) => {
          sent.middleware++;
          const answer = await upstreamCalls(mayGoUpstream(value), JSON.stringify(value), () =>
            send(app.port, { path, headers: { authorization: value } }),
          );
          expectRefusal(answer, { credentials: true, source: 'random Authorization' });
          // A well-formed Bearer header with a token-shaped unknown token is a plain 401.
          if (/^[ \t]*bearer +mt_[A-Za-z0-9_-]{16,253}[ \t]*$/i.test(value)) {
            check(answer.status === 401, 'a well-formed unknown token gets 401', value);
          }
        },
      ),
      { numRuns: 800 },
    );
  }, 60_000);

  test('the same on a plain node:http server', async () => {
    await fc.assert(
      fc.asyncProperty(authorizationValue, async (value) => {
        sent.middleware++;
        const answer = await upstreamCalls(mayGoUpstream(value), JSON.stringify(value), () =>
          send(plain.port, { path: '/', headers: { authorization: value } }),
        );
        expectRefusal(answer, { credentials: true, source: 'random Authorization (node:http)' });
      }),
      { numRuns: 300 },
    );
  }, 60_000);

  test('huge values, up to and beyond the 16 KiB header limit: 400/401, or 431 from Node', async () => {
    const huge = fc.record({
      prefix: fc.constantFrom('', 'Bearer ', 'bearer mt_', 'Bearer mt_', 'Basic '),
      pattern: fc.oneof(fc.string({ unit: tokenChar, minLength: 1, maxLength: 16 }), sendable(16)),
      length: fc.oneof(
        fc.integer({ min: 250, max: 4000 }),
        fc.integer({ min: 15_000, max: 17_500 }),
        fc.integer({ min: 17_500, max: 64_000 }),
      ),
    });
    await fc.assert(
      fc.asyncProperty(huge, async ({ prefix, pattern, length }) => {
        sent.middleware++;
        const unit = pattern === '' ? 'A' : pattern;
        const value = (prefix + unit.repeat(Math.ceil(length / unit.length))).slice(0, length);
        const answer = await upstreamCalls(mayGoUpstream(value), `${length} bytes`, () =>
          send(app.port, { path: '/h', headers: { authorization: value } }),
        );
        // Node's parser skips the whitespace around a header value (OWS) without counting it,
        // so only a value whose content passes the limit is sure to get 431 (a value of 17 500
        // tabs got 401 in CI: fast-check seed 941234098).
        if (value.trim().length >= 16_384) check(answer.status === 431, '431 past 16 KiB', length);
        if (length <= 16_000) check(answer.status !== 431, 'no 431 under 16 KiB', length);
        expectRefusal(answer, { credentials: true, allow431: true, source: 'huge Authorization' });
      }),
      { numRuns: 80 },
    );
  }, 60_000);

  test('several Authorization headers at once: always 400 invalid_request, never upstream', async () => {
    const one = fc.oneof(
      fc.constant(() => `Bearer ${realToken}`),
      tokenShaped.map((t) => () => `Bearer ${t}`),
      authorizationValue.map((v) => () => v),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.array(one, { minLength: 2, maxLength: 5 }),
        fc.constantFrom('app /h', 'app /q', 'plain'),
        async (makers, where) => {
          sent.middleware++;
          const values = makers.map((make) => make());
          const port = where === 'plain' ? plain.port : app.port;
          const path = where === 'plain' ? '/' : where.slice(4);
          const answer = await upstreamCalls(false, `${values.length} headers`, () =>
            send(port, { path, headers: { authorization: values } }),
          );
          check(answer.status === 400, 'several headers get 400', {
            values,
            status: answer.status,
          });
          expectRefusal(answer, { credentials: true, source: 'several Authorization headers' });
        },
      ),
      { numRuns: 300 },
    );
  }, 60_000);

  test('a token in the query and/or the header, with allowQueryToken on and off', async () => {
    const value = fc.oneof(
      fc.constant('<real>'),
      tokenShaped,
      nearMiss,
      sendable(40),
      fc.constant(''),
    );
    const name = fc.constantFrom(
      'access_token',
      'access_token',
      'access_token',
      'ACCESS_TOKEN',
      'access_token[]',
      'access%5Ftoken',
      'x',
    );
    const scenario = fc.record({
      allowQuery: fc.boolean(),
      header: fc.option(
        fc.oneof(
          fc.constant('<real>'),
          tokenShaped.map((t) => `Bearer ${t}`),
          authorizationValue,
        ),
        { nil: undefined },
      ),
      params: fc.array(fc.tuple(name, value), { maxLength: 4 }),
      junk: fc.constantFrom('', '', '&', '&&', '&=', '&%', '&%zz', '&access_token', '#frag'),
    });
    await fc.assert(
      fc.asyncProperty(scenario, async ({ allowQuery, header, params, junk }) => {
        sent.middleware++;
        const real = (v: string) => (v === '<real>' ? realToken : v);
        const query = params.map(([k, v]) => `${k}=${encodeURIComponent(real(v))}`).join('&');
        const path = `${allowQuery ? '/q' : '/h'}?${query}${junk}`;
        const headerValue = header === '<real>' ? `Bearer ${realToken}` : header;
        const headers: Record<string, string> =
          headerValue === undefined ? {} : { authorization: headerValue };

        // What the server gets, read the standard way. Node's client sends a `#…` in the path as
        // is, so the server sees it as part of the last value (which then is no token).
        const sentQuery = path.slice(path.indexOf('?') + 1);
        const tokens = new URLSearchParams(sentQuery).getAll('access_token');
        let expected: 'ok' | 'bad-request' | 'refused' | 'bare' = 'refused';
        let upstream = false;
        if (!allowQuery || tokens.length === 0) {
          if (headerValue === undefined) expected = 'bare';
          else if (header === '<real>') expected = 'ok';
          // The real token is a token: once its cached answer expires it is asked again.
          upstream = headerValue !== undefined && mayGoUpstream(headerValue);
        } else if (headerValue !== undefined || tokens.length > 1) {
          expected = 'bad-request';
        } else if (tokens[0] === realToken) {
          expected = 'ok';
          upstream = true;
        } else {
          upstream = TOKEN_SHAPE.test(tokens[0]!);
        }

        const answer = await upstreamCalls(upstream, path, () => send(app.port, { path, headers }));
        if (expected === 'ok') {
          watch.recordAnswer('query control 200', answer);
          check(answer.status === 200, 'the real token alone passes', { path, headers });
          return;
        }
        if (expected === 'bad-request') {
          check(answer.status === 400, 'token in several places gets 400', { path, headers });
        }
        expectRefusal(answer, {
          credentials: expected !== 'bare',
          source: 'token in query and header',
        });
      }),
      { numRuns: 600 },
    );
  }, 60_000);

  test('raw bytes in the header value, control characters included (raw socket)', async () => {
    const bytes = fc
      .uint8Array({ maxLength: 120 })
      .map((a) => Buffer.from(a.filter((b) => b !== 0x0d && b !== 0x0a)));
    const rawValue = fc.oneof(
      bytes,
      fc
        .tuple(fc.constantFrom('Bearer ', 'bearer  ', 'Bearer mt_', ''), bytes, tokenShaped)
        .map(([p, b, t]) => Buffer.concat([Buffer.from(p + t.slice(0, 20), 'latin1'), b])),
    );
    await fc.assert(
      fc.asyncProperty(rawValue, fc.constantFrom('/h', '/q'), async (value, path) => {
        sent.middleware++;
        const request = Buffer.concat([
          Buffer.from(`GET ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: `, 'latin1'),
          value,
          Buffer.from('\r\nConnection: close\r\n\r\n', 'latin1'),
        ]);
        const text = value.toString('latin1');
        const answer = await upstreamCalls(mayGoUpstream(text), JSON.stringify(text), async () =>
          parseRawAnswer(await sendRaw(app.port, request)),
        );
        if (answer.headers['content-type'] === undefined) {
          // Node's parser refused the bytes before any middleware ran.
          check(answer.status === 400, "Node's own refusal is a 400", text);
          watch.recordAnswer('raw, refused by Node', answer);
        } else {
          expectRefusal(answer, { credentials: true, source: 'raw header bytes' });
        }
      }),
      { numRuns: 300 },
    );
  }, 60_000);

  test('CR/LF smuggling: folded, split and injected Authorization lines are refused', async () => {
    const part = fc.oneof(
      fc.constant('<real>'),
      tokenShaped.map((t) => `Bearer ${t}`),
      nearMiss.map((t) => `Bearer ${t}`),
    );
    const joiner = fc.constantFrom(
      '\r\nAuthorization: ',
      '\r\nauthorization:',
      '\nAuthorization: ',
      '\rAuthorization: ',
      '\r\n ',
      '\r\n\t',
      '\n',
      '\r',
    );
    await fc.assert(
      fc.asyncProperty(
        part,
        fc.array(fc.tuple(joiner, part), { minLength: 1, maxLength: 3 }),
        async (first, rest) => {
          sent.middleware++;
          const real = (v: string) => (v === '<real>' ? `Bearer ${realToken}` : v);
          const value = real(first) + rest.map(([j, p]) => j + real(p)).join('');
          const request = Buffer.from(
            `GET /h HTTP/1.1\r\nHost: x\r\nAuthorization: ${value}\r\nConnection: close\r\n\r\n`,
            'latin1',
          );
          const answer = await upstreamCalls(false, JSON.stringify(value), async () =>
            parseRawAnswer(await sendRaw(app.port, request)),
          );
          if (answer.headers['content-type'] === undefined) {
            check(answer.status === 400, "Node's own refusal is a 400", value);
            watch.recordAnswer('smuggling, refused by Node', answer);
          } else {
            check(answer.status === 400, 'smuggled headers get 400', value);
            expectRefusal(answer, { credentials: true, source: 'CR/LF smuggling' });
          }
        },
      ),
      { numRuns: 150 },
    );
  }, 60_000);
});

// ---------------------------------------------------------------------------------------------
// Emulator
// ---------------------------------------------------------------------------------------------

/** A Clerk error answer: 4xx, `application/json` exactly, `{ errors: [{ message, long_message, code }] }`. */
function expectClerkAnswer(answer: Answer, method: string, source: string): void {
  // Only error answers are recorded: a 201 to a create rightly carries a token string.
  if (answer.status >= 400) watch.recordAnswer(source, answer);
  const seen = { source, status: answer.status, headers: answer.headers, body: answer.text };
  check(answer.status >= 200 && answer.status < 500, 'a 2xx or a 4xx, never 5xx', seen);
  check(answer.headers['content-type'] === 'application/json', 'exactly application/json', seen);
  if (method === 'HEAD') return;
  const body = parseJson(answer.text) as
    | { errors?: Array<Record<string, unknown>>; [key: string]: unknown }
    | undefined;
  check(body !== undefined, 'a JSON body', seen);
  if (answer.status >= 400) {
    const first = body.errors?.[0];
    check(
      Array.isArray(body.errors) &&
        typeof first?.message === 'string' &&
        typeof first.long_message === 'string' &&
        typeof first.code === 'string',
      'a Clerk error body { errors: [{ message, long_message, code }] }',
      seen,
    );
  }
}

describe('the emulator under hostile requests', () => {
  const encoded = (s: string) => encodeURIComponent(s);
  const segment = fc.oneof(
    fc.constantFrom(
      'm2m_tokens',
      'verify',
      'revoke',
      'jwks',
      'v1',
      '',
      '..',
      '.',
      '%00',
      '%ZZ',
      '%2F',
    ),
    fc.string({ maxLength: 12 }).map(encoded),
    fc
      .string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: 32, maxLength: 32 })
      .map((h) => `mt_${h}`),
  );
  const path = fc.oneof(
    fc.constantFrom(
      '/m2m_tokens',
      '/v1/m2m_tokens',
      '/m2m_tokens/verify',
      '/v1/m2m_tokens/verify',
      '/jwks',
      '/v1/jwks',
      '/',
      '/v1',
      '//m2m_tokens',
      '/m2m_tokens/',
      '/M2M_TOKENS',
    ),
    segment.map((s) => `/m2m_tokens/${s}/revoke`),
    fc.array(segment, { minLength: 1, maxLength: 4 }).map((s) => `/${s.join('/')}`),
  );
  const queryValue = fc.oneof(
    fc.constantFrom('true', 'false', '0', '-1', '1e3', '101', '99999999999999999999', '', 'mch_x'),
    fc.string({ maxLength: 30 }),
  );
  const query = fc.array(
    fc.tuple(
      fc.oneof(
        fc.constantFrom('subject', 'limit', 'offset', 'revoked', 'expired', 'x'),
        fc.string({ maxLength: 8 }),
      ),
      queryValue,
    ),
    { maxLength: 4 },
  );
  const contentType = fc.option(
    fc.constantFrom(
      'application/json',
      'application/json; charset=utf-8',
      'APPLICATION/JSON',
      ' application/json ',
      'text/plain',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=x',
      'application/jsonx',
      ';',
      '',
    ),
    { nil: undefined },
  );
  const json = (arb: fc.Arbitrary<unknown>) => arb.map((v) => Buffer.from(JSON.stringify(v) ?? ''));
  const anyJson = fc.jsonValue({ maxDepth: 4 });
  const body = fc.option(
    fc.oneof(
      json(anyJson),
      json(fc.dictionary(fc.string({ maxLength: 10 }), anyJson, { maxKeys: 4 })),
      json(fc.record({ token: anyJson, secret: anyJson }, { requiredKeys: [] })),
      json(
        fc.record(
          {
            seconds_until_expiration: fc.oneof(anyJson, fc.double(), fc.integer()),
            claims: anyJson,
            token_format: fc.oneof(fc.constantFrom('opaque', 'jwt', 'JWT'), anyJson),
            min_remaining_ttl_seconds: fc.oneof(fc.integer(), fc.double(), anyJson),
          },
          { requiredKeys: [] },
        ),
      ),
      json(fc.record({ revocation_reason: anyJson }, { requiredKeys: [] })),
      fc.string({ maxLength: 200 }).map((s) => Buffer.from(s)),
      fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)),
    ),
    { nil: undefined },
  );

  test('generated methods, paths, queries, content types, keys and bodies: JSON, never 5xx', async () => {
    const keys = () => [
      undefined,
      `Bearer ${emulator.instanceSecretKey}`,
      `Bearer ${emulator.machines.caller!.secretKey}`,
      `Bearer ${emulator.machines.api!.secretKey}`,
      'Bearer ak_0123456789abcdef0123456789abcdef',
      'Bearer sk_test_unknown',
      'Basic Zm9vOmJhcg==',
      'Bearer',
      '',
      `bearer    ${emulator.instanceSecretKey}   `,
    ];
    const requestArb = fc.record({
      method: fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'HEAD'),
      path,
      query,
      contentType,
      key: fc.nat({ max: 9 }),
      body,
    });
    await fc.assert(
      fc.asyncProperty(requestArb, async (r) => {
        sent.emulator++;
        const search = r.query.map(([k, v]) => `${encoded(k)}=${encoded(v)}`).join('&');
        const target = search === '' ? r.path : `${r.path}?${search}`;
        const headers: Record<string, string> = {};
        const authorization = keys()[r.key];
        if (authorization !== undefined) headers.authorization = authorization;
        if (r.contentType !== undefined) headers['content-type'] = r.contentType;
        const answer = await send(
          Number(new URL(emulator.url).port),
          { method: r.method, path: target, headers },
          r.body,
        );
        expectClerkAnswer(answer, r.method, `emulator ${r.method} ${target}`);
      }),
      { numRuns: 500 },
    );
  }, 60_000);

  test('a body over the 1 MiB limit gets a Clerk 413', async () => {
    const answer = await send(
      Number(new URL(emulator.url).port),
      {
        method: 'POST',
        path: '/m2m_tokens/verify',
        headers: {
          authorization: `Bearer ${emulator.instanceSecretKey}`,
          'content-type': 'application/json',
        },
      },
      Buffer.alloc(1024 * 1024 + 10, 0x20),
    );
    expect(answer.status).toBe(413);
    expectClerkAnswer(answer, 'POST', 'emulator 413');
  });

  test('deeply nested JSON in a create body (claims) gets a 4xx, not a 500', async () => {
    const nested = fc.record({
      depth: fc.integer({ min: 10, max: 50_000 }),
      kind: fc.constantFrom('object', 'array'),
      field: fc.constantFrom('claims', 'token_format', 'seconds_until_expiration'),
    });
    await fc.assert(
      fc.asyncProperty(nested, async ({ depth, kind, field }) => {
        sent.emulator++;
        const [open, close] = kind === 'object' ? ['{"a":', '}'] : ['[', ']'];
        const inner = `${open.repeat(depth)}1${close.repeat(depth)}`;
        const value = kind === 'array' && field === 'claims' ? `{"a":${inner}}` : inner;
        const answer = await send(
          Number(new URL(emulator.url).port),
          {
            method: 'POST',
            path: '/m2m_tokens',
            headers: {
              authorization: `Bearer ${emulator.machines.caller!.secretKey}`,
              'content-type': 'application/json',
            },
          },
          Buffer.from(`{"${field}":${value}}`),
        );
        expectClerkAnswer(answer, 'POST', `create with ${field} nested ${depth} deep (${kind})`);
      }),
      { numRuns: 30 },
    );
  }, 60_000);
});

// ---------------------------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------------------------

test('no token or secret key appears in logs, answers or stats', () => {
  watch.record('verifier.stats()', verifier.stats());
  const self = watch.selfCheck();
  expect(self.missed).toEqual([]);
  expect(self.secrets).toBeGreaterThanOrEqual(5);
  expect(self.logLines).toBeGreaterThan(0);
  expect(self.records).toBeGreaterThan(0);
  expect(watch.findLeaks()).toEqual([]);
  // The generated requests, for the report.
  expect(sent.middleware).toBeGreaterThan(2000);
  process.stdout.write(
    `hostile-input: ${sent.middleware} generated requests to m2mAuth, ${sent.emulator} to the emulator\n`,
  );
});
