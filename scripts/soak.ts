/**
 * Soak test: steady load against an Express app with `m2mAuth` + `requireMachine`, over an
 * in-process emulator, with token churn (some tokens expiring within seconds), revocations
 * (through the verifier's own client and through another one) and injected faults (503s,
 * resets, hangs, latency spikes). Every request knows which answers it may get, computed from
 * what happened around it; anything else is an unexpected outcome and fails the run.
 *
 *   npm run soak                    60 s
 *   npm run soak -- --duration 300  5 minutes
 *   npm run soak -- --quick         5 s (CI)
 *
 * Exit code 0 when every answer was allowed, no request hung, no token leaked into an answer or
 * a log line, and RSS grew less than 50 % after warm-up; 1 otherwise.
 */
import diagnostics from 'node:diagnostics_channel';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import express from 'express';
import { pino } from 'pino';
import { Agent, request } from 'undici';
import { startEmulator } from '../src/emulator/index.js';
import {
  createM2MClient,
  createTokenVerifier,
  type M2MClient,
  m2mAuth,
  requireMachine,
  VERIFIER_CHANNELS,
} from '../src/index.js';

// ---------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------

function parseArgs(argv: string[]): { durationMs: number; quick: boolean; loops: number } {
  let durationS = 60;
  let quick = false;
  let loops = 4;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      const n = Number(argv[++i]);
      if (!Number.isFinite(n) || n <= 0) throw new Error(`${arg} needs a positive number`);
      return n;
    };
    if (arg === '--quick') {
      quick = true;
      durationS = 5;
    } else if (arg === '--duration') durationS = value();
    else if (arg === '--loops') loops = Math.round(value());
    else if (arg === '--help' || arg === '-h') {
      process.stdout.write('usage: tsx scripts/soak.ts [--quick] [--duration <s>] [--loops <n>]\n');
      process.exit(0);
    } else throw new Error(`unknown argument ${arg}`);
  }
  return { durationMs: Math.round(durationS * 1000), quick, loops };
}

const { durationMs, quick, loops: LOOPS } = parseArgs(process.argv.slice(2));

/** The verifier's revocation budget (cache TTL of good answers). */
const TTL_MS = 1000;
/** Deadline of each attempt of the verifier's client. */
const TIMEOUT_MS = 1000;
/** Breaker settings of the verifier. */
const BREAKER = { failures: 5, cooldownMs: 500 };
/**
 * How old a good answer can be when it reaches the cache: produced by Clerk before the
 * revocation at the latest, received at most one attempt deadline later.
 */
const ANSWER_AGE_MS = TIMEOUT_MS + 100;
/**
 * How long after a fault window closes a 503 is still allowed: a failing attempt that started
 * in the window (≤ deadline), then the breaker it may have opened (cooldown + one trial call).
 */
const FAULT_TAIL_MS = TIMEOUT_MS + BREAKER.cooldownMs + TIMEOUT_MS + 500;
/** A request that takes this long has hung. */
const HANG_MS = 8000;
/** Event-loop stalls longer than this count as a disturbance of their own (machine, not library). */
const STALL_MS = 300;
/** Dead tokens (revoked or expired) stay in the pool this long, so their refusals are exercised. */
const KEEP_DEAD_MS = 4000;
/** Warm-up: RSS growth is measured from here. */
const WARM_MS = Math.max(1000, Math.round(durationMs * 0.25));
/** Injected faults start after this quiet start, and come this often. */
const FAULTS_FROM_MS = Math.min(1000, Math.round(durationMs * 0.2));
const FAULT_EVERY_MS = Math.max(1200, Math.round(durationMs / 10));

// ---------------------------------------------------------------------------------------------
// The ledger: what happened, and when
// ---------------------------------------------------------------------------------------------

/** A logical clock: orders events inside this single-threaded process exactly. */
let seq = 0;
const tick = () => ++seq;

interface Revocation {
  via: 'verifier' | 'elsewhere';
  startedAt: number;
  startSeq: number;
  /** When the revocation was known done (its answer came back). */
  doneAt?: number;
  doneSeq?: number;
}

interface Tok {
  token: string;
  id: string;
  subject: string;
  /** `in`: scoped to this service (200); `out`: minted by a machine not allowed here (403). */
  scope: 'in' | 'out';
  expiration: number | null;
  revocation?: Revocation;
  /** When the token died (revoked or expired), to retire it from the pool later. */
  diedAt?: number;
}

