// Waiting on sockets in unit tests: a condition is re-checked each time something the test
// records happens (a chunk, a close, a drain), never on a sleep, and every wait has a deadline
// that fails the test with what it was waiting for.
import { Conditions } from "../../support/wait.ts";

/** The shared harness's Conditions (test/support/wait.ts) in the shape these tests call. */
export class Changes {
  private readonly conditions = new Conditions();

  /** Call whenever something a test may wait on has changed. */
  readonly note = (): void => this.conditions.changed();

  /** Resolves once `cond()` holds; rejects after `ms` naming `what`. */
  until(what: string, cond: () => boolean, ms = 5000): Promise<void> {
    return this.conditions.until(cond, ms, what);
  }
}

/** A recognisable byte pattern, so a reordered, lost or repeated byte is caught by position. */
export function patternBytes(n: number, from = 0): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (from + i) % 251;
  return b;
}

/** Checks that `chunk`, arriving at stream offset `at`, continues the pattern; returns the first bad offset or -1. */
export function patternMismatch(chunk: Uint8Array, at: number): number {
  for (let i = 0; i < chunk.length; i++) if (chunk[i] !== (at + i) % 251) return at + i;
  return -1;
}
