/**
 * Secrets: the leak check every file of this suite ends with is real (it finds planted leaks in
 * logs, errors, causes and headers, whole, halved or base64-encoded, and raises nothing for a
 * fingerprint or a token id), and the library keeps tokens and keys out of everything a caller
 * or operator sees even when the upstream is hostile and echoes them back.
 */
import express from 'express';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createM2MClient, type M2MClient, type M2MClientOptions } from '../../src/client/index.js';
import { type Emulator, startEmulator } from '../../src/emulator/index.js';
import { m2mAuth } from '../../src/middleware/index.js';
import { fingerprint } from '../../src/shared/redact.js';
import { createTokenVerifier } from '../../src/verifier/index.js';
import {
  fixedInstance,
  type HttpAnswer,
  httpClient,
  LeakWatch,
  listen,
  randomAlnum,
} from './support.js';

const http = httpClient();
afterAll(() => http.close());

describe('the leak check', () => {
  test('finds planted leaks in logs, errors, causes and headers, in every form', () => {
    const probe = new LeakWatch();
    const token = probe.secret('a token', `mt_${randomAlnum(40)}`);
    const key = probe.secret('a key', `sk_test_${randomAlnum(40)}`);
    const random = token.slice(3);

    probe.logger.info({ authorization: `Bearer ${token}` }, 'request');
    probe.record('an error', new Error('wrapper', { cause: new Error(`upstream said ${key}`) }));
    probe.recordAnswer('an answer', {
      status: 401,
      headers: { 'www-authenticate': `Bearer error_description="${random.slice(0, 20)}…"` },
      text: '{}',
    });
    probe.record('an object', { nested: { deep: Buffer.from(key).toString('base64') } });

    const leaks = probe.findLeaks();
    const found = leaks.map((l) => `${l.secret} (${l.form}) in ${l.source.replace(/\d+/, 'N')}`);
    expect(found).toEqual(
      expect.arrayContaining([
        'a token (whole) in log line N',
        'a key (whole) in an error',
        'a token (first half) in an answer',
        'a key (base64) in an object',
      ]),
    );
    // A report never repeats the secret itself.
    for (const leak of leaks) {
      expect(leak.excerpt).not.toContain(token);
      expect(leak.excerpt).not.toContain(key);
    }
    // The self-check plants every registered secret and finds each.
    expect(probe.selfCheck().missed).toEqual([]);
  });

  test('raises nothing for what may be logged: fingerprints, token ids, prefixes', () => {
    const probe = new LeakWatch();
    const token = probe.secret('a token', `mt_${randomAlnum(40)}`);
    probe.logger.info(
      { fp: fingerprint(token), tokenId: `mt_${'0'.repeat(32)}`, prefix: token.slice(0, 6) },
      'refused',
    );
    probe.record('an error', new Error(`token ${fingerprint(token)} is not valid`));
    expect(probe.findLeaks()).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------
// A hostile upstream that echoes everything it receives
// ---------------------------------------------------------------------------------------------

type EchoPlace = 'error fields' | 'clerk_trace_id' | 'cf-ray header';

describe('a hostile upstream that echoes the token and the key back', () => {
  const watch = new LeakWatch();
  const logger = watch.logger;
  let upstream: Awaited<ReturnType<typeof listen>>;
  type TraceId = 'echo' | 'token' | 'key';
  let answerWith: { status: number; place: EchoPlace; traceId: TraceId } = {
    status: 500,
    place: 'error fields',
    traceId: 'echo',
  };
  const secretKey = watch.secret('instance secret key', `sk_test_${randomAlnum(40)}`);

  beforeAll(async () => {
    upstream = await listen((req, res) => {
      let body = '';
      req.on('data', (chunk) => {
        body += chunk;
      });
      req.on('end', () => {
        const echo = `${req.headers.authorization} ${body}`;
        const token = (JSON.parse(body || '{}') as { token?: string }).token ?? '';
        const headers: Record<string, string> = { 'content-type': 'application/json' };
        const json: Record<string, unknown> = {};
        if (answerWith.place === 'error fields') {
          json.errors = [
            { message: echo, long_message: echo, code: token, meta: { echo, token } },
            { message: token, long_message: token, code: 'again' },
          ];
        } else {
          json.errors = [{ message: 'failed', long_message: 'failed', code: 'failed' }];
        }
        // A trace id carrying what came in: the whole echo, or exactly the token or the key.
        const key = (req.headers.authorization ?? '').replace(/^Bearer /, '');
        const traceId = { echo, token, key }[answerWith.traceId];
        if (answerWith.place === 'clerk_trace_id') json.clerk_trace_id = traceId;
        if (answerWith.place === 'cf-ray header') headers['cf-ray'] = traceId;
        if (answerWith.status === 429) headers['retry-after'] = '1';
        res.writeHead(answerWith.status, headers);
        res.end(JSON.stringify(json));
      });
    });
  });
  afterAll(() => upstream.close());

  async function through(
    status: number,
    place: EchoPlace,
    traceId: TraceId = 'echo',
  ): Promise<HttpAnswer> {
    answerWith = { status, place, traceId };
    const token = watch.secret('presented token', `mt_${randomAlnum(40)}`);
    const client = createM2MClient({ apiUrl: upstream.url, secretKey, retry: false, logger });
    const verifier = createTokenVerifier({ client, logger, breaker: false, anyMachine: true });
    const app = express();
    app.get('/r', m2mAuth({ verifier, logger, onError: watch.onError }), (_req, res) => {
      res.json({ ok: true });
    });
    const server = await listen(app);
    try {
      // The verifier's own errors too, with their causes.
      await verifier.verify(token).catch((err: unknown) => watch.record('verify() error', err));
      await client
        .verifyToken({ token })
        .catch((err: unknown) => watch.record('client error', err));
      const answer = await http.get(`${server.url}/r`, { authorization: `Bearer ${token}` });
      watch.recordAnswer(`answer to an upstream ${status}`, answer);
      watch.record('stats', verifier.stats());
      return answer;
    } finally {
      await server.close();
      await verifier.close();
      await client.close();
    }
  }

  const STATUSES = [400, 401, 403, 404, 429, 500, 503];

  test.each(STATUSES)(
    'echoed in message, long_message, code and meta of a %i: redacted',
    async (status) => {
      const since = watch.checkpoint();
      const answer = await through(status, 'error fields');
      expect([401, 503]).toContain(answer.status);
      expect(watch.findLeaksSince(since)).toEqual([]);
    },
  );

  // The client keeps Clerk's trace id (body `clerk_trace_id`, else the `cf-ray` header) when it
  // looks like an id (`^[A-Za-z0-9_-]{1,100}$`). The token and the key look like ids too, so an
  // upstream that sends either back as its trace id puts it in every M2MApiError
  // (`clerkTraceId`, `toJSON()`): the cause of m2mAuth's 503s.
  test.each<EchoPlace>(['clerk_trace_id', 'cf-ray header'])(
    'echoed as the trace id in %s (every status; the echo, the token, the key): redacted',
    async (place) => {
      const since = watch.checkpoint();
      for (const status of STATUSES) {
        for (const traceId of ['echo', 'token', 'key'] as const) {
          await through(status, place, traceId);
        }
      }
      const leaks = watch.findLeaksSince(since);
      expect(leaks.map((l) => `${l.secret} in ${l.source}: …${l.excerpt}…`)).toEqual([]);
    },
  );

  test('a verify answer that carries the token string never puts it on req.m2m', async () => {
    const since = watch.checkpoint();
    const token = watch.secret('presented token', `mt_${randomAlnum(40)}`);
    const server = await listen((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            object: 'machine_to_machine_token',
            id: `mt_${'a'.repeat(32)}`,
            subject: `mch_${'b'.repeat(27)}`,
            scopes: [],
            claims: null,
            token,
            revoked: false,
            revocation_reason: null,
            expired: false,
            expiration: null,
            last_used_at: null,
            created_at: 0,
            updated_at: 0,
          }),
        );
      });
    });
    const client = createM2MClient({ apiUrl: server.url, secretKey, retry: false, logger });
    const verifier = createTokenVerifier({ client, logger, anyMachine: true });
    const app = express();
    app.get('/r', m2mAuth({ verifier, logger }), (req, res) => {
      res.json({ m2m: req.m2m, keys: Object.keys(req.m2m ?? {}) });
    });
    const web = await listen(app);
    try {
      const verified = await client.verifyToken({ token });
      expect(verified).not.toHaveProperty('token');
      watch.record('verifyToken() result', verified);
      const answer = await http.get(`${web.url}/r`, { authorization: `Bearer ${token}` });
      expect(answer.status).toBe(200);
      watch.recordAnswer('200 with req.m2m', answer);
      expect(watch.findLeaksSince(since)).toEqual([]);
    } finally {
      await web.close();
      await verifier.close();
      await client.close();
      await server.close();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Configuration errors and the emulator
// ---------------------------------------------------------------------------------------------

describe('keys never come back in configuration errors or emulator answers', () => {
  const watch = new LeakWatch();
  let emulator: Emulator;
  let admin: M2MClient;

  beforeAll(async () => {
    const instance = fixedInstance();
    watch.secret('instance secret key', instance.instanceSecretKey!);
    for (const m of instance.machines) watch.secret(`${m.name} machine secret key`, m.secretKey);
    emulator = await startEmulator({ ...instance, logger: watch.logger });
    admin = createM2MClient({
      apiUrl: emulator.url,
      secretKey: emulator.instanceSecretKey,
      logger: watch.logger,
    });
  });
  afterAll(async () => {
    await admin?.close();
    await emulator?.close();
  });

  test('a misplaced or malformed key is named, never repeated', () => {
    const instanceKey = emulator.instanceSecretKey;
    const machineKey = emulator.machines.caller!.secretKey;
    const attempts: Array<[string, M2MClientOptions]> = [
      ['instance key as machine key', { machineSecretKey: instanceKey }],
      ['machine key as instance key', { secretKey: machineKey }],
      ['key with a space', { machineSecretKey: `${machineKey} ` }],
      ['key in the API URL', { apiUrl: `https://user:${instanceKey}@api.clerk.test` }],
    ];
    for (const [what, options] of attempts) {
      let error: unknown;
      try {
        createM2MClient({ apiUrl: emulator.url, ...options });
      } catch (err) {
        error = err;
      }
      expect(error, what).toBeInstanceOf(TypeError);
      watch.record(`config error: ${what}`, error);
    }
    try {
      createTokenVerifier({ client: admin, secretKey: instanceKey });
      expect.unreachable('a verifier with both `client` and `secretKey`');
    } catch (err) {
      watch.record('config error: client and secretKey', err);
    }
    expect(watch.findLeaks()).toEqual([]);
  });

  test('the emulator refuses unknown and misused keys without echoing them', async () => {
    const unknownMachineKey = watch.secret('unknown machine key', `ak_${'0f'.repeat(16)}`);
    const unknownInstanceKey = watch.secret('unknown instance key', `sk_test_${randomAlnum(40)}`);
    const token = watch.secret('unknown token', `mt_${randomAlnum(40)}`);
    const calls: Array<[string, string, string | undefined, unknown]> = [
      ['POST', '/m2m_tokens/verify', unknownMachineKey, { token }],
      ['POST', '/m2m_tokens/verify', unknownInstanceKey, { token }],
      ['POST', '/m2m_tokens/verify', emulator.instanceSecretKey, { token }],
      ['POST', '/m2m_tokens', emulator.instanceSecretKey, {}],
      [
        'GET',
        `/m2m_tokens?subject=${emulator.machines.api!.id}`,
        emulator.machines.caller!.secretKey,
        undefined,
      ],
      ['GET', '/v1/jwks', emulator.machines.caller!.secretKey, undefined],
    ];
    for (const [method, path, key, body] of calls) {
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (key !== undefined) headers.authorization = `Bearer ${key}`;
      const res = await fetch(`${emulator.url}${path}`, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      expect(res.status, `${method} ${path}`).toBeGreaterThanOrEqual(400);
      watch.recordAnswer(`emulator ${method} ${path.split('?')[0]}`, {
        status: res.status,
        headers: Object.fromEntries(res.headers),
        text,
      });
    }
    // The client's own errors for the same mistakes.
    const bad = createM2MClient({
      apiUrl: emulator.url,
      machineSecretKey: unknownMachineKey,
      retry: false,
      logger: watch.logger,
    });
    await bad.verifyToken({ token }).catch((err: unknown) => watch.record('client 401', err));
    await bad.createToken().catch((err: unknown) => watch.record('client create 401', err));
    await bad.close();
    expect(watch.findLeaks()).toEqual([]);
  });
});
