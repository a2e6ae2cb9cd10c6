/**
 * Guards after `m2mAuth()`, in Express 5 over real HTTP. The verifier uses the instance key
 * without `machineId`, so every live token of the instance reaches the guard and the guard alone
 * decides.
 */
import express, { type ErrorRequestHandler } from 'express';
import request from 'supertest';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  allowSubjects,
  InsufficientScopeError,
  type M2MAuthError,
  type M2MAuthOptions,
  M2MConfigError,
  type M2MRequestAuth,
  m2mAuth,
  requireClaims,
  requireMachine,
  UnauthorizedError,
} from '../../src/index.js';
import type { Middleware } from '../helpers/hosts.js';
import { expectRefusal, type Fixture, REFUSAL, startFixture } from './fixture.js';

let fx: Fixture;
const built: { close(): Promise<void> }[] = [];

beforeAll(async () => {
  fx = await startFixture();
});

afterEach(async () => {
  await Promise.all(built.splice(0).map((m) => m.close()));
  fx.reset();
});

afterAll(async () => {
  await fx.close();
});

/** `m2mAuth()` with the instance key and no `machineId`: no scope check before the guards. */
function auth(options: M2MAuthOptions = {}) {
  const middleware = m2mAuth({ ...fx.instanceKey(), anyMachine: true, ...options });
  built.push(middleware);
  return middleware;
}

function mount(chain: Middleware[], errorHandler?: ErrorRequestHandler) {
  const app = express();
  const seen: (M2MRequestAuth | undefined)[] = [];
  for (const middleware of chain) app.use(middleware);
  app.use((req, res) => {
    seen.push(req.m2m);
    res.json(req.m2m ?? null);
  });
  if (errorHandler) app.use(errorHandler);
  return { app, seen };
}

const get = (app: express.Express, token?: string) => {
  const req = request(app).get('/');
  return token === undefined ? req : req.set('Authorization', `Bearer ${token}`);
};

const FORGED: M2MRequestAuth = {
  id: `mt_${'0'.repeat(32)}`,
  subject: `mch_${'E'.repeat(27)}`,
  machineId: `mch_${'E'.repeat(27)}`,
  scopes: [],
  claims: { role: 'reader' },
  expiration: null,
};

function configError(build: () => unknown): M2MConfigError {
  try {
    build();
  } catch (err) {
    expect(err).toBeInstanceOf(M2MConfigError);
    return err as M2MConfigError;
  }
  throw new Error('expected an M2MConfigError, nothing was thrown');
}

describe('requireMachine', () => {
  it('lets a token whose scopes hold this service’s id through', async () => {
    const minted = await fx.mint();
    const { app, seen } = mount([auth(), requireMachine(fx.api.id)]);
    const res = await get(app, minted.token);
    expect(res.status).toBe(200);
    expect(res.body.id).toBe(minted.id);
    expect(seen).toHaveLength(1);
  });

  it('refuses 403 insufficient_scope a valid token whose scopes lack it', async () => {
    const outsider = await fx.mint({ as: 'outsider' });
    const { app, seen } = mount([auth(), requireMachine(fx.api.id)]);
    expectRefusal(await get(app, outsider.token), REFUSAL.insufficientScope);
    expect(seen).toHaveLength(0);
  });

  it('checks the id given, not just any scope', async () => {
    const outsider = await fx.mint({ as: 'outsider' });
    const { app } = mount([auth(), requireMachine(fx.billing.id)]);
    expect((await get(app, outsider.token)).status).toBe(200);
  });
});

describe('allowSubjects', () => {
  it('lets listed calling machines through and refuses the others 403', async () => {
    const caller = await fx.mint();
    const outsider = await fx.mint({ as: 'outsider' });
    const { app, seen } = mount([auth(), allowSubjects(fx.caller.id)]);
    expect((await get(app, caller.token)).status).toBe(200);
    expectRefusal(await get(app, outsider.token), REFUSAL.insufficientScope);
    expect(seen.map((m) => m?.subject)).toEqual([fx.caller.id]);
  });

  it('takes several ids', async () => {
    const outsider = await fx.mint({ as: 'outsider' });
    const { app } = mount([auth(), allowSubjects(fx.caller.id, fx.outsider.id)]);
    expect((await get(app, outsider.token)).status).toBe(200);
  });
});

