import { M2M_TOKEN_OBJECT, type M2MTokenJson } from '../shared/wire.js';
import { parseJsonObject } from './body.js';
import type { HandlerContext, Reply } from './context.js';
import { machineSecretKeyInvalid, paramInvalid, paramUnknown } from './errors.js';
import { newTokenId } from './ids.js';
import { jsonEqual } from './json-equal.js';
import { signM2MJwt } from './jwt.js';
import { MAX_TOKEN_TTL_SECONDS } from './options.js';
import { isExpired, type StoredToken, toJson } from './store.js';

const FIELDS = ['token_format', 'seconds_until_expiration', 'claims', 'min_remaining_ttl_seconds'];

interface CreateParams {
  format: 'opaque' | 'jwt';
  /** Effective lifetime in seconds; null = never expires. */
  lifetimeSeconds: number | null;
  claims: Record<string, unknown> | null;
  minRemainingSeconds: number | undefined;
}

/** `POST /m2m_tokens`: only a Machine Secret Key may create, and the token's subject is its machine. */
export function handleCreate(ctx: HandlerContext): Reply {
  if (ctx.principal.kind !== 'machine') throw machineSecretKeyInvalid();
  const machine = ctx.principal.machine;
  const params = parseCreateBody(
    parseJsonObject(ctx.rawBody, ctx.contentType),
    machine.defaultTokenTtlSeconds,
  );

  if (params.format === 'jwt') return { status: 201, body: mintJwt(ctx, params) };

  if (params.minRemainingSeconds !== undefined) {
    const reusable = findReusable(ctx, params, params.minRemainingSeconds);
    if (reusable) return { status: 201, body: toJson(reusable, ctx.now, true) };
  }
  const token = ctx.store.insert({
    subject: machine.id,
    // Snapshot: later changes to the machine's scopes only apply to new tokens.
    scopes: machine.scopes,
    claims: params.claims,
    expiration: params.lifetimeSeconds === null ? null : ctx.now + toMs(params.lifetimeSeconds),
    now: ctx.now,
  });
  return { status: 201, body: toJson(token, ctx.now, true) };
}

function parseCreateBody(
  body: Record<string, unknown>,
  machineDefaultTtl: number | null,
): CreateParams {
  for (const key of Object.keys(body)) if (!FIELDS.includes(key)) throw paramUnknown(key);

  const format = body.token_format ?? 'opaque';
  if (format !== 'opaque' && format !== 'jwt') {
    throw paramInvalid('token_format', 'must be one of `opaque`, `jwt`');
  }

  const seconds = body.seconds_until_expiration ?? null;
  if (
    seconds !== null &&
    (typeof seconds !== 'number' ||
      !Number.isFinite(seconds) ||
      seconds <= 0 ||
      seconds > MAX_TOKEN_TTL_SECONDS * 10)
  ) {
    throw paramInvalid('seconds_until_expiration', 'must be a number greater than 0, or null');
  }
  // Absent or null: the machine's default lifetime (which may itself be "never").
  const lifetimeSeconds = seconds ?? machineDefaultTtl;

  const claims = body.claims ?? null;
  if (claims !== null && (typeof claims !== 'object' || Array.isArray(claims))) {
    throw paramInvalid('claims', 'must be a JSON object or null');
  }

  const min = body.min_remaining_ttl_seconds;
  if (min !== undefined) {
    if (typeof min !== 'number' || !Number.isInteger(min) || min < 0) {
      throw paramInvalid(
        'min_remaining_ttl_seconds',
        'must be an integer greater than or equal to 0',
      );
    }
    if (lifetimeSeconds !== null && min >= lifetimeSeconds) {
      throw paramInvalid(
        'min_remaining_ttl_seconds',
        `must be less than the token lifetime (${lifetimeSeconds} seconds)`,
      );
    }
  }
  return {
    format,
    lifetimeSeconds,
    claims: claims as Record<string, unknown> | null,
    minRemainingSeconds: min,
  };
}

/** The newest live token of this machine with the same claims and scopes and enough life left. */
function findReusable(
  ctx: HandlerContext,
  params: CreateParams,
  minRemainingSeconds: number,
): StoredToken | undefined {
  if (ctx.principal.kind !== 'machine') return undefined;
  const machine = ctx.principal.machine;
  const scopes = [...machine.scopes].sort();
  return ctx.store
    .bySubject(machine.id)
    .find(
      (t) =>
        !t.revoked &&
        !isExpired(t, ctx.now) &&
        (t.expiration === null || t.expiration - ctx.now >= minRemainingSeconds * 1000) &&
        jsonEqual(t.claims, params.claims) &&
        jsonEqual([...t.scopes].sort(), scopes),
    );
}

/** JWT-format tokens are signed and returned, never stored (list/revoke/verify do not see them). */
function mintJwt(ctx: HandlerContext, params: CreateParams): M2MTokenJson {
  if (ctx.principal.kind !== 'machine') throw machineSecretKeyInvalid();
  const machine = ctx.principal.machine;
  const id = newTokenId();
  const issuedAt = Math.floor(ctx.now / 1000);
  // A JWT always needs `exp` (Clerk's SDK rejects one without): a "never expiring" machine
  // default becomes Clerk's longest allowed lifetime.
  const expiresAt =
    issuedAt +
    (params.lifetimeSeconds === null
      ? MAX_TOKEN_TTL_SECONDS
      : Math.max(1, Math.ceil(params.lifetimeSeconds)));
  const token = signM2MJwt(ctx.signingKey(), {
    issuer: ctx.issuer,
    tokenId: id,
    subject: machine.id,
    scopes: machine.scopes,
    claims: params.claims,
    issuedAt,
    expiresAt,
  });
  return {
    object: M2M_TOKEN_OBJECT,
    id,
    subject: machine.id,
    scopes: [...machine.scopes],
    claims: params.claims,
    token,
    revoked: false,
    revocation_reason: null,
    expired: false,
    expiration: expiresAt * 1000,
    last_used_at: null,
    created_at: ctx.now,
    updated_at: ctx.now,
  };
}

const toMs = (seconds: number): number => Math.round(seconds * 1000);
