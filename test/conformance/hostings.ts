/**
 * Every hosting of m2m-guard, each as one entry: Express 5, Express 4, Connect and `node:http`
 * (through test/helpers/hosts.ts), Fastify, Hono on `@hono/node-server` and through
 * `app.request()`, Koa, a Web handler called with real `Request` objects and served over HTTP,
 * and NestJS on Express and on Fastify. Each mounts `m2mAuth()` with the given options, then
 * optionally a middleware that replaces the framework's auth slot (an attacker), then the
 * guards, then a route that answers the JSON of the auth it sees (or `null`) and records it.
 * Adding a hosting is adding one entry to HOSTINGS.
 */
import 'reflect-metadata';
import { getRequestListener } from '@hono/node-server';
import type { CanActivate } from '@nestjs/common';
import { All, Controller, Module, UseGuards } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import Fastify from 'fastify';
import { Hono } from 'hono';
import Koa from 'koa';
import * as fastifyGuard from '../../src/fastify/index.js';
import * as honoGuard from '../../src/hono/index.js';
import type { M2MAuthenticatorOptions, M2MRequestAuth } from '../../src/index.js';
import * as express from '../../src/index.js';
import * as koaGuard from '../../src/koa/index.js';
import * as nestGuard from '../../src/nestjs/index.js';
import * as webGuard from '../../src/web/index.js';
import { host, listen, type Middleware, type Hosting as NodeHosting } from '../helpers/hosts.js';

/** A guard, named as every adapter names it. */
export type GuardSpec =
  | { kind: 'requireMachine'; id: string }
  | { kind: 'allowSubjects'; ids: string[] }
  | { kind: 'requireClaims'; predicate: (auth: M2MRequestAuth) => boolean };

export interface Setup {
  options: M2MAuthenticatorOptions;
  guards?: GuardSpec[];
  /** Put this in the framework's auth slot after `m2mAuth()`, before the guards. */
  replaceWith?: M2MRequestAuth;
}

export interface Sent {
  method?: string;
  path?: string;
  /** Header lines; repeated names are sent as repeated headers (raw socket over HTTP). */
  headers?: [string, string][];
}

export interface Answer {
  status: number;
  /** Lower-cased names. */
  headers: Record<string, string>;
  body: unknown;
}

export interface HostedApp {
  send(request: Sent): Promise<Answer>;
  /** The auth the route saw, per call (`null` for none). */
  readonly seen: unknown[];
  /** Errors that reached the hosting's error path. */
  readonly errors: unknown[];
  close(): Promise<void>;
}

export interface ConformanceHosting {
  readonly name: string;
  /** Whether guards see a preflight `m2mAuth()` let through (Web guards see the auth only). */
  readonly guardsSeePreflight: boolean;
  start(setup: Setup): Promise<HostedApp>;
}

// ---------------------------------------------------------------------------------------------
// Sending
// ---------------------------------------------------------------------------------------------

async function answerOf(res: Response): Promise<Answer> {
  const headers: Record<string, string> = {};
  res.headers.forEach((value, name) => {
    headers[name] = value;
  });
  const text = await res.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  return { status: res.status, headers, body };
}

/** A real `Request`; repeated header lines are appended, so `Headers` joins them with `, `. */
export function webRequest({ method = 'GET', path = '/', headers = [] }: Sent): Request {
  const h = new Headers();
  for (const [name, value] of headers) h.append(name, value);
  return new Request(`http://127.0.0.1${path}`, { method, headers: h });
}

/** Over HTTP: fetch, or a raw socket when a header is repeated (fetch would join them). */
async function sendHttp(url: string, sent: Sent): Promise<Answer> {
  const lines = sent.headers ?? [];
  const names = lines.map(([n]) => n.toLowerCase());
  if (new Set(names).size !== names.length) {
    const { rawRequest } = await import('../helpers/hosts.js');
    const res = await rawRequest(
      url,
      lines.map(([n, v]) => `${n}: ${v}`),
      sent.path,
    );
    return { status: res.status, headers: res.headers, body: res.body };
  }
  const req = webRequest(sent);
  return answerOf(
    await fetch(`${url}${sent.path ?? '/'}`, { method: req.method, headers: req.headers }),
  );
}

