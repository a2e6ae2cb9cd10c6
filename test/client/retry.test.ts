import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  backoffDelay,
  NOT_SENT_ERROR_CODES,
  parseRetryAfter,
  RETRYABLE_ERROR_CODES,
  RETRYABLE_STATUSES,
  sleep,
} from '../../src/client/retry.js';
import { rejection } from './fixtures.js';

afterEach(() => {
  vi.restoreAllMocks();
});

describe('parseRetryAfter', () => {
  const now = Date.parse('2026-05-12T10:00:00.000Z');

  it.each([
    ['0', 0],
    ['1', 1],
    ['120', 120],
    [' 7 ', 7],
    ['86400', 86400],
  ])('reads delta-seconds %j as %i', (value, seconds) => {
    expect(parseRetryAfter(value, now)).toBe(seconds);
  });

  it('reads an HTTP date as whole seconds from now, rounded up', () => {
    expect(parseRetryAfter('Tue, 12 May 2026 10:00:30 GMT', now)).toBe(30);
    expect(parseRetryAfter('Tue, 12 May 2026 10:00:30 GMT', now + 500)).toBe(30);
    expect(parseRetryAfter('Tue, 12 May 2026 10:00:30 GMT', now + 1000)).toBe(29);
  });

  it('reads an HTTP date in the past as 0', () => {
    expect(parseRetryAfter('Tue, 12 May 2026 09:59:00 GMT', now)).toBe(0);
  });

  it('reads the first value of a repeated header', () => {
    expect(parseRetryAfter(['3', '60'], now)).toBe(3);
  });

  it.each([
    ['absent', undefined],
    ['empty', ''],
    ['a word', 'soon'],
    ['a unit', '12 seconds'],
    ['hexadecimal', '0x10'],
    ['an exponent', '1e3'],
  ])('is undefined when %s', (_label, value) => {
    expect(parseRetryAfter(value, now)).toBeUndefined();
  });

  // RFC 9110 §10.2.3: Retry-After is an HTTP-date or a non-negative integer of seconds; anything
  // else is unreadable, and the doc comment promises `undefined` for it. Date.parse is lenient
  // and reads "-1" and "1.5" as dates in 2001, so both come back as 0 ("retry at once").
  it.each([
    ['a negative number', '-1'],
    ['a fraction', '1.5'],
  ])('is undefined for %s', (_label, value) => {
    expect(parseRetryAfter(value, now)).toBeUndefined();
  });
});

describe('backoffDelay', () => {
  it('is base/2 at the lowest draw and base at the highest', () => {
    vi.spyOn(Math, 'random').mockReturnValue(0);
    expect(backoffDelay(0, 100, 2000)).toBe(50);
    expect(backoffDelay(3, 100, 2000)).toBe(400);
    vi.spyOn(Math, 'random').mockReturnValue(0.999999);
    expect(backoffDelay(0, 100, 2000)).toBe(100);
    expect(backoffDelay(3, 100, 2000)).toBe(800);
  });

  it('doubles per attempt and never exceeds maxDelayMs', () => {
    for (let attempt = 0; attempt < 12; attempt++) {
      const base = Math.min(2000, 100 * 2 ** attempt);
      for (let i = 0; i < 200; i++) {
        const delay = backoffDelay(attempt, 100, 2000);
        expect(delay).toBeGreaterThanOrEqual(Math.floor(base / 2));
        expect(delay).toBeLessThanOrEqual(2000);
        expect(delay).toBeLessThanOrEqual(base);
        expect(Number.isInteger(delay)).toBe(true);
      }
    }
  });

  it('is jittered', () => {
    const delays = new Set(Array.from({ length: 50 }, () => backoffDelay(2, 100, 2000)));
    expect(delays.size).toBeGreaterThan(5);
  });

  it('is 0 when both bounds are 0, and capped for large attempts', () => {
    expect(backoffDelay(5, 0, 0)).toBe(0);
    expect(backoffDelay(60, 1, 50)).toBeLessThanOrEqual(50);
    expect(backoffDelay(60, 1, 50)).toBeGreaterThanOrEqual(25);
  });
});

describe('sleep', () => {
  it('resolves after the delay', async () => {
    const started = performance.now();
    await sleep(60);
    expect(performance.now() - started).toBeGreaterThanOrEqual(55);
  });

  it('rejects at once with the reason of an already aborted signal', async () => {
    const reason = new Error('already');
    const started = performance.now();
    expect(await rejection(sleep(10_000, AbortSignal.abort(reason)))).toBe(reason);
    expect(performance.now() - started).toBeLessThan(50);
  });

  it('rejects with the reason as soon as the signal aborts', async () => {
    const controller = new AbortController();
    const reason = new Error('stop');
    const started = performance.now();
    setTimeout(() => controller.abort(reason), 30);
    expect(await rejection(sleep(10_000, controller.signal))).toBe(reason);
    expect(performance.now() - started).toBeLessThan(500);
  });

  it('resolves normally when the signal never aborts, and ignores a later abort', async () => {
    const controller = new AbortController();
    await sleep(10, controller.signal);
    expect(() => controller.abort(new Error('late'))).not.toThrow();
  });
});

describe('retry policy tables', () => {
  it('retries 429 and gateway failures only', () => {
    expect([...RETRYABLE_STATUSES].sort()).toEqual([429, 502, 503, 504]);
  });

  it('treats only failures before sending as not sent', () => {
    expect(NOT_SENT_ERROR_CODES.has('ECONNREFUSED')).toBe(true);
    for (const code of ['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET']) {
      expect(NOT_SENT_ERROR_CODES.has(code)).toBe(false);
      expect(RETRYABLE_ERROR_CODES.has(code)).toBe(true);
    }
    for (const code of NOT_SENT_ERROR_CODES) expect(RETRYABLE_ERROR_CODES.has(code)).toBe(true);
    expect(RETRYABLE_ERROR_CODES.has('UND_ERR_HEADERS_TIMEOUT')).toBe(false);
  });
});
