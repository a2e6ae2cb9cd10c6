/**
 * On a cache hit the adapters decide synchronously: `next` is called before the middleware
 * returns, and no promise of ours is made. Driven by hand with real `IncomingMessage`s and
 * `Request`s, against the emulator for the first (missing) answer.
 */
import { IncomingMessage, type ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import type { Context } from 'hono';
import type { ParameterizedContext } from 'koa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as honoGuard from '../../src/hono/index.js';
import { m2mAuth } from '../../src/index.js';
import * as koaGuard from '../../src/koa/index.js';
import { type Fixture, startFixture } from '../middleware/fixture.js';

let fx: Fixture;
let token: string;

beforeAll(async () => {
  fx = await startFixture();
  token = (await fx.mint()).token;
});

afterAll(async () => {
  await fx.close();
});

function nodeRequest(): IncomingMessage {
  const req = new IncomingMessage(new Socket());
  req.method = 'GET';
  req.url = '/';
  req.headers = { authorization: `Bearer ${token}` };
  req.rawHeaders = ['Authorization', `Bearer ${token}`];
  return req;
}

/** Calls `run` with a `next` and reports whether `next` ran before `run` returned. */
async function nextCalledSynchronously(
  run: (next: () => Promise<void>) => unknown,
): Promise<{ sync: boolean; returned: unknown }> {
  let called = false;
  const returned = run(async () => {
    called = true;
  });
  const sync = called;
  await returned;
  return { sync, returned };
}

describe('a cache hit is decided synchronously', () => {
  it('Express/Connect m2mAuth(): next() before return, and nothing returned', async () => {
    const auth = m2mAuth({ ...fx.machineKey(), retry: false });
    const res = {} as ServerResponse;
    let missSync = true;
    await new Promise<void>((resolve) => {
      let returned = false;
      auth(nodeRequest(), res, () => {
        missSync = !returned;
        resolve();
      });
      returned = true;
    });
    expect(missSync).toBe(false);
    const req = nodeRequest();
    const hit = await nextCalledSynchronously((next) => auth(req, res, next));
    expect(hit).toEqual({ sync: true, returned: undefined });
    expect(req.m2m?.subject).toBe(fx.caller.id);
    await auth.close();
  });

  it('Koa: next() before return, its own promise handed back', async () => {
    const auth = koaGuard.m2mAuth({ ...fx.machineKey(), retry: false });
    const ctx = () =>
      ({ req: nodeRequest(), state: {} }) as ParameterizedContext<koaGuard.M2MState>;
    await nextCalledSynchronously((next) => auth(ctx(), next));
    const hitCtx = ctx();
    const hit = await nextCalledSynchronously((next) => auth(hitCtx, next));
    expect(hit.sync).toBe(true);
    expect(hitCtx.state.m2m?.subject).toBe(fx.caller.id);
    await auth.close();
  });

  it('Hono: next() before return', async () => {
    const auth = honoGuard.m2mAuth({ ...fx.machineKey(), retry: false });
    const context = () => {
      const vars = new Map<string, unknown>();
      const raw = new Request('http://127.0.0.1/', {
        headers: { authorization: `Bearer ${token}` },
      });
      return {
        req: { raw },
        set: (key: string, value: unknown) => vars.set(key, value),
        get: (key: string) => vars.get(key),
      } as unknown as Context<honoGuard.M2MEnv>;
    };
    await nextCalledSynchronously((next) => auth(context(), next));
    const c = context();
    const hit = await nextCalledSynchronously((next) => auth(c, next));
    expect(hit.sync).toBe(true);
    expect(c.get('m2m')?.subject).toBe(fx.caller.id);
    await auth.close();
  });
});
