/**
 * When Clerk cannot answer: every failure is a VerifierUnavailableError with the right reason and
 * is never cached; a wrong key of ours is "misconfigured"; stale-if-error serves a recent good
 * answer within its rules; the circuit breaker fails fast and lets one trial through.
 */
import { describe, expect, it } from 'vitest';
import type { FaultKind } from '../../src/emulator/index.js';
import {
  createTokenVerifier,
  InvalidTokenError,
  VERIFIER_CHANNELS,
  VerifierUnavailableError,
} from '../../src/verifier/index.js';
import {
  captureLogger,
  expectInvalid,
  expectUnavailable,
  recordChannel,
  rejection,
  startHarness,
  UNKNOWN_MACHINE_KEY,
  useHarness,
} from '../helpers/verifier-helpers.js';

const h = useHarness();

describe('unavailable: each failure has its reason and is never cached', () => {
  const cases: Array<{
    fault: number | FaultKind;
    reason: VerifierUnavailableError['reason'];
    options?: Record<string, unknown>;
  }> = [
    { fault: 503, reason: 'upstream_error' },
    { fault: 500, reason: 'upstream_error' },
    { fault: 502, reason: 'upstream_error' },
    { fault: 429, reason: 'rate_limited' },
    { fault: 403, reason: 'misconfigured' },
    { fault: 'hang', reason: 'timeout', options: { timeoutMs: 200 } },
    { fault: 'not-json', reason: 'invalid_response' },
    { fault: 'wrong-shape', reason: 'invalid_response' },
    { fault: 'reset', reason: 'network' },
    { fault: 'reset-mid-body', reason: 'network' },
  ];

  for (const { fault, reason, options } of cases) {
    it(`${fault} -> ${reason}; the next call goes upstream again and succeeds`, async () => {
      const minted = await h.mint();
      const verifier = h.verifier({ ...options });
      h.emulator.failNext(1, fault, { operation: 'verify' });

      const err = await expectUnavailable(verifier.verify(minted.token), reason);
      expect(err.message).not.toContain(minted.token);
      expect(h.emulator.calls.verify).toBe(1);
      expect(verifier.stats()).toMatchObject({ upstreamCalls: 1, upstreamErrors: 1, size: 0 });

      // A 429 pauses upstream calls for its Retry-After (1 s when absent).
      if (fault === 429) h.clock.advance(1_000);
      await expect(verifier.verify(minted.token)).resolves.toMatchObject({ id: minted.id });
      expect(h.emulator.calls.verify).toBe(2);
    });
  }

  it('a 429 with Retry-After: 7 carries retryAfter 7 (retry off)', async () => {
    const minted = await h.mint();
    const verifier = h.verifier({ retry: false });
    h.emulator.failNext(1, 429, { retryAfter: 7, operation: 'verify' });
    const err = await expectUnavailable(verifier.verify(minted.token), 'rate_limited');
    expect(err.retryAfter).toBe(7);
    expect(h.emulator.calls.verify).toBe(1);
  });

  it('a 429 with Retry-After: 7 is not retried when maxDelayMs < 7 000, and carries retryAfter 7', async () => {
    const minted = await h.mint();
    const verifier = h.verifier({ retry: { retries: 2, minDelayMs: 1, maxDelayMs: 2_000 } });
    h.emulator.failNext(1, 429, { retryAfter: 7, operation: 'verify' });
    const started = performance.now();
    const err = await expectUnavailable(verifier.verify(minted.token), 'rate_limited');
    expect(err.retryAfter).toBe(7);
    expect(h.emulator.calls.verify).toBe(1);
    // It did not wait the 7 s out (a generous bound).
    expect(performance.now() - started).toBeLessThan(3_000);
  });

  it('a 503 without Retry-After has retryAfter undefined', async () => {
    const minted = await h.mint();
    const verifier = h.verifier();
    h.emulator.failNext(1, 503, { operation: 'verify' });
    const err = await expectUnavailable(verifier.verify(minted.token), 'upstream_error');
    expect(err.retryAfter).toBeUndefined();
  });

  it('the client retry, when on, hides one 503: one verify, two requests, no error', async () => {
    const minted = await h.mint();
    const verifier = h.verifier({ retry: { retries: 1, minDelayMs: 1, maxDelayMs: 10 } });
    h.emulator.failNext(1, 503, { operation: 'verify' });
    await expect(verifier.verify(minted.token)).resolves.toMatchObject({ id: minted.id });
    expect(h.emulator.calls.verify).toBe(2);
    expect(verifier.stats()).toMatchObject({ upstreamCalls: 1, upstreamErrors: 0 });
  });

  it('a 400 from Clerk is read as a malformed token and not cached', async () => {
    const minted = await h.mint();
    const verifier = h.verifier();
    h.emulator.failNext(1, 400, { operation: 'verify' });
    await expectInvalid(verifier.verify(minted.token), 'malformed');
    await expect(verifier.verify(minted.token)).resolves.toMatchObject({ id: minted.id });
    expect(h.emulator.calls.verify).toBe(2);
  });

  it('a closed emulator (connection refused) -> network; once it listens again, success', async () => {
    const other = await startHarness();
    let restarted: Awaited<ReturnType<typeof startHarness>> | undefined;
    try {
      const url = other.emulator.url;
      const port = Number(new URL(url).port);
      const verifier = h.track(
        createTokenVerifier({
          apiUrl: url,
          secretKey: other.emulator.instanceSecretKey,
          anyMachine: true,
          retry: false,
          now: h.clock,
        }),
      );
      await other.close();

      await expectUnavailable(verifier.verify(`mt_${'r'.repeat(40)}`), 'network');
      await expectUnavailable(verifier.verify(`mt_${'r'.repeat(40)}`), 'network');
      expect(verifier.stats()).toMatchObject({ upstreamErrors: 2, size: 0 });

      restarted = await startHarness({
        port,
        instanceSecretKey: other.emulator.instanceSecretKey,
      });
      const minted = await restarted.mint();
      await expect(verifier.verify(minted.token)).resolves.toMatchObject({ id: minted.id });
      expect(restarted.emulator.calls.verify).toBe(1);
    } finally {
      await restarted?.close();
      await other.close();
    }
  });
});

