import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TokenVerifier } from '../verifier/index.js';
import type { M2MAuthenticatorOptions } from './core.js';
import type { M2MAuthError } from './errors.js';

/** What `m2mAuth()` puts on `req.m2m` once a token is verified. Never the token itself. */
export interface M2MRequestAuth {
  /** Token id (`mt_…`). */
  readonly id: string;
  /** The calling machine (`mch_…`). */
  readonly subject: string;
  /**
   * The calling machine, the same as `subject`, named as in Clerk's `getAuth()`; not the option
   * `machineId`, which is this service.
   */
  readonly machineId: string;
  /** Machine ids the token may call. */
  readonly scopes: readonly string[];
  /** Custom claims, or `null`. Frozen. */
  readonly claims: Readonly<Record<string, unknown>> | null;
  /** Unix ms, or `null` when the token never expires. */
  readonly expiration: number | null;
}

declare module 'node:http' {
  interface IncomingMessage {
    /** Set by `m2mAuth()` after a token is verified; absent otherwise. */
    m2m?: M2MRequestAuth;
  }
}

/** `next` as Express, Connect and plain callbacks all call it. */
export type NextFunction = (err?: unknown) => void;

/** A middleware typed against `node:http` only, so Express, Connect and bare servers all take it. */
export type M2MMiddleware = (req: IncomingMessage, res: ServerResponse, next: NextFunction) => void;

/** What `m2mAuth()` returns: the middleware, plus its verifier and a way to release it. */
export interface M2MAuthMiddleware extends M2MMiddleware {
  /** The verifier in use: the one passed in, or the one built from the options. */
  readonly verifier: TokenVerifier;
  /** Closes the verifier if `m2mAuth()` built it (its connection pool); a passed-in one is left open. */
  close(): Promise<void>;
}

export type ErrorHandler = (
  err: M2MAuthError,
  req: IncomingMessage,
  res: ServerResponse,
  next: NextFunction,
) => void;

/** How refusals are answered; shared by `m2mAuth()` and the guards mounted after it. */
export interface ResponseOptions {
  /** The `realm` of the `WWW-Authenticate` challenge. Default `"api"`. */
  realm?: string;
  /** Answer failures yourself. Default: a JSON `{ error, error_description }` answer. */
  onError?: ErrorHandler;
  /** Hand failures to `next(err)` instead, for an Express error handler. Default `false`. */
  passErrors?: boolean;
}

/**
 * Options of `m2mAuth()`: a `verifier`, or the verifier's and client's options
 * (`apiUrl`, `machineSecretKey`, `machineId`, `cache`, …) to build one, once, here; the core's
 * options (`required`, `allowQueryToken`, `skipPreflight`, `realm`), and how refusals are answered.
 */
export interface M2MAuthOptions extends M2MAuthenticatorOptions, ResponseOptions {
  /** Reads the token from somewhere else; return `undefined` for none. Default: the header. */
  getToken?: (req: IncomingMessage) => string | undefined | Promise<string | undefined>;
}
