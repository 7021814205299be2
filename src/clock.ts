// Time, as the cluster logic sees it. Every deadline, retry and linger in src/cluster and the
// sink goes through a Clock, so the in-process simulation can run a whole cluster on virtual
// time and jump over a 60 s deadline in one step (test/sim/manual-clock.ts).

/** An opaque handle for a pending timer. */
export type Timer = { readonly __timer: unique symbol };

export interface Clock {
  /** Milliseconds on a monotonic scale (only differences mean anything). */
  now(): number;
  /**
   * Milliseconds since the Unix epoch, with a fraction: comparable between processes (on one
   * host to ≈ 2 µs; across hosts as far as their clocks agree). For latencies that cross workers.
   */
  epochMs(): number;
  setTimeout(fn: () => void, ms: number): Timer;
  clearTimeout(timer: Timer | undefined): void;
  sleep(ms: number): Promise<void>;
}

export const systemClock: Clock = {
  now: () => performance.now(),
  epochMs: () => performance.timeOrigin + performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms) as unknown as Timer,
  clearTimeout: (timer) => {
    if (timer !== undefined) clearTimeout(timer as unknown as ReturnType<typeof setTimeout>);
  },
  sleep: (ms) => Bun.sleep(ms),
};
