/**
 * JWT-format M2M tokens that should verify: minted by the emulator and checked locally, with
 * the keys read once from the emulator's JWKS, from `jwtKey`, or from `CLERK_JWT_KEY` (no
 * network at all). Also the result's shape, clock skew, the cache (one signature check per
 * token), what happens with no key source, and the JWT options.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { M2MConfigError } from '../../src/shared/config-error.js';
import {
  createTokenVerifier,
  type TokenVerifier,
  type TokenVerifierOptions,
} from '../../src/verifier/index.js';
import {
  API_ID,
  closedPortUrl,
  createClock,
  decodeJwt,
  type EmulatorSetup,
  ecPair,
  expectInvalid,
  m2mHeader,
  m2mPayload,
  randomKid,
  rs,
  rsaPair,
  setEnv,
  setupEmulator,
  sharedRsaPair,
  signJwt,
  useJwtSuite,
} from './helpers.js';

const jwtSuite = useJwtSuite();
const { tracker } = jwtSuite;

afterEach(() => {
  vi.restoreAllMocks();
});

/** A verifier on the setup's clock; tracked. */
function verifierFor(setup: EmulatorSetup, options: TokenVerifierOptions = {}): TokenVerifier {
  return tracker.track(
    createTokenVerifier({
      apiUrl: setup.emulator.url,
      secretKey: setup.emulator.instanceSecretKey,
      machineId: setup.apiId,
      now: setup.clock,
      retry: false,
      ...options,
    }),
  );
}

/** Counts signature checks: jose verifies with WebCrypto's `crypto.subtle.verify`. */
function countSignatureChecks() {
  return vi.spyOn(globalThis.crypto.subtle, 'verify');
}

