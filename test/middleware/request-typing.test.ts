/**
 * The typing of `req.m2m`, checked by `tsc --noEmit` (which covers `test/`) and exercised at run
 * time: the `expectTypeOf` lines fail type-checking if the declaration merging changes, and the
 * `@ts-expect-error` lines fail it if a wrong value or a write ever compiles.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import connect from 'connect';
import express from 'express';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, expectTypeOf, it } from 'vitest';
import {
  type ErrorHandler,
  type M2MAuthError,
  type M2MAuthMiddleware,
  type M2MRequestAuth,
  m2mAuth,
  type NextFunction,
  requireClaims,
} from '../../src/index.js';
import { type Fixture, startFixture } from './fixture.js';

let fx: Fixture;
let middleware: M2MAuthMiddleware;

beforeAll(async () => {
  fx = await startFixture();
  middleware = m2mAuth({ ...fx.machineKey(), required: false });
});

afterAll(async () => {
  await middleware.close();
  await fx.close();
});

/** An earlier middleware writing a wrong value: it must not compile, and must not survive. */
function forge(req: IncomingMessage, _res: ServerResponse, next: NextFunction): void {
  // @ts-expect-error: `subject` is a string, and id, machineId, scopes, claims, expiration are required.
  req.m2m = { subject: 42 };
  next();
}

/** Writing into a verified req.m2m must not compile either: every field is read-only. */
function tamper(req: IncomingMessage): void {
  if (req.m2m === undefined) return;
  // @ts-expect-error: M2MRequestAuth is read-only.
  req.m2m.subject = 'mch_someone_else';
}

describe('req.m2m typing', () => {
  it('is M2MRequestAuth | undefined on Express requests, subject a string', async () => {
    const minted = await fx.mint();
    const subjects: (string | undefined)[] = [];
    const app = express();
    app.use(forge);
    app.use(middleware);
    app.get('/', (req, res) => {
      expectTypeOf(req.m2m).toEqualTypeOf<M2MRequestAuth | undefined>();
      expectTypeOf(req.m2m?.subject).toEqualTypeOf<string | undefined>();
      expectTypeOf(req.m2m?.scopes).toEqualTypeOf<readonly string[] | undefined>();
      expectTypeOf(req.m2m?.expiration).toEqualTypeOf<number | null | undefined>();
      subjects.push(req.m2m?.subject);
      res.json({ subject: req.m2m?.subject ?? null });
    });

    const anonymous = await request(app).get('/');
    expect(anonymous.body).toEqual({ subject: null });
    const verified = await request(app).get('/').set('Authorization', `Bearer ${minted.token}`);
    expect(verified.body).toEqual({ subject: fx.caller.id });
    // The forged { subject: 42 } never reached the route.
    expect(subjects).toEqual([undefined, fx.caller.id]);
  });

  it('is the same on plain node:http and Connect requests', async () => {
    const minted = await fx.mint();
    const app = connect();
    app.use(middleware);
    app.use((req: IncomingMessage, res: ServerResponse) => {
      expectTypeOf(req.m2m?.subject).toEqualTypeOf<string | undefined>();
      res.end(req.m2m?.subject ?? '');
    });
    const res = await request(app).get('/').set('Authorization', `Bearer ${minted.token}`);
    expect(res.text).toBe(fx.caller.id);
  });

  it('is frozen at run time as well as read-only in type', async () => {
    const minted = await fx.mint();
    let caught: unknown;
    const app = express();
    app.use(middleware);
    app.get('/', (req, res) => {
      try {
        tamper(req);
      } catch (err) {
        caught = err;
      }
      res.json(req.m2m);
    });
    const res = await request(app).get('/').set('Authorization', `Bearer ${minted.token}`);
    expect(caught).toBeInstanceOf(TypeError);
    expect(res.body.subject).toBe(fx.caller.id);
  });

  it('holds no token, and the public types say so', () => {
    expectTypeOf<M2MRequestAuth>().not.toHaveProperty('token');
    expectTypeOf<keyof M2MRequestAuth>().toEqualTypeOf<
      'id' | 'subject' | 'machineId' | 'scopes' | 'claims' | 'expiration'
    >();
    expectTypeOf<M2MRequestAuth['claims']>().toEqualTypeOf<Readonly<
      Record<string, unknown>
    > | null>();
    expect(typeof middleware).toBe('function');
  });

  it('types the callbacks: onError gets an M2MAuthError, requireClaims gets req.m2m', () => {
    expectTypeOf<Parameters<ErrorHandler>[0]>().toEqualTypeOf<M2MAuthError>();
    expectTypeOf(requireClaims).parameter(0).parameter(0).toEqualTypeOf<M2MRequestAuth>();
    expectTypeOf(m2mAuth).returns.toEqualTypeOf<M2MAuthMiddleware>();
    expectTypeOf<M2MAuthMiddleware['close']>().returns.toEqualTypeOf<Promise<void>>();
    expect(typeof requireClaims).toBe('function');
  });
});
