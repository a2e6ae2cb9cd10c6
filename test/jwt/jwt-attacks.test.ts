/**
 * Forged and tampered JWTs. Each is refused as `InvalidTokenError` by the verifier and as 401
 * `invalid_token` by `m2mAuth()`, never reaching the route. Every forgery is built from a token
 * that verifies (the control), changed in one respect only, so each refusal is due to that
 * change. Two key sources: a trusted key of ours given as `jwtKey` (so a test can sign valid
 * tokens with any header or claim), and the emulator's JWKS for the attacks on its key.
 */
import express from 'express';
import request from 'supertest';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { m2mAuth } from '../../src/middleware/index.js';
import {
  createTokenVerifier,
  type InvalidTokenReason,
  type TokenVerifier,
} from '../../src/verifier/index.js';
import {
  API_ID,
  CALLER_ID,
  createClock,
  createTracker,
  decodeJwt,
  type EmulatorSetup,
  ecPair,
  edit,
  es256,
  expectInvalid,
  hs256,
  M2M_CAT,
  m2mHeader,
  m2mPayload,
  OTHER_ID,
  ps256,
  randomKid,
  rs,
  SESSION_CAT,
  setEnv,
  setupEmulator,
  sharedRsaPair,
  signJwt,
  TEMPLATE_CAT,
  withPayload,
} from './helpers.js';

const clock = createClock();
const tracker = createTracker();
const suite = createTracker();
let restoreEnv: () => void;

beforeEach(() => {
  clock.reset();
  restoreEnv = setEnv('CLERK_JWT_KEY', undefined);
});

afterEach(async () => {
  await tracker.closeAll();
  restoreEnv();
});

afterAll(() => suite.closeAll());

/** The key the `jwtKey` verifiers trust, and one they do not. */
const trusted = () => sharedRsaPair('trusted');
const attacker = () => sharedRsaPair('attacker');
const KID = 'ins_trustedinstance0000000000';

/** A token signed by the trusted key: valid unless `header`/`payload` changes make it not. */
function forge(
  header: Record<string, unknown> = {},
  payload: Record<string, unknown> = {},
  signer = rs(trusted().privateKey),
): string {
  return signJwt(m2mHeader(KID, header), m2mPayload(clock(), payload), signer);
}

/** An unsigned token (`alg: none`) with this third part. */
function unsigned(signature: string, alg = 'none'): string {
  const [h, p] = forge({ alg }).split('.');
  return `${h}.${p}.${signature}`;
}

const pemAsHmacSecret = () => hs256(trusted().publicKeyPem);
const nowS = () => Math.floor(clock() / 1000);

interface Attack {
  name: string;
  token: () => string;
  reason?: InvalidTokenReason;
}

