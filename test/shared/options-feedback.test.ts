/**
 * Options that correct you: a mistyped option gets the option it most likely meant (a case or
 * underscore variant, or within two edits), else the list of valid options; a bad value read
 * from the environment names the variable; `logger` is validated the same way everywhere.
 */
import { describe, expect, it } from 'vitest';
import { startEmulator } from '../../src/emulator/index.js';
import {
  createM2MClient,
  createTokenProvider,
  createTokenVerifier,
  M2MConfigError,
  m2mAuth,
} from '../../src/index.js';
import { createRedisStore } from '../../src/redis/index.js';
import { editDistance, suggestOption } from '../../src/shared/validate.js';
import { setEnv } from '../jwt/helpers.js';

const MACHINE_KEY = `ak_${'1'.repeat(32)}`;

function thrown(make: () => unknown): M2MConfigError {
  try {
    make();
  } catch (err) {
    expect(err).toBeInstanceOf(M2MConfigError);
    return err as M2MConfigError;
  }
  throw new Error('expected an M2MConfigError');
}

describe('unknown options', () => {
  it.each([
    ['requird', 'required'],
    ['loger', 'logger'],
    ['api_url', 'apiUrl'],
    ['allowQueryTokens', 'allowQueryToken'],
    ['passError', 'passErrors'],
    ['apiURL', 'apiUrl'],
    ['skip_preflight', 'skipPreflight'],
  ])('m2mAuth({ %s }) suggests `%s`', (typo, meant) => {
    const err = thrown(() => m2mAuth({ [typo]: true, machineSecretKey: MACHINE_KEY } as never));
    expect(err.option).toBe(typo);
    expect(err.message).toContain(`did you mean \`${meant}\`?`);
  });

  it('lists the valid options when nothing is close (`machineSecret` is 3 edits away)', () => {
    const err = thrown(() => m2mAuth({ machineSecret: MACHINE_KEY } as never));
    expect(err.message).not.toContain('did you mean');
    expect(err.message).toContain('valid options:');
    for (const option of ['required', 'machineSecretKey', 'machineId', 'logger', 'cache']) {
      expect(err.message).toContain(`\`${option}\``);
    }
    expect(err.message).not.toContain(MACHINE_KEY);
  });

  it('suggests inside nested options, with their prefix', () => {
    const err = thrown(() =>
      createTokenVerifier({ machineSecretKey: MACHINE_KEY, cache: { ttl: 1 } } as never),
    );
    expect(err.message).toContain('did you mean `cache.ttlMs`?');
  });

  it('covers the verifier, the provider, the Redis store and the emulator', async () => {
    expect(thrown(() => createTokenVerifier({ machinID: 'x' } as never)).message).toContain(
      '`machineId`',
    );
    const client = createM2MClient({ machineSecretKey: MACHINE_KEY, logger: false });
    expect(
      thrown(() => createTokenProvider({ client, refreshBeforeMS: 1 } as never)).message,
    ).toContain('did you mean `refreshBeforeMs`?');
    expect(
      thrown(() => createTokenProvider({ client, token_format: 'jwt' } as never)).message,
    ).toContain('did you mean `tokenFormat`?');
    expect(
      thrown(() => createRedisStore({ url: 'redis://127.0.0.1:1', keyprefix: 'a:' } as never))
        .message,
    ).toContain('did you mean `keyPrefix`?');
    await expect(startEmulator({ latency: 5 } as never)).rejects.toThrow(
      'did you mean `latencyMs`?',
    );
    await client.close();
  });

  it('edit distance counts a swap of two letters as one edit and stops past its limit', () => {
    expect(editDistance('reqiured', 'required')).toBe(1);
    expect(editDistance('loger', 'logger')).toBe(1);
    expect(editDistance('abcdef', 'uvwxyz', 2)).toBe(3);
    expect(suggestOption('zzzzzz', ['required', 'logger'])).toBeUndefined();
  });
});

describe('values read from the environment', () => {
  it.each([
    ['CLERK_MACHINE_SECRET_KEY', 'sk_test_notAMachineKey', 'machineSecretKey', 'ak_'],
    ['CLERK_SECRET_KEY', 'ak_notAnInstanceKey', 'secretKey', 'sk_'],
  ])('%s with a wrong key names the variable', (variable, value, option, prefix) => {
    const restore = [
      setEnv('CLERK_MACHINE_SECRET_KEY', undefined),
      setEnv('CLERK_SECRET_KEY', undefined),
      setEnv(variable, value),
    ];
    try {
      const err = thrown(() => createM2MClient());
      expect(err.variable).toBe(variable);
      expect(err.option).toBe(option);
      expect(err.message).toBe(
        `m2m-guard: ${variable} (read for option \`${option}\`) must be a key starting with \`${prefix}\``,
      );
      expect(err.message).not.toContain(value);
    } finally {
      for (const undo of restore.reverse()) undo();
    }
  });

  it('CLERK_API_URL and CLERK_JWT_KEY are named too; the same value given in code names the option', () => {
    const restore = [setEnv('CLERK_API_URL', 'ftp://example.test')];
    try {
      const err = thrown(() => createM2MClient({ machineSecretKey: MACHINE_KEY }));
      expect(err.message).toMatch(/^m2m-guard: CLERK_API_URL \(read for option `apiUrl`\) must/);
    } finally {
      restore.forEach((undo) => {
        undo();
      });
    }
    const jwt = setEnv('CLERK_JWT_KEY', 'not a key');
    try {
      const err = thrown(() => createTokenVerifier({ machineSecretKey: MACHINE_KEY }));
      expect(err.variable).toBe('CLERK_JWT_KEY');
      expect(err.message).toContain('CLERK_JWT_KEY (read for option `jwtKey`)');
      const inCode = thrown(() =>
        createTokenVerifier({ machineSecretKey: MACHINE_KEY, jwtKey: 'not a key' }),
      );
      expect(inCode.variable).toBeUndefined();
      expect(inCode.message).toMatch(/^m2m-guard: option `jwtKey` must/);
    } finally {
      jwt();
    }
  });
});

describe('the logger option', () => {
  it('takes a pino logger or false, and refuses anything else naming the option', () => {
    for (const bad of [true, 'debug', {}, { info() {} }]) {
      const err = thrown(() =>
        createM2MClient({ machineSecretKey: MACHINE_KEY, logger: bad as never }),
      );
      expect(err.option).toBe('logger');
      expect(err.message).toContain('or `false` to silence it');
    }
    const silent = createM2MClient({ machineSecretKey: MACHINE_KEY, logger: false });
    return silent.close();
  });
});
