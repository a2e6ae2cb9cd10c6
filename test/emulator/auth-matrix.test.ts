import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Emulator } from '../../src/emulator/index.js';
import { call, closeEmulators, createToken, expectClerkError, start } from './helpers.js';

/**
 * The authorization matrix: every operation with the instance key, the token owner's machine
 * key, another machine's key, no key and unknown keys.
 */
let emulator: Emulator;
// biome-ignore lint/suspicious/noExplicitAny: raw wire objects
let token: any; // created by `caller`, scopes [api.id]

beforeAll(async () => {
  emulator = await start();
});
afterAll(closeEmulators);
beforeEach(async () => {
  emulator.reset();
  token = await createToken(emulator, 'caller');
});

type KeyName = 'instance' | 'owner' | 'other' | 'missing' | 'unknown-sk' | 'unknown-ak' | 'basic';

function keyOptions(name: KeyName): { key?: string; headers?: Record<string, string> } {
  switch (name) {
    case 'instance':
      return { key: emulator.instanceSecretKey };
    case 'owner':
      return { key: emulator.machines.caller!.secretKey };
    case 'other':
      return { key: emulator.machines.api!.secretKey };
    case 'missing':
      return {};
    case 'unknown-sk':
      return { key: 'sk_test_notthekey' };
    case 'unknown-ak':
      return { key: 'ak_0123456789abcdef0123456789abcdef' };
    case 'basic':
      return { headers: { authorization: `Basic ${emulator.instanceSecretKey}` } };
  }
}

const UNAUTHENTICATED: [KeyName, string][] = [
  ['missing', 'authorization_missing'],
  ['unknown-sk', 'secret_key_invalid'],
  ['unknown-ak', 'machine_secret_key_invalid'],
  ['basic', 'authorization_header_format_invalid'],
];

describe('create', () => {
  it('with the owner machine key: 201, subject is that machine', async () => {
    const res = await call(emulator, 'POST', '/m2m_tokens', { ...keyOptions('owner'), body: {} });
    expect(res.status).toBe(201);
    expect(res.json.subject).toBe(emulator.machines.caller!.id);
  });

  it('with another machine key: 201, subject is that other machine', async () => {
    const res = await call(emulator, 'POST', '/m2m_tokens', { ...keyOptions('other'), body: {} });
    expect(res.status).toBe(201);
    expect(res.json.subject).toBe(emulator.machines.api!.id);
    expect(res.json.scopes).toEqual([]);
  });

  it("with the instance key: 401 machine_secret_key_invalid, Clerk's wording", async () => {
    const res = await call(emulator, 'POST', '/m2m_tokens', {
      ...keyOptions('instance'),
      body: {},
    });
    expectClerkError(res, 401, 'machine_secret_key_invalid');
    expect(res.json.errors[0].message).toBe(
      'The provided Machine Secret Key is invalid. Make sure that your Machine Secret Key is correct.',
    );
  });

  it.each(UNAUTHENTICATED)('with %s key: 401 %s', async (name, code) => {
    const res = await call(emulator, 'POST', '/m2m_tokens', { ...keyOptions(name), body: {} });
    expectClerkError(res, 401, code);
  });
});

