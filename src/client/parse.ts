import { M2M_TOKEN_OBJECT } from '../shared/wire.js';
import { M2MApiError } from './errors.js';
import type { M2MToken, M2MTokenList } from './types.js';

/**
 * Turns Clerk's JSON into typed values, checking every field: a body of the wrong shape is an
 * `invalid_response` error, never a silently wrong value that a cache could keep.
 */

function invalid(status: number, what: string): M2MApiError {
  return new M2MApiError({
    status,
    code: 'invalid_response',
    message: `Clerk API answered ${status} with an unexpected body: ${what}`,
  });
}

const isNullableNumber = (v: unknown) =>
  v === null || (typeof v === 'number' && Number.isFinite(v));

export function parseToken(json: unknown, status: number): M2MToken {
  if (typeof json !== 'object' || json === null) throw invalid(status, 'not an object');
  const o = json as Record<string, unknown>;
  if (o.object !== M2M_TOKEN_OBJECT)
    throw invalid(status, '`object` is not machine_to_machine_token');
  if (typeof o.id !== 'string' || !o.id.startsWith('mt_')) throw invalid(status, '`id`');
  if (typeof o.subject !== 'string' || !o.subject.startsWith('mch_'))
    throw invalid(status, '`subject`');
  const scopes = o.scopes ?? [];
  if (!Array.isArray(scopes) || !scopes.every((s) => typeof s === 'string')) {
    throw invalid(status, '`scopes`');
  }
  const claims = o.claims ?? null;
  if (claims !== null && (typeof claims !== 'object' || Array.isArray(claims))) {
    throw invalid(status, '`claims`');
  }
  if (typeof o.revoked !== 'boolean') throw invalid(status, '`revoked`');
  if (typeof o.expired !== 'boolean') throw invalid(status, '`expired`');
  if (!isNullableNumber(o.expiration ?? null)) throw invalid(status, '`expiration`');
  if (!isNullableNumber(o.last_used_at ?? null)) throw invalid(status, '`last_used_at`');
  if (typeof o.created_at !== 'number') throw invalid(status, '`created_at`');
  if (typeof o.updated_at !== 'number') throw invalid(status, '`updated_at`');
  const reason = o.revocation_reason ?? null;
  if (reason !== null && typeof reason !== 'string') throw invalid(status, '`revocation_reason`');
  if (o.token !== undefined && typeof o.token !== 'string') throw invalid(status, '`token`');
  const token: M2MToken = {
    id: o.id,
    subject: o.subject,
    scopes: scopes as string[],
    claims: claims as Record<string, unknown> | null,
    revoked: o.revoked,
    revocationReason: reason as string | null,
    expired: o.expired,
    expiration: (o.expiration ?? null) as number | null,
    lastUsedAt: (o.last_used_at ?? null) as number | null,
    createdAt: o.created_at,
    updatedAt: o.updated_at,
  };
  if (typeof o.token === 'string') token.token = o.token;
  return token;
}

export function parseTokenList(json: unknown, status: number): M2MTokenList {
  const o = json as { m2m_tokens?: unknown; data?: unknown; total_count?: unknown } | null;
  const items = o?.m2m_tokens ?? o?.data;
  if (!Array.isArray(items)) throw invalid(status, '`m2m_tokens` is not an array');
  if (typeof o?.total_count !== 'number') throw invalid(status, '`total_count`');
  return { data: items.map((item) => parseToken(item, status)), totalCount: o.total_count };
}
