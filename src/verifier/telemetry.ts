import {
  type Attributes,
  type BatchObservableCallback,
  type Histogram,
  type Meter,
  type MeterProvider,
  metrics,
  type Observable,
  type ObservableCounter,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
} from '@opentelemetry/api';
import { BadRequestError, M2MApiError, NotFoundError } from '../client/index.js';
import { VERSION } from '../shared/version.js';
import type { BreakerState } from './breaker.js';
import type { VerifierHealth, VerifierStats } from './types.js';
import { toUnavailable } from './upstream-error.js';

/**
 * OpenTelemetry metrics and spans, through `@opentelemetry/api` alone (a no-op until the
 * application registers an SDK).
 *
 * Why it costs nothing on a cache hit: counters stay the plain integers behind `stats()`, and
 * OpenTelemetry reads them through observable instruments when it collects. Only a call to Clerk
 * (rare, and slow anyway) records the duration histogram and makes a span.
 *
 * When instruments are made: the metrics API has no proxy (a meter taken before an SDK is
 * registered stays a no-op), so the instruments are (re)made on the global MeterProvider of the
 * moment whenever a verifier is created and before each call to Clerk. An SDK registered after
 * the verifier is therefore picked up at its next call to Clerk, with counters complete (they
 * are totals); register it first and nothing is missed at all. Spans use the tracer API's own
 * proxy, looked up per call.
 *
 * Several verifiers in one process are added up (one series per attribute value, none per
 * verifier), and a closed verifier's counts stay in the totals, so counters never go back.
 * Every attribute value comes from the closed sets below: never a token, token id or subject.
 */

/** Instrumentation scope name of the meter and the tracer. */
export const INSTRUMENTATION_SCOPE = 'm2m-guard';

/** Bucket boundaries of the upstream duration histograms, in seconds. */
export const UPSTREAM_DURATION_BUCKETS: readonly number[] = [
  0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10,
];

/** Outcomes of `m2m_guard.requests`, one per request `m2mAuth()` decides or a guard refuses. */
export const REQUEST_OUTCOMES = [
  'accepted',
  'invalid_request',
  'unauthorized',
  'invalid_token',
  'insufficient_scope',
  'unavailable',
] as const;
export type RequestOutcome = (typeof REQUEST_OUTCOMES)[number];

/** What became of one call to Clerk's verify endpoint. */
export type UpstreamResult = 'valid' | 'invalid' | 'error';

/** A counter fed by `stats()`: the instrument (after `m2m_guard.`), its result, and its value. */
export interface CounterRow {
  readonly metric: 'cache.lookups' | 'upstream.calls';
  readonly result: string;
  readonly value: (stats: VerifierStats) => number;
}

/**
 * Every counter, as a row over `stats()`: OpenTelemetry and Prometheus both read this table, so
 * a counter added to `stats()` is exported by adding one row. `miss` counts every lookup the
 * in-process cache could not answer; `shared_hit` and `stale` say how some of those were answered.
 */
export const COUNTER_ROWS: readonly CounterRow[] = [
  { metric: 'cache.lookups', result: 'hit', value: (s) => s.hits },
  { metric: 'cache.lookups', result: 'negative_hit', value: (s) => s.negativeHits },
  { metric: 'cache.lookups', result: 'miss', value: (s) => s.misses },
  { metric: 'cache.lookups', result: 'shared_hit', value: (s) => s.sharedHits },
  { metric: 'cache.lookups', result: 'stale', value: (s) => s.staleServed },
  {
    metric: 'upstream.calls',
    result: 'valid',
    value: (s) => s.upstreamCalls - s.upstreamErrors - s.upstreamInvalid,
  },
  { metric: 'upstream.calls', result: 'invalid', value: (s) => s.upstreamInvalid },
  { metric: 'upstream.calls', result: 'error', value: (s) => s.upstreamErrors },
  { metric: 'upstream.calls', result: 'budget_refused', value: (s) => s.budgetRefused },
];

/** The attribute that carries a row's result, per instrument. */
export const RESULT_ATTRIBUTE = {
  'cache.lookups': 'm2m_guard.cache.result',
  'upstream.calls': 'm2m_guard.upstream.result',
} as const;

/** Breaker states as numbers, for the gauge: the worse, the higher. */
export const BREAKER_STATE_VALUE: Readonly<Record<BreakerState, number>> = {
  closed: 0,
  'half-open': 1,
  open: 2,
};

// Attribute objects are made once: collecting allocates none per series.
const ROW_ATTRIBUTES: readonly Attributes[] = COUNTER_ROWS.map((row) =>
  Object.freeze({ [RESULT_ATTRIBUTE[row.metric]]: row.result }),
);
const OUTCOME_ATTRIBUTES: readonly Attributes[] = REQUEST_OUTCOMES.map((outcome) =>
  Object.freeze({ 'm2m_guard.outcome': outcome }),
);
const UPSTREAM_ATTRIBUTES: Readonly<Record<UpstreamResult, Attributes>> = {
  valid: Object.freeze({ 'm2m_guard.upstream.result': 'valid' }),
  invalid: Object.freeze({ 'm2m_guard.upstream.result': 'invalid' }),
  error: Object.freeze({ 'm2m_guard.upstream.result': 'error' }),
};

