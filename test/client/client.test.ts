import { readFileSync } from 'node:fs';
import { Agent } from 'undici';
import { describe, expect, it } from 'vitest';
import {
  AuthenticationError,
  BadRequestError,
  ConflictError,
  createM2MClient,
  ForbiddenError,
  M2MApiError,
  type M2MClient,
  M2MNetworkError,
  NotFoundError,
  RateLimitError,
  type RevokedTokenEvent,
  ServerError,
} from '../../src/client/index.js';
import { M2MConfigError } from '../../src/shared/config-error.js';
import { refusedUrl, type ScriptedServer } from '../helpers/scripted-server.js';
import {
  clerkError,
  INSTANCE_KEY,
  isolateClerkEnv,
  MACHINE_KEY,
  OTHER_MACHINE_KEY,
  rejection,
  SCOPE,
  SUBJECT,
  TOKEN,
  TOKEN_ID,
  tokenJson,
  useCleanup,
  useScriptedClient,
} from './fixtures.js';

isolateClerkEnv();
const track = useCleanup();
const PACKAGE_VERSION = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  }
).version;

const rig = useScriptedClient({ machineSecretKey: MACHINE_KEY, retry: false });
const client = rig.client;

const OPERATIONS = {
  create: (c: M2MClient, extra: object = {}) => c.createToken({ ...extra }),
  list: (c: M2MClient, extra: object = {}) => c.listTokens({ subject: SUBJECT, ...extra }),
  revoke: (c: M2MClient, extra: object = {}) => c.revokeToken({ m2mTokenId: TOKEN_ID, ...extra }),
  verify: (c: M2MClient, extra: object = {}) => c.verifyToken({ token: TOKEN, ...extra }),
} as const;
type Operation = keyof typeof OPERATIONS;

/** The success answer each operation expects. */
function okReply(operation: Operation) {
  if (operation === 'create') return { status: 201, body: tokenJson({ token: TOKEN }) };
  if (operation === 'list') return { body: { m2m_tokens: [tokenJson()], total_count: 1 } };
  if (operation === 'revoke') {
    return { body: tokenJson({ revoked: true, revocation_reason: 'rotated' }) };
  }
  return { body: tokenJson() };
}

