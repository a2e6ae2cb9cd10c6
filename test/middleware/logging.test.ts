/**
 * What the middleware logs: one line per refusal, with the reason, the token id (none for a token
 * nobody knows) and the calling machine when known; and, over every case at level `trace`, no
 * token, no secret key and no Authorization value in any line of the middleware, verifier or client.
 */
import express from 'express';
import type { Logger } from 'pino';
import request from 'supertest';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createM2MClient, type M2MAuthOptions, m2mAuth, requireMachine } from '../../src/index.js';
import { deadUrl, listen, type Middleware, rawRequest } from '../helpers/hosts.js';
import { captureLogs, type Fixture, type LogLine, startFixture, unknownToken } from './fixture.js';

let fx: Fixture;
/** Things to close after each test: middlewares, clients. */
const opened: { close(): Promise<void> }[] = [];

beforeAll(async () => {
  fx = await startFixture();
});

afterEach(async () => {
  await Promise.all(opened.splice(0).map((o) => o.close()));
  fx.reset();
});

afterAll(async () => {
  await fx.close();
});

function mount(chain: Middleware[]): express.Express {
  const app = express();
  for (const middleware of chain) app.use(middleware);
  app.use((req, res) => {
    res.json(req.m2m ?? null);
  });
  return app;
}

/** `m2mAuth()` as `api` with its machine key, logging into `logger`. */
function auth(logger: Logger, options: M2MAuthOptions = {}) {
  const middleware = m2mAuth({ ...fx.machineKey(), logger, ...options });
  opened.push(middleware);
  return middleware;
}

const bearer = (token: string) => `Bearer ${token}`;
const send = (app: express.Express, authorization?: string, path = '/') => {
  const req = request(app).get(path);
  return authorization === undefined ? req : req.set('Authorization', authorization);
};

interface Outcome {
  /** Status of the last request. */
  status: number;
  /** The refusal line expected for it, or `null` when it passed. */
  line: Partial<LogLine> | null;
  /** Keys that must be absent from the refusal line. */
  absent?: string[];
  /** Strings that must appear in no log line. */
  secrets: string[];
}

interface Scenario {
  name: string;
  run(logger: Logger): Promise<Outcome>;
}

const INFO = 30;

/** The outcome of a caller's minted token refused 401 with `reason`, logged at info. */
function refusedCallerToken(
  res: { status: number },
  minted: { id: string; token: string },
  reason: string,
): Outcome {
  const line = { level: INFO, reason, status: 401, tokenId: minted.id, subject: fx.caller.id };
  return { status: res.status, line, secrets: [minted.token] };
}

