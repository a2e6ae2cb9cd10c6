import type { InvalidTokenReason } from './errors.js';
import type { VerifiedM2MToken } from './types.js';

/**
 * One cached answer. Times are absolute (Unix ms on the verifier's clock), so an answer moved
 * between cache levels or processes keeps its deadline: nothing ever extends it.
 */
export type Entry =
  | { kind: 'valid'; value: VerifiedM2MToken; freshUntil: number; staleUntil: number }
  | {
      kind: 'invalid';
      reason: InvalidTokenReason;
      tokenId?: string;
      subject?: string;
      freshUntil: number;
    };

const REASONS: ReadonlySet<string> = new Set([
  'malformed',
  'unknown',
  'revoked',
  'expired',
  'out_of_scope',
]);

const isString = (v: unknown): v is string => typeof v === 'string';
const isNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/** Reads an entry written by another instance; anything of the wrong shape is ignored. */
export function parseEntry(text: string): Entry | undefined {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!o || typeof o !== 'object' || !isNumber(o.freshUntil)) return undefined;
  if (o.kind === 'invalid' && isString(o.reason) && REASONS.has(o.reason)) {
    return {
      kind: 'invalid',
      reason: o.reason as InvalidTokenReason,
      tokenId: isString(o.tokenId) ? o.tokenId : undefined,
      subject: isString(o.subject) ? o.subject : undefined,
      freshUntil: o.freshUntil,
    };
  }
  const v = o.value as Record<string, unknown> | undefined;
  if (
    o.kind !== 'valid' ||
    !isNumber(o.staleUntil) ||
    !v ||
    !isString(v.id) ||
    !isString(v.subject) ||
    !Array.isArray(v.scopes) ||
    !v.scopes.every(isString) ||
    !(v.claims === null || (typeof v.claims === 'object' && !Array.isArray(v.claims))) ||
    !(v.expiration === null || isNumber(v.expiration)) ||
    !isNumber(v.createdAt)
  ) {
    return undefined;
  }
  return {
    kind: 'valid',
    value: v as unknown as VerifiedM2MToken,
    freshUntil: o.freshUntil,
    staleUntil: o.staleUntil,
  };
}