describe('requests', () => {
  it('create posts the default body exactly', async () => {
    rig.server.reply(okReply('create'));
    await client().createToken();
    const [req] = rig.server.requests;
    expect(req?.method).toBe('POST');
    expect(req?.url).toBe('/m2m_tokens');
    expect(req?.rawBody).toBe(
      '{"seconds_until_expiration":null,"claims":null,"token_format":"opaque"}',
    );
    expect(req?.headers['content-type']).toBe('application/json');
  });

  it('create sends every parameter, leaving claim keys as given', async () => {
    rig.server.reply(okReply('create'));
    await client().createToken({
      secondsUntilExpiration: 3600,
      claims: { camelKey: { innerKey: [1, 'two'] }, snake_key: true },
      tokenFormat: 'jwt',
      minRemainingTtlSeconds: 240,
    });
    expect(rig.server.requests[0]?.body).toStrictEqual({
      seconds_until_expiration: 3600,
      claims: { camelKey: { innerKey: [1, 'two'] }, snake_key: true },
      token_format: 'jwt',
      min_remaining_ttl_seconds: 240,
    });
  });

  it('create sends min_remaining_ttl_seconds: 0 when it is given', async () => {
    rig.server.reply(okReply('create'));
    await client().createToken({ minRemainingTtlSeconds: 0 });
    expect(rig.server.requests[0]?.body).toStrictEqual({
      seconds_until_expiration: null,
      claims: null,
      token_format: 'opaque',
      min_remaining_ttl_seconds: 0,
    });
  });

  it('revoke posts {"revocation_reason":null} by default, and the reason when given', async () => {
    rig.server.reply(okReply('revoke'), okReply('revoke'));
    await client().revokeToken({ m2mTokenId: TOKEN_ID });
    await client().revokeToken({ m2mTokenId: TOKEN_ID, revocationReason: 'rotated' });
    const [first, second] = rig.server.requests;
    expect(first?.method).toBe('POST');
    expect(first?.url).toBe(`/m2m_tokens/${TOKEN_ID}/revoke`);
    expect(first?.rawBody).toBe('{"revocation_reason":null}');
    expect(first?.headers['content-type']).toBe('application/json');
    expect(second?.rawBody).toBe('{"revocation_reason":"rotated"}');
  });

  it('revoke escapes the token id in the path', async () => {
    rig.server.reply(okReply('revoke'));
    await client().revokeToken({ m2mTokenId: 'mt_a/b?c' });
    expect(rig.server.requests[0]?.url).toBe('/m2m_tokens/mt_a%2Fb%3Fc/revoke');
  });

  it('verify posts {"token":"…"} exactly', async () => {
    rig.server.reply(okReply('verify'));
    await client().verifyToken({ token: TOKEN });
    const [req] = rig.server.requests;
    expect(req?.method).toBe('POST');
    expect(req?.url).toBe('/m2m_tokens/verify');
    expect(req?.rawBody).toBe(`{"token":"${TOKEN}"}`);
  });

  it('list sends only the subject by default, as a GET without a body', async () => {
    rig.server.reply(okReply('list'));
    await client().listTokens({ subject: SUBJECT });
    const [req] = rig.server.requests;
    expect(req?.method).toBe('GET');
    expect(req?.path).toBe('/m2m_tokens');
    expect([...(req?.query.entries() ?? [])]).toEqual([['subject', SUBJECT]]);
    expect(req?.rawBody).toBe('');
    expect(req?.headers['content-type']).toBeUndefined();
  });

  it('list sends revoked, expired, limit and offset when given, even false and 0', async () => {
    rig.server.reply(okReply('list'));
    await client().listTokens({
      subject: SUBJECT,
      revoked: true,
      expired: false,
      limit: 5,
      offset: 0,
    });
    const query = rig.server.requests[0]?.query;
    expect(Object.fromEntries(query?.entries() ?? [])).toEqual({
      subject: SUBJECT,
      revoked: 'true',
      expired: 'false',
      limit: '5',
      offset: '0',
    });
  });

  it.each(['create', 'list', 'revoke', 'verify'] as const)(
    '%s sends the bearer key, the API version and the user agent',
    async (operation) => {
      rig.server.reply(okReply(operation));
      await OPERATIONS[operation](client());
      const headers = rig.server.requests[0]?.headers;
      expect(headers?.authorization).toBe(`Bearer ${MACHINE_KEY}`);
      expect(headers?.['clerk-api-version']).toBe('2026-05-12');
      expect(headers?.['user-agent']).toBe(`m2m-guard/${PACKAGE_VERSION}`);
    },
  );

  it('apiVersion and userAgent override the defaults', async () => {
    rig.server.reply(okReply('verify'));
    await client({ apiVersion: '2025-11-10', userAgent: 'billing-service/3.1' }).verifyToken({
      token: TOKEN,
    });
    const headers = rig.server.requests[0]?.headers;
    expect(headers?.['clerk-api-version']).toBe('2025-11-10');
    expect(headers?.['user-agent']).toBe('billing-service/3.1');
  });

  it.each([
    ['/v1', '/v1'],
    ['/v1/', '/v1'],
    ['/proxy/clerk', '/proxy/clerk'],
  ])('keeps the path prefix %s of apiUrl', async (prefix, expected) => {
    rig.server.replyAlways(okReply('verify'));
    const c = client({ apiUrl: `${rig.server.url}${prefix}` });
    await c.verifyToken({ token: TOKEN });
    rig.server.reply(okReply('list'));
    await c.listTokens({ subject: SUBJECT });
    expect(rig.server.requests.map((r) => r.path)).toEqual([
      `${expected}/m2m_tokens/verify`,
      `${expected}/m2m_tokens`,
    ]);
  });
});

