/**
 * `m2m-guard/prometheus` with prom-client: the exposition text, parsed back, has the documented
 * names and labels and the values of `stats()` and `health()`; misuse is an M2MConfigError.
 */
import { Counter, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { M2MConfigError, type TokenVerifier } from '../../src/index.js';
import { registerMetrics } from '../../src/prometheus/index.js';
import { COUNTER_ROWS } from '../../src/verifier/telemetry.js';
import { expectInvalid, expectUnavailable, useHarness } from '../helpers/verifier-helpers.js';

const h = useHarness();
const unknownToken = (c: string) => `mt_${c.repeat(40)}`;

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses Prometheus text exposition (samples only). */
function parse(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) throw new Error(`not an exposition line: ${line}`);
    const labels = Object.fromEntries(
      [...(match[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map(([, k, v]) => [k!, v!]),
    );
    samples.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return samples;
}

async function scrape(registry: Registry) {
  const samples = parse(await registry.metrics());
  const value = (name: string, labels: Record<string, string> = {}) => {
    const found = samples.filter(
      (s) =>
        s.name === name &&
        Object.keys(s.labels).length === Object.keys(labels).length &&
        Object.entries(labels).every(([k, v]) => s.labels[k] === v),
    );
    expect(found, `${name} ${JSON.stringify(labels)}`).toHaveLength(1);
    return found[0]!.value;
  };
  return { samples, value };
}

const PROM_NAME = {
  'cache.lookups': 'm2m_guard_cache_lookups_total',
  'upstream.calls': 'm2m_guard_upstream_calls_total',
} as const;

/** Drives a verifier through hits, a miss, a negative hit, an error and an open breaker. */
async function drive(verifier: TokenVerifier) {
  const good = await h.mint();
  await verifier.verify(good.token);
  await verifier.verify(good.token);
  await expectInvalid(verifier.verify(unknownToken('A')), 'unknown');
  await expectInvalid(verifier.verify(unknownToken('A')), 'unknown');
  h.emulator.failNext(1, 503, { operation: 'verify' });
  await expectUnavailable(verifier.verify(unknownToken('B')), 'upstream_error');
}

describe('registerMetrics()', () => {
  it('exports names, labels and values equal to stats() and health()', async () => {
    const registry = new Registry();
    const verifier = h.verifier({ breaker: { failures: 1, cooldownMs: 60_000 } });
    registerMetrics(verifier, { registry });
    await drive(verifier);
    const { samples, value } = await scrape(registry);
    const stats = verifier.stats();
    for (const row of COUNTER_ROWS) {
      expect(value(PROM_NAME[row.metric], { result: row.result })).toBe(row.value(stats));
    }
    expect(value('m2m_guard_cache_lookups_total', { result: 'hit' })).toBe(1);
    expect(value('m2m_guard_upstream_calls_total', { result: 'error' })).toBe(1);
    expect(value('m2m_guard_cache_entries')).toBe(stats.size);
    expect(verifier.health().breaker).toBe('open');
    expect(value('m2m_guard_breaker_state')).toBe(2);
    // The histogram: one observation per call to Clerk, by result, buckets in seconds.
    expect(value('m2m_guard_upstream_duration_seconds_count', { result: 'valid' })).toBe(1);
    expect(value('m2m_guard_upstream_duration_seconds_count', { result: 'invalid' })).toBe(1);
    expect(value('m2m_guard_upstream_duration_seconds_count', { result: 'error' })).toBe(1);
    expect(value('m2m_guard_upstream_duration_seconds_bucket', { result: 'valid', le: '10' })).toBe(
      1,
    );
    expect(new Set(samples.map((s) => s.name.replace(/_(bucket|sum|count)$/, '')))).toEqual(
      new Set([
        'm2m_guard_cache_lookups_total',
        'm2m_guard_upstream_calls_total',
        'm2m_guard_upstream_duration_seconds',
        'm2m_guard_breaker_state',
        'm2m_guard_cache_entries',
      ]),
    );
    // Still equal after more traffic: the values are read at each scrape.
    await verifier.verifyCached((await h.mint()).token);
    await expectInvalid(verifier.verify(unknownToken('A')), 'unknown');
    expect(
      (await scrape(registry)).value('m2m_guard_cache_lookups_total', { result: 'negative_hit' }),
    ).toBe(verifier.stats().negativeHits);
  });

  it('adds up several verifiers on one registry, and takes a prefix', async () => {
    const registry = new Registry();
    const a = h.verifier();
    const b = h.verifier();
    registerMetrics(a, { registry, prefix: 'orders_' });
    registerMetrics(b, { registry, prefix: 'orders_' });
    const token = (await h.mint()).token;
    await a.verify(token);
    await b.verify(token);
    await b.verify(token);
    const { value } = await scrape(registry);
    expect(value('orders_m2m_guard_cache_lookups_total', { result: 'miss' })).toBe(2);
    expect(value('orders_m2m_guard_cache_lookups_total', { result: 'hit' })).toBe(1);
    expect(value('orders_m2m_guard_upstream_calls_total', { result: 'valid' })).toBe(2);
    expect(value('orders_m2m_guard_cache_entries')).toBe(2);
  });

  it('refuses one verifier twice on one registry with an M2MConfigError, not a crash', () => {
    const registry = new Registry();
    const verifier = h.verifier();
    registerMetrics(verifier, { registry });
    for (const options of [{ registry }, { registry, prefix: 'other_' }]) {
      expect(() => registerMetrics(verifier, options)).toThrow(
        expect.objectContaining({ name: 'M2MConfigError', option: 'verifier' }),
      );
    }
    // Another registry is fine, and so is the same one after registry.clear().
    registerMetrics(verifier, { registry: new Registry() });
    registry.clear();
    registerMetrics(verifier, { registry });
  });

  it('refuses a registry that already has a metric of these names from elsewhere', () => {
    const registry = new Registry();
    new Counter({ name: 'm2m_guard_cache_lookups_total', help: 'theirs', registers: [registry] });
    expect(() => registerMetrics(h.verifier(), { registry })).toThrow(
      expect.objectContaining({ option: 'registry' }),
    );
  });

  it('validates its arguments when called', () => {
    const verifier = h.verifier();
    const registry = new Registry();
    const cases: [unknown, unknown, string][] = [
      [{}, { registry }, 'verifier'],
      [verifier, { registry, prefix: '1abc' }, 'prefix'],
      [verifier, { registry, prefix: 'a-b' }, 'prefix'],
      [verifier, { registry, prefix: 42 }, 'prefix'],
      [verifier, { registry: {} }, 'registry'],
      [verifier, { registry, prefx: 'a_' }, 'prefx'],
      [verifier, 'registry', 'options'],
    ];
    for (const [v, options, option] of cases) {
      expect(() => registerMetrics(v as TokenVerifier, options as never), option).toThrow(
        expect.objectContaining({ option }),
      );
    }
    expect(() => registerMetrics({} as TokenVerifier)).toThrow(M2MConfigError);
  });
});
