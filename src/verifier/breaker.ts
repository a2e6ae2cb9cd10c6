/**
 * A small circuit breaker: after `failures` consecutive upstream failures it opens, so calls
 * fail fast for `cooldownMs`; then one trial call is let through, and its outcome closes or
 * re-opens it. Time comes from the injected clock.
 */
export type BreakerState = 'closed' | 'open' | 'half-open';

export interface CircuitBreaker {
  /** True when a call may go upstream now (claims the trial slot when half-open). */
  allow(): boolean;
  success(): void;
  failure(): void;
  readonly state: BreakerState;
  /** How long until an open breaker lets a trial call through (0 when it would now). */
  retryInMs(): number;
}

export function createBreaker(
  failures: number,
  cooldownMs: number,
  now: () => number,
  onChange: (state: BreakerState) => void,
): CircuitBreaker {
  let state: BreakerState = 'closed';
  let consecutive = 0;
  let openedAt = 0;
  let trialInFlight = false;
  const move = (next: BreakerState) => {
    if (state !== next) {
      state = next;
      onChange(next);
    }
  };
  return {
    get state() {
      if (state === 'open' && now() - openedAt >= cooldownMs) return 'half-open';
      return state;
    },
    retryInMs() {
      return state === 'open' ? Math.max(0, cooldownMs - (now() - openedAt)) : 0;
    },
    allow() {
      if (failures === 0 || state === 'closed') return true;
      if (state === 'open' && now() - openedAt < cooldownMs) return false;
      if (trialInFlight) return false;
      trialInFlight = true;
      move('half-open');
      return true;
    },
    success() {
      consecutive = 0;
      trialInFlight = false;
      move('closed');
    },
    failure() {
      trialInFlight = false;
      consecutive++;
      if (failures > 0 && (state === 'half-open' || consecutive >= failures)) {
        openedAt = now();
        move('open');
      }
    },
  };
}
