/**
 * The middleware: `m2mAuth()` for Express, Connect and plain `node:http`, and the guards that
 * compose after it. Typed against `node:http` only; the verifier does the work.
 */
export {
  AuthUnavailableError,
  InsufficientScopeError,
  InvalidRequestError,
  M2MAuthError,
  type RefusalReason,
  TokenRejectedError,
  UnauthorizedError,
} from './errors.js';
export { allowSubjects, requireClaims, requireMachine } from './guards.js';
export { m2mAuth } from './m2m-auth.js';
export type {
  ErrorHandler,
  M2MAuthMiddleware,
  M2MAuthOptions,
  M2MMiddleware,
  M2MRequestAuth,
  NextFunction,
  ResponseOptions,
} from './types.js';