describe('requireClaims', () => {
  const reader = requireClaims((m2m) => m2m.claims?.role === 'reader');

  it('lets a token through when the predicate on its claims is true', async () => {
    const minted = await fx.mint({ claims: { role: 'reader' } });
    const { app, seen } = mount([auth(), reader]);
    const res = await get(app, minted.token);
    expect(res.status).toBe(200);
    expect(res.body.claims).toEqual({ role: 'reader' });
    expect(seen).toHaveLength(1);
  });

  it('refuses 403 when it is false, or the token has no claims', async () => {
    const writer = await fx.mint({ claims: { role: 'writer' } });
    const bare = await fx.mint();
    const { app, seen } = mount([auth(), reader]);
    expectRefusal(await get(app, writer.token), REFUSAL.insufficientScope);
    expectRefusal(await get(app, bare.token), REFUSAL.insufficientScope);
    expect(seen).toHaveLength(0);
  });

  it('passes only on true itself, not on a truthy value', async () => {
    const minted = await fx.mint({ claims: { role: 'reader' } });
    const truthy = requireClaims((() => 'yes') as unknown as (m2m: M2MRequestAuth) => boolean);
    const { app, seen } = mount([auth(), truthy]);
    expectRefusal(await get(app, minted.token), REFUSAL.insufficientScope);
    expect(seen).toHaveLength(0);
  });

  it('receives req.m2m as the route sees it', async () => {
    const minted = await fx.mint({ claims: { role: 'reader' } });
    const given: M2MRequestAuth[] = [];
    const { app, seen } = mount([
      auth(),
      requireClaims((m2m) => {
        given.push(m2m);
        return true;
      }),
    ]);
    expect((await get(app, minted.token)).status).toBe(200);
    expect(given).toHaveLength(1);
    expect(given[0]).toBe(seen[0]);
    expect(given[0]?.id).toBe(minted.id);
  });

  it('a predicate that throws hands the error to next(): 500, never a pass', async () => {
    const minted = await fx.mint();
    const errors: unknown[] = [];
    const { app, seen } = mount(
      [
        auth(),
        requireClaims(() => {
          throw new Error('predicate failed');
        }),
      ],
      (err, _req, res, _next) => {
        errors.push(err);
        res.status(500).json({ error: 'internal' });
      },
    );
    expect((await get(app, minted.token)).status).toBe(500);
    expect(errors).toEqual([new Error('predicate failed')]);
    expect(seen).toHaveLength(0);
  });
});

