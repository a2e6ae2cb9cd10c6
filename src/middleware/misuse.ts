import { IncomingMessage } from 'node:http';

/**
 * Notices a factory handed to a framework instead of its result (`app.use(m2mAuth)` for
 * `app.use(m2mAuth())`), as helmet does: the framework then calls the factory with its own
 * arguments, which no options object looks like. Checked once per factory call, never per request.
 */
export function looksLikeRequest(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return false;
  if (value instanceof IncomingMessage) return true;
  if (typeof Request === 'function' && value instanceof Request) return true;
  // Koa and Hono contexts carry `req` and `res`; a Fastify instance registers the plugin.
  if ('req' in value && 'res' in value) return true;
  return 'addHook' in value && 'decorateRequest' in value;
}

/** The error that says how the factory should have been used: `instead` is the right call. */
export function misuseError(factory: string, instead: string): TypeError {
  const uncalled = instead.includes('()') ? instead.replace('()', '') : factory;
  return new TypeError(
    `${factory} was used as a middleware without being called: write ${instead}, not ${uncalled}`,
  );
}

/** Throws `misuseError()`. */
export function callMeFirst(factory: string, instead: string): never {
  throw misuseError(factory, instead);
}
