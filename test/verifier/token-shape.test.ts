/**
 * The cheap shape check in front of the network: anything that cannot be an opaque M2M token is
 * InvalidTokenError('malformed') and costs no upstream call.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  InvalidTokenError,
  isOpaqueM2MToken,
  MAX_OPAQUE_TOKEN_LENGTH,
} from '../../src/verifier/index.js';
import { expectInvalid, useHarness } from '../helpers/verifier-helpers.js';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-';
const body = (length: number, c = 'a') => c.repeat(length);

describe('isOpaqueM2MToken', () => {
  it('accepts mt_ followed by 16 to 253 URL-safe characters (256 in all)', () => {
    expect(MAX_OPAQUE_TOKEN_LENGTH).toBe(256);
    expect(isOpaqueM2MToken(`mt_${body(16)}`)).toBe(true);
    expect(isOpaqueM2MToken(`mt_${body(253)}`)).toBe(true);
    expect(isOpaqueM2MToken(`mt_${ALPHABET}`)).toBe(true);
    expect(isOpaqueM2MToken(`mt_${'A1b2-_'.repeat(5)}`)).toBe(true);
  });

  it.each([
    ['empty', ''],
    ['no prefix', 'abc'],
    ['too short', 'mt_short'],
    ['15 characters after mt_', `mt_${body(15)}`],
    ['257 characters', `mt_${body(254)}`],
    ['300 characters', `mt_${body(297)}`],
    ['upper-case prefix', `MT_${body(20)}`],
    ['other prefix (API key)', `ak_${body(32)}`],
    ['other prefix (OAuth)', `oat_${body(32)}`],
    ['a JWT', 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJtY2hfMSJ9.c2lnbmF0dXJl'],
    ['a bang', `mt_${body(20)}!`],
    ['a space inside', `mt_${body(10)} ${body(10)}`],
    ['a trailing newline', `mt_${body(20)}\n`],
    ['a leading space', ` mt_${body(20)}`],
    ['a dot', `mt_${body(10)}.${body(10)}`],
    ['a slash', `mt_${body(10)}/${body(10)}`],
    ['a plus', `mt_${body(10)}+${body(10)}`],
    ['an equals sign', `mt_${body(20)}=`],
    ['non-ASCII letters', `mt_${body(20, 'é')}`],
    ['a NUL byte', `mt_${body(10)}\u0000${body(10)}`],
    ['the scheme included', `Bearer mt_${body(20)}`],
  ])('refuses %s', (_label, token) => {
    expect(isOpaqueM2MToken(token)).toBe(false);
  });

  it.each([
    ['undefined', undefined],
    ['null', null],
    ['a number', 42],
    ['an object', {}],
    ['an array', [`mt_${body(20)}`]],
    ['a String object', new String(`mt_${body(20)}`)],
    ['a Buffer', Buffer.from(`mt_${body(20)}`)],
  ])('refuses a non-string: %s', (_label, value) => {
    expect(isOpaqueM2MToken(value)).toBe(false);
  });

  it('accepts every token made of the alphabet within the lengths (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom(...ALPHABET), { minLength: 16, maxLength: 253 }),
        (chars) => isOpaqueM2MToken(`mt_${chars.join('')}`),
      ),
    );
  });

  it('refuses every token with one character outside the alphabet (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom(...ALPHABET), { minLength: 16, maxLength: 200 }),
        fc
          .string({ minLength: 1, maxLength: 1, unit: 'binary' })
          .filter((c) => !ALPHABET.includes(c)),
        fc.nat(),
        (chars, bad, at) => {
          const i = at % (chars.length + 1);
          const token = `mt_${chars.slice(0, i).join('')}${bad}${chars.slice(i).join('')}`;
          return !isOpaqueM2MToken(token);
        },
      ),
    );
  });
});

describe('verify() of malformed input', () => {
  const h = useHarness();

  const malformed: Array<[string, unknown]> = [
    ["''", ''],
    ['abc', 'abc'],
    ['mt_short', 'mt_short'],
    ['a 300-char mt_ token', `mt_${body(297)}`],
    ['mt_ with a character outside [A-Za-z0-9_-]', `mt_${body(20)}$`],
    ['mt_ with a space', `mt_${body(10)} ${body(10)}`],
    ['mt_ with unicode', `mt_${body(20, 'ü')}`],
    ['an API key', `ak_${body(32)}`],
    ['undefined', undefined],
    ['null', null],
    ['a number', 12345],
    ['an object', { token: `mt_${body(20)}` }],
    ['a Buffer', Buffer.from(`mt_${body(20)}`)],
  ];

  it.each(malformed)(
    '%s is InvalidTokenError("malformed") with zero upstream calls',
    async (_label, token) => {
      const verifier = h.verifier();
      const err = await expectInvalid(verifier.verify(token as string), 'malformed');
      expect(err.tokenId).toBeUndefined();
      if (typeof token === 'string' && token.length > 3) expect(err.message).not.toContain(token);
      expect(h.emulator.calls.verify).toBe(0);
      expect(verifier.stats()).toMatchObject({ misses: 0, upstreamCalls: 0, size: 0 });
    },
  );

  it('random garbage never reaches Clerk (property)', async () => {
    const verifier = h.verifier();
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.string({ maxLength: 300 }),
          fc.string({ maxLength: 300 }).map((s) => `mt_${s}`),
          fc.anything(),
        ),
        async (input) => {
          if (isOpaqueM2MToken(input)) return;
          const err = await verifier.verify(input as string).catch((e: unknown) => e);
          expect(err).toBeInstanceOf(InvalidTokenError);
          expect((err as InvalidTokenError).reason).toBe('malformed');
        },
      ),
      { numRuns: 300 },
    );
    expect(h.emulator.calls.verify).toBe(0);
  });

  it('the shortest and longest well-shaped tokens do reach Clerk (and are unknown there)', async () => {
    const verifier = h.verifier();
    await expectInvalid(verifier.verify(`mt_${body(16)}`), 'unknown');
    await expectInvalid(verifier.verify(`mt_${body(253)}`), 'unknown');
    expect(h.emulator.calls.verify).toBe(2);
  });
});
