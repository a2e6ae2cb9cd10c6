/**
 * Unit tests of token extraction: no I/O happens there, so fake requests carrying only what it
 * reads (`headers`, `headersDistinct`, `url`) are enough.
 */
import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import {
  extractToken,
  fromAuthorizationHeader,
  fromAuthorizationValues,
  fromCustomValue,
  fromQuery,
  isBearerToken,
} from '../../src/middleware/extract.js';
import { DESCRIPTION } from './fixture.js';

const TOKEN = 'mt_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_';

/** A request with these `Authorization` values (several = repeated headers) and this URL. */
function fakeRequest(authorization: string[] = [], url = '/'): IncomingMessage {
  return {
    url,
    headers: authorization.length > 0 ? { authorization: authorization[0] } : {},
    headersDistinct: authorization.length > 0 ? { authorization } : {},
  } as unknown as IncomingMessage;
}

const token = (value: string) => ({ kind: 'token', token: value });
const malformed = (description: string) => ({ kind: 'malformed', description });
const none = { kind: 'none' };

describe('isBearerToken (RFC 6750 b64token)', () => {
  it.each(['a', TOKEN, 'abc-._~+/XYZ', 'abc=', 'abc=='])('accepts %j', (value) => {
    expect(isBearerToken(value)).toBe(true);
  });

  it.each(['', '=', '==abc', 'a=b', 'ab c', 'ab$c', 'ab"c', 'ab,c', 'abc\t', 'tökén'])(
    'refuses %j',
    (value) => {
      expect(isBearerToken(value)).toBe(false);
    },
  );
});

describe('fromAuthorizationHeader', () => {
  it('finds nothing when there is no Authorization header', () => {
    expect(fromAuthorizationHeader(fakeRequest())).toEqual(none);
  });

  it.each([
    `Bearer ${TOKEN}`,
    `bearer ${TOKEN}`,
    `BEARER ${TOKEN}`,
    `BeArEr ${TOKEN}`,
    `Bearer  ${TOKEN}`,
    `Bearer     ${TOKEN}`,
  ])('reads the token of %j (scheme in any case, one or more spaces)', (header) => {
    expect(fromAuthorizationHeader(fakeRequest([header]))).toEqual(token(TOKEN));
  });

  it.each([
    'Basic dXNlcjpwYXNz',
    'Bearer',
    'Bearer ',
    `Bearer\t${TOKEN}`,
    `Bearer ${TOKEN} extra`,
    `Token ${TOKEN}`,
    `Bearer: ${TOKEN}`,
    ` ${TOKEN}`,
    TOKEN,
    '',
  ])('calls %j malformed', (header) => {
    expect(fromAuthorizationHeader(fakeRequest([header]))).toEqual(
      malformed(DESCRIPTION.malformedHeader),
    );
  });

  it.each(['Bearer abc$def', 'Bearer ab"cd', 'Bearer a=bc', 'Bearer =='])(
    'refuses the characters of %j',
    (header) => {
      expect(fromAuthorizationHeader(fakeRequest([header]))).toEqual(
        malformed(DESCRIPTION.badToken),
      );
    },
  );

  it('refuses two Authorization headers, even two good ones', () => {
    expect(fromAuthorizationHeader(fakeRequest([`Bearer ${TOKEN}`, `Bearer ${TOKEN}`]))).toEqual(
      malformed(DESCRIPTION.severalHeaders),
    );
  });

  it.each([`Bearer ${TOKEN}, Bearer ${TOKEN}`, 'Bearer a,b', `Bearer ${TOKEN},`])(
    'reads a comma in %j as several headers joined: no token holds one',
    (header) => {
      expect(fromAuthorizationHeader(fakeRequest([header]))).toEqual(
        malformed(DESCRIPTION.severalHeaders),
      );
    },
  );

  it('falls back to req.headers when headersDistinct is absent', () => {
    const req = { headers: { authorization: `Bearer ${TOKEN}` } } as unknown as IncomingMessage;
    expect(fromAuthorizationHeader(req)).toEqual(token(TOKEN));
  });
});

