import type { Logger } from 'pino';
import type { UnavailableReason, VerifierUnavailableError } from './errors.js';

/**
 * Says an upstream outage once, when it starts (and again only if its cause changes), and once
 * more when Clerk answers again: an outage costs a few log lines, never one per request. A key
 * Clerk rejects is said at `error` with what to fix; any other failure at `warn`, naming the host.
 */
export interface OutageLog {
  /** Clerk could not answer a verify call. */
  failed(error: VerifierUnavailableError, status: number | undefined): void;
  /** Clerk answered (a token good or not): any outage is over. */
  answered(): void;
}

/**
 * @param apiUrl the client's API URL; only its host is logged.
 * @param verifyIdentity the client's `verifyIdentity`, to tell which key Clerk rejected.
 */
export function createOutageLog(log: Logger, apiUrl: string, verifyIdentity: string): OutageLog {
  const host = new URL(apiUrl).host;
  const machineKey = verifyIdentity.startsWith('machine:');
  const keyToFix = machineKey
    ? '`machineSecretKey` (CLERK_MACHINE_SECRET_KEY) must be a current machine secret key'
    : '`secretKey` (CLERK_SECRET_KEY) must be the instance secret key';
  let current: UnavailableReason | undefined;
  return {
    failed(error, status) {
      const { reason } = error;
      const fields = { reason, status, host, cause: (error.cause as Error | undefined)?.message };
      if (current === reason) {
        log.debug(fields, 'clerk verify still unavailable');
        return;
      }
      current = reason;
      if (reason === 'misconfigured') {
        log.error(
          fields,
          `clerk at ${host} rejected our own secret key: ${keyToFix} of the instance at \`apiUrl\` ` +
            '(CLERK_API_URL); every token that needs Clerk is refused 503 until it is fixed',
        );
      } else {
        log.warn(
          fields,
          `clerk at ${host} is unavailable (${reason}): tokens that need it are refused 503 ` +
            'until it answers; said once per outage',
        );
      }
    },
    answered() {
      if (current === undefined) return;
      log.info({ host, was: current }, `clerk at ${host} answers again`);
      current = undefined;
    },
  };
}
