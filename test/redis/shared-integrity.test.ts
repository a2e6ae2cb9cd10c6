/**
 * Whoever can write to Redis cannot forge an answer or an invalidation: every shared value and
 * message carries a MAC under a key only the instances derive (from the secret they verify
 * with). A forged value (subject or expiry changed, moved to another key, or plain unsigned JSON
 * as written before values were signed) is ignored as if absent, so the verifier asks Clerk and
 * gets the right answer; a forged, stale or replayed message changes nothing. Each counts in
 * `stats().sharedRejected`, and the log says so at most once a minute.
 */
import { createHmac } from 'node:crypto';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { M2MClient, M2MToken } from '../../src/index.js';
import { REDIS_URL, redisSkipped } from './redis-env.js';
import {
  type CapturedLog,
  Closer,
  captureLogger,
  entryKeyOf,
  type Instance,
  randomPrefix,
  rawRedis,
  sleep,
  startInstance,
  unsealed,
  useMintingEmulator,
  verdict,
  waitFor,
  waitForShared,
} from './support.js';

type Minted = M2MToken & { token: string };
const REJECTED = 'shared cache store gave a value or message that fails its integrity check';

describe.skipIf(redisSkipped())('authenticated shared store', () => {
  const url = REDIS_URL!;
  const closer = new Closer();
  const env = useMintingEmulator(closer);
  let raw: Redis;
  let keyPrefix: string;

  beforeAll(() => {
    raw = rawRedis(url);
  });
  beforeEach(() => {
    keyPrefix = randomPrefix();
  });
  afterAll(() => {
    raw?.disconnect();
  });

  const mint = () => env.mint() as Promise<Minted>;
  async function replica(log?: CapturedLog): Promise<Instance> {
    return closer.add(
      await startInstance({
        apiUrl: env.emulator.url,
        key: env.emulator.instanceSecretKey,
        redisUrl: url,
        keyPrefix,
        ...(log ? { logger: log.logger } : {}),
      }),
    );
  }
  /** A token verified (and shared) by `a`: its Redis key and its sealed value. */
  async function sharedBy(a: Instance, t: Minted) {
    expect(await verdict(a.verifier, t.token)).toBe('valid');
    await waitForShared(raw, keyPrefix, a.client, t.id);
    const key = (await entryKeyOf(raw, keyPrefix, a.client, t.id))!;
    const sealed = (await raw.get(key))!;
    return { key, sealed, mac: sealed.slice(0, sealed.indexOf('.')) };
  }
  /** What a fresh replica makes of `token` with Redis holding whatever it holds now. */
  async function freshVerdict(token: string) {
    const log = captureLogger();
    const fresh = await replica(log);
    const clerkBefore = env.emulator.calls.verify;
    const answer = await fresh.verifier.verify(token);
    return {
      subject: answer.subject,
      id: answer.id,
      clerkCalls: env.emulator.calls.verify - clerkBefore,
      stats: fresh.verifier.stats(),
      log,
    };
  }

  it('ignores an answer whose subject was rewritten, and asks Clerk', async () => {
    const a = await replica();
    const t = await mint();
    const { key, sealed, mac } = await sharedBy(a, t);
    const forged = JSON.parse(unsealed(sealed));
    forged.value.subject = env.emulator.machines.api!.id;
    forged.value.scopes = [env.emulator.machines.api!.id];
    await raw.set(key, `${mac}.${JSON.stringify(forged)}`, 'PX', 10_000);

    const seen = await freshVerdict(t.token);
    expect(seen.subject).toBe(env.emulator.machines.caller!.id);
    expect(seen.clerkCalls).toBe(1);
    expect(seen.stats).toMatchObject({ sharedHits: 0, sharedRejected: 1 });
  });

  it('ignores an answer whose expiry was pushed out', async () => {
    const a = await replica();
    const t = await mint();
    const { key, sealed, mac } = await sharedBy(a, t);
    const forged = JSON.parse(unsealed(sealed));
    forged.freshUntil += 3_600_000;
    forged.staleUntil += 3_600_000;
    forged.value.expiration = null;
    await raw.set(key, `${mac}.${JSON.stringify(forged)}`, 'PX', 10_000);

    const seen = await freshVerdict(t.token);
    expect(seen.clerkCalls).toBe(1);
    expect(seen.stats).toMatchObject({ sharedHits: 0, sharedRejected: 1 });
  });

  it('ignores a good answer copied under another token’s key', async () => {
    const a = await replica();
    const good = await mint();
    const other = await mint();
    const { sealed } = await sharedBy(a, good);
    const { key: otherKey } = await sharedBy(a, other);
    // The other token's answer replaced by the first one's, MAC and all.
    await raw.set(otherKey, sealed, 'PX', 10_000);

    const seen = await freshVerdict(other.token);
    expect(seen.id).toBe(other.id);
    expect(seen.clerkCalls).toBe(1);
    expect(seen.stats).toMatchObject({ sharedHits: 0, sharedRejected: 1 });
  });

  it('ignores plain unsigned JSON (the format before values were signed)', async () => {
    const a = await replica();
    const t = await mint();
    const { key, sealed } = await sharedBy(a, t);
    const plain = JSON.parse(unsealed(sealed));
    plain.value.subject = env.emulator.machines.api!.id;
    await raw.set(key, JSON.stringify(plain), 'PX', 10_000);

    const seen = await freshVerdict(t.token);
    expect(seen.subject).toBe(env.emulator.machines.caller!.id);
    expect(seen.clerkCalls).toBe(1);
    expect(seen.stats).toMatchObject({ sharedHits: 0, sharedRejected: 1 });
    expect(seen.log.count(REJECTED)).toBe(1);
  });

  it('serves a good answer untouched (the control), and logs rejections once a minute at most', async () => {
    const a = await replica();
    const t = await mint();
    const { key } = await sharedBy(a, t);
    const control = await freshVerdict(t.token);
    expect(control.clerkCalls).toBe(0);
    expect(control.stats).toMatchObject({ sharedHits: 1, sharedRejected: 0 });

    const log = captureLogger();
    const b = await replica(log);
    const tokens = [await mint(), await mint(), await mint()];
    for (const other of tokens) {
      const { key: otherKey } = await sharedBy(a, other);
      await raw.set(otherKey, (await raw.get(key))!, 'PX', 10_000);
      expect(await verdict(b.verifier, other.token)).toBe('valid');
    }
    expect(b.verifier.stats().sharedRejected).toBe(3);
    expect(log.count(REJECTED)).toBe(1);
    const line = log.records().find((r) => String(r.msg).startsWith(REJECTED))!;
    expect(line).toMatchObject({ level: 40, what: 'value' });
    expect(JSON.stringify(log.records())).not.toContain(t.token);
  });

  describe('messages', () => {
    /** Signs a message as an instance would (the test knows the secret they derive from). */
    function sign(client: M2MClient, payload: Record<string, unknown>): string {
      const namespace = `v2:${client.verifyIdentity}`;
      const text = JSON.stringify({ ns: namespace, from: 'test', n: 1, ...payload });
      const mac = createHmac('sha256', client.deriveKey('shared-mac')!)
        .update(`message\n${namespace}\n${text}`)
        .digest('base64url');
      return `${mac}.${text}`;
    }
    const channel = () => `${keyPrefix}invalidate`;

    it('ignores a forged revocation, unsigned or wrongly signed', async () => {
      const a = await replica();
      const b = await replica();
      const t = await mint();
      await sharedBy(a, t);
      expect(await verdict(b.verifier, t.token)).toBe('valid');

      const at = Date.now();
      const bare = { kind: 'revoke', id: t.id, at };
      await raw.publish(channel(), JSON.stringify(bare));
      const wrong = sign(b.client, bare).replace(/^./, (c) => (c === 'A' ? 'B' : 'A'));
      await raw.publish(channel(), wrong);
      await waitFor(() => b.verifier.stats().sharedRejected === 2, 1000, 'both messages');

      expect(await verdict(b.verifier, t.token)).toBe('valid');
      expect(await verdict(a.verifier, t.token)).toBe('valid');
      expect(b.verifier.stats().invalidationsReceived).toBe(0);
      expect(env.emulator.calls.verify).toBe(1); // nothing was even dropped
    });

    it('ignores a genuine message too old, or replayed', async () => {
      const a = await replica();
      const b = await replica();
      const t = await mint();
      await sharedBy(a, t);
      expect(await verdict(b.verifier, t.token)).toBe('valid');

      // Signed with the right key, but a minute and more old: refused.
      await raw.publish(
        channel(),
        sign(b.client, { kind: 'revoke', id: t.id, at: Date.now() - 61_000 }),
      );
      await waitFor(() => b.verifier.stats().sharedRejected === 1, 1000, 'the stale message');
      expect(await verdict(b.verifier, t.token)).toBe('valid');

      // Recorded off the channel and sent again: the first copy acts, the replay does not.
      const recorder = rawRedis(url);
      closer.add({ close: () => recorder.disconnect() });
      const recorded: string[] = [];
      recorder.on('message', (_channel: string, message: string) => recorded.push(message));
      await recorder.subscribe(channel());
      a.verifier.invalidate(t.token);
      await waitFor(() => recorded.length === 1, 1000, 'the invalidation');
      await waitFor(() => b.verifier.stats().invalidationsReceived === 1, 1000, 'B to get it');
      expect(await verdict(b.verifier, t.token)).toBe('valid'); // asked Clerk again, cached again
      const clerk = env.emulator.calls.verify;
      await raw.publish(channel(), recorded[0]!);
      await waitFor(() => b.verifier.stats().sharedRejected === 2, 1000, 'the replay');
      await sleep(20);
      expect(b.verifier.stats().invalidationsReceived).toBe(1);
      expect(await verdict(b.verifier, t.token)).toBe('valid');
      expect(env.emulator.calls.verify).toBe(clerk); // the replay dropped nothing
    });

    it('carries the token expiry on a revocation, under the MAC', async () => {
      const a = await replica();
      const b = await replica();
      const t = await mint();
      await sharedBy(a, t);
      const recorder = rawRedis(url);
      closer.add({ close: () => recorder.disconnect() });
      const recorded: string[] = [];
      recorder.on('message', (_channel: string, message: string) => recorded.push(message));
      await recorder.subscribe(channel());
      await a.client.revokeToken({ m2mTokenId: t.id });
      await waitFor(() => recorded.length === 1, 1000, 'the revocation');
      expect(JSON.parse(unsealed(recorded[0]!))).toMatchObject({
        kind: 'revoke',
        id: t.id,
        expiresAt: t.expiration,
      });
      await waitFor(() => b.verifier.stats().invalidationsReceived === 1, 1000, 'B to get it');
      expect(await verdict(b.verifier, t.token)).toBe('revoked');
    });
  });
});
