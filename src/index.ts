/**
 * m2m-guard: accept Clerk machine-to-machine tokens in Node services, safely and fast.
 *
 * - client: `createM2MClient()`, Clerk's four M2M operations, typed, with deadlines and retries
 * - verifier: `createTokenVerifier()`, cached, coalesced, fail-closed verification
 * - middleware: `m2mAuth()` and guards for Express, Connect and `node:http`, and the
 *   framework-free core they wrap, `createM2MAuthenticator()`
 * - adapters: `m2m-guard/fastify`, `/hono`, `/koa`, `/web`, `/nestjs`
 * - the emulator lives at `m2m-guard/emulator`
 */
export * from './client/index.js';
export * from './middleware/index.js';
export * from './provider/index.js';
export { M2MConfigError } from './shared/config-error.js';
export { VERSION } from './shared/version.js';
export * from './verifier/index.js';
