import { connect } from 'node:net';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Emulator } from '../../src/emulator/index.js';
import { call, closeEmulators, createToken, expectClerkError, start } from './helpers.js';

let emulator: Emulator;
beforeAll(async () => {
  emulator = await start();
});
afterAll(closeEmulators);
beforeEach(() => emulator.reset());

const callerKey = () => emulator.machines.caller!.secretKey;
const MIB = 1024 * 1024;

/** Sends raw bytes on a fresh socket and returns what comes back until the server closes. */
function rawExchange(
  payload: string,
  { end = false, destroyAfterMs }: { end?: boolean; destroyAfterMs?: number } = {},
) {
  return new Promise<string>((resolve) => {
    const { port } = new URL(emulator.url);
    const socket = connect(Number(port), '127.0.0.1');
    let received = '';
    socket.on('data', (chunk) => {
      received += chunk.toString();
    });
    socket.on('error', () => resolve(received));
    socket.on('close', () => resolve(received));
    socket.write(payload, () => {
      if (end) socket.end();
      if (destroyAfterMs !== undefined) setTimeout(() => socket.destroy(), destroyAfterMs);
    });
  });
}

async function stillServing(): Promise<void> {
  const res = await call(emulator, 'POST', '/m2m_tokens', { key: callerKey(), body: {} });
  expect(res.status).toBe(201);
}

describe('bodies', () => {
  it('rejects malformed JSON with 400', async () => {
    const res = await call(emulator, 'POST', '/m2m_tokens', {
      key: callerKey(),
      body: '{"claims": ',
      headers: { 'content-type': 'application/json' },
    });
    expectClerkError(res, 400, 'malformed_request_body');
  });

  it.each(['[]', '"text"', '5', 'null', 'true'])(
    'rejects the non-object JSON body %s with 400',
    async (body) => {
      const res = await call(emulator, 'POST', '/m2m_tokens/verify', {
        key: emulator.instanceSecretKey,
        body,
        headers: { 'content-type': 'application/json' },
      });
      expectClerkError(res, 400, 'malformed_request_body');
    },
  );

  it.each([
    ['text/plain', { 'content-type': 'text/plain' }],
    ['form data', { 'content-type': 'application/x-www-form-urlencoded' }],
    ['json-ish', { 'content-type': 'application/jsonx' }],
    ['no content type', {}],
  ])('rejects a body sent as %s with 415', async (_name, headers) => {
    const res = await call(emulator, 'POST', '/m2m_tokens', {
      key: callerKey(),
      body: '{}',
      headers: headers as Record<string, string>,
    });
    expectClerkError(res, 415, 'unsupported_media_type');
  });

  it.each([
    'application/json; charset=utf-8',
    'Application/JSON',
    'application/json;charset=UTF-8',
  ])('accepts content type %s', async (contentType) => {
    const res = await call(emulator, 'POST', '/m2m_tokens', {
      key: callerKey(),
      body: '{"claims":{"a":1}}',
      headers: { 'content-type': contentType },
    });
    expect(res.status).toBe(201);
    expect(res.json.claims).toEqual({ a: 1 });
  });

  it('accepts a body of exactly 1 MiB', async () => {
    const prefix = '{"claims":{"pad":"';
    const suffix = '"}}';
    const body = prefix + 'x'.repeat(MIB - prefix.length - suffix.length) + suffix;
    expect(Buffer.byteLength(body)).toBe(MIB);
    const res = await call(emulator, 'POST', '/m2m_tokens', {
      key: callerKey(),
      body,
      headers: { 'content-type': 'application/json' },
    });
    expect(res.status).toBe(201);
  });

  it.each([
    ['1 MiB + 1 byte', MIB + 1],
    ['5 MiB', 5 * MIB],
  ])('answers 413 to a %s body and closes the connection', async (_name, size) => {
    const res = await call(emulator, 'POST', '/m2m_tokens', {
      key: callerKey(),
      body: Buffer.alloc(size, 0x20),
      headers: { 'content-type': 'application/json' },
    });
    expectClerkError(res, 413, 'request_body_too_large');
    expect(res.headers.connection).toBe('close');
    await stillServing();
  });

  it('answers 413 to a chunked body that grows past the limit', async () => {
    async function* chunks() {
      for (let i = 0; i < 3; i++) yield Buffer.alloc(MIB / 2 + 1, 0x20);
    }
    const { request } = await import('undici');
    const res = await request(`${emulator.url}/m2m_tokens`, {
      method: 'POST',
      headers: { authorization: `Bearer ${callerKey()}`, 'content-type': 'application/json' },
      body: Readable.from(chunks()),
    }).catch((err: Error) => err);
    // undici may see the early answer or the closed socket, depending on timing; both are
    // fine as long as the emulator answered 413 or hung up and keeps serving.
    if (!(res instanceof Error)) {
      expect(res.statusCode).toBe(413);
      await res.body.text();
    }
    await stillServing();
  });
});