interface Window {
  kind: string;
  start: number;
  end?: number;
}

const pool: Tok[] = [];
const windows: Window[] = [];
const minted = new Set<string>();
const counts = {
  requests: 0,
  unexpected: 0,
  hung: 0,
  leaks: 0,
  minted: 0,
  mintedShort: 0,
  mintedOut: 0,
  revokedViaVerifier: 0,
  revokedElsewhere: 0,
  revokeUncertain: 0,
  breakerOpened: 0,
  stalls: 0,
  maxStallMs: 0,
  logLines: 0,
};
const faults = new Map<string, number>();
type Category =
  | 'live'
  | 'out-of-scope'
  | 'revoked (verifier)'
  | 'revoked (elsewhere)'
  | 'expired'
  | 'unknown'
  | 'malformed'
  | 'no token';
const byCategory = new Map<Category, Map<number, number>>();
const unexpectedSamples: string[] = [];

const now = () => Date.now();

function disturbed(s: number, r: number): boolean {
  return windows.some((w) => w.start <= r && (w.end === undefined || s <= w.end + FAULT_TAIL_MS));
}

// ---------------------------------------------------------------------------------------------
// Set-up
// ---------------------------------------------------------------------------------------------

v8.setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const mb = (bytes: number) => bytes / 1024 / 1024;
function memory() {
  gc();
  const { rss, heapUsed } = process.memoryUsage();
  return { rss: mb(rss), heap: mb(heapUsed) };
}

const TOKEN_IN_TEXT = /mt_[A-Za-z0-9]{40}/g;
/** Counts token strings found in `text`: none may ever appear in an answer or a log line. */
function scanForTokens(text: string, where: string): void {
  for (const match of text.matchAll(TOKEN_IN_TEXT)) {
    if (minted.has(match[0])) {
      counts.leaks++;
      if (unexpectedSamples.length < 20) unexpectedSamples.push(`token string in ${where}`);
    }
  }
}

const logger = pino(
  { level: 'debug' },
  {
    write(line: string) {
      counts.logLines++;
      scanForTokens(line, 'a log line');
    },
  },
);

const memoryAtStart = memory();
const emulator = await startEmulator({
  machines: [
    { name: 'caller', scopedMachines: ['api'], defaultTokenTtlSeconds: 3600 },
    { name: 'api' },
    { name: 'other', scopedMachines: ['caller'] },
  ],
  logger: pino(
    { level: 'warn' },
    { write: (line: string) => scanForTokens(line, 'an emulator log') },
  ),
});
const api = emulator.machines.api!;
const verifierClient = createM2MClient({
  apiUrl: emulator.url,
  secretKey: emulator.instanceSecretKey,
  timeoutMs: TIMEOUT_MS,
  retry: { retries: 1, minDelayMs: 20, maxDelayMs: 200 },
  logger,
});
const verifier = createTokenVerifier({
  client: verifierClient,
  // The instance key checks no scope: requireMachine() on the route does.
  anyMachine: true,
  // Sized above the soak's own rate of never-seen tokens (new live ones and unknown ones), so
  // every unknown token gets its 401: the flood test covers what the budget refuses.
  upstreamBudget: { perSecond: 2_000, burst: 2_000 },
  cache: { ttlMs: TTL_MS, negativeTtlMs: 500 },
  breaker: BREAKER,
  logger,
});
const elsewhere = createM2MClient({
  apiUrl: emulator.url,
  secretKey: emulator.instanceSecretKey,
  logger,
});
const callerMinter = createM2MClient({
  apiUrl: emulator.url,
  machineSecretKey: emulator.machines.caller!.secretKey,
  logger,
});
const otherMinter = createM2MClient({
  apiUrl: emulator.url,
  machineSecretKey: emulator.machines.other!.secretKey,
  logger,
});

