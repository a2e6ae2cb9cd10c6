import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { M2MApiError, type M2MClient } from '../../src/client/index.js';
import { M2MConfigError } from '../../src/shared/config-error.js';
import {
  type RecordedRequest,
  refusedUrl,
  type ScriptedHandler,
  type ScriptedReply,
} from '../helpers/scripted-server.js';
import {
  captureLogger,
  FAST_RETRY,
  INSTANCE_KEY,
  isolateClerkEnv,
  MACHINE_KEY,
  OTHER_MACHINE_KEY,
  rejection,
  SUBJECT,
  TOKEN,
  TOKEN_ID,
  tokenJson,
  useCleanup,
  useScriptedClient,
} from './fixtures.js';

isolateClerkEnv();
const _track = useCleanup();

const SECRETS = [MACHINE_KEY, OTHER_MACHINE_KEY, INSTANCE_KEY, TOKEN];
/** Every secret the tests use, whether or not a call sends it. */
const ECHO = `key ${MACHINE_KEY} other ${OTHER_MACHINE_KEY} instance ${INSTANCE_KEY} token ${TOKEN}`;

/**
 * A Clerk error body that echoes back, in each field it has, the key and the token the request
 * sent (as a careless or hostile server could).
 */
function echoBody(req: RecordedRequest): Record<string, unknown> {
  const key = String(req.headers.authorization ?? '').replace(/^Bearer /, '');
  const token = (req.body as { token?: string } | undefined)?.token ?? 'none';
  const echo = `key ${key} token ${token}`;
  return {
    errors: [
      {
        code: `bad_${key}`,
        message: `rejected: ${echo}`,
        long_message: `The request with ${echo} was rejected`,
        meta: {
          token,
          authorization: req.headers.authorization,
          nested: { keys: [key, token], [key]: true },
        },
      },
      { code: 'second', message: echo, long_message: echo, meta: { again: echo } },
    ],
  };
}

/** An error answer that echoes the request's secrets. */
function echoReply(status: number, extra: ScriptedReply = {}): ScriptedHandler {
  return (req) => ({ status, body: echoBody(req), ...extra });
}

/** Every way an error can be shown must be free of the secrets. */
function expectNoSecrets(err: unknown): void {
  expect(err).toBeInstanceOf(Error);
  const e = err as Error;
  const views = [
    e.message,
    String(e),
    JSON.stringify(e),
    e.stack ?? '',
    inspect(e, { depth: 10 }),
    JSON.stringify((e as M2MApiError).errors ?? []),
  ];
  for (const view of views) {
    for (const secret of SECRETS) expect(view).not.toContain(secret);
  }
}

const rig = useScriptedClient({
  machineSecretKey: MACHINE_KEY,
  secretKey: INSTANCE_KEY,
  retry: false,
});
const client = rig.client;

type Call = (c: M2MClient) => Promise<unknown>;
const CALLS: Record<string, Call> = {
  create: (c) => c.createToken({ claims: { note: 'hello' } }),
  'create (per-call key)': (c) => c.createToken({ machineSecretKey: OTHER_MACHINE_KEY }),
  list: (c) => c.listTokens({ subject: SUBJECT }),
  'list (per-call key)': (c) =>
    c.listTokens({ subject: SUBJECT, machineSecretKey: OTHER_MACHINE_KEY }),
  revoke: (c) => c.revokeToken({ m2mTokenId: TOKEN_ID, revocationReason: 'rotated' }),
  verify: (c) => c.verifyToken({ token: TOKEN }),
  jwks: (c) => c.getJwks(),
  'verify (per-call key)': (c) =>
    c.verifyToken({ token: TOKEN, machineSecretKey: OTHER_MACHINE_KEY }),
};
const CALL_NAMES = Object.keys(CALLS);

describe('error answers that echo the secrets', () => {
  for (const status of [400, 401, 403, 404, 409, 429, 500, 503]) {
    it.each(CALL_NAMES)(`${status}, %s`, async (name) => {
      rig.server.reply(echoReply(status, { headers: { 'retry-after': '120', 'cf-ray': 'ray-1' } }));
      const err = await rejection(CALLS[name]!(client()));
      expect(err).toBeInstanceOf(M2MApiError);
      expect((err as M2MApiError).status).toBe(status);
      // The echo reached the error, redacted.
      expect((err as Error).message).toContain('[redacted]');
      expect((err as M2MApiError).errors).toHaveLength(2);
      expectNoSecrets(err);
    });
  }

  it('after retries, the last error is redacted too', async () => {
    rig.server.replyAlways(echoReply(503));
    const err = await rejection(client({ retry: FAST_RETRY }).verifyToken({ token: TOKEN }));
    expect(rig.server.requests).toHaveLength(3);
    expectNoSecrets(err);
  });

  it('keeps the non-secret parts of the echo', async () => {
    rig.server.reply(echoReply(400));
    const err = (await rejection(client().verifyToken({ token: TOKEN }))) as M2MApiError;
    expect(err.code).toBe('bad_[redacted]');
    expect(err.errors[0]).toEqual({
      code: 'bad_[redacted]',
      message: 'rejected: key [redacted] token [redacted]',
      longMessage: 'The request with key [redacted] token [redacted] was rejected',
      meta: {
        token: '[redacted]',
        authorization: 'Bearer [redacted]',
        nested: { keys: ['[redacted]', '[redacted]'], '[redacted]': true },
      },
    });
  });
});