describe('tokens minted by the emulator', () => {
  it('verify with keys read once from the JWKS with the instance key, never calling verify', async () => {
    const setup = jwtSuite.setup;
    const { emulator } = setup;
    const minted = await setup.mintJwt({ claims: { role: 'svc' } });
    const verifier = verifierFor(setup);

    const verified = await verifier.verify(minted.token);

    const { payload } = decodeJwt(minted.token);
    expect(verified).toEqual({
      id: minted.id,
      subject: setup.callerId,
      scopes: [setup.apiId],
      claims: { role: 'svc' },
      expiration: (payload.exp as number) * 1000,
      createdAt: (payload.iat as number) * 1000,
    });
    expect(verified.id).toBe(payload.jti);
    expect(verified.expiration).toBe(minted.expiration);
    expect(emulator.calls.jwks).toBe(1);
    expect(emulator.calls.verify).toBe(0);

    // A second token of the same instance is checked with the keys in hand.
    const second = await setup.mintJwt();
    await expect(verifier.verify(second.token)).resolves.toMatchObject({ id: second.id });
    expect(emulator.calls.jwks).toBe(1);
    expect(emulator.calls.verify).toBe(0);
  });

  it('have the same shape as an opaque token verified by the emulator', async () => {
    const setup = jwtSuite.setup;
    const claims = { role: 'svc', tier: 'gold', nested: { a: [1, 2] } };
    const jwt = await setup.mintJwt({ claims });
    const opaque = await setup.mintOpaque({ claims });
    const verifier = verifierFor(setup);

    const fromJwt = await verifier.verify(jwt.token);
    const fromOpaque = await verifier.verify(opaque.token);

    expect(Object.keys(fromJwt).sort()).toEqual(Object.keys(fromOpaque).sort());
    expect(fromJwt.subject).toBe(fromOpaque.subject);
    expect(fromJwt.scopes).toEqual(fromOpaque.scopes);
    expect(fromJwt.claims).toEqual(fromOpaque.claims);
    expect(fromJwt.claims).toEqual(claims);
    expect(fromJwt.id).toMatch(/^mt_/);
    expect(typeof fromJwt.expiration).toBe('number');
    expect(typeof fromJwt.createdAt).toBe('number');
    // Frozen like the opaque answer, so no caller can change the cached value.
    expect(Object.isFrozen(fromJwt)).toBe(true);
    expect(Object.isFrozen(fromJwt.scopes)).toBe(true);
    expect(Object.isFrozen(fromJwt.claims)).toBe(true);
  });

  it('carry no reserved claim in `claims`, and `null` when there are no custom claims', async () => {
    const setup = jwtSuite.setup;
    const verifier = verifierFor(setup);
    const plain = await setup.mintJwt();

    const verified = await verifier.verify(plain.token);

    expect(Object.keys(decodeJwt(plain.token).payload).sort()).toEqual(
      ['aud', 'exp', 'iat', 'iss', 'jti', 'nbf', 'scopes', 'sub'].sort(),
    );
    expect(verified.claims).toBeNull();
  });

  it('take scopes from the space-joined `scopes` claim when several machines are scoped', async () => {
    const setup = await setupEmulator(tracker, {
      machines: [
        { name: 'caller', scopedMachines: ['api', 'billing'] },
        { name: 'api' },
        { name: 'billing' },
      ],
    });
    const billingId = setup.emulator.machines.billing!.id;
    const minted = await setup.mintJwt();
    expect(decodeJwt(minted.token).payload.scopes).toBe(`${setup.apiId} ${billingId}`);

    const asApi = await verifierFor(setup).verify(minted.token);
    const asBilling = await verifierFor(setup, { machineId: billingId }).verify(minted.token);

    expect(asApi.scopes).toEqual([setup.apiId, billingId]);
    expect(asBilling.scopes).toEqual([setup.apiId, billingId]);
  });

  it('verify with `jwtKey` and no network at all: the API URL is a closed port', async () => {
    const setup = jwtSuite.setup;
    const minted = await setup.mintJwt({ claims: { role: 'svc' } });
    const verifier = tracker.track(
      createTokenVerifier({
        apiUrl: await closedPortUrl(),
        secretKey: setup.emulator.instanceSecretKey,
        jwtKey: setup.emulator.jwtKey,
        machineId: setup.apiId,
        now: setup.clock,
        retry: false,
      }),
    );

    const verified = await verifier.verify(minted.token);

    expect(verified).toMatchObject({
      id: minted.id,
      subject: setup.callerId,
      scopes: [setup.apiId],
      claims: { role: 'svc' },
      expiration: minted.expiration,
    });
    expect(setup.emulator.calls.jwks).toBe(0);
  });

  it('verify with `jwtKey` without ever asking the emulator, even with the instance key set', async () => {
    const setup = jwtSuite.setup;
    const minted = await setup.mintJwt();
    const verifier = verifierFor(setup, { jwtKey: setup.emulator.jwtKey });

    await expect(verifier.verify(minted.token)).resolves.toMatchObject({ id: minted.id });
    // An unknown `kid` does not send it to the JWKS either: `jwtKey` is the only key.
    const other = sharedRsaPair('attacker');
    const forged = signJwt(m2mHeader(randomKid()), m2mPayload(setup.clock()), rs(other.privateKey));
    await expectInvalid(verifier.verify(forged));

    expect(setup.emulator.calls.jwks).toBe(0);
    expect(setup.emulator.calls.verify).toBe(0);
  });

  it('verify with the PEM in CLERK_JWT_KEY and no network', async () => {
    const setup = jwtSuite.setup;
    const minted = await setup.mintJwt();
    const restore = setEnv('CLERK_JWT_KEY', setup.emulator.jwtKey);
    try {
      const verifier = tracker.track(
        createTokenVerifier({
          apiUrl: await closedPortUrl(),
          machineId: setup.apiId,
          now: setup.clock,
          retry: false,
        }),
      );
      await expect(verifier.verify(minted.token)).resolves.toMatchObject({
        id: minted.id,
        subject: setup.callerId,
      });
    } finally {
      restore();
    }
    expect(setup.emulator.calls.jwks).toBe(0);
  });

  it('verify with a one-line CLERK_JWT_KEY whose newlines are written `\\n`', async () => {
    const setup = jwtSuite.setup;
    const minted = await setup.mintJwt();
    const oneLine = setup.emulator.jwtKey.trim().replaceAll('\n', '\\n');
    expect(oneLine).not.toContain('\n');
    const restore = setEnv('CLERK_JWT_KEY', oneLine);
    try {
      const verifier = tracker.track(
        createTokenVerifier({
          apiUrl: await closedPortUrl(),
          machineId: setup.apiId,
          now: setup.clock,
          retry: false,
        }),
      );
      await expect(verifier.verify(minted.token)).resolves.toMatchObject({ id: minted.id });
    } finally {
      restore();
    }
  });

  it('the `jwtKey` option wins over CLERK_JWT_KEY', async () => {
    const setup = jwtSuite.setup;
    const minted = await setup.mintJwt();
    const restore = setEnv('CLERK_JWT_KEY', sharedRsaPair('attacker').publicKeyPem);
    try {
      const verifier = tracker.track(
        createTokenVerifier({
          apiUrl: await closedPortUrl(),
          jwtKey: setup.emulator.jwtKey,
          machineId: setup.apiId,
          now: setup.clock,
        }),
      );
      await expect(verifier.verify(minted.token)).resolves.toMatchObject({ id: minted.id });
    } finally {
      restore();
    }
  });
});

