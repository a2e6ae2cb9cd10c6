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

const verify = (emulator: Emulator, body: unknown, key = emulator.instanceSecretKey) =>
  call(emulator, 'POST', '/m2m_tokens/verify', { key, body });

describe('POST /m2m_tokens/verify', () => {
  it('answers 200 with the token, no secret, and records the use', async () => {
    const { emulator, clock } = await setup();
    const token = await createToken(emulator, 'caller', { claims: { job: 'sync' } });
    clock.advance(2500);
    const res = await verify(emulator, { token: token.token }, emulator.machines.api!.secretKey);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('application/json');
    const { token: _secret, ...rest } = token;
    expect(res.json).toEqual({ ...rest, last_used_at: clock.now(), updated_at: clock.now() });
    expect(res.json).not.toHaveProperty('token');
    expect(res.json.created_at).toBe(clock.now() - 2500);
  });

  it('is live at expiration - 1 ms and 404 at expiration', async () => {
    const { emulator, clock } = await setup();
    const token = await createToken(emulator, 'caller', { seconds_until_expiration: 60 });
    clock.set(token.expiration - 1);
    const live = await verify(emulator, { token: token.token });
    expect(live.status).toBe(200);
    expect(live.json.expired).toBe(false);
    clock.set(token.expiration);
    expectClerkError(await verify(emulator, { token: token.token }), 404, 'resource_not_found');
    // Still listed as expired, with `expired` computed at read time.
    const listed = await call(
      emulator,
      'GET',
      `/m2m_tokens?subject=${token.subject}&expired=true`,
      { key: emulator.instanceSecretKey },
    );
    expect(listed.json.m2m_tokens[0]).toMatchObject({ id: token.id, expired: true });
  });

  it('uses the machine default TTL, and never expires a token with a null default', async () => {
    const { emulator, clock } = await setup(null);
    const forever = await createToken(emulator, 'caller');
    clock.advance(10 * 365 * 24 * 3_600_000);
    expect((await verify(emulator, { token: forever.token })).status).toBe(200);
  });

  it('answers one generic 404 for unknown, revoked, expired and out-of-scope tokens', async () => {
    const { emulator, clock } = await setup();
    const revoked = await createToken(emulator, 'caller');
    await call(emulator, 'POST', `/m2m_tokens/${revoked.id}/revoke`, {
      key: emulator.instanceSecretKey,
      body: {},
    });
    const expiring = await createToken(emulator, 'caller', { seconds_until_expiration: 1 });
    const outOfScope = await createToken(emulator, 'api'); // scopes []
    clock.advance(1000);

    const answers = [
      await verify(emulator, { token: 'mt_doesnotexist0123456789abcdefghijkl' }),
      await verify(emulator, { token: revoked.token }),
      await verify(emulator, { token: expiring.token }),
      await verify(emulator, { token: outOfScope.token }, emulator.machines.caller!.secretKey),
    ];
    for (const res of answers) expectClerkError(res, 404, 'resource_not_found');
    const bodies = answers.map(({ json }) => ({ ...json, clerk_trace_id: undefined }));
    for (const body of bodies) expect(body).toEqual(bodies[0]);
    // The out-of-scope token is fine for the instance key: there is no scope check.
    expect((await verify(emulator, { token: outOfScope.token })).status).toBe(200);
  });

  it('does not mark a failed verification as a use', async () => {
    const { emulator, clock } = await setup();
    const token = await createToken(emulator, 'caller');
    clock.advance(1000);
    await verify(emulator, { token: token.token }, emulator.machines.caller!.secretKey); // 404
    const listed = await call(emulator, 'GET', `/m2m_tokens?subject=${token.subject}`, {
      key: emulator.instanceSecretKey,
    });
    expect(listed.json.m2m_tokens[0]).toMatchObject({
      last_used_at: null,
      updated_at: token.updated_at,
    });
  });

  it('answers 404 for a JWT-format token, which is not stored', async () => {
    const { emulator } = await setup();
    const jwt = await createToken(emulator, 'caller', { token_format: 'jwt' });
    expectClerkError(await verify(emulator, { token: jwt.token }), 404, 'resource_not_found');
  });

  it('does not accept the token id in place of the token', async () => {
    const { emulator } = await setup();
    const token = await createToken(emulator, 'caller');
    expect((await verify(emulator, { token: token.id })).status).toBe(404);
  });

  it('accepts the legacy { secret } body', async () => {
    const { emulator } = await setup();
    const token = await createToken(emulator, 'caller');
    const res = await verify(emulator, { secret: token.token });
    expect(res.status).toBe(200);
    expect(res.json.id).toBe(token.id);
  });

  it('is served under /v1 too', async () => {
    const { emulator } = await setup();
    const token = await createToken(emulator, 'caller');
    const res = await call(emulator, 'POST', '/v1/m2m_tokens/verify', {
      key: emulator.instanceSecretKey,
      body: { token: token.token },
    });
    expect(res.status).toBe(200);
  });

  const bad: [string, unknown, string][] = [
    ['an empty object', {}, 'form_param_missing'],
    ['a null token', { token: null }, 'form_param_missing'],
    ['a numeric token', { token: 5 }, 'form_param_value_invalid'],
    ['an object token', { token: { a: 1 } }, 'form_param_value_invalid'],
    ['an unknown field', { token: 'mt_x', extra: true }, 'form_param_unknown'],
  ];
  it.each(bad)('rejects %s with 400', async (_name, body, code) => {
    const { emulator } = await setup();
    expectClerkError(await verify(emulator, body), 400, code);
  });

  it('treats a missing body as {} (400 missing token)', async () => {
    const { emulator } = await setup();
    const res = await call(emulator, 'POST', '/m2m_tokens/verify', {
      key: emulator.instanceSecretKey,
    });
    expectClerkError(res, 400, 'form_param_missing');
  });
});