const scenarios: Scenario[] = [
  {
    name: 'a valid token (no refusal)',
    async run(logger) {
      const minted = await fx.mint();
      const res = await send(mount([auth(logger)]), bearer(minted.token));
      return { status: res.status, line: null, secrets: [minted.token] };
    },
  },
  {
    name: 'a valid token in the query (allowQueryToken, no refusal)',
    async run(logger) {
      const minted = await fx.mint();
      const app = mount([auth(logger, { allowQueryToken: true })]);
      const res = await send(app, undefined, `/?access_token=${minted.token}`);
      return { status: res.status, line: null, secrets: [minted.token] };
    },
  },
  {
    name: 'no token',
    async run(logger) {
      const res = await send(mount([auth(logger)]));
      return {
        status: res.status,
        line: { level: INFO, reason: 'missing', status: 401 },
        absent: ['tokenId', 'subject'],
        secrets: [],
      };
    },
  },
  {
    name: 'another scheme (400)',
    async run(logger) {
      const header = 'Basic bWFjaGluZTpodW50ZXIy';
      const res = await send(mount([auth(logger)]), header);
      return {
        status: res.status,
        line: { level: INFO, reason: 'malformed', status: 400 },
        absent: ['tokenId', 'subject'],
        secrets: [header, 'bWFjaGluZTpodW50ZXIy'],
      };
    },
  },
  {
    name: 'two Authorization headers (400)',
    async run(logger) {
      const minted = await fx.mint();
      const server = await listen(mount([auth(logger)]));
      try {
        const res = await rawRequest(server.url, [
          `Authorization: ${bearer(minted.token)}`,
          `Authorization: ${bearer(unknownToken())}`,
        ]);
        return {
          status: res.status,
          line: { level: INFO, reason: 'malformed', status: 400 },
          absent: ['tokenId', 'subject'],
          secrets: [minted.token],
        };
      } finally {
        await server.close();
      }
    },
  },
  {
    name: 'a getToken value with bad characters (400)',
    async run(logger) {
      const value = 'mt_hunter2$hunter2hunter2';
      const app = mount([auth(logger, { getToken: (req) => String(req.headers['x-m2m-token']) })]);
      const res = await request(app).get('/').set('X-M2M-Token', value);
      return {
        status: res.status,
        line: { level: INFO, reason: 'malformed', status: 400 },
        secrets: [value],
      };
    },
  },
  {
    name: 'a token that cannot be an M2M token (Bearer abc…)',
    async run(logger) {
      const token = 'not-an-m2m-token-hunter2';
      const res = await send(mount([auth(logger)]), bearer(token));
      return {
        status: res.status,
        line: { level: INFO, reason: 'malformed', status: 401 },
        absent: ['tokenId', 'subject'],
        secrets: [token],
      };
    },
  },
  {
    name: 'an unknown token',
    async run(logger) {
      const token = unknownToken();
      const res = await send(mount([auth(logger)]), bearer(token));
      return {
        status: res.status,
        line: { level: INFO, reason: 'unknown', status: 401 },
        absent: ['tokenId', 'subject'],
        secrets: [token],
      };
    },
  },
  {
    name: 'a token revoked through the verifier’s own client',
    async run(logger) {
      const own = createM2MClient({ ...fx.instanceKey(), logger });
      opened.push(own);
      const app = mount([
        auth(logger, {
          apiUrl: undefined,
          machineSecretKey: undefined,
          client: own,
          machineId: fx.api.id,
        }),
      ]);
      const minted = await fx.mint();
      expect((await send(app, bearer(minted.token))).status).toBe(200);
      await own.revokeToken({ m2mTokenId: minted.id });
      const res = await send(app, bearer(minted.token));
      return refusedCallerToken(res, minted, 'revoked');
    },
  },
  {
    name: 'a token revoked at Clerk, seen again within the stale-if-error window',
    async run(logger) {
      const app = mount([
        auth(logger, { now: fx.clock.now, cache: { ttlMs: 1_000, staleIfErrorMs: 60_000 } }),
      ]);
      const minted = await fx.mint();
      expect((await send(app, bearer(minted.token))).status).toBe(200);
      await fx.revoke(minted.id);
      fx.clock.advance(2_000);
      const res = await send(app, bearer(minted.token));
      return refusedCallerToken(res, minted, 'revoked');
    },
  },
  {
    name: 'a token this process verified, then revoked at Clerk (default cache)',
    async run(logger) {
      // Regression: the good answer outlives its freshness, so Clerk's later 404 is logged as
      // 'revoked', not 'unknown'.
      const app = mount([auth(logger, { now: fx.clock.now })]);
      const minted = await fx.mint();
      expect((await send(app, bearer(minted.token))).status).toBe(200);
      await fx.revoke(minted.id);
      fx.clock.advance(11_000);
      const res = await send(app, bearer(minted.token));
      return refusedCallerToken(res, minted, 'revoked');
    },
  },
  {
    name: 'an expired token (our clock ahead of Clerk’s)',
    async run(logger) {
      const app = mount([auth(logger, { now: () => Date.now() + 120_000 })]);
      const minted = await fx.mint({ secondsUntilExpiration: 60 });
      const res = await send(app, bearer(minted.token));
      return refusedCallerToken(res, minted, 'expired');
    },
  },
  {
    name: 'a token this process verified, then expired (shared clock moved)',
    async run(logger) {
      // Regression: the good answer is kept until its token expires, so Clerk's 404 after the
      // expiry is logged as 'expired', not 'unknown'.
      const app = mount([auth(logger, { now: fx.clock.now })]);
      const minted = await fx.mint({ secondsUntilExpiration: 60 });
      expect((await send(app, bearer(minted.token))).status).toBe(200);
      fx.clock.advance(61_000);
      const res = await send(app, bearer(minted.token));
      return refusedCallerToken(res, minted, 'expired');
    },
  },
  {
    name: 'an out-of-scope token (instance key + machineId)',
    async run(logger) {
      const app = mount([
        auth(logger, {
          machineSecretKey: undefined,
          ...fx.instanceKey(),
          machineId: fx.api.id,
        }),
      ]);
      const minted = await fx.mint({ as: 'outsider' });
      const res = await send(app, bearer(minted.token));
      return {
        status: res.status,
        line: {
          level: INFO,
          reason: 'out_of_scope',
          status: 401,
          tokenId: minted.id,
          subject: fx.outsider.id,
        },
        secrets: [minted.token],
      };
    },
  },
  {
    name: 'a guard refusing a valid token (403)',
    async run(logger) {
      const app = mount([
        auth(logger, { machineSecretKey: undefined, ...fx.instanceKey(), anyMachine: true }),
        requireMachine(fx.api.id),
      ]);
      const minted = await fx.mint({ as: 'outsider' });
      const res = await send(app, bearer(minted.token));
      return {
        status: res.status,
        line: {
          level: INFO,
          reason: 'forbidden',
          status: 403,
          tokenId: minted.id,
          subject: fx.outsider.id,
        },
        secrets: [minted.token],
      };
    },
  },
  {
    name: 'Clerk answering 429 with Retry-After (503)',
    async run(logger) {
      const app = mount([auth(logger, { retry: false })]);
      const minted = await fx.mint();
      fx.emu.failNext(1, 429, { retryAfter: 7, operation: 'verify' });
      const res = await send(app, bearer(minted.token));
      return {
        status: res.status,
        line: { level: INFO, reason: 'unavailable', status: 503 },
        absent: ['tokenId', 'subject'],
        secrets: [minted.token],
      };
    },
  },
  {
    name: 'Clerk unreachable (503)',
    async run(logger) {
      const app = mount([auth(logger, { apiUrl: await deadUrl(), retry: false })]);
      const minted = await fx.mint();
      const res = await send(app, bearer(minted.token));
      return {
        status: res.status,
        line: { level: INFO, reason: 'unavailable', status: 503 },
        secrets: [minted.token],
      };
    },
  },
  {
    name: 'Clerk refusing our own key (503)',
    async run(logger) {
      const wrongKey = `ak_${'9'.repeat(32)}`;
      const app = mount([auth(logger, { machineSecretKey: wrongKey, retry: false })]);
      const minted = await fx.mint();
      const res = await send(app, bearer(minted.token));
      return {
        status: res.status,
        line: { level: INFO, reason: 'unavailable', status: 503 },
        secrets: [minted.token, wrongKey],
      };
    },
  },
];

