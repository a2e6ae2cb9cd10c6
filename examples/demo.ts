/**
 * `npm start`: m2m-guard protecting an internal service, end to end, in a few seconds.
 *
 * It starts a local emulator of Clerk's M2M API (no account, no network), an internal Express
 * service whose `/internal/*` routes are guarded by `m2mAuth()` + `requireMachine()`, and a
 * caller that mints tokens and calls it. Each step prints what happened and what was expected;
 * the process exits 1 if any step did not behave as shown.
 *
 * With REDIS_URL set, a second instance of the internal service shares answers with the first
 * through Redis, and a revocation through one is refused at once by the other.
 *
 * Against real Clerk: set CLERK_MACHINE_SECRET_KEY (the caller machine's key), CLERK_SECRET_KEY
 * (the instance key the internal service verifies with) and DEMO_API_MACHINE_ID (the internal
 * service's machine id, which must be in the caller's scopes); CLERK_API_URL is optional. The
 * steps that need a second machine or a stoppable Clerk are then skipped.
 */
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import express from 'express';
import { type Logger, pino } from 'pino';
// In an app: from 'm2m-guard', 'm2m-guard/emulator' and 'm2m-guard/redis'.
import { type Emulator, startEmulator } from '../src/emulator/index.js';
import {
  createAuthorizedFetch,
  createM2MClient,
  createTokenProvider,
  createTokenVerifier,
  type M2MClient,
  m2mAuth,
  requireMachine,
} from '../src/index.js';
import { createRedisStore, type RedisStore } from '../src/redis/index.js';

interface Setup {
  apiUrl: string;
  callerKey: string;
  instanceKey: string;
  apiMachineId: string;
  /** A machine the internal service does not accept; emulator only. */
  outsiderKey?: string;
  emulator?: Emulator;
}

async function setUp(): Promise<Setup> {
  const env = process.env;
  if (env.CLERK_MACHINE_SECRET_KEY) {
    if (!env.CLERK_SECRET_KEY || !env.DEMO_API_MACHINE_ID) {
      throw new Error('against real Clerk, set CLERK_SECRET_KEY and DEMO_API_MACHINE_ID too');
    }
    return {
      apiUrl: env.CLERK_API_URL || 'https://api.clerk.com',
      callerKey: env.CLERK_MACHINE_SECRET_KEY,
      instanceKey: env.CLERK_SECRET_KEY,
      apiMachineId: env.DEMO_API_MACHINE_ID,
    };
  }
  const emulator = await startEmulator({
    machines: [
      { name: 'caller', scopedMachines: ['internal-api'] },
      { name: 'internal-api' },
      { name: 'outsider' },
    ],
  });
  return {
    apiUrl: emulator.url,
    callerKey: emulator.machines.caller!.secretKey,
    instanceKey: emulator.instanceSecretKey,
    apiMachineId: emulator.machines['internal-api']!.id,
    outsiderKey: emulator.machines.outsider!.secretKey,
    emulator,
  };
}

/** Collects the internal service's log lines, to show why each request was refused. */
function captureLogs() {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      lines.push(JSON.parse(String(chunk)));
      done();
    },
  });
  return { logger: pino({ level: 'info' }, stream), lastReason: () => lines.at(-1)?.reason };
}

/**
 * One instance of the internal service. It verifies with the instance key, so tokens of
 * machines it does not accept reach requireMachine() and get a 403 that says so.
 */
async function startInternalService(setup: Setup, logger: Logger, store?: RedisStore) {
  const client = createM2MClient({
    apiUrl: setup.apiUrl,
    secretKey: setup.instanceKey,
    retry: false,
  });
  // Any machine of the instance may reach the service; requireMachine() checks the scope per route.
  const verifier = createTokenVerifier({ client, logger, store, anyMachine: true });
  const app = express();
  app.use('/internal', m2mAuth({ verifier, logger }), requireMachine(setup.apiMachineId));
  app.get('/internal/whoami', (req, res) => {
    res.json({ calledBy: req.m2m?.subject, m2m: req.m2m });
  });
  const server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    client,
    verifier,
    async close() {
      server.closeAllConnections();
      server.close();
      await verifier.close();
      await client.close();
    },
  };
}

