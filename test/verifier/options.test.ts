/**
 * Options are validated once, at construction, with an M2MConfigError naming the option; every
 * documented default is observable.
 */
import { generateKeyPairSync } from 'node:crypto';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { createM2MClient } from '../../src/client/index.js';
import { M2MConfigError } from '../../src/shared/config-error.js';
import {
  createTokenVerifier,
  DEFAULT_BREAKER,
  DEFAULT_CACHE,
  DEFAULT_CLOCK_SKEW_MS,
  DEFAULT_UPSTREAM_BUDGET,
  TOKEN_VERIFIER_KEYS,
  type TokenVerifier,
  type TokenVerifierOptions,
} from '../../src/verifier/index.js';
import { expectInvalid, expectUnavailable, useHarness } from '../helpers/verifier-helpers.js';

const MACHINE = `mch_${'a'.repeat(27)}`;
const OTHER_MACHINE = `mch_${'b'.repeat(27)}`;
const API_URL = 'http://127.0.0.1:9';

const built: TokenVerifier[] = [];
afterEach(async () => {
  for (const verifier of built.splice(0)) await verifier.close();
});

function build(options: unknown): TokenVerifier {
  const verifier = createTokenVerifier(options as TokenVerifierOptions);
  built.push(verifier);
  return verifier;
}

function configError(options: unknown): M2MConfigError {
  try {
    build(options);
  } catch (err) {
    expect(err).toBeInstanceOf(M2MConfigError);
    return err as M2MConfigError;
  }
  throw new Error('expected createTokenVerifier to throw');
}

