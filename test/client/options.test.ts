import { pino } from 'pino';
import { Agent } from 'undici';
import { beforeEach, describe, expect, it } from 'vitest';
import {
  createM2MClient,
  DEFAULT_API_URL,
  DEFAULT_RETRY,
  DEFAULT_TIMEOUT_MS,
  type M2MClient,
  type M2MClientOptions,
} from '../../src/client/index.js';
import { M2MConfigError } from '../../src/shared/config-error.js';
import { type ScriptedServer, startScriptedServer } from '../helpers/scripted-server.js';
import {
  INSTANCE_KEY,
  isolateClerkEnv,
  MACHINE_KEY,
  OTHER_MACHINE_KEY,
  TOKEN,
  TOKEN_ID,
  tokenJson,
  useCleanup,
} from './fixtures.js';

isolateClerkEnv();
const track = useCleanup();

/** Builds a client from untyped options and returns the `M2MConfigError` it must throw. */
function configError(options: unknown): M2MConfigError {
  let client: M2MClient | undefined;
  try {
    client = createM2MClient(options as M2MClientOptions);
  } catch (err) {
    expect(err).toBeInstanceOf(M2MConfigError);
    expect(err).toBeInstanceOf(TypeError);
    return err as M2MConfigError;
  }
  void client.close();
  throw new Error('expected createM2MClient to throw an M2MConfigError');
}

/** Asserts the error names `option` and repeats none of the given values. */
function expectNames(err: M2MConfigError, option: string, ...values: unknown[]): void {
  expect(err.option).toBe(option);
  expect(err.name).toBe('M2MConfigError');
  expect(err.message).toContain(`\`${option}\``);
  for (const value of values) {
    if (typeof value === 'string' && value.length >= 4) {
      expect(err.message).not.toContain(value);
      expect(String(err)).not.toContain(value);
      expect(err.stack ?? '').not.toContain(value);
    }
  }
}

describe('apiUrl', () => {
  it.each([
    ['not a URL', 'api.clerk.com'],
    ['a relative path', '/m2m_tokens'],
    ['not http(s)', 'ftp://api.clerk.com'],
    ['with a query', 'https://api.clerk.com?x=1'],
    ['with a query after a path', 'https://api.clerk.com/v1?debug=true'],
    ['with a fragment', 'https://api.clerk.com/#top'],
    ['an empty string', ''],
    ['not a string', 42],
  ])('rejects %s', (_label, apiUrl) => {
    expectNames(configError({ apiUrl, machineSecretKey: MACHINE_KEY }), 'apiUrl', apiUrl);
  });

  it('rejects credentials without repeating them', () => {
    const secret = 'sk_live_hiddenPassword123';
    const err = configError({ apiUrl: `https://someone:${secret}@api.clerk.com` });
    expectNames(err, 'apiUrl', secret, 'someone');
    expect(err.message).toMatch(/credentials/);
  });

  it('rejects a user name alone', () => {
    expectNames(configError({ apiUrl: 'https://someuser@api.clerk.com' }), 'apiUrl', 'someuser');
  });

  it('defaults to https://api.clerk.com', () => {
    expect(DEFAULT_API_URL).toBe('https://api.clerk.com');
    expect(track(createM2MClient({ machineSecretKey: MACHINE_KEY })).apiUrl).toBe(DEFAULT_API_URL);
  });

  it.each([
    ['http://127.0.0.1:4000/', 'http://127.0.0.1:4000'],
    ['https://api.clerk.com/v1', 'https://api.clerk.com/v1'],
    ['https://api.clerk.com/v1//', 'https://api.clerk.com/v1'],
    ['HTTPS://API.Clerk.COM:443', 'https://api.clerk.com'],
  ])('normalises %s to %s', (apiUrl, expected) => {
    expect(track(createM2MClient({ apiUrl })).apiUrl).toBe(expected);
  });
});

