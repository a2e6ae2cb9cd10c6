/**
 * Prometheus metrics (`m2m-guard/prometheus`) for prom-client, an optional peer dependency
 * loaded only by this entry point.
 */
export { REGISTER_METRICS_KEYS, type RegisterMetricsOptions, registerMetrics } from './register.js';
