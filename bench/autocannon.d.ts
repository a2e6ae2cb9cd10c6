/** The part of autocannon 9's programmatic API the benchmark uses (the package ships no types). */
declare module 'autocannon' {
  interface AutocannonRequest {
    method?: string;
    path?: string;
    headers?: Record<string, string>;
    body?: string;
  }

  /** One connection of the run. */
  interface AutocannonClient {
    setRequests(requests: AutocannonRequest[]): void;
  }

  interface AutocannonOptions {
    url: string;
    connections?: number;
    /** Seconds; the run ends at the first sample tick after it. */
    duration?: number;
    /** Sample interval in ms (default 1000); also how late a run may stop. */
    sampleInt?: number;
    /** Per-request timeout in seconds. */
    timeout?: number;
    method?: string;
    headers?: Record<string, string>;
    /** Each connection cycles through these in order, from the first. */
    requests?: AutocannonRequest[];
    /** Called once per connection as it is created, before its first request. */
    setupClient?: (client: AutocannonClient) => void;
  }

  interface Histogram {
    average: number;
    mean: number;
    stddev: number;
    min: number;
    max: number;
    total: number;
    p50: number;
    p90: number;
    p99: number;
  }

  interface AutocannonResult {
    /** Seconds, measured. */
    duration: number;
    errors: number;
    timeouts: number;
    non2xx: number;
    resets: number;
    '1xx': number;
    '2xx': number;
    '3xx': number;
    '4xx': number;
    '5xx': number;
    statusCodeStats: Record<string, { count: number }>;
    /** Milliseconds. */
    latency: Histogram;
    /** Per sample; `total` is every completed request. */
    requests: Histogram & { sent: number };
  }

  function autocannon(options: AutocannonOptions): Promise<AutocannonResult>;
  export default autocannon;
  export type { AutocannonClient, AutocannonOptions, AutocannonRequest, AutocannonResult };
}
