import { M2MConfigError } from '../shared/config-error.js';
import { assertKnownKeys, intOption, optionKeys } from '../shared/validate.js';

/** The four M2M operations, as counted in `Emulator.calls` and targeted by `failNext`. */
export type M2MOperation = 'create' | 'list' | 'revoke' | 'verify';

/**
 * Transport-level failures `failNext` can inject:
 * - `reset`: destroy the socket without answering;
 * - `reset-mid-body`: send 200 headers with a content-length and half the body, then destroy;
 * - `not-json`: 200 with a `text/html` body;
 * - `wrong-shape`: 200 `application/json` `{"ok":true}`;
 * - `hang`: never answer (until `close()`).
 */
export type FaultKind = 'reset' | 'reset-mid-body' | 'not-json' | 'wrong-shape' | 'hang';

export const FAULT_KINDS: readonly FaultKind[] = [
  'reset',
  'reset-mid-body',
  'not-json',
  'wrong-shape',
  'hang',
];
const OPERATIONS: readonly M2MOperation[] = ['create', 'list', 'revoke', 'verify'];

/** Options of `failNext`. */
export interface FailNextOptions {
  /** Seconds to send in `Retry-After` with an injected status (integer ≥ 0). Default: no header. */
  retryAfter?: number;
  /** Only requests of this operation are failed. Default: any of the four M2M operations. */
  operation?: M2MOperation;
}

const FAIL_NEXT_KEYS = optionKeys<FailNextOptions>({ retryAfter: true, operation: true });

/** What to do with one request instead of handling it. */
export type Fault = { kind: 'status'; status: number; retryAfter?: number } | { kind: FaultKind };

interface PendingFault {
  remaining: number;
  fault: Fault;
  operation: M2MOperation | undefined;
}

/** The queue of injected failures, consumed first-in first-out by matching requests. */
export class FaultQueue {
  private pending: PendingFault[] = [];

  add(count: unknown, fault: unknown, options: unknown): void {
    if (count === undefined) throw new M2MConfigError('count', 'is required');
    const remaining = intOption(count, 'count', 1, { min: 1 });
    const opts = (options ?? {}) as FailNextOptions;
    if (typeof opts !== 'object' || Array.isArray(opts)) {
      throw new M2MConfigError('options', 'must be an object');
    }
    assertKnownKeys(opts, FAIL_NEXT_KEYS, 'options.');
    if (opts.operation !== undefined && !OPERATIONS.includes(opts.operation)) {
      throw new M2MConfigError('options.operation', `must be one of ${OPERATIONS.join(', ')}`);
    }
    const retryAfter =
      opts.retryAfter === undefined
        ? undefined
        : intOption(opts.retryAfter, 'options.retryAfter', 0, { min: 0, max: 86_400 });

    let resolved: Fault;
    if (typeof fault === 'number') {
      if (!Number.isInteger(fault) || fault < 400 || fault > 599) {
        throw new M2MConfigError('fault', 'must be an HTTP status from 400 to 599 or a FaultKind');
      }
      resolved =
        retryAfter === undefined
          ? { kind: 'status', status: fault }
          : { kind: 'status', status: fault, retryAfter };
    } else if (FAULT_KINDS.includes(fault as FaultKind)) {
      resolved = { kind: fault as FaultKind };
    } else {
      throw new M2MConfigError(
        'fault',
        `must be an HTTP status or one of ${FAULT_KINDS.join(', ')}`,
      );
    }
    this.pending.push({ remaining, fault: resolved, operation: opts.operation });
  }

  /** The fault for this request, if one is pending for its operation; consumes one use. */
  take(operation: M2MOperation): Fault | undefined {
    const index = this.pending.findIndex(
      (p) => p.operation === undefined || p.operation === operation,
    );
    if (index === -1) return undefined;
    const entry = this.pending[index]!;
    entry.remaining -= 1;
    if (entry.remaining === 0) this.pending.splice(index, 1);
    return entry.fault;
  }

  clear(): void {
    this.pending = [];
  }
}