describe('keys', () => {
  it.each([
    ['an instance key', INSTANCE_KEY],
    ['a publishable key', 'pk_test_Y2xlcmsuZXhhbXBsZS5jb20k'],
    ['a key with whitespace', 'ak_test_with space_1234'],
    ['a key with a newline', 'ak_test_withNewline\n'],
    ['an empty string', ''],
    ['a number', 1234],
  ])('machineSecretKey rejects %s without repeating it', (_label, key) => {
    expectNames(configError({ machineSecretKey: key }), 'machineSecretKey', key);
  });

  it.each([
    ['a machine key', MACHINE_KEY],
    ['a publishable key', 'pk_live_Y2xlcmsuZXhhbXBsZS5jb20k'],
    ['a key with whitespace', 'sk_test_has space_987654'],
    ['an empty string', ''],
    ['an object', { key: INSTANCE_KEY }],
  ])('secretKey rejects %s without repeating it', (_label, key) => {
    expectNames(configError({ secretKey: key }), 'secretKey', key);
  });

  it('accepts well-formed keys', () => {
    const client = track(
      createM2MClient({ machineSecretKey: MACHINE_KEY, secretKey: INSTANCE_KEY }),
    );
    expect(client.verifyIdentity).toMatch(/^machine:/);
  });
});

describe('timeoutMs', () => {
  it.each([
    ['zero', 0],
    ['negative', -100],
    ['not an integer', 1.5],
    ['NaN', Number.NaN],
    ['Infinity', Number.POSITIVE_INFINITY],
    ['a string', '100'],
    ['over ten minutes', 600_001],
  ])('rejects %s', (_label, timeoutMs) => {
    expectNames(configError({ timeoutMs }), 'timeoutMs');
  });

  it('accepts 1 and 600000 and defaults to 5000', () => {
    expect(DEFAULT_TIMEOUT_MS).toBe(5000);
    expect(() => track(createM2MClient({ timeoutMs: 1 }))).not.toThrow();
    expect(() => track(createM2MClient({ timeoutMs: 600_000 }))).not.toThrow();
  });
});

describe('retry', () => {
  it.each([
    ['retry.retries', { retries: -1 }],
    ['retry.retries', { retries: 1.5 }],
    ['retry.retries', { retries: 11 }],
    ['retry.retries', { retries: '2' }],
    ['retry.minDelayMs', { minDelayMs: -1 }],
    ['retry.minDelayMs', { minDelayMs: 0.5 }],
    ['retry.minDelayMs', { minDelayMs: null }],
    ['retry.maxDelayMs', { maxDelayMs: -5 }],
    ['retry.maxDelayMs', { maxDelayMs: 300_001 }],
    ['retry.maxDelayMs', { minDelayMs: 500, maxDelayMs: 100 }],
    ['retry.maxDelayMs', { maxDelayMs: 50 }],
  ])('rejects a bad %s (%j)', (option, retry) => {
    expectNames(configError({ retry }), option);
  });

  it.each([
    ['true', true],
    ['null', null],
    ['a number', 3],
    ['an array', [1]],
  ])('rejects retry as %s', (_label, retry) => {
    expectNames(configError({ retry }), 'retry');
  });

  it('rejects an unknown retry key', () => {
    const err = configError({ retry: { attempts: 3 } });
    expectNames(err, 'retry.attempts');
    expect(err.message).not.toMatch(/did you mean/);
  });

  it('suggests the retry key a wrongly cased one meant', () => {
    const err = configError({ retry: { MaxDelayMs: 10 } });
    expectNames(err, 'retry.MaxDelayMs');
    expect(err.message).toContain('did you mean `retry.maxDelayMs`?');
  });

  it('accepts false, {} and in-range values', () => {
    expect(DEFAULT_RETRY).toEqual({ retries: 2, minDelayMs: 100, maxDelayMs: 2000 });
    for (const retry of [
      false,
      {},
      { retries: 0 },
      { retries: 10, minDelayMs: 0, maxDelayMs: 0 },
    ]) {
      expect(() =>
        track(createM2MClient({ retry: retry as M2MClientOptions['retry'] })),
      ).not.toThrow();
    }
  });
});

