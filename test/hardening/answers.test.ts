/**
 * What the verifier serves, wherever it came from: deeply frozen from Clerk, the in-process
 * cache, the shared store and a JWT; a JWT's answer never travels through the shared store;
 * a revocation heard from another instance is remembered until the token expires, not for the
 * life of the process.
 */
import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { VerifiedM2MToken } from '../../src/verifier/index.js';
import { memoryStore } from '../helpers/memory-store.js';
import { expectInvalid, useHarness } from '../helpers/verifier-helpers.js';

const h = useHarness();

/** Every object reachable from `value` is frozen. */
function expectDeeplyFrozen(value: VerifiedM2MToken) {
  const stack: unknown[] = [value];
  let objects = 0;
  while (stack.length > 0) {
    const item = stack.pop();
    if (typeof item !== 'object' || item === null) continue;
    objects++;
    expect(Object.isFrozen(item)).toBe(true);
    stack.push(...Object.values(item));
  }
  expect(objects).toBeGreaterThanOrEqual(4); // the answer, its scopes, its claims, nested claims
  expect(() => (value.scopes as string[]).push('mch_injected')).toThrow(TypeError);
}

const claims = { role: 'svc', nested: { tier: 'gold', list: [{ deep: true }] } };

describe('every served answer is deeply frozen', () => {
  it('from Clerk, then from the in-process cache', async () => {
    const verifier = h.verifier();
    const minted = await h.mint({ claims });
    expectDeeplyFrozen(await verifier.verify(minted.token));
    expectDeeplyFrozen(await verifier.verify(minted.token));
  });

  it('from the shared store, on an instance that never asked Clerk', async () => {
    const { store } = memoryStore(h.clock);
    const minted = await h.mint({ claims });
    await h.verifier({ store }).verify(minted.token);
    await new Promise((resolve) => setImmediate(resolve)); // the shared write is in the background
    const other = h.verifier({ store });
    const calls = h.emulator.calls.verify;
    const served = await other.verify(minted.token);
    expect(h.emulator.calls.verify, 'served from the shared store').toBe(calls);
    expect(other.stats().sharedHits).toBe(1);
    expectDeeplyFrozen(served);
  });

  it('from a JWT', async () => {
    const verifier = h.verifier({ jwtKey: h.emulator.jwtKey });
    const minted = await h.mint({ claims, tokenFormat: 'jwt' });
    expectDeeplyFrozen(await verifier.verify(minted.token));
  });
});

describe("a JWT's answer is never shared", () => {
  it('a verifier that does not trust the key is never served the answer of one that does', async () => {
    const { store, data } = memoryStore(h.clock);
    const trusting = h.verifier({ store, jwtKey: h.emulator.jwtKey });
    const minted = await h.mint({ tokenFormat: 'jwt' });
    await trusting.verify(minted.token);
    await new Promise((resolve) => setImmediate(resolve));
    expect(data.size, 'nothing written to the shared store').toBe(0);

    const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const foreign = publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const distrusting = h.verifier({ store, jwtKey: foreign });
    await expectInvalid(distrusting.verify(minted.token), 'malformed');
  });
});

describe('a revocation heard from another instance', () => {
  it('is remembered until the token expires', async () => {
    const { store } = memoryStore(h.clock);
    const revoker = h.client();
    const a = h.verifier({ store, client: revoker, anyMachine: true });
    const b = h.verifier({ store, cache: { ttlMs: 60_000 } });
    const minted = await h.mint({ secondsUntilExpiration: 30 });
    await a.verify(minted.token);
    await b.verify(minted.token);
    await revoker.revokeToken({ m2mTokenId: minted.id });
    await new Promise((resolve) => setTimeout(resolve, 20)); // the broadcast
    await expectInvalid(b.verify(minted.token), 'revoked');
    expect(b.stats().invalidationsReceived).toBeGreaterThanOrEqual(1);
  });

  it('a forged message on the channel revokes nothing', async () => {
    const { store } = memoryStore(h.clock);
    const b = h.verifier({ store, cache: { ttlMs: 1_000 } });
    const minted = await h.mint({ secondsUntilExpiration: 3_600 });
    await b.verify(minted.token);
    // Whoever can publish on the channel names a live token as revoked, without the MAC.
    await store.publish(JSON.stringify({ kind: 'revoke', id: minted.id, from: 'someone' }));
    expect(b.stats().sharedRejected).toBe(1);
    await expect(b.verify(minted.token)).resolves.toMatchObject({ id: minted.id });
  });
});