export async function main(print: (line: string) => void = console.log): Promise<boolean> {
  const setup = await setUp();
  const { emulator } = setup;
  const logs = captureLogs();
  let failures = 0;
  const step = (title: string) => print(`\n▸ ${title}`);
  const check = (ok: boolean, text: string) => {
    print(`  ${ok ? '✔' : '✘'} ${text}`);
    if (!ok) failures++;
  };

  const redisUrl = process.env.REDIS_URL;
  const store = redisUrl
    ? createRedisStore({ url: redisUrl, keyPrefix: `m2m-guard-demo:${randomUUID()}:` })
    : undefined;
  await store?.ready();
  const service = await startInternalService(setup, logs.logger, store);
  const services = [service];
  const { base, verifier } = service;

  const callerClient = createM2MClient({ apiUrl: setup.apiUrl, machineSecretKey: setup.callerKey });
  const clients: M2MClient[] = [callerClient];
  const provider = createTokenProvider({ client: callerClient, secondsUntilExpiration: 600 });
  const callerFetch = createAuthorizedFetch(provider);
  const verifyCalls = () => emulator?.calls.verify ?? Number.NaN;
  const get = async (token?: string, at = base) => {
    const res = await fetch(`${at}/internal/whoami`, {
      headers: token ? { authorization: `Bearer ${token}` } : {},
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };

  try {
    print(
      emulator
        ? `Clerk emulator at ${setup.apiUrl}; internal service at ${base}`
        : `Real Clerk at ${setup.apiUrl}; internal service at ${base}`,
    );

    step('The caller mints a token and calls GET /internal/whoami');
    const first = await callerFetch(`${base}/internal/whoami`);
    const firstBody = (await first.json()) as Record<string, unknown>;
    check(first.status === 200, `status ${first.status} (expected 200)`);
    print(`  req.m2m held: ${JSON.stringify(firstBody.m2m)}`);

    step('200 more calls with the same token');
    const before = verifyCalls();
    const many = await Promise.all(
      Array.from({ length: 200 }, () =>
        callerFetch(`${base}/internal/whoami`).then((r) => r.status),
      ),
    );
    const ok = many.filter((s) => s === 200).length;
    check(ok === 200, `${ok} of 200 answered 200`);
    if (emulator) {
      const upstream = verifyCalls() - before;
      check(
        upstream === 0,
        `${upstream} verify calls reached Clerk for those 200 requests (cached)`,
      );
      const { hits, misses, upstreamCalls } = verifier.stats();
      print(
        `  verifier: ${hits} cache hits, ${misses} miss, ${upstreamCalls} call to Clerk in all`,
      );
    }

    step('A machine the internal service does not accept calls it');
    if (setup.outsiderKey) {
      const outsider = createM2MClient({
        apiUrl: setup.apiUrl,
        machineSecretKey: setup.outsiderKey,
      });
      clients.push(outsider);
      const { token } = await outsider.createToken();
      const res = await get(token);
      check(res.status === 403, `status ${res.status} (expected 403): ${res.body.error}`);
    } else {
      print('  (skipped: needs a second machine; run without CLERK_* variables to see it)');
    }

    step("The caller's token is revoked through the internal service's client");
    const callerToken = await provider.getToken();
    const tokenId = (firstBody.m2m as { id: string }).id;
    await service.client.revokeToken({ m2mTokenId: tokenId, revocationReason: 'demo' });
    const revoked = await get(callerToken);
    check(
      revoked.status === 401,
      `next call: status ${revoked.status} (expected 401), logged reason "${logs.lastReason()}"`,
    );
    check(
      revoked.body.error === 'invalid_token',
      `error "${revoked.body.error}"; the caller is not told why`,
    );

    step('A second instance of the internal service, sharing answers through Redis');
    if (store) {
      const second = await startInternalService(setup, logs.logger, store);
      services.push(second);
      const { token, id } = await callerClient.createToken();
      const calls = verifyCalls();
      const one = await get(token);
      const two = await get(token, second.base);
      check(
        one.status === 200 && two.status === 200,
        `both answer 200 (${one.status}, ${two.status})`,
      );
      if (emulator) {
        const upstream = verifyCalls() - calls;
        check(upstream === 1, `${upstream} verify call reached Clerk for both instances (shared)`);
      }
      await service.client.revokeToken({ m2mTokenId: id });
      const revokedAt = performance.now();
      let status = 200;
      while (status === 200 && performance.now() - revokedAt < 2000) {
        status = (await get(token, second.base)).status;
      }
      const lag = (performance.now() - revokedAt).toFixed(1);
      check(status === 401, `revoked through the first, refused by the second within ${lag} ms`);
    } else {
      print('  (skipped: set REDIS_URL to run two instances sharing a Redis cache)');
    }

    step('Clerk becomes unreachable');
    if (emulator) {
      const fresh = await callerClient.createToken();
      await emulator.close();
      const down = await get(fresh.token);
      check(
        down.status === 503,
        `a fresh token meets status ${down.status} (expected 503), never a pass`,
      );
    } else {
      print('  (skipped: cannot stop real Clerk)');
    }
  } finally {
    await Promise.all(services.map((s) => s.close()));
    await Promise.all(clients.map((c) => c.close()));
    await store?.close();
    await emulator?.close();
  }

  print(
    failures === 0
      ? '\nEvery step behaved as shown.'
      : `\n${failures} step(s) did not behave as shown.`,
  );
  return failures === 0;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().then(
    (ok) => {
      process.exitCode = ok ? 0 : 1;
    },
    (err: unknown) => {
      console.error(err);
      process.exit(1); // a failed demo ends, whatever it left running
    },
  );
}