describe('misconfigured: Clerk rejects our own key', () => {
  it('a 401 (unknown ak_ key) is misconfigured, logged at error level, never cached', async () => {
    const minted = await h.mint();
    const log = captureLogger();
    const verifier = h.verifier({
      secretKey: undefined,
      machineSecretKey: UNKNOWN_MACHINE_KEY,
      logger: log.logger,
    });

    await expectUnavailable(verifier.verify(minted.token), 'misconfigured');
    const errors = log.records().filter((r) => r.level === 50);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ reason: 'misconfigured', status: 401 });

    await expectUnavailable(verifier.verify(minted.token), 'misconfigured');
    expect(h.emulator.calls.verify).toBe(2); // never cached: asked again
    // Said once: the same rejection again is not a second error line.
    expect(log.records().filter((r) => r.level === 50)).toHaveLength(1);
    expect(verifier.stats().size).toBe(0);
    expect(log.lines.join('\n')).not.toContain(UNKNOWN_MACHINE_KEY);
  });

  it('a 401 with an unknown sk_ instance key is misconfigured too', async () => {
    const minted = await h.mint();
    const verifier = h.verifier({ secretKey: 'sk_test_notTheInstanceKey0123456789' });
    await expectUnavailable(verifier.verify(minted.token), 'misconfigured');
  });

  it('a verifier holding only a JWT key refuses opaque tokens as invalid, without asking Clerk', async () => {
    const verifier = h.track(
      createTokenVerifier({
        apiUrl: h.emulator.url,
        jwtKey: h.emulator.jwtKey,
        anyMachine: true,
        now: h.clock,
      }),
    );
    const minted = await h.mint();
    await expect(verifier.verify(minted.token)).rejects.toMatchObject({
      name: 'InvalidTokenError',
      reason: 'unknown',
    });
    expect(h.emulator.calls.verify).toBe(0);
    expect(verifier.stats().upstreamCalls).toBe(0);
  });
});

