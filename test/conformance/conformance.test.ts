/**
 * One answer table, run over every hosting (test/conformance/hostings.ts): for the same request
 * and the same verifier state, every adapter answers exactly as the Express middleware does:
 * status, `WWW-Authenticate`, `Cache-Control: no-store`, `Content-Type: application/json`, the
 * JSON body, `Retry-After` on 503, and the auth object the handler sees.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  DESCRIPTION,
  expectRefusal,
  type Fixture,
  REFUSAL,
  startFixture,
  unknownToken,
} from '../middleware/fixture.js';
import { type Answer, HOSTINGS, type HostedApp, type Sent, type Setup } from './hostings.js';

let fx: Fixture;

beforeAll(async () => {
  fx = await startFixture();
});

afterAll(async () => {
  await fx.close();
});

/** A verified auth that no m2mAuth() made: what an attacker's middleware would put in the slot. */
const FORGED = Object.freeze({
  id: `mt_${'0'.repeat(32)}`,
  subject: `mch_${'E'.repeat(27)}`,
  machineId: `mch_${'E'.repeat(27)}`,
  scopes: Object.freeze([`mch_${'E'.repeat(27)}`]),
  claims: Object.freeze({ role: 'admin' }),
  expiration: null,
});

const bearer = (token: string): Sent => ({ headers: [['Authorization', `Bearer ${token}`]] });

const PREFLIGHT: Sent = {
  method: 'OPTIONS',
  headers: [
    ['Origin', 'https://example.test'],
    ['Access-Control-Request-Method', 'GET'],
    ['Access-Control-Request-Headers', 'content-type, authorization'],
  ],
};

