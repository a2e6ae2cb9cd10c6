import { afterEach, describe, expect, it } from 'vitest';
import { startEmulator } from '../../src/emulator/index.js';
import { M2MConfigError } from '../../src/shared/config-error.js';
import { MACHINE_ID_PATTERN } from '../../src/shared/wire.js';
import { call, closeEmulators, createToken, start } from './helpers.js';

afterEach(closeEmulators);

const ID_A = `mch_${'A'.repeat(27)}`;
const ID_B = `mch_${'B'.repeat(27)}`;

async function configError(options: unknown): Promise<M2MConfigError> {
  try {
    // biome-ignore lint/suspicious/noExplicitAny: deliberately invalid options
    const emulator = await startEmulator(options as any);
    await emulator.close();
  } catch (err) {
    expect(err).toBeInstanceOf(M2MConfigError);
    return err as M2MConfigError;
  }
  throw new Error('startEmulator accepted invalid options');
}

describe('startEmulator defaults', () => {
  it('listens on an ephemeral loopback port with generated keys and two machines', async () => {
    const emulator = await start();
    expect(emulator.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(emulator.url).not.toMatch(/:0$/);
    expect(emulator.instanceSecretKey).toMatch(/^sk_test_[A-Za-z0-9]{20,}$/);
    expect(Object.keys(emulator.machines).sort()).toEqual(['api', 'caller']);
    const { caller, api } = emulator.machines;
    for (const machine of [caller!, api!]) {
      expect(machine.id).toMatch(MACHINE_ID_PATTERN);
      expect(machine.secretKey).toMatch(/^ak_[0-9a-f]{32}$/);
      expect(machine.defaultTokenTtlSeconds).toBe(3600);
    }
    expect(caller!.name).toBe('caller');
    expect(caller!.scopes).toEqual([api!.id]);
    expect(api!.scopes).toEqual([]);
    expect(caller!.id).not.toBe(api!.id);
    expect(emulator.jwks.keys[0]!.kid).toMatch(/^ins_\w{27}$/);
    expect(emulator.jwtKey).toContain('-----BEGIN PUBLIC KEY-----');
    expect(emulator.calls).toEqual({ create: 0, list: 0, revoke: 0, verify: 0, jwks: 0 });
  });

  it('generates different keys for each emulator', async () => {
    const [a, b] = await Promise.all([start(), start()]);
    expect(a!.instanceSecretKey).not.toBe(b!.instanceSecretKey);
    expect(a!.machines.caller!.secretKey).not.toBe(b!.machines.caller!.secretKey);
    expect(a!.jwks.keys[0]!.kid).not.toBe(b!.jwks.keys[0]!.kid);
  });

  it('takes machines with fixed ids and keys, scoped by name or id', async () => {
    const emulator = await start({
      instanceSecretKey: 'sk_test_fixed',
      machines: [
        { name: 'a', id: ID_A, secretKey: 'ak_a', scopedMachines: ['b', ID_A] },
        { name: 'b', id: ID_B, secretKey: 'ak_b', defaultTokenTtlSeconds: null },
      ],
    });
    expect(emulator.instanceSecretKey).toBe('sk_test_fixed');
    expect(emulator.machines.a).toEqual({
      name: 'a',
      id: ID_A,
      secretKey: 'ak_a',
      scopes: [ID_B, ID_A],
      defaultTokenTtlSeconds: 3600,
    });
    expect(emulator.machines.b!.defaultTokenTtlSeconds).toBeNull();
    const token = await createToken(emulator, 'a');
    expect(token.scopes).toEqual([ID_B, ID_A]);
    expect(token.subject).toBe(ID_A);
  });

  it('listens on the given host and port', async () => {
    const first = await start({ host: 'localhost' });
    expect(first.url).toMatch(/^http:\/\/localhost:\d+$/);
    const port = Number(new URL(first.url).port);
    await first.close();
    const second = await start({ port });
    expect(second.url).toBe(`http://127.0.0.1:${port}`);
    // The port is now taken: a second emulator on it must fail to start, not hang.
    await expect(startEmulator({ port })).rejects.toThrow(/EADDRINUSE/);
  });

  it('exposes machines that callers cannot change', async () => {
    const emulator = await start();
    expect(() => {
      (emulator.machines.caller as { secretKey: string }).secretKey = 'ak_hijack';
    }).toThrow(TypeError);
    const res = await call(emulator, 'POST', '/m2m_tokens', { key: 'ak_hijack', body: {} });
    expect(res.status).toBe(401);
  });
});

describe('startEmulator option validation', () => {
  const cases: [string, unknown, string][] = [
    ['options not an object', 'x', 'options'],
    ['unknown option', { latency: 5 }, 'latency'],
    ['negative port', { port: -1 }, 'port'],
    ['port too large', { port: 70_000 }, 'port'],
    ['fractional port', { port: 1.5 }, 'port'],
    ['empty host', { host: '' }, 'host'],
    ['instance key without sk_', { instanceSecretKey: 'ak_nope' }, 'instanceSecretKey'],
    ['clock not a function', { clock: 5 }, 'clock'],
    ['negative latency', { latencyMs: -1 }, 'latencyMs'],
    ['rateLimit true', { rateLimit: true }, 'rateLimit'],
    ['rateLimit limit 0', { rateLimit: { limit: 0, windowMs: 1000 } }, 'rateLimit.limit'],
    ['rateLimit without windowMs', { rateLimit: { limit: 1 } }, 'rateLimit.windowMs'],
    [
      'rateLimit unknown key',
      { rateLimit: { limit: 1, windowMs: 1, burst: 2 } },
      'rateLimit.burst',
    ],
    ['logger not pino', { logger: {} }, 'logger'],
    ['machines not an array', { machines: {} }, 'machines'],
    ['machine not an object', { machines: ['a'] }, 'machines[0]'],
    ['machine without name', { machines: [{}] }, 'machines[0].name'],
    ['duplicate name', { machines: [{ name: 'a' }, { name: 'a' }] }, 'machines[1].name'],
    ['bad id', { machines: [{ name: 'a', id: 'mch_short' }] }, 'machines[0].id'],
    [
      'duplicate id',
      {
        machines: [
          { name: 'a', id: ID_A },
          { name: 'b', id: ID_A },
        ],
      },
      'machines[1].id',
    ],
    [
      'secret key without ak_',
      { machines: [{ name: 'a', secretKey: 'sk_x' }] },
      'machines[0].secretKey',
    ],
    [
      'duplicate secret key',
      {
        machines: [
          { name: 'a', secretKey: 'ak_x' },
          { name: 'b', secretKey: 'ak_x' },
        ],
      },
      'machines[1].secretKey',
    ],
    [
      'machine key equal to the instance key',
      { instanceSecretKey: 'sk_same', machines: [{ name: 'a', secretKey: 'sk_same' }] },
      'machines[0].secretKey',
    ],
    ['unknown machine key', { machines: [{ name: 'a', scopes: [] }] }, 'machines[0].scopes'],
    [
      'scopedMachines not an array',
      { machines: [{ name: 'a', scopedMachines: 'b' }] },
      'machines[0].scopedMachines',
    ],
    [
      'scope naming an unknown machine',
      { machines: [{ name: 'a', scopedMachines: ['nobody'] }] },
      'machines[0].scopedMachines[0]',
    ],
    [
      'ttl 0',
      { machines: [{ name: 'a', defaultTokenTtlSeconds: 0 }] },
      'machines[0].defaultTokenTtlSeconds',
    ],
    [
      'fractional ttl',
      { machines: [{ name: 'a', defaultTokenTtlSeconds: 1.5 }] },
      'machines[0].defaultTokenTtlSeconds',
    ],
    [
      'ttl over ten years',
      { machines: [{ name: 'a', defaultTokenTtlSeconds: 315_360_001 }] },
      'machines[0].defaultTokenTtlSeconds',
    ],
  ];

  it.each(cases)('rejects %s', async (_name, options, option) => {
    const err = await configError(options);
    expect(err.option).toBe(option);
    expect(err.message).toContain(`\`${option}\``);
  });

  it('never echoes a secret in the error', async () => {
    const err = await configError({ instanceSecretKey: 'secret-value-123' });
    expect(err.message).not.toContain('secret-value-123');
  });
});

describe('test control validation', () => {
  it('rejects bad failNext, setLatency and setRateLimit arguments', async () => {
    const emulator = await start();
    const option = (fn: () => void): string | undefined => {
      try {
        fn();
      } catch (err) {
        expect(err).toBeInstanceOf(M2MConfigError);
        return (err as M2MConfigError).option;
      }
      return undefined;
    };
    // biome-ignore lint/suspicious/noExplicitAny: deliberately invalid arguments
    const anyEmulator = emulator as any;
    expect(option(() => emulator.failNext(0, 503))).toBe('count');
    expect(option(() => emulator.failNext(1.5, 503))).toBe('count');
    expect(option(() => emulator.failNext(1, 200))).toBe('fault');
    expect(option(() => emulator.failNext(1, 600))).toBe('fault');
    expect(option(() => anyEmulator.failNext(1, 'explode'))).toBe('fault');
    expect(option(() => anyEmulator.failNext(1, 503, { operation: 'jwks' }))).toBe(
      'options.operation',
    );
    expect(option(() => emulator.failNext(1, 503, { retryAfter: -1 }))).toBe('options.retryAfter');
    expect(option(() => anyEmulator.failNext(1, 503, { retry: 1 }))).toBe('options.retry');
    expect(option(() => emulator.setLatency(-5))).toBe('ms');
    expect(option(() => emulator.setRateLimit({ limit: 0, windowMs: 10 }))).toBe('rateLimit.limit');
    // Nothing was queued by the rejected calls.
    const res = await call(emulator, 'GET', '/m2m_tokens', { key: 'sk_unknown' });
    expect(res.status).toBe(401);
  });
});