describe('other options', () => {
  it.each([
    ['apiURL', 'apiUrl'],
    ['timeoutMS', 'timeoutMs'],
    ['machinesecretkey', 'machineSecretKey'],
    ['SecretKey', 'secretKey'],
    ['useragent', 'userAgent'],
    ['api_url', 'apiUrl'],
    ['machine_secret_key', 'machineSecretKey'],
    ['timeoutMsec', 'timeoutMs'],
  ])('rejects the unknown option %s with a did-you-mean %s', (typo, meant) => {
    const err = configError({ [typo]: 'sk_test_valueNotToBeEchoed' });
    expectNames(err, typo, 'sk_test_valueNotToBeEchoed');
    expect(err.message).toContain(`did you mean \`${meant}\`?`);
  });

  it('rejects an unknown option with no near match with the list of options, without echoing its value', () => {
    // `machineSecret` is 3 edits from `machineSecretKey`: too far to guess, so the list is given.
    for (const typo of ['machineSecret', 'flavour']) {
      const err = configError({ [typo]: MACHINE_KEY });
      expectNames(err, typo, MACHINE_KEY);
      expect(err.message).not.toMatch(/did you mean/);
      expect(err.message).toMatch(/valid options: `apiUrl`, `apiVersion`, `machineSecretKey`/);
      expect(err.message).toContain('`userAgent`');
    }
  });

  it.each([
    ['console', console],
    ['an empty object', {}],
    ['null', null],
    ['a string', 'debug'],
    ['an object without child', { debug() {}, info() {}, warn() {}, error() {} }],
  ])('rejects a logger that is %s', (_label, logger) => {
    expectNames(configError({ logger }), 'logger');
  });

  it('accepts a pino logger', () => {
    expect(() => track(createM2MClient({ logger: pino({ level: 'silent' }) }))).not.toThrow();
  });

  it.each([
    ['an empty object', {}],
    ['null', null],
    ['a string', 'http://127.0.0.1'],
    ['a function', () => undefined],
  ])('rejects a dispatcher that is %s', (_label, dispatcher) => {
    expectNames(configError({ dispatcher }), 'dispatcher');
  });

  it('accepts an undici dispatcher', async () => {
    const agent = track(new Agent());
    expect(() => track(createM2MClient({ dispatcher: agent }))).not.toThrow();
  });

  it.each([
    ['apiVersion', ''],
    ['apiVersion', 20260512],
    ['userAgent', ''],
    ['userAgent', { name: 'x' }],
  ])('rejects a bad %s (%j)', (option, value) => {
    expectNames(configError({ [option]: value }), option);
  });

  // Bug: these values pass construction, then undici refuses the header on every call, which the
  // client reports as an M2MNetworkError "no answer (UND_ERR_INVALID_ARG)".
  it.each([
    ['userAgent', 'm2m-guard\r\nx-injected: 1'],
    ['apiVersion', '2026-05-12\n'],
    ['machineSecretKey', 'ak_test_nul\u0000byte_1234'],
    ['secretKey', 'sk_test_bell\u0007char_1234'],
  ])('rejects %s with a character no header can carry (%j)', (option, value) => {
    expectNames(configError({ [option]: value }), option, value);
  });

  it.each([
    ['null', null],
    ['a string', 'https://api.clerk.com'],
    ['an array', []],
  ])('rejects options that are %s', (_label, options) => {
    expectNames(configError(options), 'options');
  });
});

