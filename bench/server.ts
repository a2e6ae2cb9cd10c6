/**
 * The server under test: one scenario per process, so each one's memory and event loop are its
 * own. `node --import tsx bench/server.ts <kind>` with the emulator's coordinates in the
 * environment (BENCH_API_URL, BENCH_SECRET_KEY, BENCH_MACHINE_SECRET_KEY, BENCH_API_MACHINE_ID,
 * BENCH_PUBLISHABLE_KEY; BENCH_REDIS_URL and BENCH_REDIS_PREFIX for `m2m-guard-redis`,
 * BENCH_REDIS_CLUSTER_URLS (comma-separated) and BENCH_REDIS_PREFIX for `m2m-guard-redis-cluster`). Prints
 * one JSON line `{"event":"ready","port":…}` on stdout once it listens (and, with Redis, once the
 * store is ready); answers the IPC message `{ type: 'stats' }` with its peak RSS (sampled every
 * 100 ms).
 */
import { once } from 'node:events';
import { createServer, type RequestListener } from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type Express, type Request, type RequestHandler, type Response } from 'express';
import { BODY, ROUTE, SERVER_KINDS, type ServerKind } from './scenarios.js';

export interface ServerStats {
  type: 'stats';
  peakRssBytes: number;
  rssBytes: number;
  heapUsedBytes: number;
  /** CPU time (user + system) this process has used so far, in microseconds. */
  cpuMicros: number;
}

function env(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`bench/server.ts: ${name} is not set`);
  return value;
}

function pong(_req: Request, res: Response): void {
  res.json(BODY);
}

function bearer(req: Request): string | undefined {
  const match = /^Bearer +(\S+)$/i.exec(req.headers.authorization ?? '');
  return match?.[1];
}

/**
 * The upstream budget stays on, sized to the workload as the README says: 1 000 callers whose
 * tokens are all new at the start (and, with `cache: false`, never seen valid at all).
 */
const BENCH_BUDGET = { perSecond: 100_000, burst: 100_000 };

/**
 * Fastify, Hono and plain `node:http` apps, bare or with m2m-guard, as `node:http` listeners. The
 * adapters are loaded only here, so the other scenarios' RSS does not carry them.
 */
async function buildOtherFramework(kind: ServerKind): Promise<RequestListener | undefined> {
  const apiUrl = env('BENCH_API_URL');
  const options = () => ({
    apiUrl,
    machineSecretKey: env('BENCH_MACHINE_SECRET_KEY'),
    upstreamBudget: BENCH_BUDGET,
  });
  if (kind === 'fastify' || kind === 'fastify-m2m-guard') {
    const { default: Fastify } = await import('fastify');
    const app = Fastify();
    if (kind === 'fastify-m2m-guard') {
      const { m2mAuth } = await import('../src/fastify/index.js');
      await app.register(m2mAuth(options()));
    }
    app.get(ROUTE, async () => BODY);
    await app.ready();
    return app.routing;
  }
  if (kind === 'node-http' || kind === 'node-http-m2m-guard') {
    const body = JSON.stringify(BODY);
    const handler: RequestListener = (_req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(body);
    };
    if (kind === 'node-http') return handler;
    const { m2mAuth } = await import('../src/index.js');
    const guard = m2mAuth(options());
    return (req, res) => guard(req, res, () => handler(req, res));
  }
  if (kind === 'hono' || kind === 'hono-m2m-guard') {
    const { Hono } = await import('hono');
    const { getRequestListener } = await import('@hono/node-server');
    const app = new Hono();
    if (kind === 'hono-m2m-guard') {
      const { m2mAuth } = await import('../src/hono/index.js');
      app.use(m2mAuth(options()));
    }
    app.get(ROUTE, (c) => c.json(BODY));
    return getRequestListener(app.fetch);
  }
  return undefined;
}