/** Every string that must never appear in a log line, besides the scenario's own. */
function alwaysSecret(): string[] {
  return [...fx.secrets(), 'Bearer ', 'bearer '];
}

function expectNoSecret(raw: readonly string[], secrets: readonly string[]): void {
  for (const secret of secrets) {
    const leaking = raw.filter((line) => line.toLowerCase().includes(secret.toLowerCase()));
    expect(leaking, `a log line holds ${JSON.stringify(secret.slice(0, 12))}…`).toEqual([]);
  }
}

describe('one log line per refusal, with what is known', () => {
  it.each(scenarios)('$name', async ({ run }) => {
    const logs = captureLogs();
    const outcome = await run(logs.logger);
    const refusals = logs.refusals();
    if (outcome.line === null) {
      expect(outcome.status).toBe(200);
      expect(refusals).toEqual([]);
    } else {
      expect(refusals).toHaveLength(1);
      const [line] = refusals as [LogLine];
      expect(line).toMatchObject({ component: 'm2m-auth', ...outcome.line });
      expect(line.status).toBe(outcome.status);
      for (const key of outcome.absent ?? []) expect(line).not.toHaveProperty(key);
    }
    expectNoSecret(logs.raw, [...outcome.secrets, ...alwaysSecret()]);
  });
});

describe('log hygiene over every case', () => {
  it('no token, secret key or Authorization value in any line, at level trace', async () => {
    const logs = captureLogs();
    const secrets: string[] = [];
    for (const scenario of scenarios) {
      const outcome = await scenario.run(logs.logger);
      secrets.push(...outcome.secrets);
      fx.reset();
    }
    // The capture really holds the verifier's and the client's lines, not only the middleware's.
    const lines = logs.lines();
    expect(lines.filter((l) => l.msg === 'm2m request refused').length).toBe(
      scenarios.filter((s) => s.name.match(/no refusal/) === null).length,
    );
    expect(lines.some((l) => l.component === 'm2m-verifier')).toBe(true);
    expect(lines.some((l) => l.msg === 'clerk api call' && l.level === 20)).toBe(true);
    expect(secrets.length).toBeGreaterThan(scenarios.length);
    expectNoSecret(logs.raw, [...secrets, ...alwaysSecret()]);
    for (const line of lines) {
      expect(Object.keys(line)).not.toContain('authorization');
      expect(Object.keys(line)).not.toContain('token');
    }
  });
});

describe('an outage in the logs', () => {
  it('is one warning naming the host, not one per refused request', async () => {
    const { logger, lines } = captureLogs();
    const dead = await deadUrl();
    const app = mount([auth(logger, { apiUrl: dead, retry: false, breaker: false })]);
    const minted = await fx.mint();
    for (let i = 0; i < 5; i++) expect((await send(app, bearer(minted.token))).status).toBe(503);
    const loud = lines().filter((line) => line.level >= 40);
    expect(loud).toHaveLength(1);
    expect(loud[0]!.msg).toContain(`clerk at ${new URL(dead).host} is unavailable (network)`);
    expect(lines().filter((line) => line.msg === 'm2m request refused')).toHaveLength(5);
  });
});
