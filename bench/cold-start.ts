/**
 * Cold-start check, run by `npm run bench` after the scenarios, or alone:
 *   node --expose-gc --import tsx bench/cold-start.ts [--latency 25] [--json]
 *
 * (a) 1 000 concurrent requests carrying one never-seen token through `m2mAuth()` (on a bare
 *     `node:http` server, against the emulator with the given latency) must cost exactly one
 *     upstream verify call, and all must succeed.
 * (b) 100 000 distinct tokens through a verifier with `cache.max` 100 000 must leave
 *     `stats().size` within the bound; the heap it took is reported. Minting 100 000 tokens at
 *     the emulator over HTTP is slow and it has no bulk API, so these tokens are verified
 *     against a tiny in-process `node:http` stand-in that answers `POST /m2m_tokens/verify`
 *     with a valid token object for any `mt_` token. `cache.ttlMs` is 1 h so every entry is
 *     still live when the heap is measured. Without `--expose-gc` the heap figure is noisy.
 *
 * Exits 1 when a check fails.
 */
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { startEmulator } from '../src/emulator/index.js';
import { createM2MClient, createTokenVerifier, m2mAuth, type VerifierStats } from '../src/index.js';
import { BODY, ROUTE } from './scenarios.js';

export interface CoalescingResult {
  requests: number;
  upstreamCalls: number;
  statusCodes: Record<string, number>;
  verifierStats: VerifierStats;
  pass: boolean;
}

export interface BoundResult {
  tokens: number;
  cacheMax: number;
  size: number;
  /** Size after 1 000 more distinct tokens: still at most `cacheMax`. */
  sizeAfterOverflow: number;
  upstreamSource: string;
  gcAvailable: boolean;
  heapUsedDeltaBytes: number;
  /** Off-heap (ArrayBuffer) growth, where lru-cache keeps its typed arrays. */
  externalDeltaBytes: number;
  heapMiBPer100k: number;
  heapBytesPerEntry: number;
  seconds: number;
  pass: boolean;
}

export interface ColdStartResult {
  coalescing: CoalescingResult;
  bound: BoundResult;
  pass: boolean;
}

type Log = (line: string) => void;

async function listen(server: Server): Promise<string> {
  server.listen({ port: 0, host: '127.0.0.1', backlog: 2048 });
  await once(server, 'listening');
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function close(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
}

/** (a) One never-seen token, 1 000 requests at once: one upstream call. */
export async function checkCoalescing(
  latencyMs: number,
  requests = 1000,
): Promise<CoalescingResult> {
  const emulator = await startEmulator({ latencyMs });
  const minter = createM2MClient({
    apiUrl: emulator.url,
    machineSecretKey: emulator.machines.caller!.secretKey,
  });
  const verifier = createTokenVerifier({
    apiUrl: emulator.url,
    machineSecretKey: emulator.machines.api!.secretKey,
  });
  const guard = m2mAuth({ verifier });
  const server = createServer((req, res) => {
    guard(req, res, (err) => {
      res.statusCode = err ? 500 : 200;
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(BODY));
    });
  });
  const origin = await listen(server);
  const pool = new Pool(origin, { connections: requests });
  try {
    const { token } = await minter.createToken();
    const before = emulator.calls.verify;
    const statuses = await Promise.all(
      Array.from({ length: requests }, async () => {
        const res = await pool.request({
          method: 'GET',
          path: ROUTE,
          headers: { authorization: `Bearer ${token}` },
        });
        await res.body.dump();
        return res.statusCode;
      }),
    );
    const upstreamCalls = emulator.calls.verify - before;
    const statusCodes: Record<string, number> = {};
    for (const status of statuses) statusCodes[status] = (statusCodes[status] ?? 0) + 1;
    return {
      requests,
      upstreamCalls,
      statusCodes,
      verifierStats: verifier.stats(),
      pass: upstreamCalls === 1 && statusCodes[200] === requests,
    };
  } finally {
    await pool.close();
    await close(server);
    await Promise.all([verifier.close(), minter.close()]);
    await emulator.close();
  }
}

/** The stand-in verify endpoint for (b): any `mt_` token is valid, with a stable id. */
function fakeVerifyServer(): Server {
  const subject = `mch_${'b'.repeat(27)}`;
  const scope = `mch_${'a'.repeat(27)}`;
  return createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const { token } = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { token?: string };
      if (req.url !== '/m2m_tokens/verify' || !token?.startsWith('mt_')) {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ errors: [{ code: 'resource_not_found', message: 'not found' }] }));
        return;
      }
      const now = Date.now();
      const body = JSON.stringify({
        object: 'machine_to_machine_token',
        id: `mt_${createHash('sha256').update(token).digest('hex').slice(0, 32)}`,
        subject,
        scopes: [scope],
        claims: null,
        revoked: false,
        revocation_reason: null,
        expired: false,
        expiration: now + 3_600_000,
        last_used_at: now,
        created_at: now,
        updated_at: now,
      });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(body);
    });
  });
}