describe('list', () => {
  const list = (name: KeyName, subject = emulator.machines.caller!.id) =>
    call(emulator, 'GET', `/m2m_tokens?subject=${subject}`, keyOptions(name));

  it.each(['instance', 'owner'] as KeyName[])(
    'with the %s key: 200 with the token',
    async (name) => {
      const res = await list(name);
      expect(res.status).toBe(200);
      expect(res.json.m2m_tokens.map((t: { id: string }) => t.id)).toEqual([token.id]);
      expect(res.json.total_count).toBe(1);
    },
  );

  it("with another machine's key: 403", async () => {
    expectClerkError(await list('other'), 403, 'forbidden');
  });

  it('with a machine key, its own (empty) list: 200', async () => {
    const res = await list('other', emulator.machines.api!.id);
    expect(res.status).toBe(200);
    expect(res.json).toEqual({ m2m_tokens: [], total_count: 0 });
  });

  it('with the instance key, any machine; an unknown machine is 404', async () => {
    const res = await list('instance', emulator.machines.api!.id);
    expect(res.json).toEqual({ m2m_tokens: [], total_count: 0 });
    expectClerkError(await list('instance', `mch_${'Z'.repeat(27)}`), 404, 'resource_not_found');
  });

  it.each(UNAUTHENTICATED)('with %s key: 401 %s', async (name, code) => {
    expectClerkError(await list(name), 401, code);
  });
});

describe('revoke', () => {
  const revoke = (name: KeyName) =>
    call(emulator, 'POST', `/m2m_tokens/${token.id}/revoke`, { ...keyOptions(name), body: {} });
  const stillLive = async () =>
    (
      await call(emulator, 'POST', '/m2m_tokens/verify', {
        key: emulator.instanceSecretKey,
        body: { token: token.token },
      })
    ).status;

  it.each(['instance', 'owner'] as KeyName[])('with the %s key: 200, revoked', async (name) => {
    const res = await revoke(name);
    expect(res.status).toBe(200);
    expect(res.json.revoked).toBe(true);
    expect(await stillLive()).toBe(404);
  });

  it("with another machine's key: 404 and the token stays live", async () => {
    expectClerkError(await revoke('other'), 404, 'resource_not_found');
    expect(await stillLive()).toBe(200);
  });

  it.each(UNAUTHENTICATED)('with %s key: 401 %s, token untouched', async (name, code) => {
    expectClerkError(await revoke(name), 401, code);
    expect(await stillLive()).toBe(200);
  });
});

describe('verify', () => {
  const verify = (name: KeyName) =>
    call(emulator, 'POST', '/m2m_tokens/verify', {
      ...keyOptions(name),
      body: { token: token.token },
    });

  it('with the instance key: 200, no scope check', async () => {
    const res = await verify('instance');
    expect(res.status).toBe(200);
    expect(res.json.id).toBe(token.id);
  });

  it('with the key of a machine in the scopes: 200', async () => {
    const res = await verify('other');
    expect(res.status).toBe(200);
    expect(res.json.id).toBe(token.id);
  });

  it('with the key of a machine not in the scopes (here the owner): 404', async () => {
    expectClerkError(await verify('owner'), 404, 'resource_not_found');
  });

  it.each(UNAUTHENTICATED)('with %s key: 401 %s', async (name, code) => {
    expectClerkError(await verify(name), 401, code);
  });
});

describe('jwks', () => {
  it('only with the instance key', async () => {
    expect((await call(emulator, 'GET', '/v1/jwks', keyOptions('instance'))).status).toBe(200);
    expectClerkError(
      await call(emulator, 'GET', '/v1/jwks', keyOptions('owner')),
      401,
      'clerk_key_invalid',
    );
    expectClerkError(
      await call(emulator, 'GET', '/v1/jwks', keyOptions('unknown-sk')),
      401,
      'clerk_key_invalid',
    );
    expectClerkError(
      await call(emulator, 'GET', '/v1/jwks', keyOptions('missing')),
      401,
      'authorization_missing',
    );
  });
});

describe('bearer parsing', () => {
  it('accepts a lowercase scheme and rejects an empty bearer', async () => {
    const lower = await call(emulator, 'GET', `/m2m_tokens?subject=${token.subject}`, {
      headers: { authorization: `bearer ${emulator.instanceSecretKey}` },
    });
    expect(lower.status).toBe(200);
    const empty = await call(emulator, 'GET', `/m2m_tokens?subject=${token.subject}`, {
      headers: { authorization: 'Bearer ' },
    });
    expect(empty.status).toBe(401);
  });
});
