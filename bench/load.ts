/** The load generator: a thin wrapper over autocannon's programmatic API. */
import autocannon, { type AutocannonClient, type AutocannonRequest } from 'autocannon';
import { ROUTE } from './scenarios.js';

export interface LoadOptions {
  /** `http://127.0.0.1:PORT` of the server under test. */
  origin: string;
  connections: number;
  durationSec: number;
  /** Cycled through the Authorization header, one per request; empty sends none. */
  tokens: readonly string[];
  /**
   * This run is part `part` (from 0) of `parts` runs in parallel that together make one load
   * (one run per server instance): the connections of all parts share one staggering, as if a
   * single run's connections were dealt out to the instances in turn. Default: the whole load.
   */
  split?: { part: number; parts: number };
}

export interface LoadResult {
  /** Seconds the load ran, without {@link LoadResult.setupSec}: the window the rates are over. */
  durationSec: number;
  /**
   * Seconds autocannon spent building its requests (every token's, for every connection)
   * before its first one, its event loop blocked: reported, not counted in the window.
   */
  setupSec: number;
  /** Completed requests, whatever their status. */
  requests: number;
  /** Requests written, including those still in flight when the window closed. */
  sent: number;
  ok2xx: number;
  non2xx: number;
  /** Socket errors and timeouts, as autocannon counts them. */
  errors: number;
  timeouts: number;
  statusCodes: Record<string, number>;
  p50Ms: number;
  p99Ms: number;
  reqPerSec2xx: number;
  reqPerSecTotal: number;
}

function requestsFor(tokens: readonly string[]): AutocannonRequest[] {
  if (tokens.length === 0) return [{ method: 'GET', path: ROUTE }];
  // Prebuilt requests (no setupRequest), so rotating tokens costs the generator nothing extra.
  return tokens.map((token) => ({
    method: 'GET',
    path: ROUTE,
    headers: { authorization: `Bearer ${token}` },
  }));
}

/**
 * Every connection would start the rotation at the first token and move in lockstep, so a slow
 * run would only ever use the first few tokens: start each one at its own offset instead.
 */
function staggered(
  requests: AutocannonRequest[],
  connections: number,
  { part, parts }: { part: number; parts: number },
) {
  if (requests.length < 2) return undefined;
  // Connection n of part p is connection n * parts + p of the whole load.
  const stride = Math.max(1, Math.floor(requests.length / (connections * parts)));
  let created = 0;
  return (client: AutocannonClient) => {
    const offset = ((created++ * parts + part) * stride) % requests.length;
    client.setRequests([...requests.slice(offset), ...requests.slice(0, offset)]);
  };
}

export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const rotation = requestsFor(options.tokens);
  const setupClient = staggered(
    rotation,
    options.connections,
    options.split ?? { part: 0, parts: 1 },
  );
  // autocannon builds every request of every connection synchronously, inside this call and
  // before its duration timer starts, but counts that time in `duration`. With the rotation
  // set by setupClient, the default requests are only its first one (else built twice).
  const started = performance.now();
  const run = autocannon({
    url: options.origin,
    connections: options.connections,
    duration: options.durationSec,
    // Stop within 100 ms of the duration instead of at the next whole second.
    sampleInt: 100,
    timeout: 10,
    requests: setupClient ? rotation.slice(0, 1) : rotation,
    setupClient,
  });
  const setupSec = Math.round(performance.now() - started) / 1000;
  const result = await run;
  const durationSec = Math.max(Math.round((result.duration - setupSec) * 1000) / 1000, 0.001);
  const requests = result.requests.total;
  const statusCodes = Object.fromEntries(
    Object.entries(result.statusCodeStats).map(([code, { count }]) => [code, count]),
  );
  return {
    durationSec,
    setupSec,
    requests,
    sent: result.requests.sent,
    ok2xx: result['2xx'],
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    statusCodes,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    reqPerSec2xx: durationSec > 0 ? result['2xx'] / durationSec : 0,
    reqPerSecTotal: durationSec > 0 ? requests / durationSec : 0,
  };
}

/**
 * Parallel runs (one per instance) as one load: counts and rates add up, the latency
 * percentiles are the worse of the runs' (percentiles of separate runs cannot be merged).
 */
export function combineLoads(parts: readonly LoadResult[]): LoadResult {
  if (parts.length === 1) return parts[0]!;
  const sum = (pick: (r: LoadResult) => number) => parts.reduce((n, r) => n + pick(r), 0);
  const max = (pick: (r: LoadResult) => number) => Math.max(...parts.map(pick));
  const statusCodes: Record<string, number> = {};
  for (const part of parts) {
    for (const [code, count] of Object.entries(part.statusCodes)) {
      statusCodes[code] = (statusCodes[code] ?? 0) + count;
    }
  }
  return {
    durationSec: max((r) => r.durationSec),
    setupSec: max((r) => r.setupSec),
    requests: sum((r) => r.requests),
    sent: sum((r) => r.sent),
    ok2xx: sum((r) => r.ok2xx),
    non2xx: sum((r) => r.non2xx),
    errors: sum((r) => r.errors),
    timeouts: sum((r) => r.timeouts),
    statusCodes,
    p50Ms: max((r) => r.p50Ms),
    p99Ms: max((r) => r.p99Ms),
    reqPerSec2xx: sum((r) => r.reqPerSec2xx),
    reqPerSecTotal: sum((r) => r.reqPerSecTotal),
  };
}
