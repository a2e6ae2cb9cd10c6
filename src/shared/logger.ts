import { type Logger, pino } from 'pino';
import { M2MConfigError } from './config-error.js';

/** The logger every part uses when none is given: silent, so a library never writes on its own. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

/** Accepts a pino logger (anything with the level methods and `child`), or builds the silent one. */
export function loggerOption(value: unknown, name = 'logger'): Logger {
  if (value === undefined) return silentLogger();
  const candidate = value as Partial<Logger>;
  for (const method of ['debug', 'info', 'warn', 'error', 'child'] as const) {
    if (typeof candidate?.[method] !== 'function') {
      throw new M2MConfigError(name, 'must be a pino logger');
    }
  }
  return value as Logger;
}
