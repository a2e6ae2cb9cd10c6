/**
 * What each adapter does beyond the shared answer table (test/conformance): its framework's own
 * error path (`passErrors`), option validation, `app.use(m2mAuth)` without the call noticed and
 * explained, Fastify's encapsulation, and the NestJS `@M2M()` parameter trusting only the guard.
 */
import 'reflect-metadata';
import { All, Controller, Module, UseGuards } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import express from 'express';
import Fastify from 'fastify';
import { Hono } from 'hono';
import Koa from 'koa';
import request from 'supertest';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import * as fastifyGuard from '../../src/fastify/index.js';
import * as honoGuard from '../../src/hono/index.js';
import {
  allowSubjects,
  M2MAuthError,
  M2MConfigError,
  m2mAuth,
  requireClaims,
  requireMachine,
  TokenRejectedError,
} from '../../src/index.js';
import * as koaGuard from '../../src/koa/index.js';
import * as nestGuard from '../../src/nestjs/index.js';
import * as webGuard from '../../src/web/index.js';
import { CHALLENGE, type Fixture, startFixture, unknownToken } from '../middleware/fixture.js';

let fx: Fixture;
const built: { close(): Promise<void> }[] = [];
function track<T extends { close(): Promise<void> }>(made: T): T {
  built.push(made);
  return made;
}

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

const options = () => ({ ...fx.machineKey(), retry: false as const });
const CALL_IT = /without being called: write .*\(\)/;

describe('app.use(m2mAuth) without the call is noticed and explained', () => {
  it('Express: the error names the fix', async () => {
    const app = express();
    let caught: unknown;
    app.use(m2mAuth as never);
    app.use(
      (err: unknown, _req: express.Request, res: express.Response, _n: express.NextFunction) => {
        caught = err;
        res.status(500).end();
      },
    );
    await request(app).get('/');
    expect(caught).toBeInstanceOf(TypeError);
    expect((caught as Error).message).toMatch(
      /write app\.use\(m2mAuth\(\)\), not app\.use\(m2mAuth\)/,
    );
  });

  it.each([
    ['requireMachine', requireMachine],
    ['allowSubjects', allowSubjects],
    ['requireClaims', requireClaims],
  ])('Express: app.use(%s) without the call says so too', async (name, factory) => {
    const app = express();
    let caught: unknown;
    app.use(factory as never);
    app.use(
      (err: unknown, _req: express.Request, res: express.Response, _n: express.NextFunction) => {
        caught = err;
        res.status(500).end();
      },
    );
    await request(app).get('/');
    expect((caught as Error).message).toMatch(new RegExp(`^${name} was used .* write ${name}\\(`));
  });

  it('Fastify: register(m2mAuth) fails at ready()', async () => {
    const app = Fastify();
    app.register(fastifyGuard.m2mAuth as never);
    await expect(app.ready()).rejects.toThrow(CALL_IT);
    await app.close();
  });

  it('Hono: the error reaches app.onError', async () => {
    const app = new Hono();
    let caught: unknown;
    app.use(honoGuard.m2mAuth as never);
    app.get('/', (c) => c.text('reached'));
    app.onError((err, c) => {
      caught = err;
      return c.text('error', 500);
    });
    expect((await app.request('/')).status).toBe(500);
    expect((caught as Error).message).toMatch(CALL_IT);
  });

  it('Koa: the error reaches the app', async () => {
    const app = new Koa();
    app.silent = true;
    const caught: unknown[] = [];
    app.on('error', (err) => caught.push(err));
    app.use(koaGuard.m2mAuth as never);
    expect((await request(app.callback()).get('/')).status).toBe(500);
    expect((caught[0] as Error).message).toMatch(CALL_IT);
  });

  it('Web: a route handler set to m2mAuth itself throws when called', () => {
    const GET = webGuard.m2mAuth as unknown as (r: Request) => unknown;
    expect(() => GET(new Request('http://127.0.0.1/'))).toThrow(CALL_IT);
  });
});