const ATTACKS: Attack[] = [
  {
    name: 'tampered payload: scopes changed from another machine to this one',
    token: () => {
      const good = forge({}, { scopes: OTHER_ID, aud: [OTHER_ID] });
      return withPayload(good, edit(decodeJwt(good).payload, { scopes: API_ID, aud: [API_ID] }));
    },
  },
  {
    name: 'tampered payload: a custom claim changed (role svc -> admin)',
    token: () => {
      const good = forge();
      return withPayload(good, edit(decodeJwt(good).payload, { role: 'admin' }));
    },
  },
  {
    name: 'tampered payload: the expiration of an expired token pushed back',
    token: () => {
      const old = forge({}, { exp: nowS() - 3600, iat: nowS() - 7200, nbf: nowS() - 7210 });
      return withPayload(old, edit(decodeJwt(old).payload, { exp: nowS() + 3600 }));
    },
  },
  {
    name: 'tampered payload: the subject changed',
    token: () => {
      const good = forge();
      return withPayload(good, edit(decodeJwt(good).payload, { sub: `mch_${'z'.repeat(27)}` }));
    },
  },
  {
    name: 'tampered header: the signature of another header',
    token: () => {
      const [, p, s] = forge().split('.');
      const [h] = forge({ alg: 'RS512' }).split('.');
      return `${h}.${p}.${s}`;
    },
  },
  {
    name: 'wrong signature: signed by another RSA key with the same kid',
    token: () => forge({}, {}, rs(attacker().privateKey)),
  },
  { name: 'signature cut short', token: () => forge().slice(0, -10) },
  { name: 'alg none, empty signature', token: () => unsigned('') },
  { name: 'alg none, with a signature part', token: () => unsigned('c2lnbmF0dXJl') },
  { name: 'alg NONE (case variant)', token: () => unsigned('c2lnbmF0dXJl', 'NONE') },
  {
    name: 'alg none, carrying the valid signature of the RS256 token',
    token: () => unsigned(forge().split('.')[2]!),
  },
  {
    name: 'HS256 with the public key PEM as HMAC secret (algorithm confusion)',
    token: () => forge({ alg: 'HS256' }, {}, pemAsHmacSecret()),
  },
  {
    name: 'HS256 with the PEM, trimmed, as HMAC secret',
    token: () => forge({ alg: 'HS256' }, {}, hs256(trusted().publicKeyPem.trim())),
  },
  {
    name: 'HS256 with the DER public key as HMAC secret',
    token: () =>
      forge(
        { alg: 'HS256' },
        {},
        hs256(trusted().publicKey.export({ format: 'der', type: 'spki' })),
      ),
  },
  {
    name: 'ES256 signed by an EC key',
    token: () => forge({ alg: 'ES256' }, {}, es256(ecPair().privateKey)),
  },
  {
    name: 'PS256 correctly signed by the trusted RSA key (an algorithm not allowed)',
    token: () => forge({ alg: 'PS256' }, {}, ps256(trusted().privateKey)),
  },
  {
    name: "an embedded `jwk` header with the attacker's key",
    token: () =>
      forge({ jwk: attacker().publicKey.export({ format: 'jwk' }) }, {}, rs(attacker().privateKey)),
  },
  {
    name: 'a `jku` header pointing to a key set of the attacker',
    token: () => forge({ jku: 'https://attacker.example/jwks' }, {}, rs(attacker().privateKey)),
  },
  { name: 'cat of a session token', token: () => forge({ cat: SESSION_CAT }) },
  { name: 'cat of a JWT-template token', token: () => forge({ cat: TEMPLATE_CAT }) },
  { name: 'cat "ignore"', token: () => forge({ cat: 'cl_I7d4PD111III' }) },
  { name: 'cat null', token: () => forge({ cat: null }) },
  { name: 'typ at+jwt', token: () => forge({ typ: 'at+jwt' }) },
  { name: 'typ JWS', token: () => forge({ typ: 'JWS' }) },
  { name: 'missing exp', token: () => forge({}, { exp: undefined }) },
  { name: 'exp not a number', token: () => forge({}, { exp: String(nowS() + 3600) }) },
  {
    name: 'exp in the past beyond clockSkewMs',
    token: () => forge({}, { exp: nowS() - 6, iat: nowS() - 3600, nbf: nowS() - 3610 }),
    reason: 'expired',
  },
  {
    name: 'exp an hour in the past',
    token: () => forge({}, { exp: nowS() - 3600, iat: nowS() - 7200, nbf: nowS() - 7210 }),
    reason: 'expired',
  },
  { name: 'nbf in the future beyond clockSkewMs', token: () => forge({}, { nbf: nowS() + 7 }) },
  { name: 'nbf an hour in the future', token: () => forge({}, { nbf: nowS() + 3600 }) },
  {
    name: 'for another machine (machineId in neither scopes nor aud)',
    token: () => forge({}, { scopes: OTHER_ID, aud: [OTHER_ID] }),
    reason: 'out_of_scope',
  },
  {
    name: 'for another machine, with no scopes claim (aud only)',
    token: () => forge({}, { scopes: undefined, aud: [OTHER_ID] }),
    reason: 'out_of_scope',
  },
  {
    name: 'for no machine (empty scopes and aud)',
    token: () => forge({}, { scopes: '', aud: [] }),
    reason: 'out_of_scope',
  },
  {
    name: 'machineId only as a prefix of a scope',
    token: () => forge({}, { scopes: `${API_ID}x`, aud: [`${API_ID}x`] }),
    reason: 'out_of_scope',
  },
  { name: 'sub not a machine (a user id)', token: () => forge({}, { sub: 'user_2abc' }) },
  { name: 'sub missing', token: () => forge({}, { sub: undefined }) },
  { name: 'sub not a string', token: () => forge({}, { sub: 42 }) },
];

