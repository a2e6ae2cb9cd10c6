import { type Logger, pino } from 'pino';
import { M2MConfigError } from './config-error.js';
import { assertMethods } from './validate.js';

/** The level of the logger built when none is given: what needs a human, nothing per request. */
export const DEFAULT_LOG_LEVEL = 'warn';

/**
 * The logger every part uses when none is given: pino at `warn`, to stderr, so a wrong key or an
 * unreachable Clerk is said without any setup, while normal operation writes nothing.
 */
export function defaultLogger(): Logger {
  // One per process: every factory's default writes through the same synchronous stream.
  shared ??= pino({ level: DEFAULT_LOG_LEVEL, base: { name: 'm2m-guard' } }, pino.destination(2));
  return shared;
}
let shared: Logger | undefined;

/** A logger that writes nothing: what `logger: false` asks for. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

/**
 * The `logger` option of every factory: a pino logger (anything with the level methods and
 * `child`), `false` for silence, or, when not given, {@link defaultLogger}.
 */
export function loggerOption(value: unknown, name = 'logger'): Logger {
  if (value === undefined) return defaultLogger();
  if (value === false) return silentLogger();
  if (value === true) {
    throw new M2MConfigError(name, 'must be a pino logger, or `false` to silence it');
  }
  return assertMethods<Logger>(
    value,
    name,
    ['debug', 'info', 'warn', 'error', 'child'],
    'must be a pino logger, or `false` to silence it',
  );
}
