/**
 * Thrown by every factory of m2m-guard when an option is invalid, at construction time,
 * so a misconfiguration fails on start-up and never on a request. The message names the
 * option and what it expects; it never repeats the value, which may be a secret.
 */
export class M2MConfigError extends TypeError {
  override readonly name = 'M2MConfigError';
  /** The option at fault, dotted for nested options (`retry.maxDelayMs`). */
  readonly option: string;

  constructor(option: string, expectation: string) {
    super(`m2m-guard: option \`${option}\` ${expectation}`);
    this.option = option;
  }
}
