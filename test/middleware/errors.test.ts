import { describe, expect, it } from 'vitest';
import * as api from '../../src/index.js';
import {
  AuthUnavailableError,
  InsufficientScopeError,
  InvalidRequestError,
  M2MAuthError,
  TokenRejectedError,
  UnauthorizedError,
} from '../../src/middleware/index.js';

const TOKEN_ID = `mt_${'a1'.repeat(16)}`;
const SUBJECT = `mch_${'S'.repeat(27)}`;

describe('the error classes of the middleware', () => {
  it('are exported from the package entry point', () => {
    expect(api.M2MAuthError).toBe(M2MAuthError);
    expect(api.UnauthorizedError).toBe(UnauthorizedError);
    expect(api.InvalidRequestError).toBe(InvalidRequestError);
    expect(api.TokenRejectedError).toBe(TokenRejectedError);
    expect(api.InsufficientScopeError).toBe(InsufficientScopeError);
    expect(api.AuthUnavailableError).toBe(AuthUnavailableError);
  });

  it('UnauthorizedError: 401 with a bare challenge, no error code (RFC 6750 §3.1)', () => {
    const err = new UnauthorizedError({ realm: 'api' });
    expect(err).toBeInstanceOf(M2MAuthError);
    expect(err).toBeInstanceOf(Error);
    expect(err.name).toBe('UnauthorizedError');
    expect([err.status, err.statusCode, err.code, err.reason]).toEqual([
      401,
      401,
      'unauthorized',
      'missing',
    ]);
    expect(err.headers).toEqual({
      'Cache-Control': 'no-store',
      'WWW-Authenticate': 'Bearer realm="api"',
    });
    expect(err.toJSON()).toEqual({
      error: 'unauthorized',
      error_description: 'A bearer token is required',
    });
    expect(err.message).toBe('A bearer token is required');
    expect(err.expose).toBe(true);
  });

  it('InvalidRequestError: 400 invalid_request with its description in the challenge', () => {
    const err = new InvalidRequestError('Only one Authorization header is allowed', {
      realm: 'internal',
      reason: 'malformed',
    });
    expect(err.name).toBe('InvalidRequestError');
    expect([err.status, err.statusCode, err.code, err.reason]).toEqual([
      400,
      400,
      'invalid_request',
      'malformed',
    ]);
    expect(err.headers).toEqual({
      'Cache-Control': 'no-store',
      'WWW-Authenticate':
        'Bearer realm="internal", error="invalid_request", error_description="Only one Authorization header is allowed"',
    });
    expect(err.toJSON()).toEqual({
      error: 'invalid_request',
      error_description: 'Only one Authorization header is allowed',
    });
  });

  it('TokenRejectedError: 401 invalid_token, one description whatever the reason', () => {
    const reasons = ['unknown', 'revoked', 'expired', 'out_of_scope', 'malformed'] as const;
    const cause = new Error('upstream said no');
    for (const reason of reasons) {
      const err = new TokenRejectedError({
        realm: 'api',
        reason,
        tokenId: TOKEN_ID,
        subject: SUBJECT,
        cause,
      });
      expect(err.name).toBe('TokenRejectedError');
      expect([err.status, err.code, err.reason]).toEqual([401, 'invalid_token', reason]);
      expect([err.tokenId, err.subject, err.cause]).toEqual([TOKEN_ID, SUBJECT, cause]);
      expect(err.headers).toEqual({
        'Cache-Control': 'no-store',
        'WWW-Authenticate':
          'Bearer realm="api", error="invalid_token", error_description="The access token is not valid"',
      });
      expect(err.toJSON()).toEqual({
        error: 'invalid_token',
        error_description: 'The access token is not valid',
      });
    }
  });

  it('InsufficientScopeError: 403 insufficient_scope, reason forbidden', () => {
    const err = new InsufficientScopeError({ realm: 'api', tokenId: TOKEN_ID, subject: SUBJECT });
    expect(err.name).toBe('InsufficientScopeError');
    expect([err.status, err.statusCode, err.code, err.reason]).toEqual([
      403,
      403,
      'insufficient_scope',
      'forbidden',
    ]);
    expect(err.headers).toEqual({
      'Cache-Control': 'no-store',
      'WWW-Authenticate':
        'Bearer realm="api", error="insufficient_scope", error_description="The token does not grant access to this resource"',
    });
    expect(err.toJSON()).toEqual({
      error: 'insufficient_scope',
      error_description: 'The token does not grant access to this resource',
    });
  });

  it('AuthUnavailableError: 503 without a challenge, Retry-After only when known', () => {
    const err = new AuthUnavailableError({ realm: 'api' });
    expect(err.name).toBe('AuthUnavailableError');
    expect([err.status, err.statusCode, err.code, err.reason]).toEqual([
      503,
      503,
      'temporarily_unavailable',
      'unavailable',
    ]);
    expect(err.headers).toEqual({ 'Cache-Control': 'no-store' });
    expect(err.toJSON()).toEqual({
      error: 'temporarily_unavailable',
      error_description: 'Token verification is temporarily unavailable',
    });
    expect(new AuthUnavailableError({ realm: 'api', retryAfter: 7 }).headers).toEqual({
      'Cache-Control': 'no-store',
      'Retry-After': '7',
    });
    expect(new AuthUnavailableError({ realm: 'api', retryAfter: 0 }).headers).toEqual({
      'Cache-Control': 'no-store',
      'Retry-After': '0',
    });
  });

  it('serialise to the public body only: no token id, subject, realm, cause or stack', () => {
    const err = new TokenRejectedError({
      realm: 'api',
      reason: 'revoked',
      tokenId: TOKEN_ID,
      subject: SUBJECT,
      cause: new Error('secret upstream detail'),
    });
    const json = JSON.stringify(err);
    expect(JSON.parse(json)).toEqual({
      error: 'invalid_token',
      error_description: 'The access token is not valid',
    });
    expect(json).not.toContain(TOKEN_ID);
    expect(json).not.toContain(SUBJECT);
    expect(json).not.toContain('upstream');
  });

  it('a cause is kept only when given', () => {
    expect('cause' in new UnauthorizedError({ realm: 'api' })).toBe(false);
    const cause = new Error('x');
    expect(new AuthUnavailableError({ realm: 'api', cause }).cause).toBe(cause);
  });
});