describe('construction-time validation', () => {
  const cases: Array<[string, Record<string, unknown>, string]> = [
    ['machineId not mch_', { machineId: 'api-service' }, 'machineId'],
    ['machineId too short', { machineId: 'mch_short' }, 'machineId'],
    ['machineId empty', { machineId: '' }, 'machineId'],
    ['machineId not a string', { machineId: 42 }, 'machineId'],
    ['allowedSubjects empty', { allowedSubjects: [] }, 'allowedSubjects'],
    ['allowedSubjects not an array', { allowedSubjects: MACHINE }, 'allowedSubjects'],
    ['allowedSubjects with a bad id', { allowedSubjects: ['caller'] }, 'allowedSubjects[0]'],
    ['allowedSubjects second bad', { allowedSubjects: [MACHINE, 7] }, 'allowedSubjects[1]'],
    ['clockSkewMs negative', { clockSkewMs: -1 }, 'clockSkewMs'],
    ['clockSkewMs fractional', { clockSkewMs: 1.5 }, 'clockSkewMs'],
    ['clockSkewMs a string', { clockSkewMs: '5000' }, 'clockSkewMs'],
    ['clockSkewMs too large', { clockSkewMs: 600_001 }, 'clockSkewMs'],
    ['now not a function', { now: 1_700_000_000_000 }, 'now'],
    ['now a string', { now: 'Date.now' }, 'now'],
    ['cache a string', { cache: 'on' }, 'cache'],
    ['cache true', { cache: true }, 'cache'],
    ['cache null', { cache: null }, 'cache'],
    ['cache an array', { cache: [] }, 'cache'],
    ['cache.max 0', { cache: { max: 0 } }, 'cache.max'],
    ['cache.max negative', { cache: { max: -5 } }, 'cache.max'],
    ['cache.max fractional', { cache: { max: 2.5 } }, 'cache.max'],
    ['cache.ttlMs negative', { cache: { ttlMs: -1 } }, 'cache.ttlMs'],
    ['cache.ttlMs above a day', { cache: { ttlMs: 86_400_001 } }, 'cache.ttlMs'],
    ['cache.ttlMs NaN', { cache: { ttlMs: Number.NaN } }, 'cache.ttlMs'],
    ['cache.negativeTtlMs negative', { cache: { negativeTtlMs: -1 } }, 'cache.negativeTtlMs'],
    ['cache.staleIfErrorMs negative', { cache: { staleIfErrorMs: -1 } }, 'cache.staleIfErrorMs'],
    ['unknown cache key', { cache: { ttl: 1000 } }, 'cache.ttl'],
    ['breaker a string', { breaker: 'off' }, 'breaker'],
    ['breaker.failures negative', { breaker: { failures: -1 } }, 'breaker.failures'],
    ['breaker.failures fractional', { breaker: { failures: 2.5 } }, 'breaker.failures'],
    ['breaker.failures a string', { breaker: { failures: '3' } }, 'breaker.failures'],
    ['breaker.failures too large', { breaker: { failures: 1001 } }, 'breaker.failures'],
    ['breaker.cooldownMs negative', { breaker: { cooldownMs: -1 } }, 'breaker.cooldownMs'],
    ['unknown breaker key', { breaker: { threshold: 3 } }, 'breaker.threshold'],
    ['unknown option', { ttlMs: 1000 }, 'ttlMs'],
    ['unknown option (typo)', { machineID: MACHINE }, 'machineID'],
    ['logger not a logger', { logger: {} }, 'logger'],
    ['secretKey of the wrong kind', { secretKey: 'ak_abc' }, 'secretKey'],
    ['machineSecretKey of the wrong kind', { machineSecretKey: 'sk_abc' }, 'machineSecretKey'],
    ['apiUrl not http', { apiUrl: 'ftp://example.com' }, 'apiUrl'],
    ['timeoutMs 0', { timeoutMs: 0 }, 'timeoutMs'],
    ['retry.retries negative', { retry: { retries: -1 } }, 'retry.retries'],
    ['cache.maxBytes below 1 KiB', { cache: { maxBytes: 1023 } }, 'cache.maxBytes'],
    ['cache.maxBytes fractional', { cache: { maxBytes: 4096.5 } }, 'cache.maxBytes'],
    ['upstreamBudget true', { upstreamBudget: true }, 'upstreamBudget'],
    ['upstreamBudget a number', { upstreamBudget: 20 }, 'upstreamBudget'],
    [
      'upstreamBudget.perSecond 0',
      { upstreamBudget: { perSecond: 0 } },
      'upstreamBudget.perSecond',
    ],
    ['upstreamBudget.burst 0', { upstreamBudget: { burst: 0 } }, 'upstreamBudget.burst'],
    ['upstreamBudget.burst a string', { upstreamBudget: { burst: '40' } }, 'upstreamBudget.burst'],
    ['unknown upstreamBudget key', { upstreamBudget: { rate: 5 } }, 'upstreamBudget.rate'],
    ['anyMachine a string', { anyMachine: 'yes' }, 'anyMachine'],
  ];

  it.each(cases)('%s -> M2MConfigError naming %s', (_label, options, option) => {
    const err = configError({ apiUrl: API_URL, secretKey: 'sk_test_ok', ...options });
    expect(err.option).toBe(option);
    expect(err.message).toContain(`\`${option}\``);
  });

  it('no key at all fails at construction, naming machineSecretKey', () => {
    expect(configError({ apiUrl: API_URL }).option).toBe('machineSecretKey');
    expect(configError({}).option).toBe('machineSecretKey');
    const keyless = createM2MClient({ apiUrl: API_URL });
    try {
      expect(configError({ client: keyless }).option).toBe('machineSecretKey');
    } finally {
      void keyless.close();
    }
  });

  it('options that are not an object', () => {
    expect(configError('https://api.clerk.com').option).toBe('options');
    expect(configError(null).option).toBe('options');
  });

  it('suggests the right spelling of a mistyped key', () => {
    const base = { apiUrl: API_URL, secretKey: 'sk_test_ok' };
    expect(configError({ ...base, cache: { ttlMS: 1 } }).message).toContain('`cache.ttlMs`');
    expect(configError({ ...base, machineID: MACHINE }).message).toContain('`machineId`');
  });

  describe('client given', () => {
    const client = createM2MClient({ apiUrl: API_URL, secretKey: 'sk_test_x' });
    afterAll(async () => {
      await client.close();
    });

    it.each([
      ['apiUrl', { apiUrl: API_URL }],
      ['secretKey', { secretKey: 'sk_test_y' }],
      ['machineSecretKey', { machineSecretKey: 'ak_y' }],
      ['timeoutMs', { timeoutMs: 100 }],
      ['retry', { retry: false }],
    ])('client and %s together -> M2MConfigError naming %s', (option, extra) => {
      expect(configError({ client, ...extra }).option).toBe(option);
    });

    it('a client that is not from createM2MClient -> M2MConfigError naming client', () => {
      expect(configError({ client: {} }).option).toBe('client');
      expect(configError({ client: { verifyToken() {} } }).option).toBe('client');
    });

    it('accepts a client with verifier-only options', () => {
      expect(() =>
        build({ client, machineId: MACHINE, cache: false, breaker: false }),
      ).not.toThrow();
    });
  });

  it('never repeats a secret in the message', () => {
    const secret = 'ak_this_is_a_machine_key_of_mine';
    const err = configError({ apiUrl: API_URL, secretKey: secret });
    expect(err.message).not.toContain(secret);
    expect(err.message).not.toContain('this_is_a_machine_key');
  });

  it('accepts valid options of every kind', () => {
    expect(() =>
      build({
        apiUrl: API_URL,
        secretKey: 'sk_test_ok',
        machineId: MACHINE,
        allowedSubjects: [MACHINE, OTHER_MACHINE],
        clockSkewMs: 0,
        now: () => 0,
        cache: { max: 1, maxBytes: 1024, ttlMs: 0, negativeTtlMs: 0, staleIfErrorMs: 86_400_000 },
        upstreamBudget: { perSecond: 1, burst: 1 },
        breaker: { failures: 0, cooldownMs: 0 },
        timeoutMs: 1000,
        retry: { retries: 0 },
        userAgent: 'test',
      }),
    ).not.toThrow();
    expect(() =>
      build({ apiUrl: API_URL, machineSecretKey: 'ak_ok', cache: false, breaker: false }),
    ).not.toThrow();
    expect(() => build({ secretKey: 'sk_test_ok', anyMachine: true })).not.toThrow();
    expect(() => build({ machineSecretKey: 'ak_ok', upstreamBudget: false })).not.toThrow();
  });

  describe('no silent any-machine default', () => {
    const instanceOnly = { apiUrl: API_URL, secretKey: 'sk_test_ok' };
    it('the instance key without machineId or allowedSubjects fails, saying what to set', () => {
      const err = configError(instanceOnly);
      expect(err.option).toBe('machineId');
      expect(err.message).toContain('allowedSubjects');
      expect(err.message).toContain('anyMachine: true');
    });

    it('so does the instance key from CLERK_SECRET_KEY, and a jwtKey alone', () => {
      const saved = process.env.CLERK_SECRET_KEY;
      process.env.CLERK_SECRET_KEY = 'sk_test_from_env';
      try {
        expect(configError({ apiUrl: API_URL }).message).toContain('CLERK_SECRET_KEY');
      } finally {
        if (saved === undefined) delete process.env.CLERK_SECRET_KEY;
        else process.env.CLERK_SECRET_KEY = saved;
      }
      const client = createM2MClient({ apiUrl: API_URL, secretKey: 'sk_test_ok' });
      try {
        expect(configError({ client }).option).toBe('machineId');
      } finally {
        void client.close();
      }
      const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
      const jwtKey = publicKey.export({ type: 'spki', format: 'pem' }).toString();
      expect(configError({ apiUrl: API_URL, jwtKey }).option).toBe('machineId');
    });

    it('machineId, allowedSubjects, a machine key or anyMachine: true each make it start', () => {
      expect(() => build({ ...instanceOnly, machineId: MACHINE })).not.toThrow();
      expect(() => build({ ...instanceOnly, allowedSubjects: [MACHINE] })).not.toThrow();
      expect(() => build({ ...instanceOnly, anyMachine: true })).not.toThrow();
      expect(() => build({ apiUrl: API_URL, machineSecretKey: 'ak_ok' })).not.toThrow();
    });
  });

  it('TOKEN_VERIFIER_KEYS lists every documented option', () => {
    expect(TOKEN_VERIFIER_KEYS).toEqual(
      expect.arrayContaining([
        'client',
        'machineId',
        'allowedSubjects',
        'clockSkewMs',
        'now',
        'logger',
        'cache',
        'breaker',
        'apiUrl',
        'apiVersion',
        'machineSecretKey',
        'secretKey',
        'timeoutMs',
        'retry',
        'dispatcher',
        'userAgent',
      ]),
    );
  });
});