describe('keys', () => {
  it.each(['list', 'revoke', 'verify'] as const)(
    '%s uses the per-call key, then the machine key, then the instance key',
    async (operation) => {
      rig.server.replyAlways(okReply(operation));
      const both = client({ secretKey: INSTANCE_KEY });
      const instanceOnly = client({ machineSecretKey: undefined, secretKey: INSTANCE_KEY });
      await OPERATIONS[operation](both, { machineSecretKey: OTHER_MACHINE_KEY });
      await OPERATIONS[operation](both);
      await OPERATIONS[operation](instanceOnly);
      await OPERATIONS[operation](instanceOnly, { machineSecretKey: OTHER_MACHINE_KEY });
      expect(rig.server.requests.map((r) => r.headers.authorization)).toEqual([
        `Bearer ${OTHER_MACHINE_KEY}`,
        `Bearer ${MACHINE_KEY}`,
        `Bearer ${INSTANCE_KEY}`,
        `Bearer ${OTHER_MACHINE_KEY}`,
      ]);
    },
  );

  it('create uses the per-call key, then the machine key, never the instance key', async () => {
    rig.server.replyAlways(okReply('create'));
    const both = client({ secretKey: INSTANCE_KEY });
    const instanceOnly = client({ machineSecretKey: undefined, secretKey: INSTANCE_KEY });
    await both.createToken({ machineSecretKey: OTHER_MACHINE_KEY });
    await both.createToken();
    await instanceOnly.createToken({ machineSecretKey: OTHER_MACHINE_KEY });
    expect(rig.server.requests.map((r) => r.headers.authorization)).toEqual([
      `Bearer ${OTHER_MACHINE_KEY}`,
      `Bearer ${MACHINE_KEY}`,
      `Bearer ${OTHER_MACHINE_KEY}`,
    ]);
  });

  it('create without a machine key fails before any request', async () => {
    const instanceOnly = client({ machineSecretKey: undefined, secretKey: INSTANCE_KEY });
    const err = await rejection(instanceOnly.createToken({ claims: { a: 1 } }));
    expect(err).toBeInstanceOf(M2MConfigError);
    expect((err as M2MConfigError).option).toBe('machineSecretKey');
    expect((err as Error).message).not.toContain(INSTANCE_KEY);
    expect(rig.server.requests).toHaveLength(0);
  });

  it.each(['create', 'list', 'revoke', 'verify'] as const)(
    '%s without any key fails before any request',
    async (operation) => {
      const keyless = client({ machineSecretKey: undefined });
      expect(keyless.verifyIdentity).toBe('none');
      const err = await rejection(OPERATIONS[operation](keyless));
      expect(err).toBeInstanceOf(M2MConfigError);
      expect((err as M2MConfigError).option).toBe('machineSecretKey');
      expect(rig.server.requests).toHaveLength(0);
    },
  );

  it.each(['create', 'list', 'revoke', 'verify'] as const)(
    '%s rejects a per-call key that is not a machine key, without sending or echoing it',
    async (operation) => {
      const err = await rejection(
        OPERATIONS[operation](client(), { machineSecretKey: INSTANCE_KEY }),
      );
      expect(err).toBeInstanceOf(M2MConfigError);
      expect((err as M2MConfigError).option).toBe('machineSecretKey');
      expect((err as Error).message).not.toContain(INSTANCE_KEY);
      expect(rig.server.requests).toHaveLength(0);
    },
  );

  it.each([
    ['list', 'subject', () => client().listTokens({ subject: '' })],
    ['list', 'subject', () => client().listTokens({} as never)],
    ['revoke', 'm2mTokenId', () => client().revokeToken({ m2mTokenId: '' })],
    ['verify', 'token', () => client().verifyToken({ token: '' })],
    ['verify', 'token', () => client().verifyToken({ token: 42 } as never)],
  ])('%s rejects a missing %s before any request', async (_op, option, call) => {
    const err = await rejection(call());
    expect(err).toBeInstanceOf(M2MConfigError);
    expect((err as M2MConfigError).option).toBe(option);
    expect(rig.server.requests).toHaveLength(0);
  });
});

