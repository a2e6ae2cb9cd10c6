/**
 * Core behaviour of createTokenVerifier against the emulator over loopback: the verified value,
 * the two error families, singleflight, per-caller abort, scope checks, revocation and close().
 */
import { describe, expect, it, vi } from 'vitest';
import { createM2MClient } from '../../src/client/index.js';
import {
  createTokenVerifier,
  InvalidTokenError,
  VerifierUnavailableError,
} from '../../src/verifier/index.js';
import { startScriptedServer } from '../helpers/scripted-server.js';
import {
  expectInvalid,
  expectUnavailable,
  rejection,
  startHarness,
  useHarness,
} from '../helpers/verifier-helpers.js';

const h = useHarness();

const machine = (name: string) => h.machine(name);

describe('verify(): a good token', () => {
  it('returns exactly id, subject, scopes, claims, expiration and createdAt, without the token', async () => {
    const claims = { role: 'reporter', nested: { tiers: ['a', 'b'], deep: { n: 1 } } };
    const minted = await h.mint({ claims, secondsUntilExpiration: 600 });
    const verifier = h.verifier();

    const verified = await verifier.verify(minted.token);

    expect(Object.keys(verified).sort()).toEqual(
      ['claims', 'createdAt', 'expiration', 'id', 'scopes', 'subject'].sort(),
    );
    expect(verified).toEqual({
      id: minted.id,
      subject: machine('caller').id,
      scopes: [machine('api').id],
      claims,
      expiration: minted.expiration,
      createdAt: minted.createdAt,
    });
    expect(verified.expiration).toBe(h.clock() + 600_000);
    expect(JSON.stringify(verified)).not.toContain(minted.token);
    expect('token' in verified).toBe(false);
  });

  it('deeply freezes the answer, its scopes and its claims', async () => {
    const minted = await h.mint({ claims: { nested: { list: [{ x: 1 }] } } });
    const verified = await h.verifier().verify(minted.token);
    const claims = verified.claims as { nested: { list: Array<{ x: number }> } };

    expect(Object.isFrozen(verified)).toBe(true);
    expect(Object.isFrozen(verified.scopes)).toBe(true);
    expect(Object.isFrozen(claims)).toBe(true);
    expect(Object.isFrozen(claims.nested)).toBe(true);
    expect(Object.isFrozen(claims.nested.list)).toBe(true);
    expect(Object.isFrozen(claims.nested.list[0])).toBe(true);
    expect(() => {
      (claims.nested.list[0] as { x: number }).x = 2;
    }).toThrow(TypeError);
    expect(() => {
      (verified.scopes as string[]).push('mch_x');
    }).toThrow(TypeError);
  });

  it('returns claims null for a token created without claims, and expiration null for one that never expires', async () => {
    const h2 = await startHarness({
      machines: [
        { name: 'caller', scopedMachines: ['api'], defaultTokenTtlSeconds: null },
        { name: 'api' },
      ],
    });
    try {
      const minted = await h2.mint();
      const verified = await h2.verifier().verify(minted.token);
      expect(verified.claims).toBeNull();
      expect(verified.expiration).toBeNull();
    } finally {
      await h2.close();
    }
  });

  it('a cached answer is served with the same content and no upstream call', async () => {
    const minted = await h.mint({ claims: { a: 1 } });
    const verifier = h.verifier();
    const first = await verifier.verify(minted.token);
    const second = await verifier.verify(minted.token);
    expect(second).toEqual(first);
    expect(h.emulator.calls.verify).toBe(1);
  });
});

describe('verify(): the two error families', () => {
  it('an unknown token is InvalidTokenError("unknown"), never unavailable', async () => {
    const verifier = h.verifier();
    const token = `mt_${'Q'.repeat(40)}`;
    const err = await expectInvalid(verifier.verify(token), 'unknown');
    expect(err.message).not.toContain(token);
    expect(err.name).toBe('InvalidTokenError');
    expect(h.emulator.calls.verify).toBe(1);
  });

  it('a token id presented as a token is unknown (Clerk answers 404)', async () => {
    const minted = await h.mint();
    await expectInvalid(h.verifier().verify(minted.id), 'unknown');
    expect(h.emulator.calls.verify).toBe(1);
  });

  it('a timeout is VerifierUnavailableError("timeout"), never an invalid token', async () => {
    const minted = await h.mint();
    h.emulator.failNext(1, 'hang', { operation: 'verify' });
    const verifier = h.verifier({ timeoutMs: 200 });
    const err = await expectUnavailable(verifier.verify(minted.token), 'timeout');
    expect(err.name).toBe('VerifierUnavailableError');
    expect(err.message).not.toContain(minted.token);
  });
});