function recorder() {
  const seen: unknown[] = [];
  const errors: unknown[] = [];
  const record = (auth: unknown) => {
    seen.push(auth ?? null);
    return auth ?? null;
  };
  return { seen, errors, record };
}

// ---------------------------------------------------------------------------------------------
// The hostings
// ---------------------------------------------------------------------------------------------

interface GuardSet<G> {
  requireMachine(id: string): G;
  allowSubjects(...ids: string[]): G;
  requireClaims(predicate: (auth: M2MRequestAuth) => boolean): G;
}

function guardsOf<G>(set: GuardSet<G>, specs: GuardSpec[] = []): G[] {
  return specs.map((spec) =>
    spec.kind === 'requireMachine'
      ? set.requireMachine(spec.id)
      : spec.kind === 'allowSubjects'
        ? set.allowSubjects(...spec.ids)
        : set.requireClaims(spec.predicate),
  );
}

function nodeHosting(hosting: NodeHosting): ConformanceHosting {
  return {
    name: hosting,
    guardsSeePreflight: true,
    async start(setup) {
      const auth = express.m2mAuth(setup.options);
      const replace: Middleware[] = setup.replaceWith
        ? [
            (req, _res, next) => {
              req.m2m = setup.replaceWith;
              next();
            },
          ]
        : [];
      const app = await host(hosting, [auth, ...replace, ...guardsOf(express, setup.guards)]);
      return {
        send: (sent) => sendHttp(app.url, sent),
        seen: app.seen,
        errors: app.errors,
        async close() {
          await app.close();
          await auth.close();
        },
      };
    },
  };
}

const fastify: ConformanceHosting = {
  name: 'fastify',
  guardsSeePreflight: true,
  async start(setup) {
    const { seen, errors, record } = recorder();
    const app = Fastify();
    const plugin = fastifyGuard.m2mAuth(setup.options);
    await app.register(plugin);
    app.setErrorHandler((err, _request, reply) => {
      errors.push(err);
      reply.code(500).send({ error: 'internal_error' });
    });
    const replace = setup.replaceWith
      ? [
          (request: { m2m: M2MRequestAuth | null }, _reply: unknown, done: () => void) => {
            request.m2m = setup.replaceWith!;
            done();
          },
        ]
      : [];
    app.all('/', { preHandler: [...replace, ...guardsOf(fastifyGuard, setup.guards)] }, (request) =>
      record(request.m2m),
    );
    await app.listen({ port: 0, host: '127.0.0.1' });
    const address = app.server.address();
    const url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
    return {
      send: (sent) => sendHttp(url, sent),
      seen,
      errors,
      async close() {
        await app.close();
        await plugin.close();
      },
    };
  },
};

function honoApp(setup: Setup) {
  const { seen, errors, record } = recorder();
  const app = new Hono<honoGuard.M2MEnv>();
  const auth = honoGuard.m2mAuth(setup.options);
  app.use(auth);
  if (setup.replaceWith) {
    app.use(async (c, next) => {
      c.set('m2m', setup.replaceWith);
      await next();
    });
  }
  for (const g of guardsOf(honoGuard, setup.guards)) app.use(g);
  app.all('/', (c) => c.json(record(c.get('m2m'))));
  app.onError((err, c) => {
    errors.push(err);
    return c.json({ error: 'internal_error' }, 500);
  });
  return { app, auth, seen, errors };
}

const honoNode: ConformanceHosting = {
  name: 'hono (@hono/node-server)',
  guardsSeePreflight: true,
  async start(setup) {
    const { app, auth, seen, errors } = honoApp(setup);
    const server = await listen(getRequestListener(app.fetch));
    return {
      send: (sent) => sendHttp(server.url, sent),
      seen,
      errors,
      async close() {
        await server.close();
        await auth.close();
      },
    };
  },
};

const honoRequest: ConformanceHosting = {
  name: 'hono (app.request)',
  guardsSeePreflight: true,
  async start(setup) {
    const { app, auth, seen, errors } = honoApp(setup);
    return {
      send: async (sent) => answerOf(await app.request(webRequest(sent))),
      seen,
      errors,
      close: () => auth.close(),
    };
  },
};