describe('RSA algorithms', () => {
  it.each([
    ['RS256', 'sha256'],
    ['RS384', 'sha384'],
    ['RS512', 'sha512'],
  ] as const)('%s is accepted', async (alg, hash) => {
    const clock = createClock();
    const key = sharedRsaPair('trusted');
    const verifier = tracker.track(
      createTokenVerifier({ jwtKey: key.publicKeyPem, machineId: API_ID, now: clock }),
    );
    const token = signJwt(
      m2mHeader(randomKid(), { alg }),
      m2mPayload(clock()),
      rs(key.privateKey, hash),
    );
    await expect(verifier.verify(token)).resolves.toMatchObject({ scopes: [API_ID] });
  });
});

describe('clock skew', () => {
  /** A verifier and a token minted by the emulator that expires in 60 s. */
  async function expiringToken(options: TokenVerifierOptions = {}) {
    const setup = jwtSuite.setup;
    const minted = await setup.mintJwt({ secondsUntilExpiration: 60 });
    const exp = decodeJwt(minted.token).payload.exp as number;
    return { setup, minted, expMs: exp * 1000, verifier: verifierFor(setup, options) };
  }

  it('a token expired by less than clockSkewMs (default 5 s) is still accepted', async () => {
    const { setup, minted, expMs, verifier } = await expiringToken();
    setup.clock.advance(expMs - setup.clock() + 4_000);
    await expect(verifier.verify(minted.token)).resolves.toMatchObject({ id: minted.id });
  });

  it('a token expired by more than clockSkewMs is refused as expired', async () => {
    const { setup, minted, expMs, verifier } = await expiringToken();
    setup.clock.advance(expMs - setup.clock() + 6_000);
    const err = await expectInvalid(verifier.verify(minted.token), 'expired');
    expect(err.tokenId).toBe(minted.id);
    expect(setup.emulator.calls.verify).toBe(0);
  });

  it('follows a larger clockSkewMs', async () => {
    const { setup, minted, expMs, verifier } = await expiringToken({ clockSkewMs: 30_000 });
    setup.clock.advance(expMs - setup.clock() + 25_000);
    await expect(verifier.verify(minted.token)).resolves.toMatchObject({ id: minted.id });
  });

  it('with clockSkewMs 0, a token past its expiration is refused', async () => {
    const { setup, minted, expMs, verifier } = await expiringToken({ clockSkewMs: 0 });
    setup.clock.advance(expMs - setup.clock() + 1);
    await expectInvalid(verifier.verify(minted.token), 'expired');
  });

  it('honours a clockSkewMs that is not a whole number of seconds (1500 ms)', async () => {
    const { setup, minted, expMs, verifier } = await expiringToken({ clockSkewMs: 1_500 });
    // Expired by 1.2 s < 1.5 s: within the skew.
    setup.clock.advance(expMs - setup.clock() + 1_200);
    await expect(verifier.verify(minted.token)).resolves.toMatchObject({ id: minted.id });
  });

  it('a token cached as good is refused once the clock passes expiration + skew', async () => {
    const { setup, minted, expMs, verifier } = await expiringToken();
    await verifier.verify(minted.token);
    setup.clock.advance(expMs - setup.clock() + 4_000);
    await expect(verifier.verify(minted.token)).resolves.toMatchObject({ id: minted.id });
    setup.clock.advance(2_000);
    await expectInvalid(verifier.verify(minted.token), 'expired');
  });
});