describe('routing', () => {
  it.each([
    ['GET', '/nope'],
    ['GET', '/'],
    ['GET', '/v2/m2m_tokens'],
    ['GET', '/m2m_tokens/abc'],
    ['POST', '/m2m_tokens/mt_x/revoke/again'],
    ['GET', '/v1/machines'],
    ['POST', '/m2m_tokens//revoke'],
  ])('answers 404 to %s %s', async (method, path) => {
    const res = await call(emulator, method, path, { key: emulator.instanceSecretKey });
    expectClerkError(res, 404, 'resource_not_found');
  });

  it.each([
    ['DELETE', '/m2m_tokens', 'GET, POST'],
    ['PUT', '/v1/m2m_tokens', 'GET, POST'],
    ['HEAD', '/m2m_tokens', 'GET, POST'],
    ['GET', '/m2m_tokens/verify', 'POST'],
    ['GET', `/m2m_tokens/mt_${'a'.repeat(32)}/revoke`, 'POST'],
    ['POST', '/v1/jwks', 'GET'],
    ['DELETE', '/jwks', 'GET'],
  ])('answers 405 to %s %s with Allow: %s', async (method, path, allow) => {
    const res = await call(emulator, method, path, { key: emulator.instanceSecretKey });
    expect(res.status).toBe(405);
    expect(res.headers.allow).toBe(allow);
    if (method !== 'HEAD') expectClerkError(res, 405, 'method_not_allowed');
  });

  it('serves every route with and without /v1', async () => {
    for (const prefix of ['', '/v1']) {
      const created = await call(emulator, 'POST', `${prefix}/m2m_tokens`, {
        key: callerKey(),
        body: {},
      });
      expect(created.status).toBe(201);
      const listed = await call(
        emulator,
        'GET',
        `${prefix}/m2m_tokens?subject=${created.json.subject}`,
        { key: emulator.instanceSecretKey },
      );
      expect(listed.status).toBe(200);
      const verified = await call(emulator, 'POST', `${prefix}/m2m_tokens/verify`, {
        key: emulator.instanceSecretKey,
        body: { token: created.json.token },
      });
      expect(verified.status).toBe(200);
      const revoked = await call(
        emulator,
        'POST',
        `${prefix}/m2m_tokens/${created.json.id}/revoke`,
        {
          key: emulator.instanceSecretKey,
          body: {},
        },
      );
      expect(revoked.status).toBe(200);
      const jwks = await call(emulator, 'GET', `${prefix}/jwks`, {
        key: emulator.instanceSecretKey,
      });
      expect(jwks.status).toBe(200);
    }
  });

  it('ignores a body on GET', async () => {
    const token = await createToken(emulator, 'caller');
    const res = await call(emulator, 'GET', `/m2m_tokens?subject=${token.subject}`, {
      key: emulator.instanceSecretKey,
      headers: { 'content-type': 'text/plain' },
      body: 'whatever',
    });
    expect(res.status).toBe(200);
  });
});

describe('misbehaving clients', () => {
  it('survives a client that aborts mid-body', async () => {
    const received = await rawExchange(
      `POST /m2m_tokens HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${callerKey()}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"cla`,
      { destroyAfterMs: 20 },
    );
    expect(received).toBe('');
    await stillServing();
    expect(emulator.calls.create).toBe(2);
  });

  it('survives a client that half-closes before the body is complete', async () => {
    const received = await rawExchange(
      `POST /m2m_tokens/verify HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 50\r\n\r\n{"tok`,
      { end: true },
    );
    expect(received).not.toMatch(/^HTTP\/1\.1 5/);
    await stillServing();
  });

  it('answers garbage with a 4xx and keeps serving', async () => {
    const received = await rawExchange('NOT HTTP AT ALL\r\n\r\n');
    expect(received).toMatch(/^HTTP\/1\.1 4\d\d/);
    await stillServing();
  });

  it('answers a bad request target with 400 or 404, never 5xx', async () => {
    const received = await rawExchange(
      `GET http://[bad/m2m_tokens HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`,
    );
    expect(received).toMatch(/^HTTP\/1\.1 4\d\d/);
    await stillServing();
  });

  it('handles many concurrent bad requests without a 5xx', async () => {
    const bodies = ['{', '[]', 'null', '{"token":1}', '{"x":1}', '', '{"token":"mt_x"}'];
    const answers = await Promise.all(
      bodies.flatMap((body) =>
        ['/m2m_tokens', '/m2m_tokens/verify', `/m2m_tokens/mt_${'0'.repeat(32)}/revoke`].map(
          (path) =>
            call(emulator, 'POST', path, {
              key: callerKey(),
              body,
              headers: { 'content-type': 'application/json' },
            }),
        ),
      ),
    );
    for (const res of answers) {
      expect(res.status).toBeLessThan(500);
      expect(res.headers['content-type']).toBe('application/json');
    }
  });
});