async function buildApp(kind: ServerKind): Promise<Express | RequestListener> {
  const other = await buildOtherFramework(kind);
  if (other) return other;
  const app = express();
  const apiUrl = env('BENCH_API_URL');
  let guard: RequestHandler | undefined;
  switch (kind) {
    case 'none':
      break;
    case 'm2m-guard-otel': {
      // As an application does it: the SDK first, then the middleware.
      const { metrics, trace } = await import('@opentelemetry/api');
      const {
        MeterProvider,
        PeriodicExportingMetricReader,
        InMemoryMetricExporter,
        AggregationTemporality,
      } = await import('@opentelemetry/sdk-metrics');
      const { BasicTracerProvider } = await import('@opentelemetry/sdk-trace-base');
      const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
      const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 1000 });
      metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }));
      trace.setGlobalTracerProvider(new BasicTracerProvider());
      const { m2mAuth } = await import('../src/index.js');
      const machineSecretKey = env('BENCH_MACHINE_SECRET_KEY');
      guard = m2mAuth({ apiUrl, machineSecretKey, upstreamBudget: BENCH_BUDGET });
      break;
    }
    case 'm2m-guard':
    case 'm2m-guard-nocache': {
      // Loaded only here, so the other scenarios' RSS does not carry the library.
      const { m2mAuth } = await import('../src/index.js');
      const machineSecretKey = env('BENCH_MACHINE_SECRET_KEY');
      const cache = kind === 'm2m-guard' ? {} : false;
      guard = m2mAuth({ apiUrl, machineSecretKey, cache, upstreamBudget: BENCH_BUDGET });
      break;
    }
    case 'm2m-guard-jwt': {
      // The instance key fetches the JWKS (once); machineId has the verifier check each JWT's
      // scopes itself (a machine key alone refuses JWTs, whose scope it cannot check).
      const { m2mAuth } = await import('../src/index.js');
      const secretKey = env('BENCH_SECRET_KEY');
      const machineId = env('BENCH_API_MACHINE_ID');
      guard = m2mAuth({ apiUrl, secretKey, machineId });
      break;
    }
    case 'm2m-guard-redis':
    case 'm2m-guard-redis-cluster': {
      const { m2mAuth } = await import('../src/index.js');
      const { createRedisStore } = await import('../src/redis/index.js');
      const store = createRedisStore({
        ...(kind === 'm2m-guard-redis'
          ? { url: env('BENCH_REDIS_URL') }
          : { cluster: env('BENCH_REDIS_CLUSTER_URLS').split(',') }),
        keyPrefix: env('BENCH_REDIS_PREFIX'),
      });
      // Ready only once Redis is: until then the store would be skipped, not shared.
      await store.ready();
      const machineSecretKey = env('BENCH_MACHINE_SECRET_KEY');
      guard = m2mAuth({ apiUrl, machineSecretKey, store, upstreamBudget: BENCH_BUDGET });
      break;
    }
    case 'clerk-express': {
      const { clerkMiddleware, getAuth } = await import('@clerk/express');
      app.use(
        clerkMiddleware({
          secretKey: env('BENCH_SECRET_KEY'),
          publishableKey: env('BENCH_PUBLISHABLE_KEY'),
          apiUrl,
          machineSecretKey: env('BENCH_MACHINE_SECRET_KEY'),
        }),
      );
      // As Clerk documents it for M2M tokens.
      app.get(ROUTE, (req, res) => {
        const auth = getAuth(req, { acceptsToken: 'm2m_token' });
        if (!auth.isAuthenticated) {
          res.status(401).send('Unauthorized');
          return;
        }
        res.json(BODY);
      });
      return app;
    }
    case 'fastify':
    case 'fastify-m2m-guard':
    case 'hono':
    case 'hono-m2m-guard':
    case 'node-http':
    case 'node-http-m2m-guard':
      throw new Error(`bench/server.ts: ${kind} is built by buildOtherFramework()`);
    case 'clerk-backend': {
      const { createClerkClient } = await import('@clerk/backend');
      const clerk = createClerkClient({
        apiUrl,
        machineSecretKey: env('BENCH_MACHINE_SECRET_KEY'),
      });
      app.get(ROUTE, async (req, res) => {
        const token = bearer(req);
        try {
          if (!token) throw new Error('no token');
          await clerk.m2m.verify({ token });
        } catch {
          res.status(401).send('Unauthorized');
          return;
        }
        res.json(BODY);
      });
      return app;
    }
  }
  // Mounted on the route itself, as `app.get(path, m2mAuth(), handler)`: Express 5 charges a
  // path-mounted `app.use('/internal', …)` layer tens of µs per request, whatever it does, and
  // that cost is Express's, not the middleware's.
  if (guard) app.get(ROUTE, guard, pong);
  else app.get(ROUTE, pong);
  return app;
}

function trackPeakRss(): () => ServerStats {
  let peak = process.memoryUsage().rss;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 100);
  timer.unref();
  return () => {
    const { rss, heapUsed } = process.memoryUsage();
    peak = Math.max(peak, rss);
    const { user, system } = process.cpuUsage();
    return {
      type: 'stats',
      peakRssBytes: peak,
      rssBytes: rss,
      heapUsedBytes: heapUsed,
      cpuMicros: user + system,
    };
  };
}

async function main(): Promise<void> {
  const kind = process.argv[2] as ServerKind;
  if (!SERVER_KINDS.includes(kind)) {
    throw new Error(`bench/server.ts: unknown kind ${kind}; one of ${SERVER_KINDS.join(', ')}`);
  }
  const stats = trackPeakRss();
  const app = await buildApp(kind);
  const server = createServer(app);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  process.on('message', (msg: { type?: string }) => {
    if (msg?.type === 'stats') process.send?.(stats());
  });
  // With an IPC channel the parent owns our life; without one (run by hand) Ctrl-C ends it.
  process.on('disconnect', () => process.exit(0));
  const { port } = server.address() as AddressInfo;
  process.stdout.write(`${JSON.stringify({ event: 'ready', port, kind, pid: process.pid })}\n`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