describe('guards in general', () => {
  it('compose: every guard must pass', async () => {
    const reader = await fx.mint({ claims: { role: 'reader' } });
    const writer = await fx.mint({ claims: { role: 'writer' } });
    const outsider = await fx.mint({ as: 'outsider', claims: { role: 'reader' } });
    const { app, seen } = mount([
      auth(),
      requireMachine(fx.api.id),
      allowSubjects(fx.caller.id),
      requireClaims((m2m) => m2m.claims?.role === 'reader'),
    ]);
    expect((await get(app, reader.token)).status).toBe(200);
    expectRefusal(await get(app, writer.token), REFUSAL.insufficientScope);
    expectRefusal(await get(app, outsider.token), REFUSAL.insufficientScope);
    expect(seen).toHaveLength(1);
  });

  it('without m2mAuth before them → 401 with the bare challenge', async () => {
    const { app, seen } = mount([requireMachine(fx.api.id)]);
    expectRefusal(await get(app), REFUSAL.missing);
    expectRefusal(await get(app, (await fx.mint()).token), REFUSAL.missing);
    expect(seen).toHaveLength(0);
  });

  it('without m2mAuth before them, do not trust a req.m2m another middleware set', async () => {
    // Bug: guards.ts:19-24 only look for `req.m2m`; when no m2mAuth() ran on the request
    // (`responderOf(req)` is undefined) a forged req.m2m is evaluated and can pass.
    const forge: Middleware = (req, _res, next) => {
      req.m2m = FORGED;
      next();
    };
    const { app, seen } = mount([forge, requireClaims((m2m) => m2m.claims?.role === 'reader')]);
    expectRefusal(await get(app), REFUSAL.missing);
    expect(seen).toHaveLength(0);
  });

  describe('trust only the req.m2m that m2mAuth() set on that request (issue 13, item 5)', () => {
    // Bug: guards.ts trusted any req.m2m once m2mAuth() had run on the request, so with
    // `required: false` a middleware after it could set req.m2m and pass every guard with no token.
    const replace: Middleware = (req, _res, next) => {
      req.m2m = FORGED;
      next();
    };
    const guards = () =>
      [
        ['requireMachine', requireMachine(FORGED.subject)],
        ['allowSubjects', allowSubjects(FORGED.subject)],
        ['requireClaims', requireClaims((m2m) => m2m.claims?.role === 'reader')],
      ] as const;

    it.each(guards())(
      '%s: set after m2mAuth({ required: false }), no token → 401',
      async (_, g) => {
        const { app, seen } = mount([auth({ required: false }), replace, g]);
        expectRefusal(await get(app), REFUSAL.missing);
        expect(seen).toHaveLength(0);
      },
    );

    it.each(guards())('%s: replaced after a verified token → 401', async (_, g) => {
      const minted = await fx.mint();
      const { app, seen } = mount([auth(), replace, g]);
      expectRefusal(await get(app, minted.token), REFUSAL.missing);
      expect(seen).toHaveLength(0);
    });

    it('a genuine auth copied onto another request is no auth either', async () => {
      const minted = await fx.mint();
      let kept: M2MRequestAuth | undefined;
      const keep: Middleware = (req, _res, next) => {
        if (req.m2m) kept = req.m2m;
        else if (kept) req.m2m = kept;
        next();
      };
      const { app, seen } = mount([auth({ required: false }), keep, allowSubjects(fx.caller.id)]);
      expect((await get(app, minted.token)).status).toBe(200);
      expectRefusal(await get(app), REFUSAL.missing);
      expect(seen).toHaveLength(1);
    });
  });

  it('after m2mAuth({ required: false }) with no token → 401 in that realm', async () => {
    const { app, seen } = mount([
      auth({ required: false, realm: 'internal' }),
      allowSubjects(fx.caller.id),
    ]);
    expectRefusal(await get(app), { ...REFUSAL.missing, challenge: 'Bearer realm="internal"' });
    expect(seen).toHaveLength(0);
  });

  it('use the realm of the m2mAuth before them', async () => {
    const outsider = await fx.mint({ as: 'outsider' });
    const { app } = mount([auth({ realm: 'internal' }), requireMachine(fx.api.id)]);
    expectRefusal(await get(app, outsider.token), {
      ...REFUSAL.insufficientScope,
      challenge:
        'Bearer realm="internal", error="insufficient_scope", error_description="The token does not grant access to this resource"',
    });
  });

  it('one guard instance follows whichever m2mAuth ran on each request', async () => {
    const outsider = await fx.mint({ as: 'outsider' });
    const guard = requireMachine(fx.api.id);
    const first = mount([auth({ realm: 'first' }), guard]);
    const second = mount([auth({ realm: 'second' }), guard]);
    const a = await get(first.app, outsider.token);
    const b = await get(second.app, outsider.token);
    expect(a.headers['www-authenticate']).toMatch(
      /^Bearer realm="first", error="insufficient_scope"/,
    );
    expect(b.headers['www-authenticate']).toMatch(
      /^Bearer realm="second", error="insufficient_scope"/,
    );
  });

  it('hand refusals to the onError of the m2mAuth before them', async () => {
    const outsider = await fx.mint({ as: 'outsider' });
    const received: M2MAuthError[] = [];
    const { app, seen } = mount([
      auth({
        onError: (err, _req, res) => {
          received.push(err);
          res.statusCode = err.status;
          res.setHeader('content-type', 'application/json');
          res.end(JSON.stringify({ mine: err.code }));
        },
      }),
      allowSubjects(fx.caller.id),
    ]);
    const res = await get(app, outsider.token);
    expect(res.status).toBe(403);
    expect(res.body).toEqual({ mine: 'insufficient_scope' });
    expect(received).toHaveLength(1);
    expect(received[0]).toBeInstanceOf(InsufficientScopeError);
    expect(received[0]).toMatchObject({
      status: 403,
      code: 'insufficient_scope',
      reason: 'forbidden',
      tokenId: outsider.id,
      subject: fx.outsider.id,
      headers: {
        'Cache-Control': 'no-store',
        'WWW-Authenticate':
          'Bearer realm="api", error="insufficient_scope", error_description="The token does not grant access to this resource"',
      },
    });
    expect(seen).toHaveLength(0);
  });

  it('pass refusals to next(err) when the m2mAuth before them has passErrors', async () => {
    const outsider = await fx.mint({ as: 'outsider' });
    const received: unknown[] = [];
    const { app, seen } = mount(
      [auth({ passErrors: true, required: false }), requireMachine(fx.api.id)],
      (err, _req, res, _next) => {
        received.push(err);
        res.status(err.status).set(err.headers).json({ handledBy: 'app' });
      },
    );
    const forbidden = await get(app, outsider.token);
    expect(forbidden.status).toBe(403);
    expect(forbidden.headers['www-authenticate']).toMatch(/error="insufficient_scope"/);
    expect(forbidden.body).toEqual({ handledBy: 'app' });
    const missing = await get(app);
    expect(missing.status).toBe(401);
    expect(missing.headers['www-authenticate']).toBe('Bearer realm="api"');
    expect(received.map((e) => e?.constructor)).toEqual([
      InsufficientScopeError,
      UnauthorizedError,
    ]);
    expect(seen).toHaveLength(0);
  });

  it('let a CORS preflight through that m2mAuth let through', async () => {
    const { app, seen } = mount([auth(), requireMachine(fx.api.id), allowSubjects(fx.caller.id)]);
    const res = await request(app)
      .options('/')
      .set('Origin', 'https://example.test')
      .set('Access-Control-Request-Method', 'GET')
      .set('Access-Control-Request-Headers', 'content-type, authorization');
    expect(res.status).toBe(200);
    expect(seen).toEqual([undefined]);
  });

  it('refuse a preflight 401 when m2mAuth has skipPreflight: false', async () => {
    const { app, seen } = mount([auth({ skipPreflight: false }), requireMachine(fx.api.id)]);
    const res = await request(app)
      .options('/')
      .set('Origin', 'https://example.test')
      .set('Access-Control-Request-Method', 'GET')
      .set('Access-Control-Request-Headers', 'content-type, authorization');
    expectRefusal(res, REFUSAL.missing);
    expect(seen).toHaveLength(0);
  });
});