describe('results', () => {
  const parsed = {
    id: TOKEN_ID,
    subject: SUBJECT,
    scopes: [SCOPE],
    claims: { important_metadata: 'Some useful data' },
    revoked: false,
    revocationReason: null,
    expired: false,
    expiration: 1716886800000,
    lastUsedAt: 1716883300000,
    createdAt: 1716883200000,
    updatedAt: 1716883400000,
  };

  it('create returns the camelCase token with its token string', async () => {
    rig.server.reply(okReply('create'));
    expect(await client().createToken()).toStrictEqual({ ...parsed, token: TOKEN });
  });

  it('verify returns the camelCase token and drops a token string the server sent', async () => {
    rig.server.reply({ body: tokenJson({ token: TOKEN }) });
    const result = await client().verifyToken({ token: TOKEN });
    expect(result).toStrictEqual(parsed);
    expect('token' in result).toBe(false);
    expect(JSON.stringify(result)).not.toContain(TOKEN);
  });

  it('revoke returns the revoked token', async () => {
    rig.server.reply(okReply('revoke'));
    expect(await client().revokeToken({ m2mTokenId: TOKEN_ID })).toStrictEqual({
      ...parsed,
      revoked: true,
      revocationReason: 'rotated',
    });
  });

  it('list returns { data, totalCount }', async () => {
    const second = tokenJson({
      id: 'mt_0123456789abcdef0123456789abcdef',
      claims: null,
      scopes: [],
      expiration: null,
      last_used_at: null,
    });
    rig.server.reply({ body: { m2m_tokens: [tokenJson(), second], total_count: 7 } });
    expect(await client().listTokens({ subject: SUBJECT, limit: 2 })).toStrictEqual({
      data: [
        parsed,
        {
          ...parsed,
          id: 'mt_0123456789abcdef0123456789abcdef',
          claims: null,
          scopes: [],
          expiration: null,
          lastUsedAt: null,
        },
      ],
      totalCount: 7,
    });
  });

  it('list accepts an empty page', async () => {
    rig.server.reply({ body: { m2m_tokens: [], total_count: 0 } });
    expect(await client().listTokens({ subject: SUBJECT })).toStrictEqual({
      data: [],
      totalCount: 0,
    });
  });

  it('fills optional fields the server left out', async () => {
    const { scopes: _s, claims: _c, last_used_at: _l, ...minimal } = tokenJson();
    rig.server.reply({ body: minimal });
    const result = await client().verifyToken({ token: TOKEN });
    expect(result.scopes).toEqual([]);
    expect(result.claims).toBeNull();
    expect(result.lastUsedAt).toBeNull();
  });

  describe('invalid_response', () => {
    async function invalid(operation: Operation, reply: Parameters<ScriptedServer['reply']>[0]) {
      rig.server.reply(reply);
      const err = await rejection(OPERATIONS[operation](client()));
      expect(err).toBeInstanceOf(M2MApiError);
      expect((err as M2MApiError).code).toBe('invalid_response');
      expect(rig.server.requests).toHaveLength(1);
      return err as M2MApiError;
    }

    it.each(['create', 'list', 'revoke', 'verify'] as const)(
      '%s: a 2xx body that is not JSON',
      async (operation) => {
        const err = await invalid(operation, {
          headers: { 'content-type': 'text/html' },
          body: '<html>Gateway</html>',
        });
        expect(err.status).toBe(200);
        expect(err).not.toBeInstanceOf(ServerError);
      },
    );

    it.each(['create', 'list', 'revoke', 'verify'] as const)(
      '%s: a 2xx JSON body of the wrong shape ({"ok":true})',
      async (operation) => {
        await invalid(operation, { body: { ok: true } });
      },
    );

    it.each(['create', 'list', 'revoke', 'verify'] as const)(
      '%s: an empty 2xx body',
      async (op) => {
        await invalid(op, { status: 200 });
      },
    );

    it.each([
      ['revoked: "no"', { revoked: 'no' }],
      ['expired: 1', { expired: 1 }],
      ['a wrong object', { object: 'api_key' }],
      ['an id without mt_', { id: 'tok_123' }],
      ['a subject without mch_', { subject: 'user_123' }],
      ['scopes that are not strings', { scopes: [1, 2] }],
      ['claims that are an array', { claims: ['a'] }],
      ['expiration as a string', { expiration: '1716886800000' }],
      ['created_at missing', { created_at: undefined }],
      ['updated_at null', { updated_at: null }],
      ['revocation_reason as a number', { revocation_reason: 5 }],
    ])('verify: a token with %s', async (_label, overrides) => {
      await invalid('verify', { body: tokenJson(overrides) });
    });

    it('create: a token that is not a string', async () => {
      await invalid('create', { status: 201, body: tokenJson({ token: 12345 }) });
    });

    it('create: an answer without a token string', async () => {
      const err = await invalid('create', { status: 201, body: tokenJson() });
      expect(err.status).toBe(201);
    });

    it.each([
      ['m2m_tokens not an array', { m2m_tokens: {}, total_count: 0 }],
      ['total_count missing', { m2m_tokens: [] }],
      ['total_count as a string', { m2m_tokens: [], total_count: '1' }],
      [
        'an item of the wrong shape',
        { m2m_tokens: [tokenJson({ revoked: 'no' })], total_count: 1 },
      ],
      ['an array', [tokenJson()]],
    ])('list: %s', async (_label, body) => {
      await invalid('list', { body });
    });

    it('an answer over 1 MiB', async () => {
      const body = tokenJson({ claims: { pad: 'x'.repeat(2 * 1024 * 1024) } });
      await invalid('verify', { body });
    });

    it('an error answer over 1 MiB', async () => {
      const err = await invalid('verify', { status: 404, body: 'x'.repeat(1024 * 1024 + 1) });
      expect(err).not.toBeInstanceOf(NotFoundError);
    });

    /** A token body padded to exactly `size` bytes. */
    function paddedToken(size: number): string {
      const empty = JSON.stringify(tokenJson({ claims: { pad: '' } }));
      return JSON.stringify(tokenJson({ claims: { pad: 'x'.repeat(size - empty.length) } }));
    }

    it('accepts an answer of exactly 1 MiB and rejects one byte more', async () => {
      const exact = paddedToken(1024 * 1024);
      expect(Buffer.byteLength(exact)).toBe(1024 * 1024);
      rig.server.reply({ body: exact, headers: { 'content-type': 'application/json' } });
      const result = await client().verifyToken({ token: TOKEN });
      expect(String(result.claims?.pad).length).toBeGreaterThan(1_000_000);
      rig.server.reply({ body: paddedToken(1024 * 1024 + 1) });
      const err = await rejection(client().verifyToken({ token: TOKEN }));
      expect((err as M2MApiError).code).toBe('invalid_response');
    });
  });
});