describe('verify(): singleflight', () => {
  it('200 concurrent calls with one cold token make exactly 1 upstream call and all succeed', async () => {
    const minted = await h.mint();
    const verifier = h.verifier();

    const results = await Promise.all(
      Array.from({ length: 200 }, () => verifier.verify(minted.token)),
    );

    expect(results).toHaveLength(200);
    for (const result of results) expect(result.id).toBe(minted.id);
    expect(h.emulator.calls.verify).toBe(1);
    const stats = verifier.stats();
    expect(stats.coalesced).toBe(199);
    expect(stats.misses).toBe(200);
    expect(stats.upstreamCalls).toBe(1);
    expect(stats.hits).toBe(0);
  });

  it('concurrent calls with one unknown token share one 404', async () => {
    const verifier = h.verifier();
    const token = `mt_${'u'.repeat(30)}`;
    const errors = await Promise.all(
      Array.from({ length: 50 }, () => rejection(verifier.verify(token))),
    );
    for (const err of errors) {
      expect(err).toBeInstanceOf(InvalidTokenError);
      expect((err as InvalidTokenError).reason).toBe('unknown');
    }
    expect(h.emulator.calls.verify).toBe(1);
  });

  it('concurrent calls with one token share one failure, which is not cached', async () => {
    const minted = await h.mint();
    const verifier = h.verifier();
    h.emulator.failNext(1, 503, { operation: 'verify' });
    const errors = await Promise.all(
      Array.from({ length: 20 }, () => rejection(verifier.verify(minted.token))),
    );
    for (const err of errors) {
      expect(err).toBeInstanceOf(VerifierUnavailableError);
    }
    expect(h.emulator.calls.verify).toBe(1);
    await expect(verifier.verify(minted.token)).resolves.toMatchObject({ id: minted.id });
    expect(h.emulator.calls.verify).toBe(2);
  });
});

describe('verify(): per-caller abort', () => {
  it('one aborted caller is rejected promptly with the reason; the others get the answer from 1 call', async () => {
    const minted = await h.mint();
    const verifier = h.verifier();
    // Clerk's answer is delayed; the abort comes once the request has reached it.
    h.emulator.setLatency(600);

    const controller = new AbortController();
    const reason = new Error('caller went away');
    let othersSettled = false;
    const others = Promise.all([
      verifier.verify(minted.token),
      verifier.verify(minted.token),
      verifier.verify(minted.token),
    ]).finally(() => {
      othersSettled = true;
    });
    const aborted = rejection(verifier.verify(minted.token, { signal: controller.signal }));
    await vi.waitFor(() => expect(h.emulator.calls.verify).toBe(1), { interval: 5 });

    const abortedAt = performance.now();
    controller.abort(reason);
    const err = await aborted;
    const waited = performance.now() - abortedAt;

    expect(err).toBe(reason);
    expect(othersSettled).toBe(false);
    // Promptly: the abort does not wait for the answer (a generous bound for a loaded machine).
    expect(waited).toBeLessThan(250);
    const results = await others;
    for (const result of results) expect(result.id).toBe(minted.id);
    expect(h.emulator.calls.verify).toBe(1);
    expect(verifier.stats().coalesced).toBe(3);
  });

  it('the shared call goes on when every caller aborts, and its answer is cached', async () => {
    const minted = await h.mint();
    const verifier = h.verifier();
    h.emulator.setLatency(150);
    const controller = new AbortController();
    const pending = rejection(verifier.verify(minted.token, { signal: controller.signal }));
    await vi.waitFor(() => expect(h.emulator.calls.verify).toBe(1), { interval: 5 });
    controller.abort();
    expect(await pending).toMatchObject({ name: 'AbortError' });

    // The upstream answer still lands and is kept: the next call is a hit.
    await vi.waitFor(() => expect(verifier.stats().upstreamCalls).toBe(1), { timeout: 5_000 });
    h.emulator.setLatency(0);
    await expect(verifier.verify(minted.token)).resolves.toMatchObject({ id: minted.id });
    expect(h.emulator.calls.verify).toBe(1);
    expect(verifier.stats().hits).toBe(1);
  });

  it('a signal aborted before the call rejects at once with its reason', async () => {
    const minted = await h.mint();
    const verifier = h.verifier();
    const reason = new Error('already gone');
    await expect(verifier.verify(minted.token, { signal: AbortSignal.abort(reason) })).rejects.toBe(
      reason,
    );
  });
});

