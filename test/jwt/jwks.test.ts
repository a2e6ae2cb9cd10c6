/**
 * The JWKS side of JWT verification, counted at the emulator (`calls.jwks`) and at a proxy in
 * front of it: keys are read once, an unknown `kid` makes at most one refetch per
 * `jwksRefreshMinMs` whatever the number of forged `kid`s, and a JWKS that cannot be read with
 * no key in hand is "unavailable" (503), never "invalid", and never cached.
 */
import express from 'express';
import request from 'supertest';
import { beforeEach, describe, expect, it } from 'vitest';
import { m2mAuth } from '../../src/middleware/index.js';
import {
  createTokenVerifier,
  type TokenVerifier,
  type TokenVerifierOptions,
  VerifierUnavailableError,
} from '../../src/verifier/index.js';
import {
  decodeJwt,
  expectInvalid,
  m2mHeader,
  randomKid,
  rs,
  type SwitchableProxy,
  setupEmulator,
  sharedRsaPair,
  signJwt,
  startProxy,
  useJwtSuite,
} from './helpers.js';

const jwtSuite = useJwtSuite();
const { tracker } = jwtSuite;

const REFRESH_MIN_MS = 30_000;

function verifierAt(apiUrl: string, options: TokenVerifierOptions = {}): TokenVerifier {
  return tracker.track(
    createTokenVerifier({
      apiUrl,
      secretKey: jwtSuite.setup.emulator.instanceSecretKey,
      machineId: jwtSuite.setup.apiId,
      now: jwtSuite.setup.clock,
      retry: false,
      ...options,
    }),
  );
}

/** A token shaped like the emulator's, for the right machine, signed by a key the JWKS lacks. */
async function forgedWithKid(kid = randomKid()): Promise<string> {
  const { token } = await jwtSuite.setup.mintJwt();
  const { payload } = decodeJwt(token);
  return signJwt(m2mHeader(kid), payload, rs(sharedRsaPair('attacker').privateKey));
}

describe('unknown kid', () => {
  it('makes one JWKS refetch, then the token is refused as unknown', async () => {
    const verifier = verifierAt(jwtSuite.setup.emulator.url);
    const good = await jwtSuite.setup.mintJwt();
    await verifier.verify(good.token);
    expect(jwtSuite.setup.emulator.calls.jwks).toBe(1);

    jwtSuite.setup.clock.advance(REFRESH_MIN_MS + 1);
    await expectInvalid(verifier.verify(await forgedWithKid()), 'unknown');

    expect(jwtSuite.setup.emulator.calls.jwks).toBe(2);
    expect(jwtSuite.setup.emulator.calls.verify).toBe(0);
  });

  it('a first token with an unknown kid makes one fetch on a cold verifier', async () => {
    const verifier = verifierAt(jwtSuite.setup.emulator.url);
    await expectInvalid(verifier.verify(await forgedWithKid()), 'unknown');
    expect(jwtSuite.setup.emulator.calls.jwks).toBe(1);
    // The keys are now in hand: a good token needs no more fetch.
    await verifier.verify((await jwtSuite.setup.mintJwt()).token);
    expect(jwtSuite.setup.emulator.calls.jwks).toBe(1);
  });

  it('50 forged kids within jwksRefreshMinMs (default 30 s) make one more JWKS request in all', async () => {
    const verifier = verifierAt(jwtSuite.setup.emulator.url);
    await verifier.verify((await jwtSuite.setup.mintJwt()).token);
    expect(jwtSuite.setup.emulator.calls.jwks).toBe(1);
    jwtSuite.setup.clock.advance(REFRESH_MIN_MS + 1);

    const forged = await Promise.all(Array.from({ length: 50 }, () => forgedWithKid()));
    // Half at once, half one after the other, the clock moving within the window.
    await Promise.all(forged.slice(0, 25).map((t) => expectInvalid(verifier.verify(t), 'unknown')));
    for (const token of forged.slice(25)) {
      jwtSuite.setup.clock.advance(500);
      await expectInvalid(verifier.verify(token), 'unknown');
    }
    expect(jwtSuite.setup.emulator.calls.jwks).toBe(2);

    // Past jwksRefreshMinMs since the last fetch: one more refetch is allowed, and only one.
    jwtSuite.setup.clock.advance(REFRESH_MIN_MS);
    await expectInvalid(verifier.verify(await forgedWithKid()), 'unknown');
    expect(jwtSuite.setup.emulator.calls.jwks).toBe(3);
    await expectInvalid(verifier.verify(await forgedWithKid()), 'unknown');
    expect(jwtSuite.setup.emulator.calls.jwks).toBe(3);

    // Good tokens kept verifying all along, with the keys in hand.
    await expect(verifier.verify((await jwtSuite.setup.mintJwt()).token)).resolves.toBeDefined();
    expect(jwtSuite.setup.emulator.calls.jwks).toBe(3);
    expect(jwtSuite.setup.emulator.calls.verify).toBe(0);
  });

  it('50 concurrent forged kids on a cold verifier share a single fetch', async () => {
    const verifier = verifierAt(jwtSuite.setup.emulator.url);
    const forged = await Promise.all(Array.from({ length: 50 }, () => forgedWithKid()));
    await Promise.all(forged.map((t) => expectInvalid(verifier.verify(t), 'unknown')));
    expect(jwtSuite.setup.emulator.calls.jwks).toBe(1);
  });

  it('follows a custom jwksRefreshMinMs', async () => {
    const verifier = verifierAt(jwtSuite.setup.emulator.url, { jwksRefreshMinMs: 1_000 });
    await verifier.verify((await jwtSuite.setup.mintJwt()).token);
    jwtSuite.setup.clock.advance(999);
    await expectInvalid(verifier.verify(await forgedWithKid()), 'unknown');
    expect(jwtSuite.setup.emulator.calls.jwks).toBe(1);
    jwtSuite.setup.clock.advance(1);
    await expectInvalid(verifier.verify(await forgedWithKid()), 'unknown');
    expect(jwtSuite.setup.emulator.calls.jwks).toBe(2);
  });

  it('the same forged token repeated is answered from the negative cache, not the JWKS', async () => {
    const verifier = verifierAt(jwtSuite.setup.emulator.url, { jwksRefreshMinMs: 0 });
    const forged = await forgedWithKid();
    for (let i = 0; i < 5; i++) await expectInvalid(verifier.verify(forged), 'unknown');
    expect(jwtSuite.setup.emulator.calls.jwks).toBe(1);
    expect(verifier.stats()).toMatchObject({ misses: 1, negativeHits: 4 });
  });
});

