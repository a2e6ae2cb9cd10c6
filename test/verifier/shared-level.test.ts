/**
 * The shared level's write order, on an in-memory store whose writes can be held: a good
 * answer written while a revocation of its token runs never ends up served as good, however
 * the single-key writes of the two interleave (the store makes no two writes atomic, as on
 * Redis Cluster), and a write that fails leaves no answer without its token-id link.
 */
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { Entry } from '../../src/verifier/entry.js';
import type { SharedCacheStore } from '../../src/verifier/index.js';
import { createSharedLevel } from '../../src/verifier/shared-level.js';
import { memoryStore } from '../helpers/memory-store.js';

const NOW = 1_000_000;
const ID = 'mt_0123456789abcdef0123456789abcdef';
const KEY = 'hmac-of-the-token';
const good: Entry = {
  kind: 'valid',
  value: {
    id: ID,
    subject: 'mch_caller',
    scopes: [],
    claims: null,
    expiration: null,
    createdAt: 1,
  },
  freshUntil: NOW + 10_000,
  staleUntil: NOW + 10_000,
  bytes: 0,
};
const revoked: Entry = {
  kind: 'invalid',
  reason: 'revoked',
  tokenId: ID,
  subject: 'mch_caller',
  freshUntil: NOW + 10_000,
};

/** A store whose n-th `set` (1-based, across all callers) can be held until released. */
function gatedStore() {
  const { store, data } = memoryStore(() => NOW);
  const gates = new Map<number, { arrive: () => void; open: Promise<void> }>();
  let sets = 0;
  const gated: SharedCacheStore = {
    ...store,
    async set(key, value, ttlMs) {
      const gate = gates.get(++sets);
      if (gate) {
        gate.arrive();
        await gate.open;
      }
      return store.set(key, value, ttlMs);
    },
  };
  function hold(n: number) {
    let arrive!: () => void;
    let release!: () => void;
    const reached = new Promise<void>((resolve) => {
      arrive = resolve;
    });
    const open = new Promise<void>((resolve) => {
      release = resolve;
    });
    gates.set(n, { arrive, open });
    return { reached, release };
  }
  return { store: gated, data, hold };
}

function level(store: SharedCacheStore, macKey = randomBytes(32)) {
  let rejected = 0;
  const shared = createSharedLevel(store, {
    namespace: 'v2:instance:test',
    macKey,
    log: pino({ level: 'silent' }),
    now: () => NOW,
    onRejected: () => rejected++,
  });
  return { shared, rejected: () => rejected };
}

describe('shared level write order (no multi-key atomicity)', () => {
  it('a revocation that finds no link still wins over a good answer written after it', async () => {
    const { store } = gatedStore();
    const key = randomBytes(32);
    const writer = level(store, key).shared;
    const revoker = level(store, key).shared;
    await revoker.revoke(ID, undefined, revoked, 10_000);
    await writer.set(KEY, good, 10_000);
    expect(await writer.get(KEY)).toMatchObject({ kind: 'invalid', reason: 'revoked' });
  });

  it('a revocation while the answer is being written: the writer puts "revoked" back', async () => {
    const gs = gatedStore();
    const mac = randomBytes(32);
    const writer = level(gs.store, mac).shared;
    const revoker = level(gs.store, mac).shared;
    const answer = gs.hold(2); // the writer's second set: the answer, after its link
    const writing = writer.set(KEY, good, 10_000);
    await answer.reached;
    await revoker.revoke(ID, undefined, revoked, 10_000); // finds the link, writes "revoked"
    expect(await revoker.get(KEY)).toMatchObject({ reason: 'revoked' });
    answer.release(); // the good answer lands on top of it…
    await writing;
    expect(await writer.get(KEY)).toMatchObject({ kind: 'invalid', reason: 'revoked' }); // …not for long
  });

  it('a revocation that read no link before the link landed: the writer sees its marker', async () => {
    const gs = gatedStore();
    const mac = randomBytes(32);
    const writer = level(gs.store, mac).shared;
    const revoker = level(gs.store, mac).shared;
    const link = gs.hold(1); // the writer's link
    const writing = writer.set(KEY, good, 10_000);
    await link.reached;
    await revoker.revoke(ID, undefined, revoked, 10_000); // no link yet: cannot find the answer
    link.release();
    await writing;
    expect(await writer.get(KEY)).toMatchObject({ kind: 'invalid', reason: 'revoked' });
  });

  it('a revocation after both writes overwrites the answer; the link goes', async () => {
    const { store, data } = gatedStore();
    const mac = randomBytes(32);
    const writer = level(store, mac).shared;
    const revoker = level(store, mac).shared;
    await writer.set(KEY, good, 10_000);
    expect(await revoker.keyOfId(ID)).toBe(KEY);
    await revoker.revoke(ID, undefined, revoked, 10_000);
    expect(await writer.get(KEY)).toMatchObject({ reason: 'revoked' });
    expect(await writer.keyOfId(ID)).toBeUndefined();
    expect([...data.keys()].sort()).toStrictEqual([
      `v2:instance:test:rv:${ID}`,
      `v2:instance:test:t:${KEY}`,
    ]);
  });

  it('writes no answer when its link cannot be written', async () => {
    const { store, data } = memoryStore(() => NOW);
    let calls = 0;
    const failing: SharedCacheStore = {
      ...store,
      async set(key, value, ttlMs) {
        if (++calls === 1) throw new Error('node down');
        return store.set(key, value, ttlMs);
      },
    };
    await level(failing).shared.set(KEY, good, 10_000);
    expect(data.size).toBe(0);
  });

  it('trusts nothing signed with another key, as if absent', async () => {
    const { store } = memoryStore(() => NOW);
    const mine = level(store);
    const theirs = level(store);
    await theirs.shared.set(KEY, good, 10_000);
    expect(await theirs.shared.get(KEY)).toMatchObject({ kind: 'valid' });
    expect(await mine.shared.get(KEY)).toBeUndefined();
    expect(await mine.shared.keyOfId(ID)).toBeUndefined();
    expect(mine.rejected()).toBe(2);
  });
});
