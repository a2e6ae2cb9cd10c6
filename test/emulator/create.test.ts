import { afterAll, describe, expect, it } from 'vitest';
import type { Emulator } from '../../src/emulator/index.js';
import { TOKEN_ID_PATTERN } from '../../src/shared/wire.js';
import {
  call,
  closeEmulators,
  createToken,
  expectClerkError,
  reusableEmulators,
} from './helpers.js';

afterAll(closeEmulators);

const TOKEN_KEYS = [
  'claims',
  'created_at',
  'expiration',
  'expired',
  'id',
  'last_used_at',
  'object',
  'revocation_reason',
  'revoked',
  'scopes',
  'subject',
  'token',
  'updated_at',
];

const setup = reusableEmulators();

const create = (emulator: Emulator, body?: unknown, headers?: Record<string, string>) =>
  call(emulator, 'POST', '/m2m_tokens', {
    key: emulator.machines.caller!.secretKey,
    body,
    headers,
  });

const listCount = async (emulator: Emulator): Promise<number> =>
  (
    await call(emulator, 'GET', `/m2m_tokens?subject=${emulator.machines.caller!.id}`, {
      key: emulator.instanceSecretKey,
    })
  ).json.total_count;

describe('POST /m2m_tokens', () => {
  it('answers 201 with exactly the spec fields and a secret distinct from the id', async () => {
    const { emulator, clock } = await setup();
    const res = await create(emulator, {});
    expect(res.status).toBe(201);
    expect(res.headers['content-type']).toBe('application/json');
    expect(Object.keys(res.json).sort()).toEqual(TOKEN_KEYS);
    const now = clock.now();
    expect(res.json).toEqual({
      object: 'machine_to_machine_token',
      id: expect.stringMatching(TOKEN_ID_PATTERN),
      subject: emulator.machines.caller!.id,
      scopes: [emulator.machines.api!.id],
      claims: null,
      token: expect.stringMatching(/^mt_[A-Za-z0-9]{32,}$/),
      revoked: false,
      revocation_reason: null,
      expired: false,
      expiration: now + 3_600_000,
      last_used_at: null,
      created_at: now,
      updated_at: now,
    });
    expect(res.json.token).not.toBe(res.json.id);
    expect(res.json.token).not.toMatch(TOKEN_ID_PATTERN);
  });

  it('gives every token a new id and secret', async () => {
    const { emulator } = await setup();
    const a = await createToken(emulator, 'caller');
    const b = await createToken(emulator, 'caller');
    expect(a.id).not.toBe(b.id);
    expect(a.token).not.toBe(b.token);
  });

  it('accepts no body at all, and the SDK default body with nulls', async () => {
    const { emulator, clock } = await setup();
    const none = await create(emulator);
    expect(none.status).toBe(201);
    expect(none.json.expiration).toBe(clock.now() + 3_600_000);
    const nulls = await create(emulator, {
      seconds_until_expiration: null,
      claims: null,
      token_format: 'opaque',
    });
    expect(nulls.status).toBe(201);
    expect(nulls.json.expiration).toBe(clock.now() + 3_600_000);
    expect(nulls.json.claims).toBeNull();
  });

  it('honours seconds_until_expiration, fractions included', async () => {
    const { emulator, clock } = await setup();
    expect((await create(emulator, { seconds_until_expiration: 60 })).json.expiration).toBe(
      clock.now() + 60_000,
    );
    expect((await create(emulator, { seconds_until_expiration: 0.5 })).json.expiration).toBe(
      clock.now() + 500,
    );
  });

  it('never expires when the machine default is null and no lifetime is asked', async () => {
    const { emulator, clock } = await setup(null);
    const res = await create(emulator, {});
    expect(res.json.expiration).toBeNull();
    expect(res.json.expired).toBe(false);
    const bounded = await create(emulator, { seconds_until_expiration: 10 });
    expect(bounded.json.expiration).toBe(clock.now() + 10_000);
  });

  it('stores and returns claims as given', async () => {
    const { emulator } = await setup();
    const claims = { tier: 'gold', nested: { list: [1, 'two', null] } };
    const res = await create(emulator, { claims });
    expect(res.json.claims).toEqual(claims);
    const verified = await call(emulator, 'POST', '/m2m_tokens/verify', {
      key: emulator.instanceSecretKey,
      body: { token: res.json.token },
    });
    expect(verified.json.claims).toEqual(claims);
  });

  const invalid: [string, unknown, string][] = [
    ['token_format not in the enum', { token_format: 'paseto' }, 'form_param_value_invalid'],
    ['seconds_until_expiration 0', { seconds_until_expiration: 0 }, 'form_param_value_invalid'],
    [
      'seconds_until_expiration negative',
      { seconds_until_expiration: -5 },
      'form_param_value_invalid',
    ],
    [
      'seconds_until_expiration a string',
      { seconds_until_expiration: '60' },
      'form_param_value_invalid',
    ],
    ['claims a string', { claims: 'x' }, 'form_param_value_invalid'],
    ['claims an array', { claims: [1] }, 'form_param_value_invalid'],
    ['claims a number', { claims: 5 }, 'form_param_value_invalid'],
    [
      'min_remaining_ttl_seconds negative',
      { min_remaining_ttl_seconds: -1 },
      'form_param_value_invalid',
    ],
    [
      'min_remaining_ttl_seconds fractional',
      { min_remaining_ttl_seconds: 1.5 },
      'form_param_value_invalid',
    ],
    [
      'min_remaining_ttl_seconds a string',
      { min_remaining_ttl_seconds: '5' },
      'form_param_value_invalid',
    ],
    [
      'min_remaining_ttl_seconds null',
      { min_remaining_ttl_seconds: null },
      'form_param_value_invalid',
    ],
    [
      'min_remaining_ttl_seconds equal to the default TTL',
      { min_remaining_ttl_seconds: 3600 },
      'form_param_value_invalid',
    ],
    [
      'min_remaining_ttl_seconds equal to seconds_until_expiration',
      { min_remaining_ttl_seconds: 60, seconds_until_expiration: 60 },
      'form_param_value_invalid',
    ],
    [
      'min_remaining_ttl_seconds above seconds_until_expiration',
      { min_remaining_ttl_seconds: 61, seconds_until_expiration: 60 },
      'form_param_value_invalid',
    ],
    ['an unknown field', { scopes: ['mch_x'] }, 'form_param_unknown'],
    ['a JSON array body', [], 'malformed_request_body'],
  ];

  it.each(invalid)('rejects %s with 400', async (_name, body, code) => {
    const { emulator } = await setup();
    const res = await create(emulator, body);
    expectClerkError(res, 400, code);
    expect(await listCount(emulator)).toBe(0);
  });

  it('names the offending parameter in meta', async () => {
    const { emulator } = await setup();
    const res = await create(emulator, { extra: 1 });
    expect(res.json.errors[0].meta).toEqual({ param_name: 'extra' });
  });

  it('accepts min_remaining_ttl_seconds just under the lifetime, and 0', async () => {
    const { emulator } = await setup();
    expect((await create(emulator, { min_remaining_ttl_seconds: 3599 })).status).toBe(201);
    expect(
      (await create(emulator, { min_remaining_ttl_seconds: 59, seconds_until_expiration: 60 }))
        .status,
    ).toBe(201);
    expect((await create(emulator, { min_remaining_ttl_seconds: 0 })).status).toBe(201);
  });
});