describe('key age', () => {
  it('keys older than 5 minutes are refetched on the next new token', async () => {
    const verifier = verifierAt(jwtSuite.setup.emulator.url);
    await verifier.verify((await jwtSuite.setup.mintJwt()).token);
    jwtSuite.setup.clock.advance(5 * 60_000 + 1);
    await verifier.verify((await jwtSuite.setup.mintJwt()).token);
    expect(jwtSuite.setup.emulator.calls.jwks).toBe(2);
  });
});

describe('JWKS unavailable', () => {
  let proxy: SwitchableProxy;

  beforeEach(async () => {
    proxy = tracker.track(await startProxy(jwtSuite.setup.emulator.url));
  });

  it('the proxy passes the JWKS through while up (control)', async () => {
    const verifier = verifierAt(proxy.url);
    await expect(verifier.verify((await jwtSuite.setup.mintJwt()).token)).resolves.toBeDefined();
    expect(proxy.jwksRequests).toBe(1);
    expect(jwtSuite.setup.emulator.calls.jwks).toBe(1);
  });

  it('a 503 with no key in hand is VerifierUnavailableError, and that outcome is not cached', async () => {
    const verifier = verifierAt(proxy.url);
    const minted = await jwtSuite.setup.mintJwt();
    proxy.down = true;

    const err = await verifier.verify(minted.token).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(VerifierUnavailableError);
    expect(proxy.jwksRequests).toBe(1);
    expect(verifier.stats()).toMatchObject({ size: 0, negativeHits: 0, hits: 0 });

    // Clerk is back and the refresh interval has passed: the same token verifies.
    proxy.down = false;
    jwtSuite.setup.clock.advance(REFRESH_MIN_MS + 1);
    await expect(verifier.verify(minted.token)).resolves.toMatchObject({ id: minted.id });
    expect(proxy.jwksRequests).toBe(2);
  });

  it('the emulator closed before the first JWKS fetch: VerifierUnavailableError', async () => {
    const own = await setupEmulator(tracker);
    const minted = await own.mintJwt();
    const verifier = tracker.track(
      createTokenVerifier({
        apiUrl: own.emulator.url,
        secretKey: own.emulator.instanceSecretKey,
        machineId: own.apiId,
        now: own.clock,
        retry: false,
      }),
    );
    await own.emulator.close();

    const err = await verifier.verify(minted.token).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(VerifierUnavailableError);
    expect((err as VerifierUnavailableError).reason).toBe('network');
    expect(verifier.stats().size).toBe(0);
  });

  it('a JWKS refused to a wrong instance key is unavailable (misconfigured), not invalid', async () => {
    const verifier = verifierAt(jwtSuite.setup.emulator.url, {
      secretKey: 'sk_test_not_this_instance',
    });
    const err = await verifier.verify((await jwtSuite.setup.mintJwt()).token).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(VerifierUnavailableError);
    expect((err as VerifierUnavailableError).reason).toBe('misconfigured');
    expect(jwtSuite.setup.emulator.calls.jwks).toBe(1);
    expect(verifier.stats().size).toBe(0);
  });

  it('a second JWT during the same outage is still unavailable, never invalid', async () => {
    const verifier = verifierAt(proxy.url);
    const first = await jwtSuite.setup.mintJwt();
    const second = await jwtSuite.setup.mintJwt();
    proxy.down = true;

    await expect(verifier.verify(first.token)).rejects.toBeInstanceOf(VerifierUnavailableError);
    jwtSuite.setup.clock.advance(1_000);
    // No key has ever been read: nothing says this token is bad.
    await expect(verifier.verify(second.token)).rejects.toBeInstanceOf(VerifierUnavailableError);
    await expect(verifier.verify(first.token)).rejects.toBeInstanceOf(VerifierUnavailableError);
  });

  it('a good token is not refused as invalid right after the JWKS comes back', async () => {
    const verifier = verifierAt(proxy.url);
    const minted = await jwtSuite.setup.mintJwt();
    proxy.down = true;
    await expect(verifier.verify(minted.token)).rejects.toBeInstanceOf(VerifierUnavailableError);

    proxy.down = false;
    jwtSuite.setup.clock.advance(1_000);
    // Either verified now or, if the refetch is throttled, still "unavailable": never 401.
    const outcome = await verifier.verify(minted.token).then(
      () => 'verified',
      (e: unknown) => (e instanceof VerifierUnavailableError ? 'unavailable' : String(e)),
    );
    expect(['verified', 'unavailable']).toContain(outcome);
  });

  it('with keys in hand, a failed refresh does not stop verification', async () => {
    const verifier = verifierAt(proxy.url);
    await verifier.verify((await jwtSuite.setup.mintJwt()).token);
    expect(proxy.jwksRequests).toBe(1);

    proxy.down = true;
    jwtSuite.setup.clock.advance(5 * 60_000 + 1); // the keys are stale: a refresh is tried, and fails
    const fresh = await jwtSuite.setup.mintJwt();
    await expect(verifier.verify(fresh.token)).resolves.toMatchObject({ id: fresh.id });
    expect(proxy.jwksRequests).toBe(2);
  });

  it('through m2mAuth: 503 temporarily_unavailable, with no caching', async () => {
    const middleware = tracker.track(
      m2mAuth({
        apiUrl: proxy.url,
        secretKey: jwtSuite.setup.emulator.instanceSecretKey,
        machineId: jwtSuite.setup.apiId,
        now: jwtSuite.setup.clock,
        retry: false,
      }),
    );
    const app = express();
    let seen = 0;
    app.use(middleware);
    app.get('/', (req, res) => {
      seen += 1;
      res.json(req.m2m ?? null);
    });
    const minted = await jwtSuite.setup.mintJwt();
    proxy.down = true;

    const refused = await request(app).get('/').set('Authorization', `Bearer ${minted.token}`);
    expect(refused.status).toBe(503);
    expect(refused.body).toMatchObject({ error: 'temporarily_unavailable' });
    expect(seen).toBe(0);

    proxy.down = false;
    jwtSuite.setup.clock.advance(REFRESH_MIN_MS + 1);
    const accepted = await request(app).get('/').set('Authorization', `Bearer ${minted.token}`);
    expect(accepted.status).toBe(200);
    expect(accepted.body).toMatchObject({ id: minted.id, subject: jwtSuite.setup.callerId });
    expect(seen).toBe(1);
  });
});
