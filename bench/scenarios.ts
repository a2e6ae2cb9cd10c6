/**
 * The benchmark's scenarios: which server runs, how many tokens rotate, whether the emulator
 * enforces Clerk's production rate limit. Shared by the driver (`run.ts`) and the server
 * under test (`server.ts`).
 */

/** The server variants `bench/server.ts` can run (one per process). */
export const SERVER_KINDS = [
  'none',
  'm2m-guard',
  'm2m-guard-otel',
  'm2m-guard-nocache',
  'm2m-guard-jwt',
  'm2m-guard-redis',
  'm2m-guard-redis-cluster',
  'clerk-express',
  'clerk-backend',
  'fastify',
  'fastify-m2m-guard',
  'hono',
  'hono-m2m-guard',
  'node-http',
  'node-http-m2m-guard',
] as const;
export type ServerKind = (typeof SERVER_KINDS)[number];

export interface Scenario {
  name: string;
  server: ServerKind;
  /** Distinct valid tokens cycled through the Authorization header; 0 sends none. */
  tokens: number;
  /** Whether the emulator enforces {@link PRODUCTION_RATE_LIMIT} during the measured window. */
  rateLimit: boolean;
  description: string;
  /** The format of the minted tokens. Default `opaque`. */
  tokenFormat?: 'opaque' | 'jwt';
  /**
   * Server processes of the same kind run at once, the load split evenly between them (one
   * autocannon run each, in parallel, the same duration). Default 1.
   */
  instances?: number;
  /**
   * No warming requests and no warm-up: the measured window starts with every cache empty.
   * Default `false`.
   */
  cold?: boolean;
  /** Needs a Redis server at `REDIS_URL`; skipped (not failed) when it is not set. */
  needsRedis?: boolean;
  /**
   * The scenario this one is compared with: the same server without auth (its ratio of 2xx
   * req/s and the server CPU it adds per request). Default `none` (bare Express 5).
   */
  bare?: string;
  /** Needs a Redis Cluster at `REDIS_CLUSTER_URLS`; skipped (not failed) when it is not set. */
  needsCluster?: boolean;
}

/** Clerk's production limit for the M2M endpoints: 1 000 requests per 10 s per instance. */
export const PRODUCTION_RATE_LIMIT = { limit: 1000, windowMs: 10_000 };

/** The route every scenario serves, and the body it answers with. */
export const ROUTE = '/internal/ping';
export const BODY = { pong: true };

export const SCENARIOS: readonly Scenario[] = [
  { name: 'none', server: 'none', tokens: 0, rateLimit: false, description: 'no auth (ceiling)' },
  {
    name: 'm2m-guard',
    server: 'm2m-guard',
    tokens: 1,
    rateLimit: false,
    description: 'm2mAuth(), 1 token, cache warm',
  },
  {
    name: 'm2m-guard+otel',
    server: 'm2m-guard-otel',
    tokens: 1,
    rateLimit: false,
    bare: 'm2m-guard',
    description: 'as m2m-guard, with an OpenTelemetry SDK (metrics and traces) registered first',
  },
  {
    name: 'm2m-guard-1000',
    server: 'm2m-guard',
    tokens: 1000,
    rateLimit: false,
    description: 'm2mAuth(), 1 000 tokens in rotation, cache warm',
  },
  {
    name: 'm2m-guard-nocache',
    server: 'm2m-guard-nocache',
    tokens: 1,
    rateLimit: false,
    description: 'm2mAuth({ cache: false }), 1 token',
  },
  {
    name: 'm2m-guard-jwt',
    server: 'm2m-guard-jwt',
    tokens: 1000,
    tokenFormat: 'jwt',
    rateLimit: false,
    description:
      'm2mAuth({ secretKey, machineId }), 1 000 JWT-format tokens in rotation, verified locally',
  },
  {
    name: 'clerk-express',
    server: 'clerk-express',
    tokens: 1,
    rateLimit: false,
    description: "@clerk/express clerkMiddleware() + getAuth(req, { acceptsToken: 'm2m_token' })",
  },
  {
    name: 'clerk-backend',
    server: 'clerk-backend',
    tokens: 1,
    rateLimit: false,
    description: '@clerk/backend m2m.verify() per request',
  },
  {
    name: 'm2m-guard+ratelimit',
    server: 'm2m-guard',
    tokens: 1,
    rateLimit: true,
    description: 'as m2m-guard, emulator at 1 000 req / 10 s',
  },
  {
    name: 'clerk-express+ratelimit',
    server: 'clerk-express',
    tokens: 1,
    rateLimit: true,
    description: 'as clerk-express, emulator at 1 000 req / 10 s',
  },
  {
    name: 'fastify',
    server: 'fastify',
    tokens: 0,
    rateLimit: false,
    description: 'Fastify 5, no auth (its ceiling)',
    bare: 'fastify',
  },
  {
    name: 'fastify-m2m-guard',
    server: 'fastify-m2m-guard',
    tokens: 1,
    rateLimit: false,
    description: 'Fastify 5, m2m-guard/fastify plugin, 1 token, cache warm',
    bare: 'fastify',
  },
  {
    name: 'hono',
    server: 'hono',
    tokens: 0,
    rateLimit: false,
    description: 'Hono 4 on @hono/node-server, no auth (its ceiling)',
    bare: 'hono',
  },
  {
    name: 'hono-m2m-guard',
    server: 'hono-m2m-guard',
    tokens: 1,
    rateLimit: false,
    description: 'Hono 4 on @hono/node-server, m2m-guard/hono, 1 token, cache warm',
    bare: 'hono',
  },
  {
    name: 'node-http',
    server: 'node-http',
    tokens: 0,
    rateLimit: false,
    description: 'plain node:http, no auth (its ceiling)',
    bare: 'node-http',
  },
  {
    name: 'node-http-m2m-guard',
    server: 'node-http-m2m-guard',
    tokens: 1,
    rateLimit: false,
    bare: 'node-http',
    description: 'plain node:http, m2mAuth() before the handler, 1 token, cache warm',
  },
  {
    name: 'two-instances-separate',
    server: 'm2m-guard',
    tokens: 1000,
    instances: 2,
    cold: true,
    rateLimit: false,
    description: '2 × m2mAuth(), each its own cache, 1 000 tokens, load split, caches cold',
  },
  {
    name: 'two-instances-redis',
    server: 'm2m-guard-redis',
    tokens: 1000,
    instances: 2,
    cold: true,
    needsRedis: true,
    rateLimit: false,
    description: '2 × m2mAuth({ store: createRedisStore() }), 1 000 tokens, load split, cold',
  },
  {
    name: 'two-instances-cluster',
    server: 'm2m-guard-redis-cluster',
    tokens: 1000,
    instances: 2,
    cold: true,
    needsCluster: true,
    rateLimit: false,
    description:
      '2 × m2mAuth({ store: createRedisStore({ cluster }) }), 3-node Redis Cluster, 1 000 tokens, load split, cold',
  },
];

/** The revocation-lag measurement is selectable with `--only` like a scenario. */
export const REVOCATION_LAG = 'revocation-lag';

/** The cold-start check is selectable with `--only` like a scenario. */
export const COLD_START = 'cold-start';

/** A publishable key Clerk can parse: `pk_test_` + base64 of a frontend API host and `$`. */
export function fakePublishableKey(host = 'clerk.example.test'): string {
  return `pk_test_${Buffer.from(`${host}$`).toString('base64')}`;
}
