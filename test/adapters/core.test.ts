/**
 * The framework-free core: `createM2MAuthenticator()` decides from the parts of a request,
 * synchronously on a cache hit, and the guards' checks decide on an auth. Against the emulator.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  ANONYMOUS_PASS,
  checkClaims,
  checkMachine,
  checkSubjects,
  createM2MAuthenticator,
  InsufficientScopeError,
  InvalidRequestError,
  isPass,
  isRefusal,
  type M2MAuthenticator,
  type M2MAuthenticatorOptions,
  M2MConfigError,
  type M2MDecision,
  type M2MRequestAuth,
  outcomeOf,
  PREFLIGHT_PASS,
  TokenRejectedError,
  UnauthorizedError,
} from '../../src/index.js';
import { DESCRIPTION, type Fixture, startFixture, unknownToken } from '../middleware/fixture.js';

let fx: Fixture;
const built: M2MAuthenticator[] = [];

beforeAll(async () => {
  fx = await startFixture();
});

afterEach(async () => {
  await Promise.all(built.splice(0).map((a) => a.close()));
  fx.reset();
});

afterAll(async () => {
  await fx.close();
});

function authenticator(options: M2MAuthenticatorOptions = {}): M2MAuthenticator {
  const made = createM2MAuthenticator({ ...fx.machineKey(), retry: false, ...options });
  built.push(made);
  return made;
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

describe('createM2MAuthenticator().authenticate(parts)', () => {
  it('a miss is a promise, then a hit is the same frozen auth, synchronously', async () => {
    const core = authenticator();
    const minted = await fx.mint();
    const first = core.authenticate(bearer(minted.token));
    expect(first).toBeInstanceOf(Promise);
    const auth = (await first) as M2MRequestAuth;
    expect(auth).toMatchObject({ id: minted.id, subject: fx.caller.id });
    expect(Object.isFrozen(auth)).toBe(true);
    const second = core.authenticate(bearer(minted.token));
    expect(second).toBe(auth);
    expect(outcomeOf(second as M2MDecision)).toBe('accepted');
  });

  it('refusals that need no call to Clerk are synchronous M2MAuthErrors', () => {
    const core = authenticator();
    const none = core.authenticate({ authorization: undefined });
    expect(none).toBeInstanceOf(UnauthorizedError);
    const joined = core.authenticate({ authorization: 'Bearer a, Bearer b' }) as M2MDecision;
    expect(joined).toBeInstanceOf(InvalidRequestError);
    expect((joined as InvalidRequestError).message).toBe(DESCRIPTION.severalHeaders);
    expect(core.authenticate({ authorization: ['Bearer a', 'Bearer b'] })).toBeInstanceOf(
      InvalidRequestError,
    );
    expect(outcomeOf(none as M2MDecision)).toBe('unauthorized');
    expect(outcomeOf(joined)).toBe('invalid_request');
  });

  it('a refusal carries status, headers and body for any framework to answer', async () => {
    const core = authenticator({ realm: 'internal' });
    const refusal = await core.authenticate(bearer(unknownToken()));
    expect(isRefusal(refusal)).toBe(true);
    expect(refusal).toBeInstanceOf(TokenRejectedError);
    const err = refusal as TokenRejectedError;
    expect(err.status).toBe(401);
    expect(err.headers).toEqual({
      'Cache-Control': 'no-store',
      'WWW-Authenticate':
        'Bearer realm="internal", error="invalid_token", error_description="The access token is not valid"',
    });
    expect(err.toJSON()).toEqual({
      error: 'invalid_token',
      error_description: 'The access token is not valid',
    });
    expect(outcomeOf(err)).toBe('invalid_token');
  });

  it('Clerk down is a 503 refusal with Retry-After, outcome unavailable', async () => {
    const core = authenticator();
    const minted = await fx.mint();
    fx.emu.failNext(1, 429, { retryAfter: 7, operation: 'verify' });
    const refusal = (await core.authenticate(bearer(minted.token))) as M2MDecision;
    expect(isRefusal(refusal) && refusal.status).toBe(503);
    expect(isRefusal(refusal) && refusal.headers['Retry-After']).toBe('7');
    expect(outcomeOf(refusal)).toBe('unavailable');
  });

  it('passes a credentialed preflight and, with required: false, a request without a token', () => {
    const preflight = {
      authorization: undefined,
      method: 'OPTIONS',
      accessControlRequestMethod: 'GET',
      accessControlRequestHeaders: 'Authorization',
    };
    expect(authenticator().authenticate(preflight)).toBe(PREFLIGHT_PASS);
    expect(authenticator({ skipPreflight: false }).authenticate(preflight)).toBeInstanceOf(
      UnauthorizedError,
    );
    const optional = authenticator({ required: false });
    expect(optional.authenticate({ authorization: null })).toBe(ANONYMOUS_PASS);
    expect(isPass(ANONYMOUS_PASS) && outcomeOf(ANONYMOUS_PASS)).toBe('anonymous');
    expect(outcomeOf(PREFLIGHT_PASS)).toBe('preflight');
  });

  it('reads ?access_token= from the url only when allowed; both places at once is 400', async () => {
    const minted = await fx.mint();
    const url = `https://api.test/x?access_token=${minted.token}`;
    expect(authenticator().authenticate({ authorization: undefined, url })).toBeInstanceOf(
      UnauthorizedError,
    );
    const withQuery = authenticator({ allowQueryToken: true });
    expect(await withQuery.authenticate({ authorization: undefined, url })).toMatchObject({
      id: minted.id,
    });
    const both = withQuery.authenticate({ ...bearer(minted.token), url }) as InvalidRequestError;
    expect(both.message).toBe(DESCRIPTION.severalPlaces);
  });

  it.each([
    ['onError', { onError: () => {} }],
    ['passErrors', { passErrors: true }],
    ['getToken', { getToken: () => undefined }],
    ['required', { required: 'yes' }],
    ['realm', { realm: 'a"b' }],
  ])('refuses the option %s with an M2MConfigError naming it', (option, options) => {
    let caught: unknown;
    try {
      createM2MAuthenticator({ ...fx.machineKey(), ...options } as M2MAuthenticatorOptions);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(M2MConfigError);
    expect((caught as M2MConfigError).option).toBe(option);
  });
});

describe('the guards’ checks', () => {
  it('pass, refuse 403 in the realm of the auth, or 401 without an auth', async () => {
    const core = authenticator({
      ...fx.instanceKey(),
      anyMachine: true,
      machineSecretKey: undefined,
      realm: 'r',
    });
    const caller = (await core.authenticate(bearer((await fx.mint()).token))) as M2MRequestAuth;
    expect(checkMachine(fx.api.id)(caller)).toBeUndefined();
    expect(checkSubjects([fx.caller.id])(caller)).toBeUndefined();
    expect(checkClaims(() => true)(caller)).toBeUndefined();
    const forbidden = checkSubjects([fx.outsider.id])(caller);
    expect(forbidden).toBeInstanceOf(InsufficientScopeError);
    expect(forbidden?.headers['WWW-Authenticate']).toMatch(/^Bearer realm="r", error="insuf/);
    expect(outcomeOf(forbidden!)).toBe('insufficient_scope');
    expect(checkClaims(() => true)(undefined)).toBeInstanceOf(UnauthorizedError);
    expect(checkClaims(() => true)(null, 'x')?.headers['WWW-Authenticate']).toBe(
      'Bearer realm="x"',
    );
  });

  it('validate their arguments when made', () => {
    expect(() => checkMachine('x')).toThrow(M2MConfigError);
    expect(() => checkSubjects([])).toThrow(M2MConfigError);
    expect(() => checkClaims('x' as never)).toThrow(M2MConfigError);
  });
});

describe("the README's framework-free example", () => {
  it('answers from the decision, synchronously on a hit', async () => {
    const { apiUrl, machineSecretKey } = fx.machineKey();
    const auth = createM2MAuthenticator({ apiUrl, machineSecretKey });

    async function handle(request: Request): Promise<Response> {
      const { headers } = request;
      let decision = auth.authenticate({
        authorization: headers.get('authorization'),
        method: request.method,
        accessControlRequestMethod: headers.get('access-control-request-method'),
        accessControlRequestHeaders: headers.get('access-control-request-headers'),
      });
      if (decision instanceof Promise) decision = await decision; // a cache miss only
      if (isRefusal(decision)) {
        // status, headers (WWW-Authenticate, Cache-Control, Retry-After) and the JSON body
        return new Response(JSON.stringify(decision), {
          status: decision.status,
          headers: { ...decision.headers, 'Content-Type': 'application/json' },
        });
      }
      if (isPass(decision)) return new Response(null, { status: 204 }); // a CORS preflight
      return Response.json({ calledBy: decision.subject });
    }
    built.push(auth);

    const minted = await fx.mint();
    const ok = await handle(
      new Request('http://x/', { headers: { authorization: `Bearer ${minted.token}` } }),
    );
    expect(await ok.json()).toEqual({ calledBy: fx.caller.id });
    const refused = await handle(new Request('http://x/'));
    expect(refused.status).toBe(401);
    expect(refused.headers.get('www-authenticate')).toBe('Bearer realm="api"');
    expect(await refused.json()).toEqual({
      error: 'unauthorized',
      error_description: 'A bearer token is required',
    });
  });
});
