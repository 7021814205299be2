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

/** A 0 ms timer of the system clock: an immediate (see below). */
interface Immediate {
  readonly immediate: ReturnType<typeof setImmediate>;
}

/**
 * A timer or sleep of 0 ms ("the next turn of the event loop") is a setImmediate, not a
 * setTimeout: Bun's shortest timer takes ≈ 1.2 ms (measured), so work done a slice per turn —
 * a replay of the input log, a checkpoint written in parts, migration shipped per turn — spent
 * more time waiting for its turns than working. An immediate runs after the sockets that are
 * ready have had theirs, which is all a yield is for.
 */
export const systemClock: Clock = {
  now: () => performance.now(),
  epochMs: () => performance.timeOrigin + performance.now(),
  setTimeout: (fn, ms) => (ms <= 0 ? ({ immediate: setImmediate(fn) } satisfies Immediate) : setTimeout(fn, ms)) as unknown as Timer,
  clearTimeout: (timer) => {
    if (timer === undefined) return;
    const t = timer as unknown as Immediate | ReturnType<typeof setTimeout>;
    if (typeof t === "object" && t !== null && "immediate" in t) clearImmediate(t.immediate);
    else clearTimeout(t);
  },
  sleep: (ms) => (ms <= 0 ? new Promise<void>((resolve) => setImmediate(resolve)) : Bun.sleep(ms)),
};
