import { TOKEN_ID_PATTERN } from '../shared/wire.js';
import { parseJsonObject } from './body.js';
import type { HandlerContext, Reply } from './context.js';
import { paramFormatInvalid, paramInvalid, paramUnknown, tokenNotFound } from './errors.js';
import { toJson } from './store.js';

/**
 * `POST /m2m_tokens/{id}/revoke`: a machine key may revoke only tokens its machine created
 * (others look unknown: 404); the instance key any token. Revoking again is a no-op 200.
 */
export function handleRevoke(ctx: HandlerContext): Reply {
  const id = ctx.tokenIdParam ?? '';
  if (!TOKEN_ID_PATTERN.test(id)) throw paramFormatInvalid('m2m_token_id', '^mt_[0-9A-Fa-f]{32}$');
  const body = parseJsonObject(ctx.rawBody, ctx.contentType);
  for (const key of Object.keys(body)) if (key !== 'revocation_reason') throw paramUnknown(key);
  const reason = body.revocation_reason ?? null;
  if (reason !== null && typeof reason !== 'string') {
    throw paramInvalid('revocation_reason', 'must be a string or null');
  }

  const token = ctx.store.get(id);
  if (!token) throw tokenNotFound();
  if (ctx.principal.kind === 'machine' && token.subject !== ctx.principal.machine.id) {
    throw tokenNotFound();
  }
  if (!token.revoked) {
    token.revoked = true;
    token.revocationReason = reason;
    token.updatedAt = ctx.now;
  }
  return { status: 200, body: toJson(token, ctx.now) };
}