function settledHeap(): { heapUsed: number; external: number } {
  globalThis.gc?.();
  globalThis.gc?.();
  const { heapUsed, external } = process.memoryUsage();
  return { heapUsed, external };
}

/** (b) 100 000 distinct tokens through a verifier bounded at 100 000 entries. */
export async function checkBound(tokens = 100_000, cacheMax = 100_000): Promise<BoundResult> {
  const server = fakeVerifyServer();
  const apiUrl = await listen(server);
  const prefix = randomBytes(24).toString('base64url').slice(0, 32);
  const tokenAt = (i: number) => `mt_${prefix}${i.toString().padStart(8, '0')}`;
  const started = performance.now();
  const before = settledHeap();
  const verifier = createTokenVerifier({
    apiUrl,
    machineSecretKey: `ak_${'0'.repeat(32)}`,
    cache: { max: cacheMax, ttlMs: 3_600_000 },
    upstreamBudget: false, // 100 000 never-seen tokens on purpose: memory is measured here
  });
  try {
    const push = async (from: number, to: number) => {
      let next = from;
      const worker = async () => {
        while (next < to) await verifier.verify(tokenAt(next++));
      };
      await Promise.all(Array.from({ length: 128 }, worker));
    };
    await push(0, tokens);
    const size = verifier.stats().size;
    const after = settledHeap();
    await push(tokens, tokens + 1000);
    const sizeAfterOverflow = verifier.stats().size;
    const heapUsedDeltaBytes = after.heapUsed - before.heapUsed;
    return {
      tokens,
      cacheMax,
      size,
      sizeAfterOverflow,
      upstreamSource: 'in-process node:http stand-in for POST /m2m_tokens/verify',
      gcAvailable: typeof globalThis.gc === 'function',
      heapUsedDeltaBytes,
      externalDeltaBytes: after.external - before.external,
      heapMiBPer100k: (heapUsedDeltaBytes / 2 ** 20) * (100_000 / size),
      heapBytesPerEntry: Math.round(heapUsedDeltaBytes / size),
      seconds: (performance.now() - started) / 1000,
      pass: size <= cacheMax && sizeAfterOverflow <= cacheMax,
    };
  } finally {
    await verifier.close();
    await close(server);
  }
}

export async function runColdStart(latencyMs: number, log: Log): Promise<ColdStartResult> {
  log(`cold-start (a): 1 000 concurrent requests, one new token, upstream latency ${latencyMs} ms`);
  const coalescing = await checkCoalescing(latencyMs);
  const { hits, coalesced, misses } = coalescing.verifierStats;
  log(
    `  upstream verify calls: ${coalescing.upstreamCalls} (misses ${misses}, coalesced ` +
      `${coalesced}, cache hits ${hits}); statuses ${JSON.stringify(coalescing.statusCodes)} ` +
      `-> ${coalescing.pass ? 'PASS' : 'FAIL'}`,
  );
  log('cold-start (b): 100 000 distinct tokens, cache.max 100 000 (in-process stand-in upstream)');
  const bound = await checkBound();
  log(
    `  size ${bound.size}, after 1 000 more ${bound.sizeAfterOverflow} (max ${bound.cacheMax}); ` +
      `heap ${bound.heapMiBPer100k.toFixed(1)} MiB per 100 000 entries ` +
      `(${bound.heapBytesPerEntry} B/entry, off-heap +${(bound.externalDeltaBytes / 2 ** 20).toFixed(1)} MiB` +
      `${bound.gcAvailable ? '' : ', no --expose-gc: noisy'}) in ${bound.seconds.toFixed(1)} s ` +
      `-> ${bound.pass ? 'PASS' : 'FAIL'}`,
  );
  return { coalescing, bound, pass: coalescing.pass && bound.pass };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { latency: { type: 'string', default: '25' }, json: { type: 'boolean' } },
  });
  const latencyMs = Number(values.latency);
  if (!Number.isInteger(latencyMs) || latencyMs < 0) throw new Error('--latency: integer ms ≥ 0');
  // With --json, stdout carries the JSON only; the human lines go to stderr.
  const log: Log = values.json ? (line) => console.error(line) : (line) => console.log(line);
  const result = await runColdStart(latencyMs, log);
  if (values.json) process.stdout.write(`${JSON.stringify(result)}\n`);
  else log(`cold-start: ${result.pass ? 'PASS' : 'FAIL'}`);
  process.exitCode = result.pass ? 0 : 1;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((err: unknown) => {
    console.error('cold-start failed:', err);
    process.exitCode = 2;
  });
}
