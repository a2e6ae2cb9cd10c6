import { createPublicKey, verify as verifySignature } from 'node:crypto';
import { createClerkClient } from '@clerk/backend';
import { createLocalJWKSet, type JSONWebKeySet, jwtVerify } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import type { Emulator } from '../../src/emulator/index.js';
import { M2M_JWT_CATEGORY } from '../../src/emulator/index.js';
import {
  call,
  closeEmulators,
  createToken,
  expectClerkError,
  manualClock,
  start,
} from './helpers.js';

afterEach(closeEmulators);

function decode(jwt: string) {
  const [header, payload, signature] = jwt.split('.');
  const part = (s: string | undefined) => JSON.parse(Buffer.from(s!, 'base64url').toString('utf8'));
  return {
    header: part(header),
    payload: part(payload),
    input: `${header}.${payload}`,
    signature: Buffer.from(signature!, 'base64url'),
  };
}

const createJwt = (emulator: Emulator, body: Record<string, unknown> = {}, machine = 'caller') =>
  createToken(emulator, machine, { token_format: 'jwt', ...body });

describe('JWT-format tokens', () => {
  it("have Clerk's header and payload, with claims at the top level", async () => {
    const clock = manualClock(1_800_000_000_789);
    const emulator = await start({ clock: clock.now });
    const { caller, api } = emulator.machines;
    const res = await createJwt(emulator, { claims: { role: 'service', tier: 'gold' } });
    const { header, payload } = decode(res.token);
    expect(header).toEqual({
      alg: 'RS256',
      typ: 'JWT',
      kid: emulator.jwks.keys[0]!.kid,
      cat: 'cl_B7d4PD333AAA',
    });
    expect(M2M_JWT_CATEGORY).toBe('cl_B7d4PD333AAA');
    const iat = 1_800_000_000;
    expect(payload).toEqual({
      iss: emulator.url,
      sub: caller!.id,
      aud: [api!.id],
      scopes: api!.id,
      iat,
      nbf: iat - 10,
      exp: iat + 3600,
      jti: res.id,
      role: 'service',
      tier: 'gold',
    });
    expect(res).toEqual({
      object: 'machine_to_machine_token',
      id: expect.stringMatching(/^mt_[0-9a-f]{32}$/),
      subject: caller!.id,
      scopes: [api!.id],
      claims: { role: 'service', tier: 'gold' },
      token: res.token,
      revoked: false,
      revocation_reason: null,
      expired: false,
      expiration: (iat + 3600) * 1000,
      last_used_at: null,
      created_at: clock.now(),
      updated_at: clock.now(),
    });
  });

  it('space-joins several scopes and keeps reserved claims out of reach of custom claims', async () => {
    const emulator = await start({
      machines: [{ name: 'a', scopedMachines: ['b', 'c'] }, { name: 'b' }, { name: 'c' }],
    });
    const { a, b, c } = emulator.machines;
    const res = await createJwt(
      emulator,
      {
        claims: {
          sub: 'mch_evil',
          exp: 1,
          iss: 'x',
          aud: ['x'],
          scopes: 'x',
          jti: 'x',
          keep: true,
        },
      },
      'a',
    );
    const { payload } = decode(res.token);
    expect(payload).toMatchObject({
      sub: a!.id,
      aud: [b!.id, c!.id],
      scopes: `${b!.id} ${c!.id}`,
      iss: emulator.url,
      jti: res.id,
      keep: true,
    });
    expect(payload.exp).toBe(payload.iat + 3600);
  });

  it('takes its lifetime from seconds_until_expiration, or a long one for never-expiring machines', async () => {
    const emulator = await start({
      machines: [{ name: 'short' }, { name: 'forever', defaultTokenTtlSeconds: null }],
    });
    const short = decode(
      (await createJwt(emulator, { seconds_until_expiration: 120 }, 'short')).token,
    );
    expect(short.payload.exp - short.payload.iat).toBe(120);
    const forever = await createJwt(emulator, {}, 'forever');
    const { payload } = decode(forever.token);
    expect(payload.exp - payload.iat).toBe(315_360_000);
    expect(forever.expiration).toBe(payload.exp * 1000);
    expect(payload.aud).toEqual([]);
    expect(payload.scopes).toBe('');
  });

  it('is signed RS256 by the key published in the JWKS', async () => {
    const emulator = await start();
    const res = await createJwt(emulator);
    const { input, signature } = decode(res.token);

    expect(verifySignature('sha256', Buffer.from(input), emulator.jwtKey, signature)).toBe(true);

    const jwks = await call(emulator, 'GET', '/v1/jwks', { key: emulator.instanceSecretKey });
    expect(jwks.status).toBe(200);
    expect(jwks.headers['content-type']).toBe('application/json');
    expect(jwks.json.keys).toHaveLength(1);
    const jwk = jwks.json.keys[0];
    expect(Object.keys(jwk).sort()).toEqual(['alg', 'e', 'kid', 'kty', 'n', 'use']);
    expect(jwk).toMatchObject({
      kty: 'RSA',
      alg: 'RS256',
      use: 'sig',
      kid: emulator.jwks.keys[0]!.kid,
      e: 'AQAB',
    });
    const fromJwk = createPublicKey({ key: { kty: 'RSA', n: jwk.n, e: jwk.e }, format: 'jwk' });
    expect(verifySignature('sha256', Buffer.from(input), fromJwk, signature)).toBe(true);
    expect(fromJwk.asymmetricKeyDetails?.modulusLength).toBe(2048);

    // A tampered payload does not verify.
    const forged = Buffer.from(
      JSON.stringify({ ...decode(res.token).payload, sub: 'mch_x' }),
    ).toString('base64url');
    const forgedInput = `${input.split('.')[0]}.${forged}`;
    expect(verifySignature('sha256', Buffer.from(forgedInput), fromJwk, signature)).toBe(false);
  });

  it('uses a different signing key in each emulator', async () => {
    const [one, two] = await Promise.all([start(), start()]);
    const res = await createJwt(one!);
    const { input, signature } = decode(res.token);
    expect(verifySignature('sha256', Buffer.from(input), two!.jwtKey, signature)).toBe(false);
  });

  it('is not stored: not listed, not revocable, not verifiable by the BAPI', async () => {
    const emulator = await start();
    const res = await createJwt(emulator);
    const listed = await call(
      emulator,
      'GET',
      `/m2m_tokens?subject=${res.subject}&revoked=true&expired=true`,
      {
        key: emulator.instanceSecretKey,
      },
    );
    expect(listed.json.total_count).toBe(0);
    expectClerkError(
      await call(emulator, 'POST', `/m2m_tokens/${res.id}/revoke`, {
        key: emulator.instanceSecretKey,
        body: {},
      }),
      404,
      'resource_not_found',
    );
    expectClerkError(
      await call(emulator, 'POST', '/m2m_tokens/verify', {
        key: emulator.instanceSecretKey,
        body: { token: res.token },
      }),
      404,
      'resource_not_found',
    );
  });

  it("verifies through Clerk's SDK via the JWKS, without a verify call", async () => {
    const emulator = await start();
    const { caller, api } = emulator.machines;
    const minting = createClerkClient({
      machineSecretKey: caller!.secretKey,
      apiUrl: emulator.url,
    });
    const created = await minting.m2m.createToken({ tokenFormat: 'jwt', claims: { role: 'svc' } });
    expect(created.token?.split('.')).toHaveLength(3);

    const verifier = createClerkClient({
      secretKey: emulator.instanceSecretKey,
      apiUrl: emulator.url,
    });
    const verified = await verifier.m2m.verify({ token: created.token! });
    expect(verified.id).toBe(created.id);
    expect(verified.subject).toBe(caller!.id);
    expect(verified.scopes).toEqual([api!.id]);
    expect(verified.claims).toMatchObject({ role: 'svc' });
    expect(verified.expiration).toBe(created.expiration);
    expect(emulator.calls.jwks).toBe(1);
    expect(emulator.calls.verify).toBe(0);
  });

  it("verifies networkless with the public key as Clerk's jwtKey", async () => {
    const emulator = await start();
    const created = await createJwt(emulator);
    const verifier = createClerkClient({
      jwtKey: emulator.jwtKey,
      apiUrl: emulator.url,
    });
    const verified = await verifier.m2m.verify({ token: created.token });
    expect(verified.subject).toBe(created.subject);
    expect(emulator.calls).toMatchObject({ jwks: 0, verify: 0 });
  });

  it("is rejected by Clerk's SDK when signed by another emulator", async () => {
    const [one, two] = await Promise.all([start(), start()]);
    const created = await createJwt(one!);
    const verifier = createClerkClient({ jwtKey: two!.jwtKey, apiUrl: two!.url });
    await expect(verifier.m2m.verify({ token: created.token })).rejects.toThrow();
  });

  it('exposes its key in standard forms: `jwks` a JSON Web Key Set, `jwtKey` the PEM', async () => {
    const emulator = await start();
    const served = await call(emulator, 'GET', '/v1/jwks', { key: emulator.instanceSecretKey });
    expect(emulator.jwks).toEqual(served.json);
    expect(emulator.jwks).toEqual({
      keys: [
        {
          kty: 'RSA',
          n: expect.any(String),
          e: 'AQAB',
          kid: expect.stringMatching(/^ins_/),
          alg: 'RS256',
          use: 'sig',
        },
      ],
    });
    // Any JWT library takes it as is.
    const created = await createJwt(emulator);
    const { payload } = await jwtVerify(
      created.token,
      createLocalJWKSet(emulator.jwks as JSONWebKeySet),
    );
    expect(payload.sub).toBe(emulator.machines.caller!.id);
    // The PEM is the same key.
    const fromPem = createPublicKey(emulator.jwtKey).export({ format: 'jwk' });
    expect(fromPem.n).toBe(emulator.jwks.keys[0]!.n);
    // A copy each time: mutating it changes nothing served.
    (emulator.jwks.keys[0] as { kid: string }).kid = 'x';
    expect(emulator.jwks.keys[0]!.kid).toMatch(/^ins_/);
  });
});
