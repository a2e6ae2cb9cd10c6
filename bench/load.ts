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
}

export interface LoadResult {
  durationSec: number;
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
function staggered(requests: AutocannonRequest[], connections: number) {
  if (requests.length < 2) return undefined;
  const stride = Math.max(1, Math.floor(requests.length / connections));
  let created = 0;
  return (client: AutocannonClient) => {
    const offset = (created++ * stride) % requests.length;
    client.setRequests([...requests.slice(offset), ...requests.slice(0, offset)]);
  };
}

export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const rotation = requestsFor(options.tokens);
  const result = await autocannon({
    url: options.origin,
    connections: options.connections,
    duration: options.durationSec,
    // Stop within 100 ms of the duration instead of at the next whole second.
    sampleInt: 100,
    timeout: 10,
    requests: rotation,
    setupClient: staggered(rotation, options.connections),
  });
  const durationSec = result.duration;
  const requests = result.requests.total;
  const statusCodes = Object.fromEntries(
    Object.entries(result.statusCodeStats).map(([code, { count }]) => [code, count]),
  );
  return {
    durationSec,
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