describe('fromAuthorizationValues (the adapters’ form: one value, a list, or none)', () => {
  it.each([undefined, null, []])('finds nothing in %j', (values) => {
    expect(fromAuthorizationValues(values)).toEqual(none);
  });

  it('reads one value, alone or as a one-item list', () => {
    expect(fromAuthorizationValues(`Bearer ${TOKEN}`)).toEqual(token(TOKEN));
    expect(fromAuthorizationValues([`Bearer ${TOKEN}`])).toEqual(token(TOKEN));
  });

  it.each([[[`Bearer ${TOKEN}`, `Bearer ${TOKEN}`]], [`Bearer ${TOKEN}, Bearer ${TOKEN}`]])(
    'refuses several values, listed or comma-joined: %j',
    (values) => {
      expect(fromAuthorizationValues(values)).toEqual(malformed(DESCRIPTION.severalHeaders));
    },
  );
});

describe('fromQuery', () => {
  it.each(['/', '/path', '/path?', '/path?other=1', '/path?access_tokenx=abc'])(
    'finds nothing in %j',
    (url) => {
      expect(fromQuery(fakeRequest([], url))).toEqual(none);
    },
  );

  it('reads one access_token, URL-decoded', () => {
    expect(fromQuery(fakeRequest([], `/x?a=1&access_token=${TOKEN}`))).toEqual(token(TOKEN));
    expect(fromQuery(fakeRequest([], '/x?access_token=ab%2Bcd%2F'))).toEqual(token('ab+cd/'));
  });

  it('refuses two access_token parameters', () => {
    expect(fromQuery(fakeRequest([], `/?access_token=${TOKEN}&access_token=${TOKEN}`))).toEqual(
      malformed(DESCRIPTION.severalPlaces),
    );
  });

  it.each(['/?access_token=', '/?access_token=ab%24cd', '/?access_token=ab+cd'])(
    'refuses the value of %j',
    (url) => {
      expect(fromQuery(fakeRequest([], url))).toEqual(malformed(DESCRIPTION.badToken));
    },
  );
});

describe('extractToken', () => {
  const header = [`Bearer ${TOKEN}`];
  const query = `/?access_token=${TOKEN}`;

  it('ignores the query entirely unless allowed, even when it is malformed', () => {
    expect(extractToken(fakeRequest([], query), false)).toEqual(none);
    expect(extractToken(fakeRequest([], `${query}&access_token=x`), false)).toEqual(none);
    expect(extractToken(fakeRequest(header, query), false)).toEqual(token(TOKEN));
  });

  it('reads the query when allowed and there is no header', () => {
    expect(extractToken(fakeRequest([], query), true)).toEqual(token(TOKEN));
    expect(extractToken(fakeRequest(header, '/'), true)).toEqual(token(TOKEN));
    expect(extractToken(fakeRequest([], '/'), true)).toEqual(none);
  });

  it('refuses a token in the header and the query at once', () => {
    expect(extractToken(fakeRequest(header, query), true)).toEqual(
      malformed(DESCRIPTION.severalPlaces),
    );
  });

  it('reports a malformed header first, then a malformed query', () => {
    expect(extractToken(fakeRequest(['Basic xyz'], query), true)).toEqual(
      malformed(DESCRIPTION.malformedHeader),
    );
    expect(extractToken(fakeRequest(header, '/?access_token=a$b'), true)).toEqual(
      malformed(DESCRIPTION.badToken),
    );
    expect(extractToken(fakeRequest([], `${query}&access_token=x`), true)).toEqual(
      malformed(DESCRIPTION.severalPlaces),
    );
  });
});

describe('fromCustomValue (what a getToken returned)', () => {
  it.each([undefined, null, ''])('treats %j as no token', (value) => {
    expect(fromCustomValue(value)).toEqual(none);
  });

  it('accepts a b64token string', () => {
    expect(fromCustomValue(TOKEN)).toEqual(token(TOKEN));
  });

  it.each([42, ['a'], { token: TOKEN }, 'ab cd', 'ab$cd', `Bearer ${TOKEN}`])(
    'refuses %j',
    (value) => {
      expect(fromCustomValue(value)).toEqual(malformed(DESCRIPTION.badToken));
    },
  );
});