describe('stale-if-error', () => {
  const stale = { cache: { ttlMs: 1_000, staleIfErrorMs: 5_000 }, breaker: false } as const;

  it('serves the old answer within the stale window when Clerk fails; not after it', async () => {
    const minted = await h.mint();
    const verifier = h.verifier(stale);
    await verifier.verify(minted.token);

    h.clock.at(1_000);
    h.emulator.failNext(1, 503, { operation: 'verify' });
    await expect(verifier.verify(minted.token)).resolves.toMatchObject({ id: minted.id });
    expect(verifier.stats().staleServed).toBe(1);
    expect(h.emulator.calls.verify).toBe(2);

    h.clock.at(5_999);
    h.emulator.failNext(1, 'reset', { operation: 'verify' });
    await expect(verifier.verify(minted.token)).resolves.toMatchObject({ id: minted.id });
    expect(verifier.stats().staleServed).toBe(2);
    expect(h.emulator.calls.verify).toBe(3);

    h.clock.at(6_000);
    h.emulator.failNext(1, 503, { operation: 'verify' });
    await expectUnavailable(verifier.verify(minted.token), 'upstream_error');
    expect(verifier.stats().staleServed).toBe(2);
  });

  it('a healthy Clerk in the stale window refreshes the answer (no stale served)', async () => {
    const minted = await h.mint();
    const verifier = h.verifier(stale);
    await verifier.verify(minted.token);
    h.clock.at(3_000);
    await verifier.verify(minted.token);
    expect(h.emulator.calls.verify).toBe(2);
    expect(verifier.stats().staleServed).toBe(0);
    // Fresh again for ttlMs from the refresh.
    h.clock.at(3_999);
    await verifier.verify(minted.token);
    expect(h.emulator.calls.verify).toBe(2);
  });

  it('a definite 404 in the stale window is not papered over', async () => {
    const minted = await h.mint();
    const verifier = h.verifier(stale);
    await verifier.verify(minted.token);
    await h.admin.revokeToken({ m2mTokenId: minted.id });
    h.clock.at(2_000);
    await expectInvalid(verifier.verify(minted.token), 'revoked');
    expect(verifier.stats().staleServed).toBe(0);
  });

  it('never serves past the token expiration', async () => {
    const minted = await h.mint({ secondsUntilExpiration: 3 });
    const verifier = h.verifier({ ...stale, clockSkewMs: 1_000 });
    await verifier.verify(minted.token);

    h.clock.at(2_999);
    h.emulator.failNext(1, 503, { operation: 'verify' });
    await expect(verifier.verify(minted.token)).resolves.toMatchObject({ id: minted.id });
    expect(verifier.stats().staleServed).toBe(1);

    // At expiration the stale answer is over, although the stale window (to 6 000) is not.
    h.clock.at(3_000);
    h.emulator.failNext(1, 503, { operation: 'verify' });
    await expectUnavailable(verifier.verify(minted.token), 'upstream_error');
    expect(verifier.stats().staleServed).toBe(1);
  });

  it('never serves after a revocation seen through the same client', async () => {
    const minted = await h.mint();
    const client = h.client();
    const verifier = h.verifier({ client, ...stale });
    await verifier.verify(minted.token);
    await client.revokeToken({ m2mTokenId: minted.id });

    h.clock.at(1_500);
    h.emulator.failNext(5, 503, { operation: 'verify' });
    await expectInvalid(verifier.verify(minted.token), 'revoked');
    expect(verifier.stats().staleServed).toBe(0);

    // Still never served once the remembered "revoked" answer has gone.
    h.clock.at(5_500);
    await expectUnavailable(verifier.verify(minted.token), 'upstream_error');
    expect(verifier.stats().staleServed).toBe(0);
  });

  it('is off by default: after the fresh window a failure is unavailable', async () => {
    const minted = await h.mint();
    const verifier = h.verifier({ cache: { ttlMs: 1_000 } });
    await verifier.verify(minted.token);
    h.clock.at(1_000);
    h.emulator.failNext(1, 503, { operation: 'verify' });
    await expectUnavailable(verifier.verify(minted.token), 'upstream_error');
    expect(verifier.stats().staleServed).toBe(0);
  });
});

