/**
 * Thrown by every factory of m2m-guard when an option is invalid, at construction time,
 * so a misconfiguration fails on start-up and never on a request. The message names the
 * option (or the environment variable its value came from) and what it expects; it never
 * repeats the value, which may be a secret.
 */
export class M2MConfigError extends TypeError {
  override readonly name = 'M2MConfigError';
  /** The option at fault, dotted for nested options (`retry.maxDelayMs`). */
  readonly option: string;
  /** What the option expects, without the option's name (`must be a key starting with …`). */
  readonly expectation: string;
  /** The environment variable the bad value came from, when it came from one. */
  readonly variable: string | undefined;

  constructor(option: string, expectation: string, variable?: string) {
    super(
      variable === undefined
        ? `m2m-guard: option \`${option}\` ${expectation}`
        : `m2m-guard: ${variable} (read for option \`${option}\`) ${expectation}`,
    );
    this.option = option;
    this.expectation = expectation;
    this.variable = variable;
  }
}

/**
 * Runs a validator on a value read from the environment variable `variable`, so that an error
 * names the variable the user set rather than an option they never wrote.
 */
export function fromVariable<T>(variable: string, validate: () => T): T {
  try {
    return validate();
  } catch (err) {
    if (err instanceof M2MConfigError && err.variable === undefined) {
      throw new M2MConfigError(err.option, err.expectation, variable);
    }
    throw err;
  }
}