describe('error answers', () => {
  it.each([
    [400, 'BadRequestError', BadRequestError],
    [401, 'AuthenticationError', AuthenticationError],
    [403, 'ForbiddenError', ForbiddenError],
    [404, 'NotFoundError', NotFoundError],
    [409, 'ConflictError', ConflictError],
    [429, 'RateLimitError', RateLimitError],
    [500, 'ServerError', ServerError],
    [502, 'ServerError', ServerError],
    [503, 'ServerError', ServerError],
    [504, 'ServerError', ServerError],
  ])('%i is a %s', async (status, name, ErrorClass) => {
    rig.server.reply({
      status,
      body: {
        errors: [
          {
            code: 'some_error_code',
            message: 'some details',
            long_message: 'some longer details',
            meta: { param_name: 'token' },
          },
          { code: 'second_code', message: 'second', long_message: 'second, longer' },
        ],
        clerk_trace_id: 'trace_abc123',
      },
    });
    const err = (await rejection(client().verifyToken({ token: TOKEN }))) as M2MApiError;
    expect(err).toBeInstanceOf(ErrorClass);
    expect(err).toBeInstanceOf(M2MApiError);
    expect(err).toBeInstanceOf(Error);
    expect(err.name).toBe(name);
    expect(err.status).toBe(status);
    expect(err.code).toBe('some_error_code');
    expect(err.errors).toEqual([
      {
        code: 'some_error_code',
        message: 'some details',
        longMessage: 'some longer details',
        meta: { param_name: 'token' },
      },
      { code: 'second_code', message: 'second', longMessage: 'second, longer' },
    ]);
    expect(err.clerkTraceId).toBe('trace_abc123');
    expect(err.message).toContain(String(status));
    expect(err.message).toContain('some_error_code');
  });

  it('a status without its own class is a plain M2MApiError', async () => {
    rig.server.reply({ status: 418, body: clerkError('teapot') });
    const err = (await rejection(client().verifyToken({ token: TOKEN }))) as M2MApiError;
    expect(err.constructor).toBe(M2MApiError);
    expect(err.status).toBe(418);
    expect(err.code).toBe('teapot');
  });

  it('an error answer that is not JSON keeps its status and has no details', async () => {
    rig.server.reply({ status: 502, body: '<html>Bad gateway</html>' });
    const err = (await rejection(client().verifyToken({ token: TOKEN }))) as M2MApiError;
    expect(err).toBeInstanceOf(ServerError);
    expect(err.status).toBe(502);
    expect(err.errors).toEqual([]);
    expect(err.code).toBe('http_502');
  });

  it('takes the trace id from cf-ray when the body has none, and prefers the body', async () => {
    rig.server.reply(
      { status: 404, headers: { 'cf-ray': '8a1b2c3d4e5f-IAD' }, body: clerkError('not_found') },
      {
        status: 404,
        headers: { 'cf-ray': '8a1b2c3d4e5f-IAD' },
        body: clerkError('not_found', 'gone', { clerk_trace_id: 'trace_from_body' }),
      },
    );
    const first = (await rejection(client().verifyToken({ token: TOKEN }))) as M2MApiError;
    const second = (await rejection(client().verifyToken({ token: TOKEN }))) as M2MApiError;
    expect(first.clerkTraceId).toBe('8a1b2c3d4e5f-IAD');
    expect(second.clerkTraceId).toBe('trace_from_body');
  });

  it('has no trace id and no retryAfter when the answer gives none', async () => {
    rig.server.reply({ status: 400, body: clerkError('bad_request') });
    const err = (await rejection(client().verifyToken({ token: TOKEN }))) as M2MApiError;
    expect(err.clerkTraceId).toBeUndefined();
    expect(err.retryAfter).toBeUndefined();
  });

  it('reads Retry-After as delta-seconds', async () => {
    rig.server.reply({
      status: 429,
      headers: { 'retry-after': '30' },
      body: clerkError('too_many'),
    });
    const err = (await rejection(client().verifyToken({ token: TOKEN }))) as M2MApiError;
    expect(err).toBeInstanceOf(RateLimitError);
    expect(err.retryAfter).toBe(30);
  });

  it('reads Retry-After as an HTTP date', async () => {
    const date = new Date(Date.now() + 120_000).toUTCString();
    rig.server.reply({ status: 503, headers: { 'retry-after': date }, body: clerkError('down') });
    const err = (await rejection(client().verifyToken({ token: TOKEN }))) as M2MApiError;
    expect(err.retryAfter).toBeGreaterThanOrEqual(118);
    expect(err.retryAfter).toBeLessThanOrEqual(121);
  });

  it('toJSON carries the fields', async () => {
    rig.server.reply({
      status: 429,
      headers: { 'retry-after': '7', 'cf-ray': 'ray-1' },
      body: clerkError('rate_limited', 'slow down'),
    });
    const err = (await rejection(client().verifyToken({ token: TOKEN }))) as M2MApiError;
    expect(JSON.parse(JSON.stringify(err))).toMatchObject({
      name: 'RateLimitError',
      status: 429,
      code: 'rate_limited',
      clerkTraceId: 'ray-1',
      retryAfter: 7,
      errors: [{ code: 'rate_limited', message: 'slow down', longMessage: 'slow down (long)' }],
    });
  });
});