describe('verify(): scope', () => {
  it('machineId not in the scopes, with the instance key, is out_of_scope after asking Clerk', async () => {
    const minted = await h.mint();
    const verifier = h.verifier({ machineId: machine('caller').id });
    const err = await expectInvalid(verifier.verify(minted.token), 'out_of_scope');
    expect(err.tokenId).toBe(minted.id);
    expect(err.subject).toBe(machine('caller').id);
    expect(h.emulator.calls.verify).toBe(1);
    // The good answer is cached and checked again on every use: still refused, no new call.
    await expectInvalid(verifier.verify(minted.token), 'out_of_scope');
    expect(h.emulator.calls.verify).toBe(1);
  });

  it('machineId in the scopes is accepted', async () => {
    const minted = await h.mint();
    const verifier = h.verifier({ machineId: machine('api').id });
    await expect(verifier.verify(minted.token)).resolves.toMatchObject({ id: minted.id });
  });

  it('a machine key whose machine is not in the scopes gets 404 from Clerk: unknown', async () => {
    const minted = await h.mint();
    const verifier = h.verifier({
      secretKey: undefined,
      machineSecretKey: machine('caller').secretKey,
    });
    await expectInvalid(verifier.verify(minted.token), 'unknown');
    expect(h.emulator.calls.verify).toBe(1);
  });

  it('the machine key of a machine in the scopes verifies the token', async () => {
    const minted = await h.mint();
    const verifier = h.verifier({
      secretKey: undefined,
      machineSecretKey: machine('api').secretKey,
    });
    await expect(verifier.verify(minted.token)).resolves.toMatchObject({
      id: minted.id,
      subject: machine('caller').id,
    });
  });

  it('allowedSubjects without the caller is out_of_scope; with it, accepted', async () => {
    const minted = await h.mint();
    const refusing = h.verifier({ allowedSubjects: [machine('api').id] });
    await expectInvalid(refusing.verify(minted.token), 'out_of_scope');
    const accepting = h.verifier({ allowedSubjects: [machine('api').id, machine('caller').id] });
    await expect(accepting.verify(minted.token)).resolves.toMatchObject({ id: minted.id });
  });
});

describe('verify(): revocation', () => {
  it('a revocation through the same client is refused as revoked on the very next call, despite the cache', async () => {
    const minted = await h.mint();
    const client = h.client();
    const verifier = h.verifier({ client, cache: { ttlMs: 60_000 } });
    await verifier.verify(minted.token);
    await verifier.verify(minted.token);
    expect(h.emulator.calls.verify).toBe(1);

    await client.revokeToken({ m2mTokenId: minted.id });

    const err = await expectInvalid(verifier.verify(minted.token), 'revoked');
    expect(err.tokenId).toBe(minted.id);
  });

  it('a revocation through the same client is never "unrevoked" by a call in flight', async () => {
    const minted = await h.mint();
    const client = h.client();
    const verifier = h.verifier({ client });
    h.emulator.setLatency(1_000);
    // Clerk computes this answer (valid) on arrival and sends it 1 s later.
    let settled = false;
    const inFlight = verifier.verify(minted.token).finally(() => {
      settled = true;
    });
    await vi.waitFor(() => expect(h.emulator.calls.verify).toBe(1), { interval: 5 });
    h.emulator.setLatency(0);
    await client.revokeToken({ m2mTokenId: minted.id });
    // The revocation went through while the good answer was still on its way.
    expect(settled).toBe(false);

    await expectInvalid(inFlight, 'revoked');
    expect(verifier.stats().size).toBe(0);
  });

  it('a revocation through another client is only seen after cache.ttlMs (the revocation budget)', async () => {
    const minted = await h.mint();
    const verifier = h.verifier({ cache: { ttlMs: 10_000 } });
    await verifier.verify(minted.token);

    await h.admin.revokeToken({ m2mTokenId: minted.id });

    h.clock.advance(9_999);
    await expect(verifier.verify(minted.token)).resolves.toMatchObject({ id: minted.id });
    expect(h.emulator.calls.verify).toBe(1);

    h.clock.advance(1);
    const err = await rejection(verifier.verify(minted.token));
    expect(err).toBeInstanceOf(InvalidTokenError);
    // At exactly the end of the fresh window the old answer is still at hand, so the 404 is
    // read as a revocation of a token held as good.
    expect((err as InvalidTokenError).reason).toBe('revoked');
    expect(h.emulator.calls.verify).toBe(2);
  });
});