/** Index into the request counts of each outcome. */
const OUTCOME_INDEX: Readonly<Record<string, number | undefined>> = Object.assign(
  Object.create(null),
  Object.fromEntries(REQUEST_OUTCOMES.map((outcome, index) => [outcome, index])),
);
const requestCounts = REQUEST_OUTCOMES.map(() => 0);

/**
 * Counts one request's outcome (one of {@link REQUEST_OUTCOMES}); anything else (a pass, or
 * `undefined`) is not counted. An array increment, for the hot path.
 */
export function recordRequestOutcome(outcome: string | undefined): void {
  const index = outcome === undefined ? undefined : OUTCOME_INDEX[outcome];
  if (index !== undefined) requestCounts[index]!++;
}

/** The process's request counts by outcome, as `m2m_guard.requests` reports them. */
export function requestOutcomeCounts(): Record<RequestOutcome, number> {
  return Object.fromEntries(REQUEST_OUTCOMES.map((o, i) => [o, requestCounts[i]!])) as Record<
    RequestOutcome,
    number
  >;
}

/** What a verifier lets its telemetry read. */
export interface TelemetrySource {
  stats(): VerifierStats;
  breaker(): BreakerState;
  /** The shared store's state: `none` without one. */
  store(): VerifierHealth['store'];
  /** The verifier's clock (health times). */
  now(): number;
}

/** Called after each call to Clerk, with its result and duration in seconds. */
export type UpstreamListener = (result: UpstreamResult, seconds: number) => void;

export interface VerifierTelemetry {
  /** Runs one call to Clerk inside a `m2m_guard.verify` span and records its duration. */
  traceUpstream<T>(call: () => Promise<T>): Promise<T>;
  health(): VerifierHealth;
  /** Ties the verifier object to this telemetry (for `m2m-guard/prometheus`); returns it. */
  attach<V extends object>(verifier: V): V;
  /** Stops observing the verifier; its counts stay in the process totals. */
  close(): void;
}

interface Handle {
  readonly source: TelemetrySource;
  readonly listeners: Set<UpstreamListener>;
}

/**
 * The verifiers observed now, held weakly (one dropped without `close()` is not kept alive by
 * its metrics), each with its counter values as last collected: a verifier collected as garbage
 * leaves those in the totals.
 */
const live = new Map<WeakRef<Handle>, number[]>();
/** Counter totals of closed (or collected) verifiers, row by row. */
const retired = COUNTER_ROWS.map(() => 0);
const retire = (values: readonly number[]) =>
  values.forEach((value, i) => {
    retired[i]! += value;
  });
const handles = new WeakMap<object, Handle>();

/** Instruments of the MeterProvider they were made on. */
interface Binding {
  readonly provider: MeterProvider;
  readonly meter: Meter;
  readonly duration: Histogram;
  readonly observables: Observable[];
  readonly callback: BatchObservableCallback;
}
let binding: Binding | undefined;

/** The instruments on the global MeterProvider of the moment, made anew if it changed. */
function instruments(): Binding {
  const provider = metrics.getMeterProvider();
  if (binding?.provider === provider) return binding;
  binding?.meter.removeBatchObservableCallback(binding.callback, binding.observables);
  const meter = provider.getMeter(INSTRUMENTATION_SCOPE, VERSION);
  const requests = meter.createObservableCounter('m2m_guard.requests', {
    description: 'Requests decided by m2mAuth() or refused by a guard, by outcome',
    unit: '{request}',
  });
  const counters: Record<CounterRow['metric'], ObservableCounter> = {
    'cache.lookups': meter.createObservableCounter('m2m_guard.cache.lookups', {
      description: 'Lookups in the verifier cache, by result',
      unit: '{lookup}',
    }),
    'upstream.calls': meter.createObservableCounter('m2m_guard.upstream.calls', {
      description: "Calls to Clerk's verify endpoint, by result",
      unit: '{call}',
    }),
  };
  const breaker = meter.createObservableGauge('m2m_guard.breaker.state', {
    description:
      'Circuit breaker state: 0 closed, 1 half-open, 2 open (the worst of all verifiers)',
  });
  const entries = meter.createObservableGauge('m2m_guard.cache.entries', {
    description: 'Entries in the in-process verifier caches',
    unit: '{entry}',
  });
  const duration = meter.createHistogram('m2m_guard.upstream.duration', {
    description: "Duration of each call to Clerk's verify endpoint",
    unit: 's',
    advice: { explicitBucketBoundaries: [...UPSTREAM_DURATION_BUCKETS] },
  });
  const callback: BatchObservableCallback = (result) => {
    const totals = [...retired];
    let worst = 0;
    let size = 0;
    for (const [ref, seen] of live) {
      const source = ref.deref()?.source;
      if (source) {
        const stats = source.stats();
        COUNTER_ROWS.forEach((row, i) => {
          seen[i] = row.value(stats);
        });
        worst = Math.max(worst, BREAKER_STATE_VALUE[source.breaker()]);
        size += stats.size;
      } else {
        live.delete(ref);
        retire(seen);
      }
      seen.forEach((value, i) => {
        totals[i]! += value;
      });
    }
    COUNTER_ROWS.forEach((row, i) => {
      result.observe(counters[row.metric], totals[i]!, ROW_ATTRIBUTES[i]);
    });
    REQUEST_OUTCOMES.forEach((_, i) => {
      result.observe(requests, requestCounts[i]!, OUTCOME_ATTRIBUTES[i]);
    });
    // Observed even with no verifier left: an SDK would go on exporting the last value.
    result.observe(breaker, worst);
    result.observe(entries, size);
  };
  const observables = [requests, counters['cache.lookups'], counters['upstream.calls']];
  observables.push(breaker, entries);
  meter.addBatchObservableCallback(callback, observables);
  binding = { provider, meter, duration, observables, callback };
  return binding;
}