describe('guard factories validate their arguments', () => {
  it.each([
    ['requireMachine("x")', () => requireMachine('x'), 'requireMachine'],
    ['requireMachine(42)', () => requireMachine(42 as unknown as string), 'requireMachine'],
    [
      'requireMachine("mch_" + 26)',
      () => requireMachine(`mch_${'a'.repeat(26)}`),
      'requireMachine',
    ],
    ['allowSubjects()', () => allowSubjects(), 'allowSubjects'],
    ['allowSubjects("mt_…")', () => allowSubjects(`mt_${'0'.repeat(32)}`), 'allowSubjects'],
    [
      'allowSubjects(good, bad)',
      () => allowSubjects(`mch_${'a'.repeat(27)}`, 'bad'),
      'allowSubjects',
    ],
    ['requireClaims("x")', () => requireClaims('x' as never), 'requireClaims'],
    ['requireClaims()', () => (requireClaims as () => unknown)(), 'requireClaims'],
  ])('%s throws M2MConfigError', (_name, build, option) => {
    expect(configError(build).option).toBe(option);
  });

  it('accept well-formed machine ids', () => {
    expect(typeof requireMachine(`mch_${'a'.repeat(27)}`)).toBe('function');
    expect(typeof allowSubjects(`mch_${'a'.repeat(27)}`, `mch_${'b'.repeat(27)}`)).toBe('function');
  });
});