describe('min_remaining_ttl_seconds reuse', () => {
  it('returns the existing live token, secret included, instead of minting', async () => {
    const { emulator } = await setup();
    const first = await createToken(emulator, 'caller', {
      claims: { a: 1 },
      min_remaining_ttl_seconds: 60,
    });
    const second = await createToken(emulator, 'caller', {
      claims: { a: 1 },
      min_remaining_ttl_seconds: 60,
    });
    expect(second).toEqual(first);
    expect(await listCount(emulator)).toBe(1);
  });

  it('reuses a token created without the parameter, and matches claims regardless of key order', async () => {
    const { emulator } = await setup();
    const first = await createToken(emulator, 'caller', { claims: { a: 1, b: { c: 2, d: 3 } } });
    const again = await createToken(emulator, 'caller', {
      claims: { b: { d: 3, c: 2 }, a: 1 },
      min_remaining_ttl_seconds: 10,
    });
    expect(again.id).toBe(first.id);
    expect(again.token).toBe(first.token);
  });

  it('mints a new token when claims differ', async () => {
    const { emulator } = await setup();
    const first = await createToken(emulator, 'caller', { claims: { a: 1 } });
    const other = await createToken(emulator, 'caller', {
      claims: { a: 2 },
      min_remaining_ttl_seconds: 10,
    });
    const none = await createToken(emulator, 'caller', {
      claims: null,
      min_remaining_ttl_seconds: 10,
    });
    expect(new Set([first.id, other.id, none.id]).size).toBe(3);
  });

  it("never reuses another machine's token", async () => {
    const { emulator } = await setup();
    const apiToken = await createToken(emulator, 'api', {});
    const mine = await createToken(emulator, 'caller', { min_remaining_ttl_seconds: 10 });
    expect(mine.id).not.toBe(apiToken.id);
  });

  it('reuses only while the remaining lifetime is at least the minimum', async () => {
    const { emulator, clock } = await setup();
    const first = await createToken(emulator, 'caller', { seconds_until_expiration: 120 });
    clock.advance(60_000); // 60 s left
    const reused = await createToken(emulator, 'caller', { min_remaining_ttl_seconds: 60 });
    expect(reused.id).toBe(first.id);
    clock.advance(1); // 59.999 s left
    const fresh = await createToken(emulator, 'caller', { min_remaining_ttl_seconds: 60 });
    expect(fresh.id).not.toBe(first.id);
    expect(fresh.expiration).toBe(clock.now() + 3_600_000);
  });

  it('skips revoked and expired tokens', async () => {
    const { emulator, clock } = await setup();
    const revoked = await createToken(emulator, 'caller', {});
    await call(emulator, 'POST', `/m2m_tokens/${revoked.id}/revoke`, {
      key: emulator.instanceSecretKey,
      body: {},
    });
    const afterRevoke = await createToken(emulator, 'caller', { min_remaining_ttl_seconds: 0 });
    expect(afterRevoke.id).not.toBe(revoked.id);
    clock.advance(3_600_000); // afterRevoke expires now
    const afterExpiry = await createToken(emulator, 'caller', { min_remaining_ttl_seconds: 0 });
    expect(afterExpiry.id).not.toBe(afterRevoke.id);
  });

  it('prefers the newest matching token', async () => {
    const { emulator, clock } = await setup();
    await createToken(emulator, 'caller', {});
    clock.advance(1000);
    const newer = await createToken(emulator, 'caller', {});
    const reused = await createToken(emulator, 'caller', { min_remaining_ttl_seconds: 10 });
    expect(reused.id).toBe(newer.id);
  });

  it('reuses never-expiring tokens for any minimum', async () => {
    const { emulator } = await setup(null);
    const first = await createToken(emulator, 'caller', {
      min_remaining_ttl_seconds: 1_000_000_000,
    });
    const again = await createToken(emulator, 'caller', {
      min_remaining_ttl_seconds: 1_000_000_000,
    });
    expect(first.expiration).toBeNull();
    expect(again.id).toBe(first.id);
  });

  it('does not apply to JWT-format tokens', async () => {
    const { emulator } = await setup();
    const opaque = await createToken(emulator, 'caller', {});
    const jwt = await createToken(emulator, 'caller', {
      token_format: 'jwt',
      min_remaining_ttl_seconds: 10,
    });
    expect(jwt.id).not.toBe(opaque.id);
    expect(jwt.token.split('.')).toHaveLength(3);
  });
});
