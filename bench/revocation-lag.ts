/**
 * Revocation lag across processes: two verifier replicas, each in its own process with its own
 * store connections (the multi-process tests' replica), share one Redis or Redis Cluster. For
 * each of `revocations` tokens, both accept it, then A revokes it through its client while B
 * polls its verifier on every turn of its event loop; the lag is from A's `revokeToken()`
 * resolving to B's first refusal (clocks: `performance.timeOrigin + now()`, comparable between
 * processes on one machine). Loopback; the caller sets the emulator's latency (0 in the run).
 */
import type { Emulator } from '../src/emulator/index.js';
import type { M2MClient } from '../src/index.js';
import { type Child, spawnReplica } from '../test/redis/replica-process.js';

export interface RevocationLag {
  revocations: number;
  p50Ms: number;
  maxMs: number;
}

/** p-th percentile (0–100), nearest rank. */
function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(1, Math.ceil((p / 100) * sorted.length)) - 1]!;
}

export async function measureRevocationLag(options: {
  emulator: Emulator;
  minter: M2MClient;
  /** `{ redisUrl }` or `{ clusterUrls }`. */
  store: { redisUrl: string } | { clusterUrls: string[] };
  keyPrefix: string;
  revocations: number;
}): Promise<RevocationLag> {
  const { emulator, minter, revocations } = options;
  const config = {
    apiUrl: emulator.url,
    secretKey: emulator.instanceSecretKey,
    keyPrefix: options.keyPrefix,
    ...options.store,
  };
  const replicas: Child[] = [];
  try {
    replicas.push(...(await Promise.all([spawnReplica(config), spawnReplica(config)])));
    const [a, b] = replicas as [Child, Child];
    const lags: number[] = [];
    for (let i = 0; i < revocations; i++) {
      const { token, id } = await minter.createToken();
      if ((await a.verdict(token)) !== 'valid' || (await b.verdict(token)) !== 'valid') {
        throw new Error('a fresh token was not accepted by both replicas');
      }
      const refused = b.call<{ at: number; verdict: string }>('waitRefused', {
        token,
        timeoutMs: 3000,
      });
      const { at: revokedAt } = await a.call<{ at: number }>('revoke', { tokenId: id });
      const outcome = await refused;
      if (outcome.verdict !== 'revoked') {
        throw new Error(`replica B still answered ${outcome.verdict} 3 s after the revocation`);
      }
      lags.push(Math.max(0, outcome.at - revokedAt));
    }
    return {
      revocations,
      p50Ms: Math.round(percentile(lags, 50) * 100) / 100,
      maxMs: Math.round(Math.max(...lags) * 100) / 100,
    };
  } finally {
    await Promise.all(replicas.map((replica) => replica.close()));
  }
}
