/** How deep and how large a value {@link freezeBounded} accepts. */
export interface FreezeLimits {
  /** Nesting depth; the value itself is depth 0. */
  maxDepth: number;
  /** Objects, arrays and primitives counted together. */
  maxNodes: number;
}

/** A value deeper or larger than its limits: an answer we refuse to hold. */
export class ValueTooLargeError extends Error {
  override name = 'ValueTooLargeError';
}

/**
 * Deep-freezes `value` (acyclic, as anything parsed from JSON) without recursion (a hostile answer nested 20 000 deep must not blow
 * the stack) and returns its approximate size in bytes of heap (strings at two bytes a
 * character, a fixed cost per node), for byte-bounded caches. Throws
 * {@link ValueTooLargeError} past the limits; what was frozen by then stays frozen, which is
 * harmless since the value is then dropped.
 */
export function freezeBounded(value: unknown, limits: FreezeLimits): number {
  const NODE_BYTES = 32;
  let bytes = 0;
  let nodes = 0;
  const stack: Array<[unknown, number]> = [[value, 0]];
  while (stack.length > 0) {
    const [item, depth] = stack.pop()!;
    if (++nodes > limits.maxNodes) throw new ValueTooLargeError('too many values');
    bytes += NODE_BYTES;
    if (typeof item === 'string') {
      bytes += item.length * 2;
      continue;
    }
    if (typeof item !== 'object' || item === null) continue;
    if (depth >= limits.maxDepth) throw new ValueTooLargeError('nested too deep');
    // Values come from JSON (Clerk's answer, a JWT payload, the shared store): no cycles.
    Object.freeze(item);
    for (const key of Object.keys(item)) {
      bytes += key.length * 2;
      stack.push([(item as Record<string, unknown>)[key], depth + 1]);
    }
  }
  return bytes;
}
