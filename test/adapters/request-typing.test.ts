/**
 * The typing of the auth in each framework, checked by `tsc --noEmit` (which covers `test/`):
 * `request.m2m` (Fastify, by declaration merging), `c.get('m2m')` (Hono `Variables`),
 * `ctx.state.m2m` (Koa state), the Web handler's `auth` argument, and the NestJS guards. The
 * `@ts-expect-error` lines fail type-checking if a wrong value or a write ever compiles.
 */
import type { CanActivate } from '@nestjs/common';
import Fastify, { type FastifyRequest } from 'fastify';
import { Hono } from 'hono';
import Koa from 'koa';
import { describe, expect, expectTypeOf, it } from 'vitest';
import * as fastifyGuard from '../../src/fastify/index.js';
import * as honoGuard from '../../src/hono/index.js';
import type { M2MRequestAuth } from '../../src/index.js';
import * as koaGuard from '../../src/koa/index.js';
import * as nestGuard from '../../src/nestjs/index.js';
import * as webGuard from '../../src/web/index.js';

const options = { apiUrl: 'http://127.0.0.1:1', secretKey: 'sk_test_typing', anyMachine: true };

describe('the auth is typed in every framework', () => {
  it('Fastify: request.m2m is M2MRequestAuth | null, and read-only inside', async () => {
    expectTypeOf<FastifyRequest['m2m']>().toEqualTypeOf<M2MRequestAuth | null>();
    const app = Fastify();
    const plugin = fastifyGuard.m2mAuth(options);
    await app.register(plugin);
    app.get(
      '/',
      { preHandler: fastifyGuard.requireMachine(`mch_${'A'.repeat(27)}`) },
      (request) => {
        expectTypeOf(request.m2m?.subject).toEqualTypeOf<string | undefined>();
        // @ts-expect-error: M2MRequestAuth is read-only.
        if (request.m2m) request.m2m.subject = 'mch_other';
        return request.m2m;
      },
    );
    await app.close();
    await plugin.close();
  });

  it("Hono: c.get('m2m') is typed through Variables", async () => {
    const app = new Hono<honoGuard.M2MEnv>();
    const auth = honoGuard.m2mAuth(options);
    app.use(auth);
    app.get('/', (c) => {
      expectTypeOf(c.get('m2m')).toEqualTypeOf<M2MRequestAuth | undefined>();
      // @ts-expect-error: subject is a string.
      const wrong: number | undefined = c.get('m2m')?.subject;
      return c.json({ subject: c.get('m2m')?.subject ?? wrong ?? null });
    });
    expect(typeof app.fetch).toBe('function');
    await auth.close();
  });

  it('Koa: ctx.state.m2m is typed through M2MState', async () => {
    const app = new Koa<koaGuard.M2MState>();
    const auth = koaGuard.m2mAuth(options);
    app.use(auth);
    app.use((ctx) => {
      expectTypeOf(ctx.state.m2m).toEqualTypeOf<M2MRequestAuth | undefined>();
      ctx.body = ctx.state.m2m?.subject ?? '';
    });
    expect(app.middleware).toHaveLength(2);
    await auth.close();
  });

  it("Web: the handler's auth argument, m2mAuth's result and the guards", async () => {
    const handler = webGuard.withM2MAuth(options, (request, auth) => {
      expectTypeOf(request).toEqualTypeOf<Request>();
      expectTypeOf(auth).toEqualTypeOf<M2MRequestAuth | null>();
      return Response.json({ subject: auth?.subject ?? null });
    });
    expectTypeOf(handler).returns.toEqualTypeOf<Promise<Response>>();
    const authenticate = webGuard.m2mAuth(options);
    expectTypeOf(authenticate).returns.toEqualTypeOf<Promise<M2MRequestAuth | Response | null>>();
    expectTypeOf(webGuard.requireMachine).returns.toEqualTypeOf<webGuard.M2MGuard>();
    expectTypeOf<ReturnType<webGuard.M2MGuard>>().toEqualTypeOf<Response | undefined>();
    await Promise.all([handler.close(), authenticate.close()]);
  });

  it('NestJS: M2MAuthGuard and the guards are CanActivate', async () => {
    const guard = new nestGuard.M2MAuthGuard(options);
    expectTypeOf(guard).toMatchTypeOf<CanActivate>();
    expectTypeOf(nestGuard.requireMachine).returns.toEqualTypeOf<CanActivate>();
    await guard.close();
  });
});
