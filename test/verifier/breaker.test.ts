/** Unit tests of createBreaker with a fake clock. */
import { describe, expect, it } from 'vitest';
import { type BreakerState, createBreaker } from '../../src/verifier/breaker.js';

function setup(failures = 3, cooldownMs = 1_000) {
  let now = 1_000_000;
  const changes: BreakerState[] = [];
  const breaker = createBreaker(
    failures,
    cooldownMs,
    () => now,
    (state) => changes.push(state),
  );
  return {
    breaker,
    changes,
    advance: (ms: number) => {
      now += ms;
    },
    fail: (n: number) => {
      for (let i = 0; i < n; i++) breaker.failure();
    },
  };
}

describe('createBreaker', () => {
  it('starts closed and allows calls', () => {
    const { breaker, changes } = setup();
    expect(breaker.state).toBe('closed');
    expect(breaker.allow()).toBe(true);
    expect(breaker.allow()).toBe(true);
    expect(changes).toEqual([]);
  });

  it('stays closed below the threshold and opens at it', () => {
    const { breaker, changes, fail } = setup(3);
    fail(2);
    expect(breaker.state).toBe('closed');
    expect(breaker.allow()).toBe(true);
    fail(1);
    expect(breaker.state).toBe('open');
    expect(breaker.allow()).toBe(false);
    expect(changes).toEqual(['open']);
  });

  it('a success resets the consecutive count', () => {
    const { breaker, fail } = setup(3);
    fail(2);
    breaker.success();
    fail(2);
    expect(breaker.state).toBe('closed');
    fail(1);
    expect(breaker.state).toBe('open');
  });

  it('fails fast for the whole cooldown, then reads half-open', () => {
    const { breaker, advance, fail, changes } = setup(3, 1_000);
    fail(3);
    advance(999);
    expect(breaker.state).toBe('open');
    expect(breaker.allow()).toBe(false);
    advance(1);
    // Reading the state does not move it (no change reported yet).
    expect(breaker.state).toBe('half-open');
    expect(changes).toEqual(['open']);
  });

  it('after the cooldown lets exactly one trial through until it ends', () => {
    const { breaker, advance, fail, changes } = setup(3, 1_000);
    fail(3);
    advance(1_000);
    expect(breaker.allow()).toBe(true);
    expect(changes).toEqual(['open', 'half-open']);
    expect(breaker.allow()).toBe(false);
    expect(breaker.allow()).toBe(false);
    advance(10_000);
    expect(breaker.allow()).toBe(false);
  });

  it('a successful trial closes it', () => {
    const { breaker, advance, fail, changes } = setup(3, 1_000);
    fail(3);
    advance(1_000);
    breaker.allow();
    breaker.success();
    expect(breaker.state).toBe('closed');
    expect(breaker.allow()).toBe(true);
    expect(breaker.allow()).toBe(true);
    expect(changes).toEqual(['open', 'half-open', 'closed']);
    // And it needs the full threshold again to open.
    fail(2);
    expect(breaker.state).toBe('closed');
  });

  it('a failed trial opens it again for a full cooldown from the failure', () => {
    const { breaker, advance, fail, changes } = setup(3, 1_000);
    fail(3);
    advance(1_500);
    expect(breaker.allow()).toBe(true);
    advance(200);
    breaker.failure();
    expect(changes).toEqual(['open', 'half-open', 'open']);
    expect(breaker.state).toBe('open');
    advance(999);
    expect(breaker.allow()).toBe(false);
    advance(1);
    expect(breaker.allow()).toBe(true);
  });

  it('reports each state change once', () => {
    const { breaker, fail, changes } = setup(2);
    fail(5);
    breaker.success();
    breaker.success();
    expect(changes).toEqual(['open', 'closed']);
  });

  it('failures 0 disables it: always allows, never changes state', () => {
    const { breaker, fail, changes } = setup(0, 1_000);
    fail(100);
    expect(breaker.allow()).toBe(true);
    expect(breaker.state).toBe('closed');
    expect(changes).toEqual([]);
  });

  it('failures 1 opens on the first failure', () => {
    const { breaker, fail } = setup(1);
    fail(1);
    expect(breaker.allow()).toBe(false);
  });

  it('cooldownMs 0 allows a trial at once after opening', () => {
    const { breaker, fail } = setup(2, 0);
    fail(2);
    expect(breaker.state).toBe('half-open');
    expect(breaker.allow()).toBe(true);
    expect(breaker.allow()).toBe(false);
  });
});
