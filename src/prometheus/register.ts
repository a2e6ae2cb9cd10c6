import { Counter, Gauge, register as globalRegistry, Histogram, type Registry } from 'prom-client';
import { M2MConfigError } from '../shared/config-error.js';
import { assertKnownKeys, assertMethods, optionsObject } from '../shared/validate.js';
import type { TokenVerifier, VerifierStats } from '../verifier/index.js';
import {
  BREAKER_STATE_VALUE,
  COUNTER_ROWS,
  type CounterRow,
  onUpstreamCall,
  UPSTREAM_DURATION_BUCKETS,
} from '../verifier/telemetry.js'; // internal plumbing, not part of the public API

/** Options of {@link registerMetrics}. */
export interface RegisterMetricsOptions {
  /** The prom-client registry to register on. Default: prom-client's global `register`. */
  registry?: Registry;
  /** Put before every metric name (`myapp_` gives `myapp_m2m_guard_…`). Default `''`. */
  prefix?: string;
}

export const REGISTER_METRICS_KEYS = [
  'registry',
  'prefix',
] as const satisfies readonly (keyof RegisterMetricsOptions)[];

/** A Prometheus metric name prefix: letters, digits, `_` and `:`, not starting with a digit. */
const PREFIX = /^(?:[a-zA-Z_:][a-zA-Z0-9_:]*)?$/;

/** The metrics of one registry and prefix, over every verifier registered there. */
interface Group {
  readonly verifiers: Set<TokenVerifier>;
  /** One of the group's metrics, to tell whether the registry still holds them. */
  readonly marker: Counter;
  readonly markerName: string;
  readonly duration: Histogram<'result'>;
}

/** Groups by registry, then by prefix. */
const groupsByRegistry = new WeakMap<Registry, Map<string, Group>>();

/**
 * Registers the verifier's metrics on a prom-client registry, read from `verifier.stats()` and
 * `verifier.health()` at each scrape (so they always equal `stats()`):
 * `m2m_guard_cache_lookups_total{result}`, `m2m_guard_upstream_calls_total{result}`,
 * `m2m_guard_breaker_state` (0 closed, 1 half-open, 2 open), `m2m_guard_cache_entries`, and the
 * histogram `m2m_guard_upstream_duration_seconds{result}` of the calls to Clerk made from now on.
 * Several verifiers on one registry and prefix are added up (the breaker: the worst state).
 * Registering one verifier twice on one registry throws an `M2MConfigError`, as does a registry
 * that already has a metric of these names from elsewhere.
 * The registry holds the verifier from then on (its metrics are read from it).
 *
 * @example
 * import { register } from 'prom-client';
 * import { registerMetrics } from 'm2m-guard/prometheus';
 * registerMetrics(verifier); // on prom-client's global registry
 * app.get('/metrics', async (_req, res) => {
 *   res.type(register.contentType).send(await register.metrics());
 * });
 */
export function registerMetrics(
  verifier: TokenVerifier,
  options: RegisterMetricsOptions = {},
): void {
  assertMethods(
    verifier,
    'verifier',
    ['stats', 'health'],
    'must be a verifier from createTokenVerifier()',
  );
  const opts = optionsObject<RegisterMetricsOptions>(options, 'options');
  assertKnownKeys(opts, REGISTER_METRICS_KEYS);
  const registry =
    opts.registry === undefined
      ? globalRegistry
      : assertMethods<Registry>(
          opts.registry,
          'registry',
          ['registerMetric', 'getSingleMetric'],
          'must be a prom-client Registry',
        );
  const prefix = opts.prefix ?? '';
  if (typeof prefix !== 'string' || !PREFIX.test(prefix)) {
    throw new M2MConfigError(
      'prefix',
      'must be letters, digits, `_` or `:`, not starting with a digit',
    );
  }
  const groups = liveGroups(registry);
  for (const group of groups.values()) {
    if (group.verifiers.has(verifier)) {
      throw new M2MConfigError('verifier', 'is already registered on this registry');
    }
  }
  let group = groups.get(prefix);
  if (!group) {
    group = createGroup(registry, prefix);
    groups.set(prefix, group);
  }
  group.verifiers.add(verifier);
  const { duration } = group;
  onUpstreamCall(verifier, (result, seconds) => duration.observe({ result }, seconds));
}

/** The registry's groups, without those whose metrics were removed (`registry.clear()`). */
function liveGroups(registry: Registry): Map<string, Group> {
  let groups = groupsByRegistry.get(registry);
  if (!groups) {
    groups = new Map();
    groupsByRegistry.set(registry, groups);
  }
  for (const [prefix, group] of groups) {
    if (registry.getSingleMetric(group.markerName) !== group.marker) groups.delete(prefix);
  }
  return groups;
}

const rowsOf = (metric: CounterRow['metric']) => COUNTER_ROWS.filter((r) => r.metric === metric);

function createGroup(registry: Registry, prefix: string): Group {
  const name = (suffix: string) => `${prefix}m2m_guard_${suffix}`;
  const names = [
    'cache_lookups_total',
    'upstream_calls_total',
    'upstream_duration_seconds',
    'breaker_state',
    'cache_entries',
  ].map(name);
  for (const taken of names) {
    if (registry.getSingleMetric(taken) !== undefined) {
      throw new M2MConfigError('registry', `already has a metric named ${taken}`);
    }
  }
  const verifiers = new Set<TokenVerifier>();
  const allStats = (): VerifierStats[] => [...verifiers].map((v) => v.stats());
  const registers = [registry];
  const counter = (suffix: string, help: string, metric: CounterRow['metric']) => {
    const rows = rowsOf(metric);
    return new Counter({
      name: name(suffix),
      help,
      labelNames: ['result'],
      registers,
      collect() {
        const stats = allStats();
        this.reset();
        for (const row of rows) {
          this.inc(
            { result: row.result },
            stats.reduce((sum, s) => sum + row.value(s), 0),
          );
        }
      },
    });
  };
  const marker = counter(
    'cache_lookups_total',
    'Lookups in the verifier cache, by result',
    'cache.lookups',
  );
  counter('upstream_calls_total', "Calls to Clerk's verify endpoint, by result", 'upstream.calls');
  const duration = new Histogram({
    name: name('upstream_duration_seconds'),
    help: "Duration of each call to Clerk's verify endpoint",
    labelNames: ['result'] as const,
    buckets: [...UPSTREAM_DURATION_BUCKETS],
    registers,
  });
  new Gauge({
    name: name('breaker_state'),
    help: 'Circuit breaker state: 0 closed, 1 half-open, 2 open (the worst of all verifiers)',
    registers,
    collect() {
      let worst = 0;
      for (const v of verifiers) worst = Math.max(worst, BREAKER_STATE_VALUE[v.health().breaker]);
      this.set(worst);
    },
  });
  new Gauge({
    name: name('cache_entries'),
    help: 'Entries in the in-process verifier caches',
    registers,
    collect() {
      this.set(allStats().reduce((sum, s) => sum + s.size, 0));
    },
  });
  return { verifiers, marker, markerName: names[0]!, duration };
}
