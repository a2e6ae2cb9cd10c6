/**
 * Observability: the OpenTelemetry SDK registered before the verifier (metrics and spans, kept
 * in memory here: swap in your exporter), Prometheus at `/metrics` through prom-client, and a
 * readiness route on `verifier.health()`. Prints what each route answered and what
 * OpenTelemetry collected; exits 1 if anything is not as shown.
 *
 * Run: npx tsx examples/metrics.ts
 * Without CLERK_API_URL it starts an in-process emulator of Clerk. Against real Clerk, set
 * CLERK_API_URL, CLERK_SECRET_KEY (to verify), API_MACHINE_ID (this service's machine id) and
 * CLERK_MACHINE_SECRET_KEY (to mint a token as a machine that may call it).
 */
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { metrics, trace } from '@opentelemetry/api';
import {
  AggregationTemporality,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
} from '@opentelemetry/sdk-metrics';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import express from 'express';
import { Registry } from 'prom-client';
// In an app: from 'm2m-guard/emulator' and 'm2m-guard/prometheus'.
import { startEmulator } from '../src/emulator/index.js';
import { createM2MClient, createTokenVerifier, m2mAuth } from '../src/index.js';
import { registerMetrics } from '../src/prometheus/index.js';

async function main(log: (line: string) => void = console.log): Promise<void> {
  const emulator = process.env.CLERK_API_URL ? undefined : await startEmulator();
  const apiUrl = emulator?.url ?? process.env.CLERK_API_URL!;
  const secretKey = emulator?.instanceSecretKey ?? process.env.CLERK_SECRET_KEY!;
  const callerKey = emulator?.machines.caller.secretKey ?? process.env.CLERK_MACHINE_SECRET_KEY!;
  // This service's own machine id: the instance key checks no scope, so the verifier does.
  const machineId = emulator?.machines.api.id ?? process.env.API_MACHINE_ID!;

  // 1. The OpenTelemetry SDK first, then the verifier.
  const metricExporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
  const reader = new PeriodicExportingMetricReader({ exporter: metricExporter });
  metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }));
  const spanExporter = new InMemorySpanExporter();
  trace.setGlobalTracerProvider(
    new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spanExporter)] }),
  );

  // 2. One verifier, its Prometheus metrics, a readiness route and a scrape route.
  const verifier = createTokenVerifier({ apiUrl, secretKey, machineId });
  const registry = new Registry();
  registerMetrics(verifier, { registry });

  const app = express();
  app.get('/ready', (_req, res) => {
    const health = verifier.health();
    res.status(health.status === 'unavailable' ? 503 : 200).json(health);
  });
  app.get('/metrics', async (_req, res) => {
    res.type(registry.contentType).send(await registry.metrics());
  });
  app.use('/internal', m2mAuth({ verifier }));
  app.get('/internal/orders', (req, res) => {
    res.json({ calledBy: req.m2m?.subject });
  });

  const server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const caller = createM2MClient({ apiUrl, machineSecretKey: callerKey });
  const expectStatus = async (path: string, expected: number, token?: string) => {
    const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
    const res = await fetch(`${base}${path}`, { headers });
    const body = await res.text();
    if (res.status !== expected)
      throw new Error(`${path}: expected ${expected}, got ${res.status}`);
    return body;
  };

  try {
    const { token } = await caller.createToken();
    await expectStatus('/internal/orders', 200, token); // a miss: one call to Clerk
    await expectStatus('/internal/orders', 200, token); // a hit
    await expectStatus('/internal/orders', 401, `mt_${'0'.repeat(32)}`); // unknown to Clerk
    log(`GET /ready -> ${await expectStatus('/ready', 200)}`);

    const scraped = await expectStatus('/metrics', 200);
    for (const line of scraped.split('\n')) {
      if (/^m2m_guard_(cache_lookups|upstream_calls)_total\{/.test(line)) log(`prometheus ${line}`);
    }
    if (!scraped.includes('m2m_guard_cache_lookups_total{result="hit"} 1')) {
      throw new Error('Prometheus did not count the hit');
    }

    await reader.forceFlush();
    const exported = metricExporter.getMetrics().at(-1)?.scopeMetrics ?? [];
    for (const metric of exported.find((s) => s.scope.name === 'm2m-guard')?.metrics ?? []) {
      for (const point of metric.dataPoints) {
        const { value } = point;
        const shown = typeof value === 'number' ? value : `count ${value.count}, sum ${value.sum}`;
        log(`otel ${metric.descriptor.name} ${JSON.stringify(point.attributes)} ${shown}`);
      }
    }
    const spans = spanExporter.getFinishedSpans().filter((s) => s.name === 'm2m_guard.verify');
    log(`otel spans m2m_guard.verify: ${spans.length}`);
    if (spans.length !== 2) throw new Error('expected one span per call to Clerk (2)');
  } finally {
    server.closeAllConnections();
    server.close();
    await Promise.all([caller.close(), verifier.close(), reader.shutdown()]);
    await emulator?.close();
  }
}

main().catch((err: unknown) => {
  console.error('metrics example failed:', err);
  process.exit(1); // a failed example ends, whatever it left running
});
