/**
 * The JSON shapes of Clerk's M2M endpoints exactly as they travel on the wire (snake_case).
 * Shared by the client, which reads them, and the emulator, which writes them.
 * Source: Clerk's Backend API spec, `paths./m2m_tokens*`.
 */

/** `object` discriminator of every M2M token object. */
export const M2M_TOKEN_OBJECT = 'machine_to_machine_token';

/** An M2M token as Clerk serialises it. Times are Unix milliseconds. */
export interface M2MTokenJson {
  object: typeof M2M_TOKEN_OBJECT;
  id: string;
  subject: string;
  scopes: string[];
  claims: Record<string, unknown> | null;
  /** Only in the create response. */
  token?: string;
  revoked: boolean;
  revocation_reason: string | null;
  expired: boolean;
  expiration: number | null;
  last_used_at: number | null;
  created_at: number;
  updated_at: number;
}

/** `GET /m2m_tokens` response. */
export interface M2MTokenListJson {
  m2m_tokens: M2MTokenJson[];
  total_count: number;
}

/** One entry of a Clerk error body. */
export interface ClerkErrorItemJson {
  message: string;
  long_message: string;
  code: string;
  meta?: Record<string, unknown>;
}

/** Clerk's error body: `{ errors: [...], clerk_trace_id? }`. */
export interface ClerkErrorJson {
  errors: ClerkErrorItemJson[];
  clerk_trace_id?: string;
}

/** `POST /m2m_tokens` body. */
export interface CreateM2MTokenBody {
  token_format?: 'opaque' | 'jwt';
  seconds_until_expiration?: number | null;
  claims?: Record<string, unknown> | null;
  min_remaining_ttl_seconds?: number;
}

/** Token ids: `mt_` followed by 32 hex digits. */
export const TOKEN_ID_PATTERN = /^mt_[0-9A-Fa-f]{32}$/;
/** Machine ids: `mch_` followed by 27 word characters. */
export const MACHINE_ID_PATTERN = /^mch_\w{27}$/;
/** The API version Clerk's own JS SDK sends in `Clerk-API-Version`. */
export const DEFAULT_CLERK_API_VERSION = '2026-05-12';