describe('no answer', () => {
  it('connection refused is an M2MNetworkError', async () => {
    const c = client({ apiUrl: await refusedUrl() });
    const err = (await rejection(c.verifyToken({ token: TOKEN }))) as M2MNetworkError;
    expect(err).toBeInstanceOf(M2MNetworkError);
    expect(err).toBeInstanceOf(M2MApiError);
    expect(err.status).toBeUndefined();
    expect(err.code).toBe('network_error');
  });

  it('a reset mid-body is an M2MNetworkError', async () => {
    rig.server.reply({ body: tokenJson(), partialBytes: 30 });
    const err = (await rejection(client().verifyToken({ token: TOKEN }))) as M2MNetworkError;
    expect(err).toBeInstanceOf(M2MNetworkError);
    expect(err.status).toBeUndefined();
    expect(rig.server.requests).toHaveLength(1);
  });

  it('a socket closed with no answer is an M2MNetworkError', async () => {
    rig.server.reply({ destroy: true });
    const err = await rejection(client().listTokens({ subject: SUBJECT }));
    expect(err).toBeInstanceOf(M2MNetworkError);
  });
});

describe('onRevoke', () => {
  it('is called after a successful revoke with { id, apiUrl }', async () => {
    const c = client({ apiUrl: `${rig.server.url}/v1/` });
    const events: RevokedTokenEvent[] = [];
    let eventsBeforeAnswer = -1;
    rig.server.reply(() => {
      eventsBeforeAnswer = events.length;
      return okReply('revoke');
    });
    c.onRevoke((event) => events.push(event));
    await c.revokeToken({ m2mTokenId: TOKEN_ID });
    expect(eventsBeforeAnswer).toBe(0);
    expect(rig.server.requests[0]?.path).toBe(`/v1/m2m_tokens/${TOKEN_ID}/revoke`);
    expect(events).toEqual([{ id: TOKEN_ID, apiUrl: `${rig.server.url}/v1` }]);
  });

  it('calls every listener, and an unsubscribed one no more', async () => {
    rig.server.replyAlways(okReply('revoke'));
    const c = client();
    const a: string[] = [];
    const b: string[] = [];
    const offA = c.onRevoke((event) => a.push(event.id));
    c.onRevoke((event) => b.push(event.id));
    await c.revokeToken({ m2mTokenId: TOKEN_ID });
    offA();
    await c.revokeToken({ m2mTokenId: TOKEN_ID });
    expect(a).toEqual([TOKEN_ID]);
    expect(b).toEqual([TOKEN_ID, TOKEN_ID]);
  });

  it('is not called when revoke fails', async () => {
    rig.server.reply(
      { status: 404, body: clerkError('not_found') },
      { status: 503, body: clerkError('unavailable') },
      { body: { ok: true } },
      { destroy: true },
    );
    const c = client();
    const events: RevokedTokenEvent[] = [];
    c.onRevoke((event) => events.push(event));
    for (let i = 0; i < 4; i++) {
      await expect(c.revokeToken({ m2mTokenId: TOKEN_ID })).rejects.toBeInstanceOf(M2MApiError);
    }
    expect(rig.server.requests).toHaveLength(4);
    expect(events).toEqual([]);
  });

  it('is not called by other operations', async () => {
    rig.server.reply(okReply('verify'), okReply('list'), okReply('create'));
    const c = client();
    const events: RevokedTokenEvent[] = [];
    c.onRevoke((event) => events.push(event));
    await c.verifyToken({ token: TOKEN });
    await c.listTokens({ subject: SUBJECT, revoked: true });
    await c.createToken();
    expect(events).toEqual([]);
  });
});

