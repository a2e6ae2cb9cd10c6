/**
 * No raw token and no secret key in any log line: a pino logger at `trace` captures everything
 * the verifier and its client write over good, bad, unavailable and misconfigured scenarios.
 */
import { describe, expect, it } from 'vitest';
import { createM2MClient } from '../../src/client/index.js';
import { createTokenVerifier } from '../../src/verifier/index.js';
import {
  captureLogger,
  expectInvalid,
  expectUnavailable,
  rejection,
  UNKNOWN_MACHINE_KEY,
  useHarness,
} from '../helpers/verifier-helpers.js';

const h = useHarness();

describe('logs', () => {
  it('never contain a token string or a secret key, whatever happens', async () => {
    const log = captureLogger();
    const { logger } = log;
    const tokens: string[] = [];
    const mint = async (params: Parameters<typeof h.mint>[0] = {}) => {
      const minted = await h.mint(params);
      tokens.push(minted.token);
      return minted;
    };
    const base = {
      apiUrl: h.emulator.url,
      secretKey: h.emulator.instanceSecretKey,
      anyMachine: true,
      now: h.clock,
      logger,
    };

    // Good answers, hits, misses, a revocation through the verifier's own client.
    const client = h.track(
      createM2MClient({
        apiUrl: h.emulator.url,
        secretKey: h.emulator.instanceSecretKey,
        retry: false,
        logger,
      }),
    );
    const verifier = h.track(
      createTokenVerifier({
        client,
        anyMachine: true,
        now: h.clock,
        logger,
        cache: { ttlMs: 1_000, staleIfErrorMs: 5_000 },
        breaker: { failures: 3, cooldownMs: 1_000 },
      }),
    );
    const good = await mint({ claims: { note: 'hello' } });
    await verifier.verify(good.token);
    await verifier.verify(good.token);
    const revoked = await mint();
    await verifier.verify(revoked.token);
    await client.revokeToken({ m2mTokenId: revoked.id });
    await expectInvalid(verifier.verify(revoked.token), 'revoked');

    // Unknown, malformed (with secret-looking content) and out of scope.
    const unknown = `mt_${'Secr3tUnknownToken'.repeat(2)}`;
    tokens.push(unknown);
    await expectInvalid(verifier.verify(unknown), 'unknown');
    await expectInvalid(verifier.verify(unknown), 'unknown');
    const malformed = `mt_${'Secr3tMalformed'.repeat(2)}!`;
    tokens.push(malformed);
    await expectInvalid(verifier.verify(malformed), 'malformed');
    const scoped = h.track(
      createTokenVerifier({ ...base, retry: false, machineId: h.machine('caller').id }),
    );
    await expectInvalid(scoped.verify(good.token), 'out_of_scope');

    // Stale served, every kind of unavailability, then the breaker.
    h.clock.at(1_500);
    h.emulator.failNext(1, 503, { operation: 'verify' });
    await verifier.verify(good.token);
    const flaky = h.track(
      createTokenVerifier({ ...base, retry: false, timeoutMs: 200, breaker: false }),
    );
    const victim = await mint();
    for (const fault of [
      500,
      'not-json',
      'wrong-shape',
      'reset',
      'reset-mid-body',
      'hang',
    ] as const) {
      h.emulator.failNext(1, fault, { operation: 'verify' });
      await rejection(flaky.verify(victim.token));
    }
    h.emulator.failNext(1, 429, { operation: 'verify', retryAfter: 7 });
    await expectUnavailable(flaky.verify(victim.token), 'rate_limited');
    const retrying = h.track(
      createTokenVerifier({ ...base, retry: { retries: 2, minDelayMs: 1, maxDelayMs: 5 } }),
    );
    h.emulator.failNext(2, 503, { operation: 'verify' });
    await retrying.verify(victim.token);
    const fresh = await mint();
    h.emulator.failNext(3, 503, { operation: 'verify' });
    for (let i = 0; i < 3; i++) await rejection(verifier.verify(fresh.token));
    await expectUnavailable(verifier.verify(fresh.token), 'circuit_open');

    // Our own key refused (logged at error level), and no key for opaque tokens.
    const wrongKey = h.track(
      createTokenVerifier({
        apiUrl: h.emulator.url,
        machineSecretKey: UNKNOWN_MACHINE_KEY,
        now: h.clock,
        logger,
      }),
    );
    await expectUnavailable(wrongKey.verify(victim.token), 'misconfigured');
    const jwtOnly = h.track(
      createTokenVerifier({
        apiUrl: h.emulator.url,
        jwtKey: h.emulator.jwtKey,
        anyMachine: true,
        now: h.clock,
        logger,
      }),
    );
    await expect(jwtOnly.verify(victim.token)).rejects.toMatchObject({ reason: 'unknown' });

    // A caller that gives up.
    h.emulator.setLatency(200);
    const controller = new AbortController();
    const pending = flaky.verify(fresh.token, { signal: controller.signal });
    controller.abort();
    await rejection(pending);
    h.emulator.setLatency(0);

    // The scenarios did log, at every level that matters...
    const records = log.records();
    expect(records.length).toBeGreaterThan(20);
    expect(records.some((r) => r.level === 50 && r.status === 401)).toBe(true);
    expect(records.some((r) => r.level === 40 && r.msg === 'served a stale answer')).toBe(true);
    expect(records.some((r) => r.level === 40 && r.state === 'open')).toBe(true);
    expect(records.some((r) => r.level === 40 && r.reason === 'timeout')).toBe(true);
    expect(records.some((r) => r.level <= 20)).toBe(true);

    // ...and no line holds a token or a secret, whole or in part.
    const secrets = [
      ...tokens,
      h.emulator.instanceSecretKey,
      UNKNOWN_MACHINE_KEY,
      ...Object.values(h.emulator.machines).map((m) => m.secretKey),
    ];
    const text = log.lines.join('');
    for (const secret of secrets) {
      expect(text).not.toContain(secret);
      // The random part alone (without a well-known prefix) must not appear either.
      expect(text).not.toContain(secret.replace(/^(mt|ak|sk_test|sk)_/, '').slice(0, 16));
    }
  });
});
