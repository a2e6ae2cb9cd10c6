/**
 * A lying upstream, on a real HTTP server we script: claims nested 20 000 deep are an unreadable
 * answer (503, a breaker failure), never a 500; answers with huge claims cannot make the cache
 * hold more than `cache.maxBytes`.
 */
import express from 'express';
import request from 'supertest';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { m2mAuth } from '../../src/middleware/index.js';
import { createTokenVerifier, type TokenVerifier } from '../../src/verifier/index.js';
import { MAX_CACHED_ANSWER_BYTES } from '../../src/verifier/verifier.js';
import { INSTANCE_KEY, SCOPE, tokenJson } from '../client/fixtures.js';
import { type ScriptedServer, startScriptedServer } from '../helpers/scripted-server.js';
import { expectUnavailable } from '../helpers/verifier-helpers.js';

let server: ScriptedServer;
const open: Array<{ close(): Promise<void> }> = [];
beforeAll(async () => {
  server = await startScriptedServer();
});
afterEach(async () => {
  for (const thing of open.splice(0)) await thing.close();
});
afterAll(async () => {
  await server.close();
});

const NOW = 1716883300000;
const token = (i: number) => `mt_${String(i).padStart(40, 'q')}`;
const tokenId = (i: number) => `mt_${i.toString(16).padStart(32, '0')}`;

function verifierFor(options: Parameters<typeof createTokenVerifier>[0] = {}): TokenVerifier {
  const verifier = createTokenVerifier({
    apiUrl: server.url,
    secretKey: INSTANCE_KEY,
    machineId: SCOPE,
    retry: false,
    now: () => NOW,
    upstreamBudget: false,
    ...options,
  });
  open.push(verifier);
  return verifier;
}

/** A verify answer whose claims are nested `depth` deep, written by hand (no recursion). */
function deepAnswer(depth: number): string {
  const json = JSON.stringify(tokenJson({ claims: { deep: '__DEEP__' } }));
  return json.replace('"__DEEP__"', `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`);
}

describe('claims too deep to hold', () => {
  it('a verify answer nested 20 000 deep is 503 invalid_response and a breaker failure', async () => {
    const verifier = verifierFor({ breaker: { failures: 2, cooldownMs: 60_000 } });
    server.replyAlways({
      headers: { 'content-type': 'application/json' },
      body: deepAnswer(20_000),
    });
    await expectUnavailable(verifier.verify(token(1)), 'invalid_response');
    await expectUnavailable(verifier.verify(token(2)), 'invalid_response');
    expect(verifier.stats()).toMatchObject({ upstreamErrors: 2, size: 0 });
    const before = server.requests.length;
    await expectUnavailable(verifier.verify(token(3)), 'circuit_open');
    expect(server.requests.length, 'the breaker opened').toBe(before);
  });

  it('m2mAuth answers it 503, not 500', async () => {
    server.replyAlways({
      headers: { 'content-type': 'application/json' },
      body: deepAnswer(20_000),
    });
    const auth = m2mAuth({ verifier: verifierFor() });
    const app = express().get('/r', auth, (_req, res) => {
      res.json({ ok: true });
    });
    const res = await request(app)
      .get('/r')
      .set('authorization', `Bearer ${token(4)}`);
    expect(res.status).toBe(503);
    expect(res.body.error).toBe('temporarily_unavailable');
  });

  it('claims 64 deep are still an answer', async () => {
    server.replyAlways({ headers: { 'content-type': 'application/json' }, body: deepAnswer(60) });
    await expect(verifierFor().verify(token(5))).resolves.toMatchObject({
      subject: expect.any(String),
    });
  });
});

describe('the cache is bounded in bytes', () => {
  it('200 answers with 1 MB of claims each: none is cached, every one is served', async () => {
    let n = 0;
    const big = 'x'.repeat(1_000_000);
    server.replyAlways(() => ({
      headers: { 'content-type': 'application/json' },
      body: tokenJson({ id: tokenId(++n), claims: { big }, expiration: NOW + 3_600_000 }),
    }));
    const verifier = verifierFor();
    for (let i = 0; i < 200; i++) {
      await expect(verifier.verify(token(1000 + i))).resolves.toMatchObject({ id: tokenId(i + 1) });
    }
    const { bytes, size } = verifier.stats();
    expect(size).toBe(0);
    expect(bytes).toBe(0);
    console.info(
      `large claims: 200 answers of 1 MB served; cache holds ${size} entries, ${bytes} bytes`,
    );
  });

  it('answers of 32 KiB each fill at most cache.maxBytes, evicting the oldest', async () => {
    let n = 0;
    const claims = { blob: 'y'.repeat(16 * 1024) }; // 32 KiB of heap as UTF-16
    server.replyAlways(() => ({
      headers: { 'content-type': 'application/json' },
      body: tokenJson({ id: tokenId(++n), claims, expiration: NOW + 3_600_000 }),
    }));
    const maxBytes = 1024 * 1024;
    const verifier = verifierFor({ cache: { maxBytes } });
    for (let i = 0; i < 100; i++) await verifier.verify(token(5000 + i));
    const { bytes, size } = verifier.stats();
    expect(bytes).toBeLessThanOrEqual(maxBytes);
    expect(bytes).toBeGreaterThan(maxBytes / 2);
    expect(size).toBeLessThan(100);
    expect(32 * 1024).toBeLessThan(MAX_CACHED_ANSWER_BYTES);
  });
});
