import { type M2MTokenListJson, MACHINE_ID_PATTERN } from '../shared/wire.js';
import type { HandlerContext, Reply } from './context.js';
import {
  forbidden,
  machineNotFound,
  paramFormatInvalid,
  paramInvalid,
  paramMissing,
} from './errors.js';
import { isExpired, toJson } from './store.js';

/**
 * `GET /m2m_tokens?subject=…`: a machine key sees only its own tokens; the instance key any
 * machine's. `revoked`/`expired` are include flags: such tokens are left out unless set.
 */
export function handleList(ctx: HandlerContext): Reply {
  const { query } = ctx;
  const subject = query.get('subject');
  if (subject === null || subject === '') throw paramMissing('subject');
  if (!MACHINE_ID_PATTERN.test(subject)) throw paramFormatInvalid('subject', '^mch_\\w{27}$');
  const includeRevoked = booleanParam(query, 'revoked');
  const includeExpired = booleanParam(query, 'expired');
  const limit = integerParam(query, 'limit', 10, 1, 100);
  const offset = integerParam(query, 'offset', 0, 0, Number.MAX_SAFE_INTEGER);

  if (ctx.principal.kind === 'machine' && ctx.principal.machine.id !== subject) {
    throw forbidden('A Machine Secret Key can only list the tokens of its own machine.');
  }
  if (!ctx.store.machineById(subject)) throw machineNotFound();

  const matching = ctx.store
    .bySubject(subject)
    .filter((t) => (includeRevoked || !t.revoked) && (includeExpired || !isExpired(t, ctx.now)));
  const body: M2MTokenListJson = {
    m2m_tokens: matching.slice(offset, offset + limit).map((t) => toJson(t, ctx.now)),
    total_count: matching.length,
  };
  return { status: 200, body };
}

function booleanParam(query: URLSearchParams, name: string): boolean {
  const value = query.get(name);
  if (value === null) return false;
  if (value === 'true') return true;
  if (value === 'false') return false;
  throw paramInvalid(name, 'must be `true` or `false`');
}

function integerParam(
  query: URLSearchParams,
  name: string,
  fallback: number,
  min: number,
  max: number,
): number {
  const value = query.get(name);
  if (value === null) return fallback;
  const n = /^\d{1,16}$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw paramInvalid(name, `must be an integer from ${min} to ${max}`);
  }
  return n;
}