describe('invalid answers that carry the secrets', () => {
  const cases: [string, ScriptedReply][] = [
    ['a 2xx that is not JSON', { body: `<html>${ECHO}</html>` }],
    [
      'a 2xx of the wrong shape',
      { body: { ok: true, token: TOKEN, key: MACHINE_KEY, echo: ECHO } },
    ],
    ['a token with revoked: "no"', { body: tokenJson({ revoked: 'no', claims: { echo: ECHO } }) }],
    ['an answer over 1 MiB', { body: `${ECHO} ${'x'.repeat(1024 * 1024)}` }],
    ['an error that is not JSON', { status: 502, body: ECHO }],
    ['an error with a trace id only', { status: 404, body: { errors: 'none', echo: ECHO } }],
  ];
  for (const [label, reply] of cases) {
    it.each(CALL_NAMES)(`${label}, %s`, async (name) => {
      rig.server.reply(reply);
      const err = await rejection(CALLS[name]!(client()));
      expect(err).toBeInstanceOf(M2MApiError);
      expectNoSecrets(err);
    });
  }

  it('a create answer without a token string', async () => {
    rig.server.reply({ status: 201, body: tokenJson({ claims: { echo: ECHO } }) });
    const err = await rejection(client().createToken());
    expect((err as M2MApiError).code).toBe('invalid_response');
    expectNoSecrets(err);
  });
});

describe('no answer', () => {
  it.each(CALL_NAMES)('connection refused, %s', async (name) => {
    const err = await rejection(CALLS[name]!(client({ apiUrl: await refusedUrl() })));
    expectNoSecrets(err);
  });

  it.each(CALL_NAMES)('socket closed, %s', async (name) => {
    rig.server.reply({ destroy: true });
    expectNoSecrets(await rejection(CALLS[name]!(client())));
  });

  it.each(CALL_NAMES)('reset mid-body, %s', async (name) => {
    rig.server.reply((req) => ({ body: echoBody(req), partialBytes: 60 }));
    expectNoSecrets(await rejection(CALLS[name]!(client())));
  });

  it.each(CALL_NAMES)('timeout, %s', async (name) => {
    rig.server.reply((req) => ({ body: echoBody(req), delayMs: 300 }));
    expectNoSecrets(await rejection(CALLS[name]!(client({ timeoutMs: 50 }))));
  });
});

describe('configuration errors', () => {
  it('a per-call key of the wrong kind is not repeated', async () => {
    for (const call of [
      (c: M2MClient) => c.createToken({ machineSecretKey: INSTANCE_KEY }),
      (c: M2MClient) => c.verifyToken({ token: TOKEN, machineSecretKey: INSTANCE_KEY }),
      (c: M2MClient) => c.listTokens({ subject: SUBJECT, machineSecretKey: `${MACHINE_KEY} ` }),
    ]) {
      const err = await rejection(call(client()));
      expect(err).toBeInstanceOf(M2MConfigError);
      expectNoSecrets(err);
    }
    expect(rig.server.requests).toHaveLength(0);
  });

  it('create without a machine key does not repeat the instance key', async () => {
    const err = await rejection(client({ machineSecretKey: undefined }).createToken());
    expect(err).toBeInstanceOf(M2MConfigError);
    expectNoSecrets(err);
  });
});

describe('logging', () => {
  it('a trace-level pino logger never receives a key or a token', async () => {
    const { logger, lines } = captureLogger();
    const c = client({ logger, retry: FAST_RETRY, timeoutMs: 200 });
    const created = tokenJson({ token: TOKEN, claims: { echo: ECHO } });
    rig.server.reply(
      // create: 429 then created
      echoReply(429, { headers: { 'retry-after': '0' } }),
      { status: 201, body: created },
      // list: 503 then a page
      echoReply(503),
      { body: { m2m_tokens: [tokenJson({ claims: { echo: ECHO } })], total_count: 1 } },
      // revoke: socket closed then revoked
      { destroy: true },
      { body: tokenJson({ revoked: true, revocation_reason: ECHO }) },
      // verify: ok, then an echoing 404, then a timeout, then not JSON
      { body: tokenJson({ token: TOKEN }) },
      echoReply(404),
      { body: tokenJson(), delayMs: 400 },
      { body: ECHO },
      // create with a per-call key: an echoing 400
      echoReply(400),
      // list with a per-call key: reset mid-body three times
      (req) => ({ body: echoBody(req), partialBytes: 50 }),
      (req) => ({ body: echoBody(req), partialBytes: 50 }),
      (req) => ({ body: echoBody(req), partialBytes: 50 }),
    );
    await c.createToken({ claims: { echo: ECHO } });
    await c.listTokens({ subject: SUBJECT });
    await c.revokeToken({ m2mTokenId: TOKEN_ID, revocationReason: ECHO });
    await c.verifyToken({ token: TOKEN });
    await rejection(c.verifyToken({ token: TOKEN }));
    await rejection(c.verifyToken({ token: TOKEN }));
    await rejection(c.verifyToken({ token: TOKEN }));
    await rejection(c.createToken({ machineSecretKey: OTHER_MACHINE_KEY }));
    await rejection(c.listTokens({ subject: SUBJECT, machineSecretKey: OTHER_MACHINE_KEY }));
    const refused = client({ logger, retry: FAST_RETRY, apiUrl: await refusedUrl() });
    await rejection(refused.createToken());
    await rejection(refused.verifyToken({ token: TOKEN }));

    expect(rig.server.requests).toHaveLength(14);
    // The run was logged, retries included.
    expect(lines.length).toBeGreaterThanOrEqual(20);
    expect(lines.filter((line) => line.includes('retrying')).length).toBeGreaterThanOrEqual(7);
    for (const line of lines) {
      for (const secret of SECRETS) expect(line).not.toContain(secret);
      expect(line).not.toMatch(/bearer/i);
    }
  });
});
