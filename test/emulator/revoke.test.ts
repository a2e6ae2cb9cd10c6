import { afterAll, describe, expect, it } from 'vitest';
import type { Emulator } from '../../src/emulator/index.js';
import {
  call,
  closeEmulators,
  createToken,
  expectClerkError,
  reusableEmulators,
} from './helpers.js';

afterAll(closeEmulators);

const setup = reusableEmulators();

const revoke = (emulator: Emulator, id: string, body?: unknown, prefix = '') =>
  call(emulator, 'POST', `${prefix}/m2m_tokens/${id}/revoke`, {
    key: emulator.instanceSecretKey,
    body,
  });
const verify = (emulator: Emulator, token: string) =>
  call(emulator, 'POST', '/m2m_tokens/verify', {
    key: emulator.instanceSecretKey,
    body: { token },
  });

describe('POST /m2m_tokens/{id}/revoke', () => {
  it('revokes: 200 with the token, reason set, updated_at bumped, no secret', async () => {
    const { emulator, clock } = await setup();
    const token = await createToken(emulator, 'caller');
    clock.advance(1234);
    const res = await revoke(emulator, token.id, { revocation_reason: 'rotated' });
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('application/json');
    const { token: _secret, ...rest } = token;
    expect(res.json).toEqual({
      ...rest,
      revoked: true,
      revocation_reason: 'rotated',
      updated_at: clock.now(),
    });
    expect(res.json).not.toHaveProperty('token');
    expect((await verify(emulator, token.token)).status).toBe(404);
  });

  it('accepts a null reason and an empty body', async () => {
    const { emulator } = await setup();
    const a = await createToken(emulator, 'caller');
    const b = await createToken(emulator, 'caller');
    const withNull = await revoke(emulator, a.id, { revocation_reason: null });
    expect(withNull.status).toBe(200);
    expect(withNull.json.revocation_reason).toBeNull();
    const empty = await revoke(emulator, b.id);
    expect(empty.status).toBe(200);
    expect(empty.json.revoked).toBe(true);
  });

  it('answers 200 when revoking twice, keeping the first revocation', async () => {
    const { emulator, clock } = await setup();
    const token = await createToken(emulator, 'caller');
    const first = await revoke(emulator, token.id, { revocation_reason: 'first' });
    clock.advance(1000);
    const second = await revoke(emulator, token.id, { revocation_reason: 'second' });
    expect(second.status).toBe(200);
    expect(second.json).toEqual(first.json);
  });

  it('revokes an expired token', async () => {
    const { emulator, clock } = await setup();
    const token = await createToken(emulator, 'caller', { seconds_until_expiration: 1 });
    clock.advance(5000);
    const res = await revoke(emulator, token.id, {});
    expect(res.json).toMatchObject({ revoked: true, expired: true });
  });

  it('is served under /v1 too', async () => {
    const { emulator } = await setup();
    const token = await createToken(emulator, 'caller');
    expect((await revoke(emulator, token.id, {}, '/v1')).status).toBe(200);
  });

  it('rejects a malformed id with 400 and an unknown one with 404', async () => {
    const { emulator } = await setup();
    expectClerkError(await revoke(emulator, 'mt_xyz', {}), 400, 'form_param_format_invalid');
    expectClerkError(
      await revoke(emulator, `mt_${'g'.repeat(32)}`, {}),
      400,
      'form_param_format_invalid',
    );
    expectClerkError(await revoke(emulator, `mt_${'a'.repeat(32)}`, {}), 404, 'resource_not_found');
    // The token secret is not an id.
    const token = await createToken(emulator, 'caller');
    expectClerkError(await revoke(emulator, token.token, {}), 400, 'form_param_format_invalid');
  });

  it('cannot revoke a JWT-format token (not stored): 404', async () => {
    const { emulator } = await setup();
    const jwt = await createToken(emulator, 'caller', { token_format: 'jwt' });
    expectClerkError(await revoke(emulator, jwt.id, {}), 404, 'resource_not_found');
  });

  it('rejects a bad body with 400 and leaves the token live', async () => {
    const { emulator } = await setup();
    const token = await createToken(emulator, 'caller');
    expectClerkError(
      await revoke(emulator, token.id, { revocation_reason: 5 }),
      400,
      'form_param_value_invalid',
    );
    expectClerkError(await revoke(emulator, token.id, { reason: 'x' }), 400, 'form_param_unknown');
    expectClerkError(await revoke(emulator, token.id, 'not json'), 415, 'unsupported_media_type');
    expect((await verify(emulator, token.token)).status).toBe(200);
  });
});