describe('circuit breaker', () => {
  const breaker = { failures: 3, cooldownMs: 1_000 };

  async function openBreaker(verifier: ReturnType<typeof h.verifier>, token: string) {
    h.emulator.failNext(3, 503, { operation: 'verify' });
    for (let i = 0; i < 3; i++) await expectUnavailable(verifier.verify(token), 'upstream_error');
    expect(h.emulator.calls.verify).toBe(3);
  }

  it('opens after 3 consecutive failures: the 4th call is circuit_open with no upstream call', async () => {
    const states = recordChannel<{ state: string }>(VERIFIER_CHANNELS.breaker);
    try {
      const minted = await h.mint();
      const verifier = h.verifier({ breaker, cache: false });
      await openBreaker(verifier, minted.token);
      expect(states.messages).toEqual([{ state: 'open' }]);

      await expectUnavailable(verifier.verify(minted.token), 'circuit_open');
      h.clock.at(999);
      await expectUnavailable(verifier.verify(`mt_${'o'.repeat(40)}`), 'circuit_open');
      expect(h.emulator.calls.verify).toBe(3);
      expect(verifier.stats().upstreamCalls).toBe(3);
    } finally {
      states.stop();
    }
  });

  it('after the cooldown one trial goes upstream; its success closes the breaker', async () => {
    const states = recordChannel<{ state: string }>(VERIFIER_CHANNELS.breaker);
    try {
      const minted = await h.mint();
      const verifier = h.verifier({ breaker, cache: false });
      await openBreaker(verifier, minted.token);

      h.clock.at(1_000);
      await expect(verifier.verify(minted.token)).resolves.toMatchObject({ id: minted.id });
      expect(h.emulator.calls.verify).toBe(4);
      expect(states.messages).toEqual([
        { state: 'open' },
        { state: 'half-open' },
        { state: 'closed' },
      ]);

      // Closed: calls go upstream normally again.
      await verifier.verify(minted.token);
      await verifier.verify(minted.token);
      expect(h.emulator.calls.verify).toBe(6);
    } finally {
      states.stop();
    }
  });

  it('a failed trial opens it again for another cooldown', async () => {
    const states = recordChannel<{ state: string }>(VERIFIER_CHANNELS.breaker);
    try {
      const minted = await h.mint();
      const verifier = h.verifier({ breaker, cache: false });
      await openBreaker(verifier, minted.token);

      h.clock.at(1_000);
      h.emulator.failNext(1, 503, { operation: 'verify' });
      await expectUnavailable(verifier.verify(minted.token), 'upstream_error');
      expect(h.emulator.calls.verify).toBe(4);
      expect(states.messages).toEqual([
        { state: 'open' },
        { state: 'half-open' },
        { state: 'open' },
      ]);

      h.clock.at(1_999);
      await expectUnavailable(verifier.verify(minted.token), 'circuit_open');
      expect(h.emulator.calls.verify).toBe(4);

      h.clock.at(2_000);
      await expect(verifier.verify(minted.token)).resolves.toMatchObject({ id: minted.id });
      expect(h.emulator.calls.verify).toBe(5);
      expect(states.messages.at(-1)).toEqual({ state: 'closed' });
    } finally {
      states.stop();
    }
  });

  it('half-open lets exactly one trial through; concurrent calls for other tokens fail fast', async () => {
    const a = await h.mint();
    const b = await h.mint();
    const c = await h.mint();
    const verifier = h.verifier({ breaker, cache: false });
    await openBreaker(verifier, a.token);

    h.clock.at(1_000);
    h.emulator.setLatency(100);
    const trial = verifier.verify(a.token);
    const others = await Promise.all([
      rejection(verifier.verify(b.token)),
      rejection(verifier.verify(c.token)),
    ]);
    for (const err of others) {
      expect(err).toBeInstanceOf(VerifierUnavailableError);
      expect((err as VerifierUnavailableError).reason).toBe('circuit_open');
    }
    await expect(trial).resolves.toMatchObject({ id: a.id });
    expect(h.emulator.calls.verify).toBe(4);
  });

  it('404s are answers, not failures: unknown tokens never open it', async () => {
    const verifier = h.verifier({ breaker, cache: false });
    for (let i = 0; i < 6; i++) {
      await expectInvalid(verifier.verify(`mt_${'n'.repeat(40)}`), 'unknown');
    }
    expect(h.emulator.calls.verify).toBe(6);
  });

  it('a success in between resets the count of consecutive failures', async () => {
    const minted = await h.mint();
    const verifier = h.verifier({ breaker, cache: false });
    h.emulator.failNext(2, 503, { operation: 'verify' });
    await expectUnavailable(verifier.verify(minted.token), 'upstream_error');
    await expectUnavailable(verifier.verify(minted.token), 'upstream_error');
    await verifier.verify(minted.token);
    h.emulator.failNext(2, 503, { operation: 'verify' });
    await expectUnavailable(verifier.verify(minted.token), 'upstream_error');
    await expectUnavailable(verifier.verify(minted.token), 'upstream_error');
    await verifier.verify(minted.token);
    expect(h.emulator.calls.verify).toBe(6);
  });

  it('an open breaker still serves a stale answer within stale-if-error', async () => {
    const minted = await h.mint();
    const verifier = h.verifier({
      breaker: { failures: 1, cooldownMs: 10_000 },
      cache: { ttlMs: 1_000, staleIfErrorMs: 5_000 },
    });
    await verifier.verify(minted.token);
    h.clock.at(1_500);
    h.emulator.failNext(1, 503, { operation: 'verify' });
    await verifier.verify(minted.token);
    h.clock.at(2_000);
    await expect(verifier.verify(minted.token)).resolves.toMatchObject({ id: minted.id });
    expect(h.emulator.calls.verify).toBe(2);
    expect(verifier.stats().staleServed).toBe(2);
    // A token with nothing stale to serve fails fast.
    await expectUnavailable(verifier.verify(`mt_${'s'.repeat(40)}`), 'circuit_open');
    expect(h.emulator.calls.verify).toBe(2);
  });

  it('breaker: false never opens', async () => {
    const minted = await h.mint();
    const verifier = h.verifier({ breaker: false, cache: false });
    h.emulator.failNext(8, 503, { operation: 'verify' });
    for (let i = 0; i < 8; i++) {
      const err = await rejection(verifier.verify(minted.token));
      expect((err as VerifierUnavailableError).reason).toBe('upstream_error');
    }
    expect(h.emulator.calls.verify).toBe(8);
    await verifier.verify(minted.token);
  });
});

describe('no confusion between the families', () => {
  it('InvalidTokenError and VerifierUnavailableError are distinct classes', () => {
    const invalid = new InvalidTokenError('unknown');
    const unavailable = new VerifierUnavailableError('timeout', { retryAfter: 3 });
    expect(invalid).not.toBeInstanceOf(VerifierUnavailableError);
    expect(unavailable).not.toBeInstanceOf(InvalidTokenError);
    expect(unavailable.retryAfter).toBe(3);
    expect(invalid.tokenId).toBeUndefined();
  });
});
