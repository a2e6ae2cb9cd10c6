/**
 * The core cases in each of the four hostings: Express 5, Express 4, Connect, and a plain
 * `node:http` server calling the middleware by hand. Same middleware options, same answers.
 */
import request from 'supertest';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type M2MAuthMiddleware, m2mAuth, requireMachine } from '../../src/index.js';
import { HOSTINGS, type Hosted, host, rawRequest } from '../helpers/hosts.js';
import {
  DESCRIPTION,
  expectRefusal,
  type Fixture,
  REFUSAL,
  startFixture,
  unknownToken,
} from './fixture.js';

let fx: Fixture;

beforeAll(async () => {
  fx = await startFixture();
});

afterAll(async () => {
  await fx.close();
});

describe.each(HOSTINGS)('hosted in %s', (hosting) => {
  let middleware: M2MAuthMiddleware;
  let guarded: M2MAuthMiddleware;
  let app: Hosted;
  let guardedApp: Hosted;

  beforeAll(async () => {
    middleware = m2mAuth({ ...fx.machineKey(), retry: false });
    guarded = m2mAuth({ ...fx.instanceKey(), anyMachine: true, retry: false });
    app = await host(hosting, [middleware]);
    guardedApp = await host(hosting, [guarded, requireMachine(fx.api.id)]);
  });

  afterEach(() => {
    fx.reset();
  });

  afterAll(async () => {
    await Promise.all([app.close(), guardedApp.close(), middleware.close(), guarded.close()]);
  });

  /** Runs `send` and checks that it did not reach the route. */
  async function refused<T>(target: Hosted, send: () => Promise<T>): Promise<T> {
    const before = target.routeCalls;
    const res = await send();
    expect(target.routeCalls).toBe(before);
    return res;
  }

  it('a valid token → 200 with req.m2m', async () => {
    const minted = await fx.mint({ claims: { tier: 1 } });
    const res = await request(app.url).get('/').set('Authorization', `Bearer ${minted.token}`);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      id: minted.id,
      subject: fx.caller.id,
      machineId: fx.caller.id,
      scopes: [fx.api.id, fx.billing.id],
      claims: { tier: 1 },
      expiration: minted.expiration,
    });
    expect(res.text).not.toContain(minted.token);
    expect(app.seen.at(-1)).toEqual(res.body);
  });

  it('no token → 401 with the bare challenge', async () => {
    const res = await refused(app, () => request(app.url).get('/'));
    expectRefusal(res, REFUSAL.missing);
  });

  it('an unknown token → 401 invalid_token', async () => {
    const res = await refused(app, () =>
      request(app.url).get('/').set('Authorization', `Bearer ${unknownToken()}`),
    );
    expectRefusal(res, REFUSAL.invalidToken);
  });

  it('a revoked token → 401 invalid_token', async () => {
    const minted = await fx.mint();
    await fx.revoke(minted.id);
    const res = await refused(app, () =>
      request(app.url).get('/').set('Authorization', `Bearer ${minted.token}`),
    );
    expectRefusal(res, REFUSAL.invalidToken);
  });

  it('Clerk unavailable → 503', async () => {
    const minted = await fx.mint();
    fx.emu.failNext(1, 429, { retryAfter: 7, operation: 'verify' });
    const res = await refused(app, () =>
      request(app.url).get('/').set('Authorization', `Bearer ${minted.token}`),
    );
    expectRefusal(res, { ...REFUSAL.unavailable, retryAfter: '7' });
  });

  it('a malformed Authorization header → 400 invalid_request', async () => {
    const res = await refused(app, () =>
      request(app.url).get('/').set('Authorization', 'Basic xyz'),
    );
    expectRefusal(res, REFUSAL.invalidRequest(DESCRIPTION.malformedHeader));
  });

  it('two Authorization headers → 400 invalid_request', async () => {
    const minted = await fx.mint();
    const res = await refused(app, () =>
      rawRequest(app.url, [
        `Authorization: Bearer ${minted.token}`,
        `Authorization: Bearer ${minted.token}`,
      ]),
    );
    expectRefusal(res, REFUSAL.invalidRequest(DESCRIPTION.severalHeaders));
  });

  it('a guard refusing a valid token → 403 insufficient_scope', async () => {
    const outsider = await fx.mint({ as: 'outsider' });
    const res = await refused(guardedApp, () =>
      request(guardedApp.url).get('/').set('Authorization', `Bearer ${outsider.token}`),
    );
    expectRefusal(res, REFUSAL.insufficientScope);
    const caller = await fx.mint();
    const ok = await request(guardedApp.url)
      .get('/')
      .set('Authorization', `Bearer ${caller.token}`);
    expect(ok.status).toBe(200);
    expect(ok.body.id).toBe(caller.id);
  });

  it('nothing reached the hosting’s error handler', () => {
    expect(app.errors).toEqual([]);
    expect(guardedApp.errors).toEqual([]);
  });
});
