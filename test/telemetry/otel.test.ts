/**
 * OpenTelemetry through the real SDKs (metrics 2.x with a reader, traces 2.x with an in-memory
 * exporter) against the emulator: counters equal what the test drove, exactly; one span per
 * call to Clerk and none per hit, under the caller's span; nothing secret in any point or span.
 * Counters are process totals, so each test compares what it collected before and after.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { metrics, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { DataPointType, type MetricData } from '@opentelemetry/sdk-metrics';
import express from 'express';
import request from 'supertest';
import { afterEach, describe, expect, it } from 'vitest';
import {
  createTokenVerifier,
  m2mAuth,
  REQUEST_OUTCOMES,
  requireMachine,
  type TokenVerifier,
} from '../../src/index.js';
import {
  COUNTER_ROWS,
  RESULT_ATTRIBUTE,
  requestOutcomeCounts,
} from '../../src/verifier/telemetry.js';
import { expectInvalid, expectUnavailable, useHarness } from '../helpers/verifier-helpers.js';
import { everythingExported, type OtelSdk, pointValue, registerSdk } from './otel-sdk.js';

const h = useHarness();
let sdk: OtelSdk | undefined;
afterEach(async () => {
  await sdk?.shutdown();
  sdk = undefined;
});
const unknownToken = (c: string) => `mt_${c.repeat(40)}`;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

type Series = Record<string, number>;
/** Every counter series of the m2m-guard meter, keyed `name{attribute=value}`. */
function series(data: MetricData[]): Series {
  const out: Series = {};
  for (const metric of data) {
    if (metric.dataPointType !== DataPointType.SUM) continue;
    for (const point of metric.dataPoints) {
      const attrs = Object.entries(point.attributes).map(([k, v]) => `${k}=${v}`);
      out[`${metric.descriptor.name}{${attrs.join(',')}}`] = point.value as number;
    }
  }
  return out;
}
const delta = (before: Series, after: Series) =>
  Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - (before[k] ?? 0)]));

const lookups = (result: string) => `m2m_guard.cache.lookups{m2m_guard.cache.result=${result}}`;
const calls = (result: string) => `m2m_guard.upstream.calls{m2m_guard.upstream.result=${result}}`;
const requests = (outcome: string) => `m2m_guard.requests{m2m_guard.outcome=${outcome}}`;

