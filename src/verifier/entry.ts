import { freezeBounded } from '../shared/freeze.js';
import type { InvalidTokenReason } from './errors.js';
import type { VerifiedM2MToken } from './types.js';

/**
 * One cached answer. Times are absolute (Unix ms on the verifier's clock), so an answer moved
 * between cache levels or processes keeps its deadline: nothing ever extends it.
 */
export type Entry = GoodEntry | Refusal;

/** A good answer, with its approximate heap size for the byte-bounded cache. */
export interface GoodEntry {
  kind: 'valid';
  value: VerifiedM2MToken;
  freshUntil: number;
  staleUntil: number;
  bytes: number;
}

/** A definite "not valid", kept apart from good answers so refusals can never evict them. */
export type Refusal = {
  kind: 'invalid';
  reason: InvalidTokenReason;
  tokenId?: string;
  subject?: string;
  freshUntil: number;
};

/**
 * Limits on a verified answer's claims: deeper or larger is an answer we cannot hold (a lying
 * or broken upstream), refused as unreadable rather than crashing on it.
 */
export const CLAIMS_LIMITS = { maxDepth: 64, maxNodes: 100_000 } as const;

/**
 * Subjects and scopes repeat across tokens (a handful of machines mint them all), so answers
 * share one frozen copy of each: a cached answer then costs little more than its token id. The
 * table is bounded; past its size it starts afresh, which only costs a copy per answer.
 */
const MAX_INTERNED = 4096;
const internTable = new Map<string, string | readonly string[]>();

function intern<T extends string | readonly string[]>(key: string, make: () => T): T {
  const found = internTable.get(key);
  if (found !== undefined) return found as T;
  if (internTable.size >= MAX_INTERNED) internTable.clear();
  const made = make();
  internTable.set(key, made);
  return made;
}

const interned = (subject: string): string => intern(`s ${subject}`, () => subject);
const internedScopes = (scopes: readonly string[]): readonly string[] =>
  intern(`a ${JSON.stringify(scopes)}`, () => Object.freeze(scopes.map(interned)));

/** A good answer's fields, as read from Clerk, a JWT or the shared store. */
export interface VerifiedFields {
  id: string;
  subject: string;
  scopes: readonly string[];
  claims: Record<string, unknown> | null;
  expiration: number | null;
  createdAt: number;
}

/**
 * Every served answer is built here: a copy holding only the known fields, deeply frozen
 * (a handler cannot change what the next request sees), with its size for the cache. Throws
 * `ValueTooLargeError` when the claims break {@link CLAIMS_LIMITS}.
 */
export function toVerified(fields: VerifiedFields): { value: VerifiedM2MToken; bytes: number } {
  const value: VerifiedM2MToken = {
    id: fields.id,
    subject: interned(fields.subject),
    scopes: internedScopes(fields.scopes),
    claims: fields.claims,
    expiration: fields.expiration,
    createdAt: fields.createdAt,
  };
  return { value, bytes: freezeBounded(value, CLAIMS_LIMITS) };
}

const REASONS: ReadonlySet<string> = new Set([
  'malformed',
  'unknown',
  'revoked',
  'expired',
  'out_of_scope',
]);

const isString = (v: unknown): v is string => typeof v === 'string';
const isNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/**
 * Reads an entry written by another instance (its MAC already checked); anything of the wrong
 * shape, or too deep or large to hold, is ignored.
 */
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
  try {
    const { value, bytes } = toVerified(v as unknown as VerifiedFields);
    return { kind: 'valid', value, freshUntil: o.freshUntil, staleUntil: o.staleUntil, bytes };
  } catch {
    return undefined;
  }
}
