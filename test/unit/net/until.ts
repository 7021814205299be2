// Waiting on sockets in unit tests: a condition is re-checked each time something the test
// records happens (a chunk, a close, a drain), never on a sleep, and every wait has a deadline
// that fails the test with what it was waiting for.

export class Changes {
  private waiters = new Set<() => void>();

  /** Call whenever something a test may wait on has changed. */
  readonly note = (): void => {
    for (const w of [...this.waiters]) w();
  };

  /** Resolves once `cond()` holds; rejects after `ms` naming `what`. */
  async until(what: string, cond: () => boolean, ms = 5000): Promise<void> {
    const deadline = performance.now() + ms;
    while (!cond()) {
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.waiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, left);
        this.waiters.add(done);
      });
    }
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