describe.each(HOSTINGS)('$name', (hosting) => {
  const apps = new Map<string, HostedApp>();

  /** One app per set-up, started on first use, closed at the end. */
  async function app(name: string, setup: () => Setup): Promise<HostedApp> {
    let started = apps.get(name);
    if (!started) {
      started = await hosting.start(setup());
      apps.set(name, started);
    }
    return started;
  }
  const plain = () => app('plain', () => ({ options: { ...fx.machineKey(), retry: false } }));
  const optional = () =>
    app('optional', () => ({ options: { ...fx.machineKey(), retry: false, required: false } }));
  const GUARDS = {
    requireMachine: () => ({ kind: 'requireMachine' as const, id: fx.api.id }),
    allowSubjects: () => ({ kind: 'allowSubjects' as const, ids: [fx.caller.id] }),
    requireClaims: () => ({
      kind: 'requireClaims' as const,
      predicate: (auth: { claims: Readonly<Record<string, unknown>> | null }) =>
        auth.claims?.tier === 1,
    }),
  };
  type GuardName = keyof typeof GUARDS;
  const guarded = (guard: GuardName) =>
    app(`guarded:${guard}`, () => ({
      options: { ...fx.instanceKey(), anyMachine: true, retry: false },
      guards: [GUARDS[guard]()],
    }));
  const replaced = (guard: GuardName) =>
    app(`replaced:${guard}`, () => ({
      options: { ...fx.instanceKey(), anyMachine: true, retry: false, required: false },
      guards: [GUARDS[guard]()],
      replaceWith: FORGED,
    }));

  afterEach(() => {
    fx.reset();
  });

  afterAll(async () => {
    const all = [...apps.values()];
    for (const a of all) expect(a.errors, 'nothing reached the error path').toEqual([]);
    await Promise.all(all.map((a) => a.close()));
  });

  /** Sends and checks that a refusal never reached the route. */
  async function refused(target: HostedApp, sent: Sent): Promise<Answer> {
    const before = target.seen.length;
    const res = await target.send(sent);
    expect(target.seen.length).toBe(before);
    return res;
  }

  it('a valid token → 200, and the handler sees the verified auth', async () => {
    const a = await plain();
    const minted = await fx.mint({ claims: { tier: 1 } });
    const res = await a.send(bearer(minted.token));
    const expected = {
      id: minted.id,
      subject: fx.caller.id,
      machineId: fx.caller.id,
      scopes: [fx.api.id, fx.billing.id],
      claims: { tier: 1 },
      expiration: minted.expiration,
    };
    expect(res.status).toBe(200);
    expect(res.body).toEqual(expected);
    expect(a.seen.at(-1)).toEqual(expected);
    expect(Object.isFrozen(a.seen.at(-1))).toBe(true);
  });

  it('no token → 401 with the bare challenge', async () => {
    expectRefusal(await refused(await plain(), {}), REFUSAL.missing);
  });

  it('another scheme → 400 invalid_request', async () => {
    const res = await refused(await plain(), { headers: [['Authorization', 'Basic xyz']] });
    expectRefusal(res, REFUSAL.invalidRequest(DESCRIPTION.malformedHeader));
  });

  it('a malformed bearer token → 400 invalid_request', async () => {
    const res = await refused(await plain(), {
      headers: [['Authorization', 'Bearer abc$def']],
    });
    expectRefusal(res, REFUSAL.invalidRequest(DESCRIPTION.badToken));
  });

  it('two Authorization headers (a raw socket, or joined by Headers) → 400', async () => {
    const minted = await fx.mint();
    const res = await refused(await plain(), {
      headers: [
        ['Authorization', `Bearer ${minted.token}`],
        ['Authorization', `Bearer ${minted.token}`],
      ],
    });
    expectRefusal(res, REFUSAL.invalidRequest(DESCRIPTION.severalHeaders));
  });

  it('an unknown token → 401 invalid_token', async () => {
    const res = await refused(await plain(), bearer(unknownToken()));
    expectRefusal(res, REFUSAL.invalidToken);
  });

  it('a revoked token → 401 invalid_token', async () => {
    const minted = await fx.mint();
    await fx.revoke(minted.id);
    expectRefusal(await refused(await plain(), bearer(minted.token)), REFUSAL.invalidToken);
  });

  it('an expired token → 401 invalid_token', async () => {
    const minted = await fx.mint({ secondsUntilExpiration: 60 });
    fx.clock.advance(61_000);
    expectRefusal(await refused(await plain(), bearer(minted.token)), REFUSAL.invalidToken);
  });

  it('Clerk down → 503 with Retry-After, never a pass', async () => {
    const minted = await fx.mint();
    fx.emu.failNext(1, 503, { retryAfter: 7, operation: 'verify' });
    const res = await refused(await plain(), bearer(minted.token));
    expectRefusal(res, { ...REFUSAL.unavailable, retryAfter: '7' });
  });

  it('the upstream budget for never-seen tokens spent → 503 with Retry-After, no call', async () => {
    const a = await app('budget', () => ({
      options: { ...fx.machineKey(), retry: false, upstreamBudget: { perSecond: 1, burst: 1 } },
    }));
    const unknown = (c: string) => bearer(`mt_${c.repeat(40)}`);
    expectRefusal(await refused(a, unknown('a')), REFUSAL.invalidToken);
    const calls = fx.emu.calls.verify;
    const res = await refused(a, unknown('b'));
    expectRefusal(res, { ...REFUSAL.unavailable, retryAfter: '1' });
    expect(fx.emu.calls.verify, 'no call to Clerk').toBe(calls);
  });

  it.each(['requireMachine', 'allowSubjects', 'requireClaims'] as const)(
    'out of scope for %s → 403 insufficient_scope; in scope → 200',
    async (guard) => {
      const a = await guarded(guard);
      const outsider = await fx.mint({ as: 'outsider' });
      expectRefusal(await refused(a, bearer(outsider.token)), REFUSAL.insufficientScope);
      const caller = await fx.mint({ claims: { tier: 1 } });
      const ok = await a.send(bearer(caller.token));
      expect(ok.status).toBe(200);
      expect(a.seen.at(-1)).toMatchObject({ id: caller.id });
      expectRefusal(await refused(a, {}), REFUSAL.missing);
    },
  );

  it('required: false → no token passes with no auth; a bad token is still refused', async () => {
    const a = await optional();
    const res = await a.send({});
    expect(res.status).toBe(200);
    expect(res.body).toBeNull();
    expect(a.seen.at(-1) ?? null).toBeNull();
    expectRefusal(await refused(a, bearer(unknownToken())), REFUSAL.invalidToken);
  });

  it.each(['requireMachine', 'allowSubjects', 'requireClaims'] as const)(
    '%s trusts only what m2mAuth() set: an auth put in its place after it → 401',
    async (guard) => {
      const a = await replaced(guard);
      expectRefusal(await refused(a, {}), REFUSAL.missing);
    },
  );

  it('a credentialed CORS preflight passes m2mAuth() with no auth', async () => {
    const a = await plain();
    const res = await a.send(PREFLIGHT);
    expect(res.status).toBeLessThan(300);
    expect(a.seen.at(-1) ?? null).toBeNull();
  });

  it.skipIf(!hosting.guardsSeePreflight)('…and the guards after it', async () => {
    const a = await guarded('requireMachine');
    const res = await a.send(PREFLIGHT);
    expect(res.status).toBeLessThan(300);
  });
});