describe("each framework's own error path", () => {
  it('Fastify passErrors: the M2MAuthError reaches setErrorHandler', async () => {
    const app = Fastify();
    const caught: unknown[] = [];
    await app.register(track(fastifyGuard.m2mAuth({ ...options(), passErrors: true })));
    app.setErrorHandler((err, _req, reply) => {
      caught.push(err);
      reply.code(418).send({ handledBy: 'app' });
    });
    app.get('/', () => 'reached');
    const res = await app.inject({
      url: '/',
      headers: { authorization: `Bearer ${unknownToken()}` },
    });
    expect(res.statusCode).toBe(418);
    expect(caught[0]).toBeInstanceOf(TokenRejectedError);
    await app.close();
  });

  it("Fastify passErrors with Fastify's default handler keeps status and challenge", async () => {
    const app = Fastify();
    await app.register(track(fastifyGuard.m2mAuth({ ...options(), passErrors: true })));
    app.get('/', () => 'reached');
    const res = await app.inject({ url: '/' });
    expect(res.statusCode).toBe(401);
    expect(res.headers['www-authenticate']).toBe(CHALLENGE.missing);
    await app.close();
  });

  it('Fastify: the plugin applies to the encapsulation context it is registered in', async () => {
    const app = Fastify();
    await app.register(async (scope) => {
      await scope.register(track(fastifyGuard.m2mAuth(options())));
      scope.get('/internal', () => 'internal');
    });
    app.get('/public', () => 'public');
    expect((await app.inject({ url: '/internal' })).statusCode).toBe(401);
    expect((await app.inject({ url: '/public' })).statusCode).toBe(200);
    await app.close();
  });

  it('Hono passErrors: the M2MAuthError reaches app.onError', async () => {
    const app = new Hono();
    const caught: unknown[] = [];
    app.use(track(honoGuard.m2mAuth({ ...options(), passErrors: true })));
    app.get('/', (c) => c.text('reached'));
    app.onError((err, c) => {
      caught.push(err);
      return c.json({ handledBy: 'app' }, 418);
    });
    expect((await app.request('/')).status).toBe(418);
    expect(caught[0]).toBeInstanceOf(M2MAuthError);
  });

  it("Koa passErrors: Koa's own error answer keeps status and challenge", async () => {
    const app = new Koa();
    app.silent = true;
    app.use(track(koaGuard.m2mAuth({ ...options(), passErrors: true })));
    app.use((ctx) => {
      ctx.body = 'reached';
    });
    const res = await request(app.callback()).get('/');
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toBe(CHALLENGE.missing);
    expect(res.text).toBe('A bearer token is required');
  });

  it('NestJS: the refusal is an M2MHttpException whose cause is the M2MAuthError', async () => {
    const guard = track(new nestGuard.M2MAuthGuard(options()));
    const context = {
      switchToHttp: () => ({
        getRequest: () => ({ headers: {}, rawHeaders: [] }),
        getResponse: () => ({ header() {} }),
      }),
    };
    let caught: unknown;
    try {
      await guard.canActivate(context as never);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(nestGuard.M2MHttpException);
    expect((caught as nestGuard.M2MHttpException).getStatus()).toBe(401);
    expect((caught as nestGuard.M2MHttpException).error).toBeInstanceOf(M2MAuthError);
  });
});

describe('adapter options are validated when the factory is called', () => {
  const factories: [string, (o: object) => unknown][] = [
    ['fastify', (o) => fastifyGuard.m2mAuth(o)],
    ['hono', (o) => honoGuard.m2mAuth(o)],
    ['koa', (o) => koaGuard.m2mAuth(o)],
    ['web', (o) => webGuard.m2mAuth(o)],
    ['nestjs', (o) => new nestGuard.M2MAuthGuard(o)],
  ];
  it.each(factories)('%s: unknown keys, the Express-only ones and bad values', (name, make) => {
    const bad: [object, string][] = [
      [{ onError: () => {} }, 'onError'],
      [{ getToken: () => undefined }, 'getToken'],
      [{ required: 'yes' }, 'required'],
      [{ realm: 'a"b' }, 'realm'],
      [{ requried: true }, 'requried'],
    ];
    if (name === 'web' || name === 'nestjs') bad.push([{ passErrors: true }, 'passErrors']);
    else bad.push([{ passErrors: 'yes' }, 'passErrors']);
    for (const [extra, option] of bad) {
      let caught: unknown;
      try {
        make({ ...fx.machineKey(), ...extra });
      } catch (err) {
        caught = err;
      }
      expect(caught, `${name} ${option}`).toBeInstanceOf(M2MConfigError);
      expect((caught as M2MConfigError).option).toBe(option);
    }
  });
});

describe('NestJS @M2M()', () => {
  it('gives the handler only the auth M2MAuthGuard set, never a replaced request.m2m', async () => {
    const seen: unknown[] = [];
    const guard = track(new nestGuard.M2MAuthGuard({ ...options(), required: false }));
    const replace = {
      canActivate(context: { switchToHttp(): { getRequest(): { m2m?: unknown } } }) {
        context.switchToHttp().getRequest().m2m = { subject: 'mch_forged' };
        return true;
      },
    };
    class Routes {
      handle(auth: unknown) {
        seen.push(auth ?? null);
        return 'ok';
      }
    }
    const descriptor = Object.getOwnPropertyDescriptor(Routes.prototype, 'handle')!;
    nestGuard.M2M()(Routes.prototype, 'handle', 0);
    All()(Routes.prototype, 'handle', descriptor);
    UseGuards(guard, replace as never)(Routes.prototype, 'handle', descriptor);
    Controller()(Routes);
    class AppModule {}
    Module({ controllers: [Routes] })(AppModule);
    const app = await NestFactory.create(AppModule, new ExpressAdapter(), { logger: false });
    await app.init();
    const minted = await fx.mint();
    await request(app.getHttpServer()).get('/').set('Authorization', `Bearer ${minted.token}`);
    await request(app.getHttpServer()).get('/');
    expect(seen).toEqual([null, null]);
    await app.close();
  });
});
