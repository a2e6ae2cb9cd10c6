/**
 * The middleware: `m2mAuth()` for Express, Connect and plain `node:http`, and the guards that
 * compose after it, typed against `node:http` only; and the framework-free core they wrap
 * (`createM2MAuthenticator()`, `checkMachine()`, …), which every framework adapter wraps too.
 */
export {
  ANONYMOUS_PASS,
  checkClaims,
  checkMachine,
  checkSubjects,
  createM2MAuthenticator,
  isPass,
  isPreflightRequest,
  isRefusal,
  type M2MAuthenticator,
  type M2MAuthenticatorOptions,
  type M2MDecision,
  type M2MGuardCheck,
  type M2MOutcome,
  type M2MPass,
  type M2MRequestParts,
  outcomeOf,
  PREFLIGHT_PASS,
} from './core.js';
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