describe('with a trusted `jwtKey`', () => {
  let verifier: TokenVerifier;

  beforeEach(() => {
    verifier = tracker.track(
      createTokenVerifier({ jwtKey: trusted().publicKeyPem, machineId: API_ID, now: clock }),
    );
  });

  it('the control token verifies (every forgery below differs from it in one respect)', async () => {
    const token = forge();
    await expect(verifier.verify(token)).resolves.toMatchObject({
      subject: CALLER_ID,
      scopes: [API_ID],
      claims: { role: 'svc' },
    });
  });

  it.each(ATTACKS)('refuses $name', async ({ token, reason }) => {
    await expectInvalid(verifier.verify(token()), reason);
  });

  it('accepts a token with no `cat` (older tokens have none) when otherwise valid', async () => {
    const token = forge({ cat: undefined });
    expect(decodeJwt(token).header).not.toHaveProperty('cat');
    await expect(verifier.verify(token)).resolves.toMatchObject({ scopes: [API_ID] });
  });

  it('accepts a token with no `typ` when otherwise valid', async () => {
    const token = forge({ typ: undefined });
    await expect(verifier.verify(token)).resolves.toMatchObject({ scopes: [API_ID] });
  });

  it('accepts a token with neither `typ` nor `cat` nor `kid`', async () => {
    const token = forge({ typ: undefined, cat: undefined, kid: undefined });
    await expect(verifier.verify(token)).resolves.toMatchObject({ scopes: [API_ID] });
  });

  it('falls back to `aud` for the scopes when there is no `scopes` claim', async () => {
    const token = forge({}, { scopes: undefined, aud: [OTHER_ID, API_ID] });
    await expect(verifier.verify(token)).resolves.toMatchObject({ scopes: [OTHER_ID, API_ID] });
  });

  it('a token expired by less than clockSkewMs and one not yet valid by less are accepted', async () => {
    await expect(
      verifier.verify(forge({}, { exp: nowS() - 4, iat: nowS() - 3600, nbf: nowS() - 3610 })),
    ).resolves.toMatchObject({ scopes: [API_ID] });
    await expect(verifier.verify(forge({}, { nbf: nowS() + 4 }))).resolves.toMatchObject({
      scopes: [API_ID],
    });
  });

  it('uses the `M2M` category the emulator puts in the header', () => {
    expect(decodeJwt(forge()).header.cat).toBe(M2M_CAT);
  });
});

