/**
 * A real OpenTelemetry SDK for the telemetry tests (`@opentelemetry/sdk-metrics` and
 * `sdk-trace-base` 2.x): a MeterProvider with a reader the test collects from, a
 * TracerProvider with an in-memory span exporter, and an AsyncLocalStorage context manager (the
 * one an application gets from `@opentelemetry/context-async-hooks`), registered globally.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import {
  type Context,
  type ContextManager,
  context,
  metrics,
  ROOT_CONTEXT,
  trace,
} from '@opentelemetry/api';
import {
  type DataPoint,
  MeterProvider,
  type MetricData,
  MetricReader,
} from '@opentelemetry/sdk-metrics';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';

class TestReader extends MetricReader {
  protected override async onShutdown() {}
  protected override async onForceFlush() {}
}

/** Context propagation through async calls, as `@opentelemetry/context-async-hooks` does it. */
class AsyncLocalContextManager implements ContextManager {
  private readonly storage = new AsyncLocalStorage<Context>();
  active(): Context {
    return this.storage.getStore() ?? ROOT_CONTEXT;
  }
  with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(
    ctx: Context,
    fn: F,
    thisArg?: ThisParameterType<F>,
    ...args: A
  ): ReturnType<F> {
    return this.storage.run(ctx, () => fn.call(thisArg, ...args));
  }
  bind<T>(_ctx: Context, target: T): T {
    return target;
  }
  enable(): this {
    return this;
  }
  disable(): this {
    this.storage.disable();
    return this;
  }
}

export interface OtelSdk {
  readonly spans: InMemorySpanExporter;
  /** Collects every metric of the `m2m-guard` meter now. */
  collect(): Promise<MetricData[]>;
  shutdown(): Promise<void>;
}

/** Registers a fresh SDK globally (replacing any earlier one). */
export function registerSdk(): OtelSdk {
  metrics.disable();
  trace.disable();
  context.disable();
  const reader = new TestReader();
  const meterProvider = new MeterProvider({ readers: [reader] });
  const spans = new InMemorySpanExporter();
  const tracerProvider = new BasicTracerProvider({
    spanProcessors: [new SimpleSpanProcessor(spans)],
  });
  context.setGlobalContextManager(new AsyncLocalContextManager());
  metrics.setGlobalMeterProvider(meterProvider);
  trace.setGlobalTracerProvider(tracerProvider);
  return {
    spans,
    async collect() {
      const { resourceMetrics } = await reader.collect();
      return resourceMetrics.scopeMetrics
        .filter((s) => s.scope.name === 'm2m-guard')
        .flatMap((s) => s.metrics);
    },
    async shutdown() {
      metrics.disable();
      trace.disable();
      context.disable();
      await Promise.all([meterProvider.shutdown(), tracerProvider.shutdown()]);
    },
  };
}

/** The value of a counter or gauge point with these attributes (0 when absent). */
export function pointValue(
  data: MetricData[],
  name: string,
  attributes: Record<string, string> = {},
): number {
  const metric = data.find((m) => m.descriptor.name === name);
  const point = (metric?.dataPoints as DataPoint<number>[] | undefined)?.find((p) =>
    Object.entries(attributes).every(([k, v]) => p.attributes[k] === v),
  );
  return point?.value ?? 0;
}

/** Every exported metric point and span of the run, as one JSON text (for the leak scan). */
export function everythingExported(data: MetricData[], spans: readonly ReadableSpan[]): string {
  return JSON.stringify({
    metrics: data,
    spans: spans.map((s) => ({
      name: s.name,
      attributes: s.attributes,
      events: s.events,
      status: s.status,
      links: s.links,
    })),
  });
}