describe('close', () => {
  it("closes the client's own pool: a later call fails without reaching the server", async () => {
    rig.server.replyAlways(okReply('verify'));
    // Not tracked: this test closes the client itself.
    const c = createM2MClient({
      apiUrl: rig.server.url,
      machineSecretKey: MACHINE_KEY,
      retry: false,
    });
    await c.verifyToken({ token: TOKEN });
    await c.close();
    const err = await rejection(c.verifyToken({ token: TOKEN }));
    expect(err).toBeInstanceOf(M2MNetworkError);
    expect(rig.server.requests).toHaveLength(1);
  });

  // Doubtful: a second close() rejects with undici's ClientDestroyedError (the emulator's close()
  // is idempotent; a shutdown hook plus a test teardown both closing the client is common).
  it('close() can be called twice', async () => {
    const c = createM2MClient({ apiUrl: rig.server.url, machineSecretKey: MACHINE_KEY });
    await c.close();
    await expect(c.close()).resolves.toBeUndefined();
  });

  it('leaves a dispatcher that was passed in open', async () => {
    rig.server.replyAlways(okReply('verify'));
    const agent = track(new Agent());
    const first = client({ dispatcher: agent });
    await first.verifyToken({ token: TOKEN });
    await first.close();
    expect(agent.closed).toBe(false);
    expect(agent.destroyed).toBe(false);
    const second = client({ dispatcher: agent });
    await second.verifyToken({ token: TOKEN });
    expect(rig.server.requests).toHaveLength(2);
  });

  it('sends requests through the dispatcher that was passed in', async () => {
    rig.server.replyAlways(okReply('verify'));
    const agent = new Agent();
    const c = client({ dispatcher: agent });
    await agent.close();
    const err = await rejection(c.verifyToken({ token: TOKEN }));
    expect(err).toBeInstanceOf(M2MNetworkError);
    expect(rig.server.requests).toHaveLength(0);
  });
});

