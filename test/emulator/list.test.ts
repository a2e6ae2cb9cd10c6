import { createClerkClient } from '@clerk/backend';
import { afterAll, describe, expect, it } from 'vitest';
import type { Emulator } from '../../src/emulator/index.js';
import {
  call,
  closeEmulators,
  createToken,
  expectClerkError,
  reusableEmulators,
} from './helpers.js';

afterAll(closeEmulators);

const setup = reusableEmulators();

const list = (emulator: Emulator, query = '') =>
  call(emulator, 'GET', `/m2m_tokens?subject=${emulator.machines.caller!.id}${query}`, {
    key: emulator.instanceSecretKey,
  });
const ids = (res: { json: { m2m_tokens: { id: string }[] } }) =>
  res.json.m2m_tokens.map((t) => t.id);

describe('GET /m2m_tokens', () => {
  it('lists newest first, same-millisecond tokens by creation order, without secrets', async () => {
    const { emulator, clock } = await setup();
    const t1 = await createToken(emulator, 'caller');
    clock.advance(1);
    const t2 = await createToken(emulator, 'caller');
    clock.advance(5);
    const t3 = await createToken(emulator, 'caller');
    const t4 = await createToken(emulator, 'caller'); // same ms as t3
    await createToken(emulator, 'api'); // another subject
    const res = await list(emulator);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('application/json');
    expect(Object.keys(res.json).sort()).toEqual(['m2m_tokens', 'total_count']);
    expect(ids(res)).toEqual([t4.id, t3.id, t2.id, t1.id]);
    expect(res.json.total_count).toBe(4);
    for (const item of res.json.m2m_tokens) {
      expect(item).not.toHaveProperty('token');
      expect(item.object).toBe('machine_to_machine_token');
    }
    const { token: _secret, ...withoutSecret } = t1;
    expect(res.json.m2m_tokens[3]).toEqual(withoutSecret);
  });

  it('paginates with limit (default 10) and offset; total_count counts everything', async () => {
    const { emulator, clock } = await setup();
    const created: string[] = [];
    for (let i = 0; i < 12; i++) {
      created.unshift((await createToken(emulator, 'caller')).id);
      clock.advance(1);
    }
    const first = await list(emulator);
    expect(ids(first)).toEqual(created.slice(0, 10));
    expect(first.json.total_count).toBe(12);
    const page = await list(emulator, '&limit=5&offset=10');
    expect(ids(page)).toEqual(created.slice(10));
    expect(page.json.total_count).toBe(12);
    const middle = await list(emulator, '&limit=3&offset=4');
    expect(ids(middle)).toEqual(created.slice(4, 7));
    const past = await list(emulator, '&offset=50&limit=100');
    expect(ids(past)).toEqual([]);
    expect(past.json.total_count).toBe(12);
    expect(ids(await list(emulator, '&limit=1&offset=0'))).toEqual([created[0]]);
  });

  it('leaves revoked and expired tokens out unless included', async () => {
    const { emulator, clock } = await setup();
    const expired = await createToken(emulator, 'caller', { seconds_until_expiration: 10 });
    const expiredRevoked = await createToken(emulator, 'caller', { seconds_until_expiration: 10 });
    const revoked = await createToken(emulator, 'caller');
    const live = await createToken(emulator, 'caller');
    for (const t of [revoked, expiredRevoked]) {
      await call(emulator, 'POST', `/m2m_tokens/${t.id}/revoke`, {
        key: emulator.instanceSecretKey,
        body: { revocation_reason: 'test' },
      });
    }
    clock.advance(10_000);
    const sorted = (res: Parameters<typeof ids>[0]) => ids(res).sort();

    const base = await list(emulator);
    expect(ids(base)).toEqual([live.id]);
    expect(base.json.total_count).toBe(1);
    expect(ids(await list(emulator, '&revoked=false&expired=false'))).toEqual([live.id]);
    expect(sorted(await list(emulator, '&revoked=true'))).toEqual([live.id, revoked.id].sort());
    const withExpired = await list(emulator, '&expired=true');
    expect(sorted(withExpired)).toEqual([live.id, expired.id].sort());
    const expiredItem = withExpired.json.m2m_tokens.find(
      (t: { id: string }) => t.id === expired.id,
    );
    expect(expiredItem.expired).toBe(true);
    const all = await list(emulator, '&revoked=true&expired=true');
    expect(sorted(all)).toEqual([live.id, revoked.id, expired.id, expiredRevoked.id].sort());
    expect(all.json.total_count).toBe(4);
  });

  it('does not list JWT-format tokens', async () => {
    const { emulator } = await setup();
    await createToken(emulator, 'caller', { token_format: 'jwt' });
    const opaque = await createToken(emulator, 'caller');
    const res = await list(emulator, '&revoked=true&expired=true');
    expect(ids(res)).toEqual([opaque.id]);
  });

  const bad: [string, string, string][] = [
    ['missing subject', '/m2m_tokens', 'form_param_missing'],
    ['empty subject', '/m2m_tokens?subject=', 'form_param_missing'],
    ['malformed subject', '/m2m_tokens?subject=mch_short', 'form_param_format_invalid'],
    [
      'subject with a bad character',
      `/m2m_tokens?subject=mch_${'a'.repeat(26)}-`,
      'form_param_format_invalid',
    ],
    ['revoked=yes', '&revoked=yes', 'form_param_value_invalid'],
    ['expired=1', '&expired=1', 'form_param_value_invalid'],
    ['limit=0', '&limit=0', 'form_param_value_invalid'],
    ['limit=101', '&limit=101', 'form_param_value_invalid'],
    ['limit=abc', '&limit=abc', 'form_param_value_invalid'],
    ['limit=1.5', '&limit=1.5', 'form_param_value_invalid'],
    ['limit=-1', '&limit=-1', 'form_param_value_invalid'],
    ['limit empty', '&limit=', 'form_param_value_invalid'],
    ['offset=-1', '&offset=-1', 'form_param_value_invalid'],
    ['offset=x', '&offset=x', 'form_param_value_invalid'],
  ];

  it.each(bad)('rejects %s with 400', async (_name, query, code) => {
    const { emulator } = await setup();
    const path = query.startsWith('/')
      ? query
      : `/m2m_tokens?subject=${emulator.machines.caller!.id}${query}`;
    const res = await call(emulator, 'GET', path, { key: emulator.instanceSecretKey });
    expectClerkError(res, 400, code);
  });

  it('accepts the limit bounds 1 and 100', async () => {
    const { emulator } = await setup();
    expect((await list(emulator, '&limit=1')).status).toBe(200);
    expect((await list(emulator, '&limit=100')).status).toBe(200);
  });

  it("works through Clerk's SDK, with a machine key for its own tokens", async () => {
    const { emulator, clock } = await setup();
    const made: string[] = [];
    for (let i = 0; i < 3; i++) {
      made.unshift((await createToken(emulator, 'caller')).id);
      clock.advance(1);
    }
    await call(emulator, 'POST', `/m2m_tokens/${made[0]}/revoke`, {
      key: emulator.instanceSecretKey,
      body: {},
    });
    const clerk = createClerkClient({
      secretKey: emulator.instanceSecretKey,
      machineSecretKey: emulator.machines.caller!.secretKey,
      apiUrl: emulator.url,
    });
    const page = await clerk.m2m.list({
      subject: emulator.machines.caller!.id,
      revoked: true,
      limit: 2,
      offset: 1,
    });
    expect(page.totalCount).toBe(3);
    expect(page.data.map((t) => t.id)).toEqual(made.slice(1, 3));
    const live = await clerk.m2m.list({ subject: emulator.machines.caller!.id });
    expect(live.data.map((t) => t.id)).toEqual(made.slice(1));
    expect(live.data[0]!.revoked).toBe(false);
  });
});