describe('the cache', () => {
  it('verifying the same JWT 100 times checks its signature once', async () => {
    const setup = jwtSuite.setup;
    const minted = await setup.mintJwt();
    const verifier = verifierFor(setup);
    const checks = countSignatureChecks();

    for (let i = 0; i < 100; i++) {
      await expect(verifier.verify(minted.token)).resolves.toMatchObject({ id: minted.id });
    }

    expect(checks).toHaveBeenCalledTimes(1);
    expect(verifier.stats()).toMatchObject({ misses: 1, hits: 99, negativeHits: 0 });
    expect(setup.emulator.calls.jwks).toBe(1);
    expect(setup.emulator.calls.verify).toBe(0);
  });

  it('100 concurrent verifications of one JWT share one signature check', async () => {
    const setup = jwtSuite.setup;
    const minted = await setup.mintJwt();
    const verifier = verifierFor(setup);
    const checks = countSignatureChecks();

    const all = await Promise.all(Array.from({ length: 100 }, () => verifier.verify(minted.token)));

    expect(all.every((v) => v.id === minted.id)).toBe(true);
    expect(checks).toHaveBeenCalledTimes(1);
    expect(setup.emulator.calls.jwks).toBe(1);
  });

  it('a bad JWT repeated is served from the negative cache', async () => {
    const setup = jwtSuite.setup;
    const minted = await setup.mintJwt();
    const { payload } = decodeJwt(minted.token);
    const other = sharedRsaPair('attacker');
    const forged = signJwt(
      m2mHeader(setup.emulator.jwks.keys[0]!.kid),
      payload,
      rs(other.privateKey),
    );
    const verifier = verifierFor(setup);
    const checks = countSignatureChecks();

    for (let i = 0; i < 10; i++) await expectInvalid(verifier.verify(forged));

    expect(checks).toHaveBeenCalledTimes(1);
    expect(verifier.stats()).toMatchObject({ misses: 1, negativeHits: 9, hits: 0 });
    expect(setup.emulator.calls.jwks).toBe(1);
  });

  it('the negative answer lasts negativeTtlMs, then the token is checked again', async () => {
    const setup = jwtSuite.setup;
    const minted = await setup.mintJwt();
    const forged = signJwt(
      m2mHeader(setup.emulator.jwks.keys[0]!.kid),
      decodeJwt(minted.token).payload,
      rs(sharedRsaPair('attacker').privateKey),
    );
    const verifier = verifierFor(setup, { cache: { negativeTtlMs: 1_000 } });
    const checks = countSignatureChecks();

    await expectInvalid(verifier.verify(forged));
    setup.clock.advance(999);
    await expectInvalid(verifier.verify(forged));
    expect(checks).toHaveBeenCalledTimes(1);
    setup.clock.advance(1);
    await expectInvalid(verifier.verify(forged));
    expect(checks).toHaveBeenCalledTimes(2);
    expect(verifier.stats()).toMatchObject({ misses: 2, negativeHits: 1 });
  });

  it('a token for another machine is refused on every use, cached or not', async () => {
    const setup = jwtSuite.setup;
    const minted = await setup.mintJwt();
    const forCaller = verifierFor(setup, { machineId: setup.callerId });
    await expectInvalid(forCaller.verify(minted.token), 'out_of_scope');
    await expectInvalid(forCaller.verify(minted.token), 'out_of_scope');
  });
});