describe('getJwks', () => {
  const jwks = { keys: [{ kty: 'RSA', kid: 'ins_1', n: 'abc', e: 'AQAB', use: 'sig' }] };

  it('GETs /v1/jwks with the instance key, even when a machine key is set', async () => {
    rig.server.reply({ body: jwks });
    const c = client({ secretKey: INSTANCE_KEY });
    expect(c.hasSecretKey).toBe(true);
    expect(await c.getJwks()).toStrictEqual(jwks);
    const [req] = rig.server.requests;
    expect(req?.method).toBe('GET');
    expect(req?.url).toBe('/v1/jwks');
    expect(req?.headers.authorization).toBe(`Bearer ${INSTANCE_KEY}`);
  });

  it('without the instance key fails before any request', async () => {
    const c = client();
    expect(c.hasSecretKey).toBe(false);
    const err = await rejection(c.getJwks());
    expect(err).toBeInstanceOf(M2MConfigError);
    expect((err as M2MConfigError).option).toBe('secretKey');
    expect(rig.server.requests).toHaveLength(0);
  });

  it.each([
    ['not JSON', 'nope'],
    ['without keys', { ok: true }],
    ['with a key without kty', { keys: [{ kid: 'x' }] }],
    ['with a key that is not an object', { keys: ['x'] }],
  ])('an answer %s is invalid_response', async (_label, body) => {
    rig.server.reply({ body });
    const err = await rejection(client({ secretKey: INSTANCE_KEY }).getJwks());
    expect((err as M2MApiError).code).toBe('invalid_response');
  });

  it('is retried on 503 and maps errors like the other calls', async () => {
    rig.server.reply({ status: 503, body: clerkError('down') }, { body: jwks });
    const c = client({ secretKey: INSTANCE_KEY, retry: { minDelayMs: 1, maxDelayMs: 5 } });
    expect(await c.getJwks()).toStrictEqual(jwks);
    rig.server.reply({ status: 401, body: clerkError('clerk_key_invalid') });
    await expect(c.getJwks()).rejects.toBeInstanceOf(AuthenticationError);
    expect(rig.server.requests).toHaveLength(3);
  });

  // Regression: the M2M routes keep a `/v1` prefix of apiUrl (`/v1/m2m_tokens`), and the JWKS
  // path starts with `/v1` too; apiUrl `…/v1` once made getJwks ask for `/v1/v1/jwks`.
  it('does not double a /v1 prefix of apiUrl', async () => {
    rig.server.reply({ body: jwks });
    await client({ apiUrl: `${rig.server.url}/v1`, secretKey: INSTANCE_KEY }).getJwks();
    expect(rig.server.requests[0]?.path).toBe('/v1/jwks');
  });
});

describe('deriveKey', () => {
  it('derives 32 stable bytes per key, apiUrl and purpose, revealing nothing of the key', () => {
    const a = client({ secretKey: INSTANCE_KEY });
    const same = client({ secretKey: INSTANCE_KEY });
    const key = a.deriveKey('cache');
    expect(key).toBeInstanceOf(Buffer);
    expect(key).toHaveLength(32);
    expect(same.deriveKey('cache')?.equals(key!)).toBe(true);
    expect(a.deriveKey('other')?.equals(key!)).toBe(false);
    expect(client({ machineSecretKey: OTHER_MACHINE_KEY }).deriveKey('cache')?.equals(key!)).toBe(
      false,
    );
    expect(
      client({ apiUrl: `${rig.server.url}/v1` })
        .deriveKey('cache')
        ?.equals(key!),
    ).toBe(false);
    expect(key!.equals(Buffer.from(INSTANCE_KEY).subarray(0, 32))).toBe(false);
    for (const encoding of ['utf8', 'hex', 'base64', 'latin1'] as const) {
      expect(key!.toString(encoding)).not.toContain(INSTANCE_KEY.slice(8, 20));
    }
  });

  it('is undefined without a key', () => {
    expect(client({ machineSecretKey: undefined }).deriveKey('cache')).toBeUndefined();
  });
});
