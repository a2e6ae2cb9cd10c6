/**
 * JWT-format tokens through `m2mAuth()` in Express 5 over real HTTP (supertest): a JWT minted by
 * the emulator passes with the same `req.m2m` as an opaque token, bad ones get 401
 * `invalid_token`, and a verifier with no key source refuses JWTs with 401, never 503.
 */
import type { IncomingMessage } from 'node:http';
import express from 'express';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { type M2MAuthOptions, type M2MRequestAuth, m2mAuth } from '../../src/middleware/index.js';
import { M2MConfigError } from '../../src/shared/config-error.js';
import { closedPortUrl, decodeJwt, ecPair, useJwtSuite } from './helpers.js';

const jwtSuite = useJwtSuite();
const { tracker } = jwtSuite;

/** An Express app behind `m2mAuth(options)`; its route answers `req.m2m` and records it. */
function appWith(options: M2MAuthOptions) {
  const middleware = tracker.track(
    m2mAuth({ now: jwtSuite.setup.clock, retry: false, ...options }),
  );
  const seen: (M2MRequestAuth | undefined)[] = [];
  const app = express();
  app.use(middleware);
  app.get('/', (req: IncomingMessage, res: express.Response) => {
    seen.push(req.m2m);
    res.json(req.m2m ?? null);
  });
  const get = (token: string) => request(app).get('/').set('Authorization', `Bearer ${token}`);
  return { app, middleware, seen, get };
}

/** Verifying as `api` with the instance key: the usual set-up for JWT tokens. */
const asApi = (options: M2MAuthOptions = {}) =>
  appWith({
    apiUrl: jwtSuite.setup.emulator.url,
    secretKey: jwtSuite.setup.emulator.instanceSecretKey,
    machineId: jwtSuite.setup.apiId,
    ...options,
  });

const expectInvalidToken = (res: request.Response) => {
  expect(res.status).toBe(401);
  expect(res.body).toEqual({
    error: 'invalid_token',
    error_description: 'The access token is not valid',
  });
  expect(res.headers['www-authenticate']).toContain('error="invalid_token"');
};

describe('a JWT minted by the emulator', () => {
  it('gives 200 with the same req.m2m shape as an opaque token', async () => {
    const { get, seen } = asApi();
    const claims = { role: 'svc' };
    const jwt = await jwtSuite.setup.mintJwt({ claims });
    const opaque = await jwtSuite.setup.mintOpaque({ claims });

    const fromJwt = await get(jwt.token);
    const fromOpaque = await get(opaque.token);

    expect(fromJwt.status).toBe(200);
    expect(fromOpaque.status).toBe(200);
    const exp = decodeJwt(jwt.token).payload.exp as number;
    expect(fromJwt.body).toEqual({
      id: jwt.id,
      subject: jwtSuite.setup.callerId,
      machineId: jwtSuite.setup.callerId,
      scopes: [jwtSuite.setup.apiId],
      claims: { role: 'svc' },
      expiration: exp * 1000,
    });
    expect(fromOpaque.body).toEqual({
      id: opaque.id,
      subject: jwtSuite.setup.callerId,
      machineId: jwtSuite.setup.callerId,
      scopes: [jwtSuite.setup.apiId],
      claims: { role: 'svc' },
      expiration: opaque.expiration,
    });
    expect(seen).toHaveLength(2);
    expect(Object.isFrozen(seen[0])).toBe(true);
    expect(jwtSuite.setup.emulator.calls.jwks).toBe(1);
    // Only the opaque token asked Clerk.
    expect(jwtSuite.setup.emulator.calls.verify).toBe(1);
  });

  it('passes with no custom claims as `claims: null`, like an opaque token', async () => {
    const { get } = asApi();
    const jwt = await get((await jwtSuite.setup.mintJwt()).token);
    const opaque = await get((await jwtSuite.setup.mintOpaque()).token);
    expect(jwt.body.claims).toBeNull();
    expect(opaque.body.claims).toBeNull();
  });

  it('repeated 20 times reads the JWKS once and is served from the cache', async () => {
    const { get, middleware } = asApi();
    const { token } = await jwtSuite.setup.mintJwt();
    for (let i = 0; i < 20; i++) expect((await get(token)).status).toBe(200);
    expect(jwtSuite.setup.emulator.calls.jwks).toBe(1);
    expect(middleware.verifier.stats()).toMatchObject({ misses: 1, hits: 19 });
  });

  it('passes with `jwtKey` and an API URL on which nothing listens', async () => {
    const { get } = appWith({
      apiUrl: await closedPortUrl(),
      jwtKey: jwtSuite.setup.emulator.jwtKey,
      machineId: jwtSuite.setup.apiId,
    });
    const minted = await jwtSuite.setup.mintJwt();
    const res = await get(minted.token);
    expect(res.status).toBe(200);
    expect(res.body.id).toBe(minted.id);
    expect(jwtSuite.setup.emulator.calls.jwks).toBe(0);
  });

  it('is refused with 401 invalid_token for another machine, never reaching the route', async () => {
    const { get, seen } = asApi({ machineId: jwtSuite.setup.callerId });
    expectInvalidToken(await get((await jwtSuite.setup.mintJwt()).token));
    expect(seen).toHaveLength(0);
  });

  it('is refused with 401 invalid_token once expired beyond the skew', async () => {
    const { get, seen } = asApi();
    const { token } = await jwtSuite.setup.mintJwt({ secondsUntilExpiration: 60 });
    expect((await get(token)).status).toBe(200);
    jwtSuite.setup.clock.advance(66_000);
    expectInvalidToken(await get(token));
    expect(seen).toHaveLength(1);
  });
});

describe('no key source', () => {
  it('a JWT is refused with 401, never 503, and no JWKS request is made', async () => {
    const { get, seen } = appWith({
      apiUrl: jwtSuite.setup.emulator.url,
      machineSecretKey: jwtSuite.setup.emulator.machines.api!.secretKey,
      // With machineId set, the scope can be checked: only the missing key refuses the JWT.
      machineId: jwtSuite.setup.apiId,
    });
    const jwt = await jwtSuite.setup.mintJwt();
    const opaque = await jwtSuite.setup.mintOpaque();

    expectInvalidToken(await get(jwt.token));
    expectInvalidToken(await get(jwt.token));
    // Opaque tokens still pass with the machine key.
    expect((await get(opaque.token)).status).toBe(200);

    expect(seen).toHaveLength(1);
    expect(jwtSuite.setup.emulator.calls.jwks).toBe(0);
  });
});

describe('options through m2mAuth', () => {
  const configErrorOf = (options: M2MAuthOptions): M2MConfigError => {
    try {
      m2mAuth(options);
    } catch (err) {
      expect(err).toBeInstanceOf(M2MConfigError);
      return err as M2MConfigError;
    }
    throw new Error('m2mAuth accepted the options');
  };

  it('`jwtKey` not a PEM, or an EC key, is refused naming jwtKey', () => {
    expect(configErrorOf({ jwtKey: 'not a pem' }).option).toBe('jwtKey');
    expect(configErrorOf({ jwtKey: ecPair().publicKeyPem }).option).toBe('jwtKey');
  });

  it('`jwksRefreshMinMs: -1` is refused naming it', () => {
    expect(configErrorOf({ jwksRefreshMinMs: -1 }).option).toBe('jwksRefreshMinMs');
  });
});
