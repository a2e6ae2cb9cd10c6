import { type Logger, pino } from 'pino';
import { assertMethods } from './validate.js';

/** The logger every part uses when none is given: silent, so a library never writes on its own. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

/** Accepts a pino logger (anything with the level methods and `child`), or builds the silent one. */
export function loggerOption(value: unknown, name = 'logger'): Logger {
  if (value === undefined) return silentLogger();
  return assertMethods<Logger>(
    value,
    name,
    ['debug', 'info', 'warn', 'error', 'child'],
    'must be a pino logger',
  );
}