describe('close()', () => {
  it('closes the client the verifier built: a later verify rejects without reaching Clerk', async () => {
    const minted = await h.mint();
    const verifier = createTokenVerifier({
      apiUrl: h.emulator.url,
      secretKey: h.emulator.instanceSecretKey,
      anyMachine: true,
      retry: false,
      now: h.clock,
    });
    await verifier.verify(minted.token);
    expect(h.emulator.calls.verify).toBe(1);

    await verifier.close();

    // The cached answer is gone with the client: nothing is served after close.
    await expectUnavailable(verifier.verify(minted.token), 'network');
    expect(h.emulator.calls.verify).toBe(1);
    expect(verifier.stats().size).toBe(0);
  });

  it('does not close a client passed in', async () => {
    const minted = await h.mint();
    const client = createM2MClient({
      apiUrl: h.emulator.url,
      secretKey: h.emulator.instanceSecretKey,
      retry: false,
    });
    h.track(client);
    const verifier = createTokenVerifier({ client, anyMachine: true, now: h.clock });
    await verifier.verify(minted.token);

    await verifier.close();

    await expect(client.verifyToken({ token: minted.token })).resolves.toMatchObject({
      id: minted.id,
    });
    await expect(client.revokeToken({ m2mTokenId: minted.id })).resolves.toMatchObject({
      revoked: true,
    });
  });
});

describe('verify(): answers Clerk should not give', () => {
  const body = (overrides: Record<string, unknown> = {}) => ({
    object: 'machine_to_machine_token',
    id: `mt_${'0a'.repeat(16)}`,
    subject: `mch_${'s'.repeat(27)}`,
    scopes: [`mch_${'p'.repeat(27)}`],
    claims: null,
    revoked: false,
    revocation_reason: null,
    expired: false,
    expiration: h.clock() + 3_600_000,
    last_used_at: null,
    created_at: h.clock() - 1_000,
    updated_at: h.clock() - 1_000,
    ...overrides,
  });

  it.each([
    ['revoked', { revoked: true, revocation_reason: 'leaked' }],
    ['expired', { expired: true }],
  ] as const)(
    'a 200 whose body says %s is refused as such and not cached',
    async (reason, overrides) => {
      const server = h.track(await startScriptedServer());
      server.replyAlways({ status: 200, body: body(overrides) });
      const verifier = h.verifier({ apiUrl: server.url, secretKey: 'sk_test_scripted' });
      const token = `mt_${'b'.repeat(40)}`;
      const err = await expectInvalid(verifier.verify(token), reason);
      expect(err.tokenId).toBe(`mt_${'0a'.repeat(16)}`);
      await expectInvalid(verifier.verify(token), reason);
      expect(server.requests).toHaveLength(2);
    },
  );

  it('a 200 for a token past expiration + clockSkewMs is refused as expired', async () => {
    const server = h.track(await startScriptedServer());
    server.replyAlways({ status: 200, body: body({ expiration: h.clock() - 5_001 }) });
    const verifier = h.verifier({ apiUrl: server.url, secretKey: 'sk_test_scripted' });
    await expectInvalid(verifier.verify(`mt_${'c'.repeat(40)}`), 'expired');
  });

  it('a verify answer carrying a token string never hands it out', async () => {
    const server = h.track(await startScriptedServer());
    const leaked = `mt_${'L'.repeat(40)}`;
    server.replyAlways({ status: 200, body: body({ token: leaked }) });
    const verifier = h.verifier({ apiUrl: server.url, secretKey: 'sk_test_scripted' });
    const verified = await verifier.verify(`mt_${'d'.repeat(40)}`);
    expect(JSON.stringify(verified)).not.toContain(leaked);
  });
});

describe('close() twice', () => {
  it('resolves both times', async () => {
    const verifier = h.track(
      createTokenVerifier({
        apiUrl: h.emulator.url,
        secretKey: h.emulator.instanceSecretKey,
        anyMachine: true,
        now: h.clock,
      }),
    );
    await verifier.verify((await h.mint()).token);
    await verifier.close();
    await expect(verifier.close()).resolves.toBeUndefined();
  });
});
