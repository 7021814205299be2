// Invariant checks stay on in production: a broken invariant in a distributed system is cheaper
// to crash on than to propagate (one owner per slot, epochs only increase).
export class InvariantError extends Error {
  constructor(message: string) {
    super(`invariant violated: ${message}`);
    this.name = "InvariantError";
  }
}

export function assert(cond: unknown, message: string): asserts cond {
  if (!cond) throw new InvariantError(message);
}