describe('environment fallbacks', () => {
  let server: ScriptedServer;
  beforeEach(async () => {
    server = track(await startScriptedServer());
    server.replyAlways({ body: tokenJson() });
  });

  it('reads CLERK_API_URL when apiUrl is not given', async () => {
    process.env.CLERK_API_URL = `${server.url}/v1/`;
    const client = track(createM2MClient({ machineSecretKey: MACHINE_KEY, retry: false }));
    expect(client.apiUrl).toBe(`${server.url}/v1`);
    await client.verifyToken({ token: TOKEN });
    expect(server.requests[0]?.path).toBe('/v1/m2m_tokens/verify');
  });

  it('prefers apiUrl over CLERK_API_URL and ignores an empty CLERK_API_URL', () => {
    process.env.CLERK_API_URL = 'http://127.0.0.1:1/from-env';
    expect(track(createM2MClient({ apiUrl: server.url })).apiUrl).toBe(server.url);
    process.env.CLERK_API_URL = '';
    expect(track(createM2MClient({})).apiUrl).toBe(DEFAULT_API_URL);
  });

  it('reads CLERK_MACHINE_SECRET_KEY', async () => {
    process.env.CLERK_MACHINE_SECRET_KEY = MACHINE_KEY;
    process.env.CLERK_SECRET_KEY = INSTANCE_KEY;
    const client = track(createM2MClient({ apiUrl: server.url, retry: false }));
    expect(client.verifyIdentity).toMatch(/^machine:/);
    await client.verifyToken({ token: TOKEN });
    expect(server.requests[0]?.headers.authorization).toBe(`Bearer ${MACHINE_KEY}`);
  });

  it('reads CLERK_SECRET_KEY', async () => {
    process.env.CLERK_SECRET_KEY = INSTANCE_KEY;
    const client = track(createM2MClient({ apiUrl: server.url, retry: false }));
    expect(client.verifyIdentity).toMatch(/^instance:/);
    await client.revokeToken({ m2mTokenId: TOKEN_ID });
    expect(server.requests[0]?.headers.authorization).toBe(`Bearer ${INSTANCE_KEY}`);
  });

  it('prefers the options over the environment', async () => {
    process.env.CLERK_MACHINE_SECRET_KEY = OTHER_MACHINE_KEY;
    process.env.CLERK_SECRET_KEY = 'sk_test_fromTheEnvironment_000';
    const client = track(
      createM2MClient({ apiUrl: server.url, machineSecretKey: MACHINE_KEY, retry: false }),
    );
    await client.verifyToken({ token: TOKEN });
    expect(server.requests[0]?.headers.authorization).toBe(`Bearer ${MACHINE_KEY}`);
    expect(client.hasSecretKey).toBe(false);
  });

  it('keys given in code win whole: an explicit secretKey keeps the environment keys out', async () => {
    process.env.CLERK_MACHINE_SECRET_KEY = MACHINE_KEY;
    const client = track(
      createM2MClient({ apiUrl: server.url, secretKey: INSTANCE_KEY, retry: false }),
    );
    expect(client.verifyIdentity).toMatch(/^instance:/);
    await client.verifyToken({ token: TOKEN });
    expect(server.requests[0]?.headers.authorization).toBe(`Bearer ${INSTANCE_KEY}`);
    await expect(client.createToken()).rejects.toBeInstanceOf(M2MConfigError);
    expect(server.requests).toHaveLength(1);
  });

  it('treats empty environment keys as unset', () => {
    process.env.CLERK_MACHINE_SECRET_KEY = '';
    process.env.CLERK_SECRET_KEY = '';
    expect(track(createM2MClient({ apiUrl: server.url })).verifyIdentity).toBe('none');
  });

  it('validates keys from the environment without repeating them', () => {
    process.env.CLERK_MACHINE_SECRET_KEY = INSTANCE_KEY;
    expectNames(configError({}), 'machineSecretKey', INSTANCE_KEY);
    delete process.env.CLERK_MACHINE_SECRET_KEY;
    process.env.CLERK_SECRET_KEY = MACHINE_KEY;
    expectNames(configError({}), 'secretKey', MACHINE_KEY);
  });

  it('does not leak environment changes between tests', () => {
    expect(process.env.CLERK_MACHINE_SECRET_KEY).toBeUndefined();
    expect(process.env.CLERK_SECRET_KEY).toBeUndefined();
    expect(process.env.CLERK_API_URL).toBeUndefined();
  });
});

describe('verifyIdentity', () => {
  it('is none without a key', () => {
    expect(track(createM2MClient({})).verifyIdentity).toBe('none');
  });

  it('differs between the machine key and the instance key and never holds a key', () => {
    const machine = track(createM2MClient({ machineSecretKey: MACHINE_KEY }));
    const both = track(createM2MClient({ machineSecretKey: MACHINE_KEY, secretKey: INSTANCE_KEY }));
    const instance = track(createM2MClient({ secretKey: INSTANCE_KEY }));
    const other = track(createM2MClient({ machineSecretKey: OTHER_MACHINE_KEY }));
    expect(machine.verifyIdentity).toMatch(/^machine:[0-9a-f]{6,}$/);
    expect(instance.verifyIdentity).toMatch(/^instance:[0-9a-f]{6,}$/);
    expect(both.verifyIdentity).toBe(machine.verifyIdentity);
    expect(other.verifyIdentity).not.toBe(machine.verifyIdentity);
    expect(instance.verifyIdentity).not.toBe(machine.verifyIdentity);
    for (const identity of [machine, instance, other].map((c) => c.verifyIdentity)) {
      expect(identity).not.toContain(MACHINE_KEY);
      expect(identity).not.toContain(OTHER_MACHINE_KEY);
      expect(identity).not.toContain(INSTANCE_KEY);
      expect(identity).not.toContain(MACHINE_KEY.slice(3, 15));
      expect(identity).not.toContain(INSTANCE_KEY.slice(3, 15));
    }
  });

  it('is stable for the same key', () => {
    const a = track(createM2MClient({ secretKey: INSTANCE_KEY }));
    const b = track(createM2MClient({ secretKey: INSTANCE_KEY, apiUrl: 'http://127.0.0.1:9' }));
    expect(a.verifyIdentity).toBe(b.verifyIdentity);
  });
});