const koa: ConformanceHosting = {
  name: 'koa',
  guardsSeePreflight: true,
  async start(setup) {
    const { seen, errors, record } = recorder();
    const app = new Koa<koaGuard.M2MState>();
    app.silent = true;
    app.on('error', (err) => errors.push(err));
    const auth = koaGuard.m2mAuth(setup.options);
    app.use(auth);
    if (setup.replaceWith) {
      app.use((ctx, next) => {
        ctx.state.m2m = setup.replaceWith;
        return next();
      });
    }
    for (const g of guardsOf(koaGuard, setup.guards)) app.use(g);
    app.use((ctx) => {
      ctx.body = JSON.stringify(record(ctx.state.m2m));
      ctx.type = 'application/json';
    });
    const server = await listen(app.callback());
    return {
      send: (sent) => sendHttp(server.url, sent),
      seen,
      errors,
      async close() {
        await server.close();
        await auth.close();
      },
    };
  },
};

/** A route handler as a Next.js user writes it: `withM2MAuth()`, guards on the auth. */
function webHandler(setup: Setup) {
  const { seen, errors, record } = recorder();
  const guards = guardsOf(webGuard, setup.guards);
  const handler = webGuard.withM2MAuth(setup.options, (_request, verified) => {
    const auth = setup.replaceWith ?? verified;
    for (const g of guards) {
      const refusal = g(auth);
      if (refusal) return refusal;
    }
    return Response.json(record(auth));
  });
  return { handler, seen, errors };
}

const webDirect: ConformanceHosting = {
  name: 'web (Request objects)',
  guardsSeePreflight: false,
  async start(setup) {
    const { handler, seen, errors } = webHandler(setup);
    return {
      send: async (sent) => answerOf(await handler(webRequest(sent))),
      seen,
      errors,
      close: () => handler.close(),
    };
  },
};

const webHttp: ConformanceHosting = {
  name: 'web (over HTTP)',
  guardsSeePreflight: false,
  async start(setup) {
    const { handler, seen, errors } = webHandler(setup);
    const server = await listen(getRequestListener((request) => handler(request)));
    return {
      send: (sent) => sendHttp(server.url, sent),
      seen,
      errors,
      async close() {
        await server.close();
        await handler.close();
      },
    };
  },
};

/** A NestJS app with one controller, decorated by hand (no decorator syntax, no metadata). */
function nestHosting(platform: 'express' | 'fastify'): ConformanceHosting {
  return {
    name: `nestjs (${platform})`,
    guardsSeePreflight: true,
    async start(setup) {
      const { seen, errors, record } = recorder();
      const authGuard = new nestGuard.M2MAuthGuard(setup.options);
      const replace: CanActivate[] = setup.replaceWith
        ? [
            {
              canActivate(context) {
                context.switchToHttp().getRequest().m2m = setup.replaceWith;
                return true;
              },
            },
          ]
        : [];
      class Routes {
        handle(auth: M2MRequestAuth | undefined) {
          return JSON.stringify(record(auth));
        }
      }
      const descriptor = Object.getOwnPropertyDescriptor(Routes.prototype, 'handle')!;
      nestGuard.M2M()(Routes.prototype, 'handle', 0);
      All()(Routes.prototype, 'handle', descriptor);
      UseGuards(authGuard, ...replace, ...guardsOf(nestGuard, setup.guards))(
        Routes.prototype,
        'handle',
        descriptor,
      );
      Controller()(Routes);
      class AppModule {}
      Module({ controllers: [Routes] })(AppModule);
      const app =
        platform === 'express'
          ? await NestFactory.create(AppModule, new ExpressAdapter(), { logger: false })
          : await NestFactory.create<NestFastifyApplication>(AppModule, new FastifyAdapter(), {
              logger: false,
            });
      await app.listen(0, '127.0.0.1');
      const url = (await app.getUrl()).replace('[::1]', '127.0.0.1');
      return {
        send: (sent) => sendHttp(url, sent),
        seen,
        errors,
        async close() {
          await app.close();
          await authGuard.close();
        },
      };
    },
  };
}

export const HOSTINGS: readonly ConformanceHosting[] = [
  nodeHosting('express5'),
  nodeHosting('express4'),
  nodeHosting('connect'),
  nodeHosting('node:http'),
  fastify,
  honoNode,
  honoRequest,
  koa,
  webDirect,
  webHttp,
  nestHosting('express'),
  nestHosting('fastify'),
];
