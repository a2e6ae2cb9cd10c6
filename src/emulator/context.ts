import type { Principal } from './auth.js';
import type { SigningKey } from './jwt.js';
import type { Store } from './store.js';

/** What an operation handler gets: the request, already routed and authenticated. */
export interface HandlerContext {
  store: Store;
  principal: Principal;
  rawBody: Buffer;
  contentType: string | undefined;
  query: URLSearchParams;
  /** The `{m2m_token_id}` path segment of revoke, as sent (not yet validated). */
  tokenIdParam: string | undefined;
  /** The emulator clock's reading for this request, in ms. */
  now: number;
  /** The JWT signing key, made on first call. */
  signingKey: () => SigningKey;
  /** The emulator's URL, used as the JWT `iss`. */
  issuer: string;
}

/** A successful answer; errors are thrown as `ClerkHttpError`. */
export interface Reply {
  status: number;
  body: unknown;
}