describe('OpenTelemetry metrics', () => {
  it('count hits, misses, negative hits and upstream calls exactly as driven, as stats() does', async () => {
    sdk = registerSdk(); // the SDK first, then the verifier: the order OpenTelemetry asks for
    const verifier = h.verifier();
    const before = series(await sdk.collect());
    const good = await h.mint();
    const other = await h.mint();
    await verifier.verify(good.token); // miss, upstream valid
    await verifier.verify(good.token); // hit
    expect(verifier.verifyCached(good.token)).toBeDefined(); // hit
    await expectInvalid(verifier.verify(unknownToken('A')), 'unknown'); // miss, upstream invalid
    await expectInvalid(verifier.verify(unknownToken('A')), 'unknown'); // negative hit
    h.emulator.failNext(1, 503, { operation: 'verify' });
    await expectUnavailable(verifier.verify(other.token), 'upstream_error'); // miss, error
    const after = await sdk.collect();
    const drove = delta(before, series(after));
    expect(drove).toMatchObject({
      [lookups('hit')]: 2,
      [lookups('negative_hit')]: 1,
      [lookups('miss')]: 3,
      [lookups('shared_hit')]: 0,
      [lookups('stale')]: 0,
      [calls('valid')]: 1,
      [calls('invalid')]: 1,
      [calls('error')]: 1,
    });
    // The table behind both exports reads stats(): a fresh verifier's stats are the deltas.
    const stats = verifier.stats();
    for (const row of COUNTER_ROWS) {
      const key = `m2m_guard.${row.metric}{${RESULT_ATTRIBUTE[row.metric]}=${row.result}}`;
      expect(drove[key], key).toBe(row.value(stats));
    }
    expect(h.emulator.calls.verify).toBe(3);
    expect(pointValue(after, 'm2m_guard.cache.entries')).toBe(stats.size);
    expect(pointValue(after, 'm2m_guard.breaker.state')).toBe(0);
  });

  it('count each request outcome of m2mAuth() and a guard exactly', async () => {
    sdk = registerSdk();
    const verifier = h.verifier();
    const app = express();
    app.use(m2mAuth({ verifier }), requireMachine(h.machine('api').id));
    app.get('/', (_req, res) => {
      res.send('ok');
    });
    const good = await h.mint();
    const unscoped = await h.minter.createToken(); // minted by caller: scoped to api
    const foreign = await h.client({ machineSecretKey: h.machine('api').secretKey }).createToken(); // api may call nobody
    const broken = await h.mint();
    const before = series(await sdk.collect());
    const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
    await request(app).get('/').set(bearer(good.token)).expect(200); // accepted (miss)
    await request(app).get('/').set(bearer(good.token)).expect(200); // accepted (hit)
    await request(app).get('/').set(bearer(unscoped.token)).expect(200); // accepted
    await request(app).get('/').expect(401); // unauthorized
    await request(app).get('/').set({ authorization: 'Basic abc' }).expect(400);
    await request(app)
      .get('/')
      .set(bearer(unknownToken('B')))
      .expect(401); // invalid_token
    await request(app).get('/').set(bearer(foreign.token)).expect(403); // accepted, then 403
    h.emulator.failNext(1, 503, { operation: 'verify' });
    await request(app).get('/').set(bearer(broken.token)).expect(503); // unavailable
    const drove = delta(before, series(await sdk.collect()));
    expect(drove).toMatchObject({
      [requests('accepted')]: 4,
      [requests('invalid_request')]: 1,
      [requests('unauthorized')]: 1,
      [requests('invalid_token')]: 1,
      [requests('insufficient_scope')]: 1,
      [requests('unavailable')]: 1,
    });
    const counts = requestOutcomeCounts();
    for (const outcome of REQUEST_OUTCOMES) {
      expect(series(await sdk.collect())[requests(outcome)]).toBe(counts[outcome]);
    }
  });

  it('an SDK registered after the verifier is picked up at its next call to Clerk, totals whole', async () => {
    metrics.disable(); // no SDK yet: the API is a no-op
    const verifier = h.verifier();
    await verifier.verify((await h.mint()).token);
    sdk = registerSdk();
    await verifier.verify((await h.mint()).token); // the next call to Clerk binds the instruments
    const data = await sdk.collect();
    expect(pointValue(data, 'm2m_guard.upstream.calls', { 'm2m_guard.upstream.result': 'valid' }))
      // this verifier's two calls at least (earlier tests' closed verifiers count too)
      .toBeGreaterThanOrEqual(2);
    const duration = data.find((m) => m.descriptor.name === 'm2m_guard.upstream.duration');
    expect(duration?.descriptor.unit).toBe('s');
    // The histogram only saw the call made after the SDK came.
    const points = duration?.dataPoints ?? [];
    expect(points.map((p) => (p.value as { count: number }).count)).toEqual([1]);
    expect(points[0]?.attributes).toEqual({ 'm2m_guard.upstream.result': 'valid' });
  });

  it('several verifiers add up into one series each, and a closed one stays counted', async () => {
    sdk = registerSdk();
    const a = h.verifier();
    const b = h.verifier({ breaker: { failures: 1, cooldownMs: 60_000 } });
    const before = series(await sdk.collect());
    const token = (await h.mint()).token;
    await a.verify(token);
    await b.verify(token);
    await b.verify(token);
    h.emulator.failNext(1, 503, { operation: 'verify' });
    await expectUnavailable(b.verify(unknownToken('C')), 'upstream_error'); // opens b's breaker
    let data = await sdk.collect();
    const lookupPoints = data.find((m) => m.descriptor.name === 'm2m_guard.cache.lookups');
    const attributeSets = lookupPoints?.dataPoints.map((p) => JSON.stringify(p.attributes));
    expect(new Set(attributeSets).size).toBe(attributeSets?.length); // no duplicate series
    expect(delta(before, series(data))).toMatchObject({
      [lookups('miss')]: 3,
      [lookups('hit')]: 1,
      [calls('valid')]: 2,
      [calls('error')]: 1,
    });
    expect(pointValue(data, 'm2m_guard.breaker.state')).toBe(2); // the worst of the two
    expect(pointValue(data, 'm2m_guard.cache.entries')).toBe(a.stats().size + b.stats().size);
    await b.close();
    data = await sdk.collect();
    expect(delta(before, series(data))[lookups('hit')]).toBe(1); // counters never go back
    expect(pointValue(data, 'm2m_guard.breaker.state')).toBe(0);
    expect(pointValue(data, 'm2m_guard.cache.entries')).toBe(a.stats().size);
  });

  it('a verifier dropped without close() is not kept alive by its metrics; its counts stay', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    sdk = registerSdk();
    let verifier: TokenVerifier | undefined = createTokenVerifier({
      apiUrl: h.emulator.url,
      secretKey: h.emulator.instanceSecretKey,
      anyMachine: true,
      retry: false,
      now: h.clock,
    });
    const before = series(await sdk.collect());
    await verifier.verify((await h.mint()).token);
    const entries = pointValue(await sdk.collect(), 'm2m_guard.cache.entries');
    verifier = undefined;
    // Its cache leaves the entries gauge once it is collected as garbage. (Each collection
    // reads the weak reference, which keeps it alive for that turn: collect garbage between.)
    let entriesNow = entries;
    for (let i = 0; i < 50 && entriesNow !== entries - 1; i++) {
      await sleep(10);
      gc();
      await sleep(10);
      entriesNow = pointValue(await sdk.collect(), 'm2m_guard.cache.entries');
    }
    expect(entriesNow).toBe(entries - 1);
    expect(delta(before, series(await sdk.collect()))[calls('valid')]).toBe(1);
  });
});