/**
 * Whether a verifier's health is `ok`, `degraded` or `unavailable`: unavailable while the
 * breaker is open (calls fail fast), degraded while the shared store is down or the last call to
 * Clerk failed, ok otherwise.
 */
export function healthStatus(
  breaker: BreakerState,
  store: VerifierHealth['store'],
  lastCallFailed: boolean,
): VerifierHealth['status'] {
  if (breaker === 'open') return 'unavailable';
  return store === 'down' || lastCallFailed ? 'degraded' : 'ok';
}

/** Makes the telemetry of one verifier; it is observed until `close()`. */
export function createVerifierTelemetry(source: TelemetrySource): VerifierTelemetry {
  const handle: Handle = { source, listeners: new Set() };
  const ref = new WeakRef(handle);
  let lastSuccessAt: number | null = null;
  let lastFailureAt: number | null = null;
  let lastCallFailed = false;
  live.set(
    ref,
    COUNTER_ROWS.map(() => 0),
  );
  instruments();

  function done(span: Span, started: number, result: UpstreamResult, err?: unknown) {
    const seconds = (performance.now() - started) / 1000;
    if (result === 'error') {
      lastFailureAt = source.now();
      lastCallFailed = true;
    } else {
      lastSuccessAt = source.now();
      lastCallFailed = false;
    }
    instruments().duration.record(seconds, UPSTREAM_ATTRIBUTES[result]);
    const status = err === undefined ? 200 : err instanceof M2MApiError ? err.status : undefined;
    if (status !== undefined) span.setAttribute('http.response.status_code', status);
    span.setAttribute('m2m_guard.upstream.result', result);
    if (result === 'error') {
      // Only our own closed set: Clerk's message could name a token id.
      const reason = toUnavailable(err).reason;
      span.setAttribute('error.type', reason);
      span.recordException({
        name: err instanceof M2MApiError ? err.name : 'Error',
        message: `clerk verify failed: ${reason}`,
      });
      span.setStatus({ code: SpanStatusCode.ERROR, message: reason });
    }
    span.end();
    for (const listener of handle.listeners) listener(result, seconds);
  }

  return {
    traceUpstream(call) {
      const tracer = trace.getTracer(INSTRUMENTATION_SCOPE, VERSION);
      return tracer.startActiveSpan('m2m_guard.verify', { kind: SpanKind.CLIENT }, async (span) => {
        const started = performance.now();
        try {
          const answer = await call();
          done(span, started, 'valid');
          return answer;
        } catch (err) {
          const refused = err instanceof NotFoundError || err instanceof BadRequestError;
          done(span, started, refused ? 'invalid' : 'error', err);
          throw err;
        }
      });
    },
    health() {
      const breaker = source.breaker();
      const store = source.store();
      return {
        status: healthStatus(breaker, store, lastCallFailed),
        breaker,
        lastUpstreamSuccessAt: lastSuccessAt,
        lastUpstreamFailureAt: lastFailureAt,
        store,
      };
    },
    attach(verifier) {
      handles.set(verifier, handle);
      return verifier;
    },
    close() {
      if (!live.delete(ref)) return;
      const stats = source.stats();
      retire(COUNTER_ROWS.map((row) => row.value(stats)));
    },
  };
}

/**
 * Calls `listener` after each call to Clerk that `verifier` makes from now on. Returns the
 * unsubscribe function, or `undefined` for an object that is not a verifier of this library.
 */
export function onUpstreamCall(
  verifier: object,
  listener: UpstreamListener,
): (() => void) | undefined {
  const handle = handles.get(verifier);
  if (!handle) return undefined;
  handle.listeners.add(listener);
  return () => handle.listeners.delete(listener);
}