describe('with the emulator JWKS', () => {
  let setup: EmulatorSetup;
  let verifier: TokenVerifier;

  beforeAll(async () => {
    setup = await setupEmulator(suite, {}, clock);
  });

  beforeEach(() => {
    setup.reset();
    verifier = tracker.track(
      createTokenVerifier({
        apiUrl: setup.emulator.url,
        secretKey: setup.emulator.instanceSecretKey,
        machineId: setup.apiId,
        now: clock,
        retry: false,
      }),
    );
  });

  afterEach(() => {
    // However many forgeries, the JWKS is read at most once and Clerk's verify never called.
    expect(setup.emulator.calls.jwks).toBeLessThanOrEqual(1);
    expect(setup.emulator.calls.verify).toBe(0);
  });

  const emulatorKey = () => setup.emulator.jwtKey;

  /** A token minted by the emulator, and its decoded parts. */
  async function minted(claims: Record<string, unknown> = { role: 'reader' }) {
    const { token } = await setup.mintJwt({ claims });
    return { token, ...decodeJwt(token) };
  }

  it('the control token minted by the emulator verifies', async () => {
    const { token } = await minted();
    await expect(verifier.verify(token)).resolves.toMatchObject({ claims: { role: 'reader' } });
    expect(setup.emulator.calls.jwks).toBe(1);
  });

  it('refuses a tampered custom claim (role reader -> admin)', async () => {
    const { token, payload } = await minted();
    await expectInvalid(verifier.verify(withPayload(token, edit(payload, { role: 'admin' }))));
  });

  it('refuses a tampered subject', async () => {
    const { token, payload } = await minted();
    const tampered = withPayload(token, edit(payload, { sub: `mch_${'z'.repeat(27)}` }));
    await expectInvalid(verifier.verify(tampered));
  });

  it('refuses an expired token whose expiration was pushed back', async () => {
    const { token: short } = await setup.mintJwt({ secondsUntilExpiration: 60 });
    clock.advance(120_000);
    await expectInvalid(verifier.verify(short), 'expired');
    const { payload } = decodeJwt(short);
    const revived = withPayload(short, edit(payload, { exp: nowS() + 3600 }));
    await expectInvalid(verifier.verify(revived));
  });

  it('refuses its payload signed by another RSA key with the same kid', async () => {
    const { header, payload } = await minted();
    await expectInvalid(verifier.verify(signJwt(header, payload, rs(attacker().privateKey))));
  });

  it('refuses alg none with the emulator kid', async () => {
    const { token, header, payload } = await minted();
    const [h] = signJwt(edit(header, { alg: 'none' }), payload, () => Buffer.alloc(0)).split('.');
    const [, p, s] = token.split('.');
    await expectInvalid(verifier.verify(`${h}.${p}.${s}`));
    await expectInvalid(verifier.verify(`${h}.${p}.`));
  });

  it('refuses HS256 signed with the emulator public key PEM as HMAC secret', async () => {
    const { header, payload } = await minted();
    const token = signJwt(edit(header, { alg: 'HS256' }), payload, hs256(emulatorKey()));
    await expectInvalid(verifier.verify(token));
  });

  it('refuses ES256 with the emulator kid', async () => {
    const { header, payload } = await minted();
    const token = signJwt(edit(header, { alg: 'ES256' }), payload, es256(ecPair().privateKey));
    await expectInvalid(verifier.verify(token));
  });

  it("refuses an embedded `jwk` header with the attacker's key and the emulator kid", async () => {
    const { header, payload } = await minted();
    const token = signJwt(
      edit(header, { jwk: attacker().publicKey.export({ format: 'jwk' }) }),
      payload,
      rs(attacker().privateKey),
    );
    await expectInvalid(verifier.verify(token));
  });

  it('refuses a token for another machine', async () => {
    const { token } = await minted();
    const other = tracker.track(
      createTokenVerifier({
        apiUrl: setup.emulator.url,
        secretKey: setup.emulator.instanceSecretKey,
        machineId: setup.callerId,
        now: clock,
        retry: false,
      }),
    );
    await expectInvalid(other.verify(token), 'out_of_scope');
  });
});

describe('through m2mAuth', () => {
  const app = express();
  let seen = 0;
  const middleware = m2mAuth({ jwtKey: trusted().publicKeyPem, machineId: API_ID, now: clock });
  app.use(middleware);
  app.get('/', (req, res) => {
    seen += 1;
    res.json(req.m2m ?? null);
  });

  afterAll(() => middleware.close());

  it('the control token gives 200', async () => {
    const res = await request(app).get('/').set('Authorization', `Bearer ${forge()}`);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ subject: CALLER_ID, scopes: [API_ID] });
  });

  it.each(ATTACKS)('answers 401 invalid_token to $name', async ({ token }) => {
    const before = seen;
    const res = await request(app).get('/').set('Authorization', `Bearer ${token()}`);
    expect(res.status).toBe(401);
    expect(res.body).toEqual({
      error: 'invalid_token',
      error_description: 'The access token is not valid',
    });
    expect(res.headers['www-authenticate']).toContain('error="invalid_token"');
    expect(seen).toBe(before);
  });

  it('answers 200 to a token with no `cat`', async () => {
    const res = await request(app)
      .get('/')
      .set('Authorization', `Bearer ${forge({ cat: undefined })}`);
    expect(res.status).toBe(200);
  });
});

describe('kid with `jwtKey`', () => {
  it('is ignored: a token with any kid verifies with the trusted key', async () => {
    const verifier = tracker.track(
      createTokenVerifier({ jwtKey: trusted().publicKeyPem, machineId: API_ID, now: clock }),
    );
    await expect(verifier.verify(forge({ kid: randomKid() }))).resolves.toBeDefined();
  });
});