describe('OpenTelemetry spans', () => {
  it('one client span per call to Clerk, none per hit, under the caller span, with the status', async () => {
    sdk = registerSdk();
    const verifier = h.verifier();
    const good = await h.mint();
    const tracer = trace.getTracer('test');
    await tracer.startActiveSpan('handle request', async (parent) => {
      await verifier.verify(good.token);
      await verifier.verify(good.token); // a hit: no span
      await expectInvalid(verifier.verify(unknownToken('D')), 'unknown');
      parent.end();
    });
    const spans = sdk.spans.getFinishedSpans();
    const parent = spans.find((s) => s.name === 'handle request')!;
    const verifySpans = spans.filter((s) => s.name === 'm2m_guard.verify');
    expect(verifySpans).toHaveLength(2);
    for (const span of verifySpans) {
      expect(span.kind).toBe(SpanKind.CLIENT);
      expect(span.parentSpanContext?.spanId).toBe(parent.spanContext().spanId);
      expect(span.spanContext().traceId).toBe(parent.spanContext().traceId);
    }
    expect(verifySpans.map((s) => s.attributes)).toEqual([
      { 'http.response.status_code': 200, 'm2m_guard.upstream.result': 'valid' },
      { 'http.response.status_code': 404, 'm2m_guard.upstream.result': 'invalid' },
    ]);
    expect(verifySpans.map((s) => s.status.code)).toEqual([
      SpanStatusCode.UNSET,
      SpanStatusCode.UNSET,
    ]);
  });

  it('a failing call records the error: status ERROR, the reason, an exception event', async () => {
    sdk = registerSdk();
    const verifier = h.verifier();
    const token = (await h.mint()).token;
    h.emulator.failNext(1, 503, { operation: 'verify' });
    await expectUnavailable(verifier.verify(token), 'upstream_error');
    h.emulator.failNext(1, 'reset', { operation: 'verify' });
    await expectUnavailable(verifier.verify(token), 'network');
    const spans = sdk.spans.getFinishedSpans().filter((s) => s.name === 'm2m_guard.verify');
    expect(spans.map((s) => s.attributes)).toEqual([
      {
        'http.response.status_code': 503,
        'm2m_guard.upstream.result': 'error',
        'error.type': 'upstream_error',
      },
      // No answer at all: no status code.
      { 'm2m_guard.upstream.result': 'error', 'error.type': 'network' },
    ]);
    for (const span of spans) {
      expect(span.status.code).toBe(SpanStatusCode.ERROR);
      expect(span.events.map((e) => e.name)).toEqual(['exception']);
    }
    expect(spans[0]!.parentSpanContext).toBeUndefined(); // no active span: a root span
  });
});

describe('what leaves the process', () => {
  it('no metric point or span attribute holds a token, a secret, a token id or a subject', async () => {
    sdk = registerSdk();
    const verifier = h.verifier();
    const app = express();
    app.use(m2mAuth({ verifier }), requireMachine(h.machine('api').id));
    app.get('/', (_req, res) => {
      res.send('ok');
    });
    const good = await h.mint();
    const foreign = await h.client({ machineSecretKey: h.machine('api').secretKey }).createToken();
    const revoked = await h.mint();
    await h.admin.revokeToken({ m2mTokenId: revoked.id });
    const tracer = trace.getTracer('test');
    await tracer.startActiveSpan('scan', async (span) => {
      for (const token of [good.token, good.token, foreign.token, revoked.token]) {
        await request(app)
          .get('/')
          .set({ authorization: `Bearer ${token}` });
      }
      await request(app)
        .get('/')
        .set({ authorization: `Bearer ${unknownToken('E')}` });
      h.emulator.failNext(1, 503, { operation: 'verify' });
      await request(app)
        .get('/')
        .set({ authorization: `Bearer ${(await h.mint()).token}` });
      span.end();
    });
    const text = everythingExported(await sdk.collect(), sdk.spans.getFinishedSpans());
    expect(text).toContain('m2m_guard.verify'); // the scan did see spans and points
    expect(text).toContain('m2m_guard.cache.lookups');
    const secrets = [
      h.emulator.instanceSecretKey,
      ...Object.values(h.emulator.machines).flatMap((m) => [m.secretKey, m.id]),
      good.token,
      foreign.token,
      revoked.token,
      good.id,
      foreign.id,
      revoked.id,
      unknownToken('E'),
    ];
    for (const secret of secrets) expect(text).not.toContain(secret);
    expect(text).not.toMatch(/mt_[A-Za-z0-9]|mch_[A-Za-z0-9]|ak_[A-Za-z0-9]|sk_test/);
  });
});