describe('no key source at all', () => {
  it('JWTs are refused as invalid, never unavailable, with no JWKS request', async () => {
    const setup = jwtSuite.setup;
    const minted = await setup.mintJwt();
    const opaque = await setup.mintOpaque();
    const verifier = tracker.track(
      createTokenVerifier({
        apiUrl: setup.emulator.url,
        machineSecretKey: setup.emulator.machines.api!.secretKey,
        // With machineId set, the scope can be checked: only the missing key refuses the JWT.
        machineId: setup.apiId,
        now: setup.clock,
        retry: false,
      }),
    );

    await expectInvalid(verifier.verify(minted.token));
    await expectInvalid(verifier.verify(minted.token));
    // The verifier itself works: opaque tokens still verify with the machine key.
    await expect(verifier.verify(opaque.token)).resolves.toMatchObject({ id: opaque.id });

    expect(setup.emulator.calls.jwks).toBe(0);
    expect(setup.emulator.calls.verify).toBe(1);
  });
});

describe('options', () => {
  const expectConfigError = (build: () => unknown, option: string) => {
    let caught: unknown;
    try {
      build();
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(M2MConfigError);
    expect((caught as M2MConfigError).option).toBe(option);
    expect((caught as M2MConfigError).message).toContain(option);
  };

  it('`jwtKey` that is not a PEM is refused, naming jwtKey', () => {
    expectConfigError(() => createTokenVerifier({ jwtKey: 'not a pem' }), 'jwtKey');
  });

  it('`jwtKey` that is an EC key is refused, naming jwtKey', () => {
    expectConfigError(() => createTokenVerifier({ jwtKey: ecPair().publicKeyPem }), 'jwtKey');
  });

  it('`jwtKey` that is an RSA key too short for RS256 (1024 bits) is refused at construction', () => {
    // jose refuses RSA keys under 2048 bits, so such a key could never verify a token: every
    // JWT would be refused as invalid at request time instead of failing on start-up.
    expectConfigError(() => createTokenVerifier({ jwtKey: rsaPair(1024).publicKeyPem }), 'jwtKey');
  });

  it('`jwtKey` that is not a string is refused, naming jwtKey', () => {
    expectConfigError(() => createTokenVerifier({ jwtKey: 42 as unknown as string }), 'jwtKey');
  });

  it('a CLERK_JWT_KEY that is not a PEM is refused at construction', () => {
    const restore = setEnv('CLERK_JWT_KEY', 'garbage');
    try {
      expectConfigError(() => createTokenVerifier({}), 'jwtKey');
    } finally {
      restore();
    }
  });

  it('`jwksRefreshMinMs: -1` is refused, and so is a fraction', () => {
    expectConfigError(() => createTokenVerifier({ jwksRefreshMinMs: -1 }), 'jwksRefreshMinMs');
    expectConfigError(() => createTokenVerifier({ jwksRefreshMinMs: 1.5 }), 'jwksRefreshMinMs');
  });

  it('an RSA `jwtKey` and `jwksRefreshMinMs: 0` are accepted', async () => {
    const verifier = tracker.track(
      createTokenVerifier({
        jwtKey: sharedRsaPair('trusted').publicKeyPem,
        jwksRefreshMinMs: 0,
        anyMachine: true,
      }),
    );
    expect(verifier.stats().size).toBe(0);
  });
});