describe('documented defaults', () => {
  it('the exported defaults are the documented ones', () => {
    expect(DEFAULT_CACHE).toEqual({
      max: 10_000,
      maxBytes: 64 * 1024 * 1024,
      ttlMs: 10_000,
      negativeTtlMs: 5_000,
      staleIfErrorMs: 0,
    });
    expect(DEFAULT_BREAKER).toEqual({ failures: 5, cooldownMs: 5_000 });
    expect(DEFAULT_UPSTREAM_BUDGET).toEqual({ perSecond: 20, burst: 40 });
    expect(DEFAULT_CLOCK_SKEW_MS).toBe(5_000);
  });

  describe('observed against the emulator', () => {
    const h = useHarness();

    it('default breaker: opens after 5 consecutive failures, for 5 000 ms', async () => {
      const minted = await h.mint();
      const verifier = h.verifier({ cache: false });
      h.emulator.failNext(5, 503, { operation: 'verify' });
      for (let i = 0; i < 5; i++) {
        await expectUnavailable(verifier.verify(minted.token), 'upstream_error');
      }
      await expectUnavailable(verifier.verify(minted.token), 'circuit_open');
      h.clock.at(4_999);
      await expectUnavailable(verifier.verify(minted.token), 'circuit_open');
      expect(h.emulator.calls.verify).toBe(5);
      h.clock.at(5_000);
      await expect(verifier.verify(minted.token)).resolves.toMatchObject({ id: minted.id });
      expect(h.emulator.calls.verify).toBe(6);
    });

    it('default now is Date.now: a token that expired long ago by the real clock is refused', async () => {
      // The emulator's clock is the test clock, far in the past of the real one: Clerk calls
      // the token live, the verifier's own (real) clock says it expired.
      expect(Date.now()).toBeGreaterThan(h.clock() + 3_600_000 + DEFAULT_CLOCK_SKEW_MS);
      const minted = await h.mint();
      const verifier = h.verifier({ now: undefined });
      await expectInvalid(verifier.verify(minted.token), 'expired');
      const injected = h.verifier();
      await expect(injected.verify(minted.token)).resolves.toMatchObject({ id: minted.id });
    });
  });
});
