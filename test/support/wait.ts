// Waiting with a deadline, for the e2e tests, the benchmarks and the demo. Two kinds: `Condition`
// resolves on the event that makes it true (a log line, a received line, a closed connection),
// checked by whoever changes the state; `poll` is for answers we must ask for (a worker's status
// over its external channel). Neither ever waits without a deadline.

export const now = (): number => performance.now();

/** Rejects with `what` if `p` has not settled within `deadline_ms`. */
export async function withDeadline<T>(p: Promise<T>, deadline_ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`deadline of ${deadline_ms} ms passed waiting for ${what}`)), deadline_ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Asks `probe` every `every_ms` until it returns something other than undefined/false; a probe
 * that throws counts as "not yet" (a worker still starting refuses connections) and its last
 * error is reported at the deadline. `abort` may throw to fail at once (a child died).
 */
export async function poll<T>(
  what: string,
  deadline_ms: number,
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  opts: { every_ms?: number; abort?: () => void } = {},
): Promise<T> {
  const until = now() + deadline_ms;
  let last: unknown;
  for (;;) {
    opts.abort?.();
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v as T;
    } catch (err) {
      last = err;
    }
    if (now() > until) throw new Error(`deadline of ${deadline_ms} ms passed waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ""}`);
    await Bun.sleep(opts.every_ms ?? 50);
  }
}

interface Waiter {
  test: () => boolean;
  resolve: () => void;
}

/**
 * Conditions over some state, woken by the code that changes it (`changed()`), so a wait ends
 * on the event itself rather than on the next tick of a poll.
 */
export class Conditions {
  private waiters: Waiter[] = [];

  /** Resolves once `test()` holds; rejects after `deadline_ms` with `what` and `detail()`. */
  until(test: () => boolean, deadline_ms: number, what: string, detail?: () => string): Promise<void> {
    if (test()) return Promise.resolve();
    let waiter!: Waiter;
    const p = new Promise<void>((resolve) => {
      waiter = { test, resolve };
      this.waiters.push(waiter);
    });
    return withDeadline(p, deadline_ms, what).catch((err: Error) => {
      this.waiters = this.waiters.filter((w) => w !== waiter);
      throw new Error(detail ? `${err.message}\n${detail()}` : err.message);
    });
  }

  /** Call after every change of the state the conditions read. */
  changed(): void {
    if (this.waiters.length === 0) return;
    const still: Waiter[] = [];
    for (const w of this.waiters) {
      if (w.test()) w.resolve();
      else still.push(w);
    }
    this.waiters = still;
  }
}
