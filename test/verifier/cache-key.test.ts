/**
 * Verifier identity: cache keys are keyed hashes that never contain the token and differ per
 * identity (API URL and verify key), so two verifiers never share an answer.
 */
import { describe, expect, it, vi } from 'vitest';
import { createCacheKeyer } from '../../src/verifier/cache-key.js';
import { memoryStore } from '../helpers/memory-store.js';
import { useHarness } from '../helpers/verifier-helpers.js';

const TOKEN = `mt_${'T0k3n'.repeat(8)}`;

describe('createCacheKeyer', () => {
  it('is stable for one identity and token, and differs per token', () => {
    const keyOf = createCacheKeyer('http://127.0.0.1:1|instance:abc');
    expect(keyOf(TOKEN)).toBe(keyOf(TOKEN));
    expect(keyOf(TOKEN)).not.toBe(keyOf(`${TOKEN}x`));
    expect(keyOf(TOKEN)).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  it('differs per identity: URL or key', () => {
    const token = TOKEN;
    const keys = new Set([
      createCacheKeyer('http://127.0.0.1:1|instance:abc')(token),
      createCacheKeyer('http://127.0.0.1:1|machine:abc')(token),
      createCacheKeyer('http://127.0.0.1:1|machine:def')(token),
      createCacheKeyer('http://127.0.0.1:2|machine:def')(token),
      createCacheKeyer('http://127.0.0.1:1|none')(token),
    ]);
    expect(keys.size).toBe(5);
  });

  it('never contains the token or a recognisable part of it', () => {
    const keyOf = createCacheKeyer('id');
    for (const token of [TOKEN, `mt_${'a'.repeat(40)}`, `mt_${'A'.repeat(250)}`]) {
      const key = keyOf(token);
      expect(key).not.toContain(token);
      expect(key).not.toContain(token.slice(3, 15));
      expect(key.length).toBe(43);
    }
  });

  it('is keyed: without the key the hash cannot be recomputed; with a given key it can', async () => {
    const { createHash, createHmac } = await import('node:crypto');
    const identity = 'http://127.0.0.1:1|instance:abc';
    const key = createCacheKeyer(identity)(TOKEN);
    const plain = createHash('sha256').update(`${identity}\u0000${TOKEN}`).digest('base64url');
    expect(key).not.toBe(plain);

    const secret = Buffer.alloc(32, 7);
    const withSecret = createCacheKeyer(identity, secret)(TOKEN);
    expect(createCacheKeyer(identity, Buffer.from(secret))(TOKEN)).toBe(withSecret);
    expect(createCacheKeyer(identity, Buffer.alloc(32, 8))(TOKEN)).not.toBe(withSecret);
    expect(withSecret).toBe(
      createHmac('sha256', secret).update(`${identity}\u0000`).update(TOKEN).digest('base64url'),
    );
  });
});

describe('verifier identity against the emulator', () => {
  const h = useHarness();

  it('verifiers with different keys each make their own upstream call', async () => {
    const minted = await h.mint();
    const instance = h.verifier();
    const machine = h.verifier({
      secretKey: undefined,
      machineSecretKey: h.machine('api').secretKey,
    });
    await instance.verify(minted.token);
    await instance.verify(minted.token);
    expect(h.emulator.calls.verify).toBe(1);
    await machine.verify(minted.token);
    expect(h.emulator.calls.verify).toBe(2);
    await machine.verify(minted.token);
    expect(h.emulator.calls.verify).toBe(2);
  });

  it('clients with different keys have different, non-secret identities', () => {
    const instance = h.client();
    const machine = h.client({
      secretKey: undefined,
      machineSecretKey: h.machine('api').secretKey,
    });
    const other = h.client({
      secretKey: undefined,
      machineSecretKey: h.machine('caller').secretKey,
    });
    const identities = [instance, machine, other].map((c) => c.verifyIdentity);
    expect(new Set(identities).size).toBe(3);
    expect(identities[0]).toMatch(/^instance:/);
    expect(identities[1]).toMatch(/^machine:/);
    const text = identities.join(' ');
    expect(text).not.toContain(h.emulator.instanceSecretKey);
    expect(text).not.toContain(h.machine('api').secretKey);
    expect(text).not.toContain(h.machine('caller').secretKey.slice(3));
  });

  it('with one shared store, answers are shared within an identity and never across', async () => {
    const { store, data } = memoryStore(h.clock);
    const minted = await h.mint();
    const instanceA = h.verifier({ store });
    const instanceB = h.verifier({ store });
    const machine = h.verifier({
      store,
      secretKey: undefined,
      machineSecretKey: h.machine('api').secretKey,
    });

    await instanceA.verify(minted.token);
    expect(h.emulator.calls.verify).toBe(1);
    // The shared write is in the background: wait for it to land.
    await vi.waitFor(() => expect(data.size).toBeGreaterThan(0));

    await machine.verify(minted.token);
    expect(h.emulator.calls.verify).toBe(2);

    await instanceB.verify(minted.token);
    expect(h.emulator.calls.verify).toBe(2);
    expect(instanceB.stats().sharedHits).toBe(1);

    const dump = JSON.stringify([...data]);
    expect(dump).not.toContain(minted.token);
    expect(dump).not.toContain(h.emulator.instanceSecretKey);
    expect(dump).not.toContain(h.machine('api').secretKey);
  });
});
