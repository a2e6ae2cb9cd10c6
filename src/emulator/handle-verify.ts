import { parseJsonObject } from './body.js';
import type { HandlerContext, Reply } from './context.js';
import { paramInvalid, paramMissing, paramUnknown, tokenNotFound } from './errors.js';
import { isExpired, toJson } from './store.js';

/**
 * `POST /m2m_tokens/verify`: 200 with the token for a live one, one generic 404 for unknown,
 * revoked, expired and (with a machine key) out-of-scope tokens. JWTs are not stored, so they
 * are unknown here; Clerk's SDK verifies them locally against the JWKS instead.
 */
export function handleVerify(ctx: HandlerContext): Reply {
  const body = parseJsonObject(ctx.rawBody, ctx.contentType);
  for (const key of Object.keys(body)) {
    // `secret` is the pre-2025-08 name, still sent by Clerk's Python verifier.
    if (key !== 'token' && key !== 'secret') throw paramUnknown(key);
  }
  const value = body.token ?? body.secret;
  if (value === undefined || value === null) throw paramMissing('token');
  if (typeof value !== 'string') throw paramInvalid('token', 'must be a string');

  const token = ctx.store.getBySecret(value);
  if (!token || token.revoked || isExpired(token, ctx.now)) throw tokenNotFound();
  if (ctx.principal.kind === 'machine' && !token.scopes.includes(ctx.principal.machine.id)) {
    throw tokenNotFound();
  }
  token.lastUsedAt = ctx.now;
  token.updatedAt = ctx.now;
  return { status: 200, body: toJson(token, ctx.now) };
}