const app = express();
app.get('/r', m2mAuth({ verifier, logger }), requireMachine(api.id), (req, res) => {
  res.json({ id: req.m2m?.id, subject: req.m2m?.subject });
});
const server = createServer(app);
server.listen(0, '127.0.0.1');
await once(server, 'listening');
const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/r`;
const agent = new Agent({ connections: LOOPS * 2, keepAliveTimeout: 10_000 });

const onBreaker = (message: unknown) => {
  if ((message as { state?: string }).state === 'open') counts.breakerOpened++;
};
diagnostics.subscribe(VERIFIER_CHANNELS.breaker, onBreaker);

// ---------------------------------------------------------------------------------------------
// Load: each request knows what it may get
// ---------------------------------------------------------------------------------------------

const MALFORMED: Array<{ header: string; status: number }> = [
  { header: 'Bearer !!not-a-token!!', status: 400 },
  { header: 'Basic dXNlcjpwYXNz', status: 400 },
  { header: 'Bearer mt_short', status: 401 },
  { header: `Bearer ${'x'.repeat(300)}`, status: 401 },
];

let running = true;
const started = now();
const elapsed = () => now() - started;

function pick<T>(items: readonly T[]): T | undefined {
  return items.length === 0 ? undefined : items[Math.floor(Math.random() * items.length)];
}

function categoryOf(tok: Tok, at: number): Category {
  if (tok.revocation) {
    return tok.revocation.via === 'verifier' ? 'revoked (verifier)' : 'revoked (elsewhere)';
  }
  if (tok.expiration !== null && at >= tok.expiration) return 'expired';
  return tok.scope === 'in' ? 'live' : 'out-of-scope';
}

/** Answers a token request may get, from everything known when its answer came back. */
function allowedFor(tok: Tok, s: number, sendSeq: number, r: number, receiveSeq: number) {
  const ok = tok.scope === 'in' ? 200 : 403;
  let okAllowed = tok.expiration === null || s < tok.expiration;
  let refusalAllowed = tok.expiration !== null && r >= tok.expiration;
  const rv = tok.revocation;
  if (rv && receiveSeq > rv.startSeq) {
    refusalAllowed = true;
    if (rv.via === 'verifier' && rv.doneSeq !== undefined && sendSeq > rv.doneSeq) {
      // Revoked through the verifier's own client: refused from the very next request.
      okAllowed = false;
    }
    if (rv.via === 'elsewhere' && rv.doneAt !== undefined) {
      // Revoked elsewhere: accepted at most for the revocation budget after it was done.
      if (s >= rv.doneAt + ANSWER_AGE_MS + TTL_MS) okAllowed = false;
    }
  }
  const allowed = new Set<number>();
  if (okAllowed) allowed.add(ok);
  if (refusalAllowed || !okAllowed) allowed.add(401);
  if (disturbed(s, r)) allowed.add(503);
  return allowed;
}

function record(category: Category, status: number): void {
  let statuses = byCategory.get(category);
  if (!statuses) {
    statuses = new Map();
    byCategory.set(category, statuses);
  }
  statuses.set(status, (statuses.get(status) ?? 0) + 1);
}

async function oneRequest(): Promise<void> {
  const roll = Math.random();
  let tok: Tok | undefined;
  let header: string | undefined;
  let fixed: { category: Category; allowed: Set<number> } | undefined;
  // The mix: most traffic on live tokens, a good share on recently revoked or expired ones
  // (whose refusals are the point), then unknown, malformed and missing tokens.
  const live = pool.filter((t) => !t.diedAt);
  const liveIn = live.filter((t) => t.scope === 'in');
  if (roll < 0.5) tok = pick(liveIn);
  else if (roll < 0.58) tok = pick(live.filter((t) => t.scope === 'out')) ?? pick(liveIn);
  else if (roll < 0.7) tok = pick(pool.filter((t) => t.revocation?.via === 'elsewhere'));
  else if (roll < 0.78) tok = pick(pool.filter((t) => t.revocation?.via === 'verifier'));
  else if (roll < 0.84) tok = pick(pool.filter((t) => t.diedAt && !t.revocation));
  if (roll < 0.84) tok ??= pick(liveIn);
  if (tok) header = `Bearer ${tok.token}`;
  else if (roll < 0.9) {
    const unknown = `mt_${Math.random().toString(36).slice(2).padEnd(12, 'q')}${'Z'.repeat(28)}`;
    header = `Bearer ${unknown}`;
    fixed = { category: 'unknown', allowed: new Set([401]) };
  } else if (roll < 0.96) {
    const malformed = pick(MALFORMED)!;
    header = malformed.header;
    fixed = { category: 'malformed', allowed: new Set([malformed.status]) };
  } else {
    fixed = { category: 'no token', allowed: new Set([401]) };
  }

  const s = now();
  const sendSeq = tick();
  let status = 0;
  let text = '';
  try {
    const res = await request(url, {
      dispatcher: agent,
      headers: header === undefined ? {} : { authorization: header },
      headersTimeout: HANG_MS,
      bodyTimeout: HANG_MS,
    });
    status = res.statusCode;
    text = await res.body.text();
    scanForTokens(`${JSON.stringify(res.headers)}\n${text}`, 'an answer');
  } catch (err) {
    counts.hung++;
    if (unexpectedSamples.length < 20) {
      unexpectedSamples.push(`no answer within ${HANG_MS} ms: ${(err as Error).message}`);
    }
  }
  const r = now();
  const receiveSeq = tick();
  counts.requests++;
  if (status === 0) return;

  let category: Category;
  let allowed: Set<number>;
  if (tok) {
    category = categoryOf(tok, s);
    allowed = allowedFor(tok, s, sendSeq, r, receiveSeq);
  } else {
    category = fixed!.category;
    allowed = new Set(fixed!.allowed);
    if (category === 'unknown' && disturbed(s, r)) allowed.add(503);
  }
  record(category, status);

  let wrong = !allowed.has(status);
  if (!wrong && (status === 200 || status === 403) && tok) {
    // Not just any token: this one.
    const body = JSON.parse(text) as { id?: string; subject?: string; error?: string };
    if (status === 200) wrong = body.id !== tok.id || body.subject !== tok.subject;
    else wrong = body.error !== 'insufficient_scope';
  }
  if (wrong) {
    counts.unexpected++;
    if (unexpectedSamples.length < 20) {
      const rv = tok?.revocation;
      unexpectedSamples.push(
        `${category}: got ${status}, allowed ${[...allowed].join('/')} ` +
          `(sent +${s - started} ms, answered +${r - started} ms` +
          (tok?.expiration ? `, expires +${tok.expiration - started} ms` : '') +
          (rv
            ? `, revoked via ${rv.via} +${rv.startedAt - started}..+${(rv.doneAt ?? Number.NaN) - started} ms`
            : '') +
          `) ${text.slice(0, 120)}`,
      );
    }
  }
}

async function loadLoop(): Promise<void> {
  while (running) await oneRequest();
}

// ---------------------------------------------------------------------------------------------
// Churn, revocations, faults
// ---------------------------------------------------------------------------------------------

/** Sleeps that end early when the run stops, so the soak ends on time. */
const sleepers = new Set<() => void>();
function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => {
    const wake = () => {
      clearTimeout(timer);
      sleepers.delete(wake);
      resolve();
    };
    const timer = setTimeout(wake, ms);
    sleepers.add(wake);
  });
}
function stop(): void {
  running = false;
  for (const wake of [...sleepers]) wake();
}

async function every(ms: number, task: () => Promise<void>): Promise<void> {
  while (running) {
    await task().catch((err: unknown) => {
      counts.unexpected++;
      if (unexpectedSamples.length < 20) {
        unexpectedSamples.push(`driver task failed: ${(err as Error).message}`);
      }
    });
    await sleep(ms * (0.5 + Math.random()));
  }
}

async function mintOne(): Promise<void> {
  const out = Math.random() < 0.15;
  const short = Math.random() < 0.3;
  const minter: M2MClient = out ? otherMinter : callerMinter;
  const created = await minter.createToken(
    short ? { secondsUntilExpiration: 1 + Math.random() * 2 } : {},
  );
  minted.add(created.token);
  counts.minted++;
  if (short) counts.mintedShort++;
  if (out) counts.mintedOut++;
  pool.push({
    token: created.token,
    id: created.id,
    subject: created.subject,
    scope: out ? 'out' : 'in',
    expiration: created.expiration,
  });
}

async function revokeOne(): Promise<void> {
  const candidates = pool.filter((t) => !t.revocation && !t.diedAt);
  const tok = pick(candidates);
  if (!tok) return;
  const via = Math.random() < 0.5 ? 'verifier' : 'elsewhere';
  const revocation: Revocation = { via, startedAt: now(), startSeq: tick() };
  tok.revocation = revocation;
  tok.diedAt = revocation.startedAt;
  try {
    await (via === 'verifier' ? verifierClient : elsewhere).revokeToken({ m2mTokenId: tok.id });
    revocation.doneSeq = tick();
    revocation.doneAt = now();
    if (via === 'verifier') counts.revokedViaVerifier++;
    else counts.revokedElsewhere++;
  } catch {
    // The revoke call failed (a latency spike outlasting the deadline): Clerk may have applied it
    // (on arrival) without this process knowing. Treat it as a revocation made elsewhere.
    revocation.via = 'elsewhere';
    revocation.doneAt = now();
    counts.revokeUncertain++;
  }
}

function maintainPool(): void {
  const at = now();
  for (const tok of pool) {
    if (!tok.diedAt && tok.expiration !== null && at >= tok.expiration) tok.diedAt = tok.expiration;
  }
  const keep = pool.filter((t) => !t.diedAt || at - t.diedAt < KEEP_DEAD_MS);
  const liveIn = keep.filter((t) => !t.diedAt);
  // Bound the live pool (retire the oldest beyond 30), so live tokens stay cached and hot.
  const retire = new Set(liveIn.slice(0, Math.max(0, liveIn.length - 30)));
  pool.splice(0, pool.length, ...keep.filter((t) => !retire.has(t)));
}

const FAULT_KINDS = ['503', 'reset', 'reset-mid-body', 'hang', 'latency spike'] as const;

async function injectFault(): Promise<void> {
  if (elapsed() < FAULTS_FROM_MS || elapsed() > durationMs - 500) return;
  const kind = pick(FAULT_KINDS)!;
  faults.set(kind, (faults.get(kind) ?? 0) + 1);
  const window: Window = { kind, start: now() };
  windows.push(window);
  if (kind === 'latency spike') {
    emulator.setLatency(TIMEOUT_MS + 500);
    await sleep(300);
    emulator.setLatency(0);
    window.end = now();
    return;
  }
  const count = kind === 'hang' ? 1 : 2 + Math.floor(Math.random() * 5);
  const before = emulator.calls.verify;
  emulator.failNext(count, kind === '503' ? 503 : kind, { operation: 'verify' });
  // The window lasts until the queued faults have been consumed by verify calls.
  while (running && emulator.calls.verify < before + count) await sleep(5);
  if (emulator.calls.verify >= before + count) window.end = now();
}

/** Event-loop stalls: the machine, not the library, may then time out a healthy call. */
async function watchStalls(): Promise<void> {
  let last = performance.now();
  while (running) {
    await sleep(20);
    const t = performance.now();
    const stall = t - last - 20;
    last = t;
    if (stall > counts.maxStallMs) counts.maxStallMs = Math.round(stall);
    if (stall > STALL_MS) {
      counts.stalls++;
      windows.push({ kind: 'event-loop stall', start: now() - Math.round(stall), end: now() });
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Run
// ---------------------------------------------------------------------------------------------

process.stdout.write(
  `m2m-guard soak: ${durationMs / 1000} s${quick ? ' (quick)' : ''}, ${LOOPS} loops, ` +
    `cache TTL ${TTL_MS} ms, deadline ${TIMEOUT_MS} ms, breaker ${BREAKER.failures}/${BREAKER.cooldownMs} ms\n`,
);

await Promise.all(Array.from({ length: 8 }, () => mintOne()));
const tasks: Promise<void>[] = [
  every(120, mintOne),
  every(250, revokeOne),
  every(FAULT_EVERY_MS, injectFault),
  every(100, async () => maintainPool()),
  watchStalls(),
];
const load = Array.from({ length: LOOPS }, () => loadLoop());

let memoryWarm = memoryAtStart;
const warm = sleep(WARM_MS).then(() => {
  memoryWarm = memory();
});
const progress = quick
  ? undefined
  : setInterval(() => {
      const { rss } = process.memoryUsage();
      process.stdout.write(
        `  +${Math.round(elapsed() / 1000)} s: ${counts.requests} requests, ` +
          `${counts.unexpected} unexpected, RSS ${mb(rss).toFixed(1)} MB\n`,
      );
    }, 10_000);

await warm;
await sleep(durationMs - WARM_MS);
stop();
clearInterval(progress);
await Promise.all(load);
await Promise.all(tasks);
emulator.setLatency(0);
const memoryAtEnd = memory();
const stats = verifier.stats();
const upstreamVerifyCalls = emulator.calls.verify;

diagnostics.unsubscribe(VERIFIER_CHANNELS.breaker, onBreaker);
await agent.close();
await new Promise<void>((resolve) => {
  server.close(() => resolve());
  server.closeAllConnections();
});
await verifier.close();
for (const client of [verifierClient, elsewhere, callerMinter, otherMinter]) await client.close();
await emulator.close();

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

const seconds = (now() - started) / 1000;
const growth = (memoryAtEnd.rss - memoryWarm.rss) / memoryWarm.rss;
const statuses = [200, 400, 401, 403, 503];
const pad = (value: string | number, width: number) => String(value).padStart(width);
const lines: string[] = [];
const row = (label: string, value: string) => lines.push(`  ${label.padEnd(26)}${value}`);

lines.push('', 'requests by kind and status');
lines.push(`  ${'kind'.padEnd(22)}${statuses.map((s) => pad(s, 8)).join('')}${pad('other', 8)}`);
const totals = new Map<number, number>();
for (const [category, byStatus] of [...byCategory].sort()) {
  let other = 0;
  for (const [status, n] of byStatus) {
    totals.set(status, (totals.get(status) ?? 0) + n);
    if (!statuses.includes(status)) other += n;
  }
  lines.push(
    `  ${category.padEnd(22)}${statuses.map((s) => pad(byStatus.get(s) ?? 0, 8)).join('')}${pad(other, 8)}`,
  );
}
lines.push('');
row('duration', `${seconds.toFixed(1)} s`);
row('requests', `${counts.requests} (${Math.round(counts.requests / seconds)}/s)`);
row(
  'status counts',
  [...totals]
    .sort(([a], [b]) => a - b)
    .map(([s, n]) => `${s}: ${n}`)
    .join(', '),
);
row('unexpected statuses', String(counts.unexpected));
row('no answer (hung)', String(counts.hung));
row('token strings leaked', String(counts.leaks));
row(
  'tokens minted',
  `${counts.minted} (${counts.mintedShort} short-lived, ${counts.mintedOut} out of scope)`,
);
row(
  'revocations',
  `${counts.revokedViaVerifier} via the verifier's client, ${counts.revokedElsewhere} elsewhere` +
    (counts.revokeUncertain ? `, ${counts.revokeUncertain} unconfirmed` : ''),
);
row('faults injected', [...faults].map(([kind, n]) => `${n} × ${kind}`).join(', ') || 'none');
row('upstream verify calls', `${upstreamVerifyCalls} at the emulator`);
row(
  'verifier',
  `${stats.upstreamCalls} upstream (${stats.upstreamErrors} failed), ${stats.hits} hits, ` +
    `${stats.negativeHits} negative hits, ${stats.coalesced} coalesced, breaker opened ${counts.breakerOpened}×`,
);
row('event-loop stalls', `${counts.stalls} over ${STALL_MS} ms (max ${counts.maxStallMs} ms)`);
row(
  'RSS',
  `start ${memoryAtStart.rss.toFixed(1)} MB, after warm-up ${memoryWarm.rss.toFixed(1)} MB, ` +
    `end ${memoryAtEnd.rss.toFixed(1)} MB (${growth >= 0 ? '+' : ''}${(growth * 100).toFixed(1)} % after warm-up)`,
);
row(
  'heap used',
  `${memoryWarm.heap.toFixed(1)} MB after warm-up, ${memoryAtEnd.heap.toFixed(1)} MB at end`,
);

const failures: string[] = [];
if (counts.unexpected > 0) failures.push(`${counts.unexpected} unexpected outcomes`);
if (counts.hung > 0) failures.push(`${counts.hung} requests without an answer`);
if (counts.leaks > 0) failures.push(`${counts.leaks} token strings in answers or logs`);
if (growth > 0.5) failures.push(`RSS grew ${(growth * 100).toFixed(0)} % after warm-up`);
if ((totals.get(200) ?? 0) === 0 || (totals.get(401) ?? 0) === 0 || (totals.get(403) ?? 0) === 0) {
  failures.push('the run did not exercise 200, 401 and 403');
}
row('result', failures.length === 0 ? 'PASS' : `FAIL: ${failures.join('; ')}`);
if (unexpectedSamples.length > 0) {
  lines.push('', 'first unexpected outcomes:', ...unexpectedSamples.map((s) => `  - ${s}`));
}
process.stdout.write(`${lines.join('\n')}\n`);
process.exit(failures.length === 0 ? 0 : 1);
