// Requests a member forwards to the coordinator (a join or shrink that arrived here), waiting
// for the answer under a request id. Every request has a deadline; a request that cannot be
// sent fails at once. Bounded: at most MAX_PENDING wait at a time.
import type { Clock, Timer } from "../clock.ts";

export const RELAY_LIMITS = {
  deadlineMs: 15_000,
  /**
   * The coordinator answers a shrink at once; a relayed one waits less than the 10 s an
   * operator's tool waits by default, so the tool reads why rather than its own timeout.
   */
  shrinkDeadlineMs: 5000,
  maxPending: 1024,
} as const;

export class Relays {
  private nextReqId = 1;
  private readonly pending = new Map<number, { resolve: (body: unknown) => void; reject: (err: Error) => void; timer: Timer }>();

  constructor(private readonly clock: Clock) {}

  /**
   * Sends with `send(reqId)` (false: not sent) and resolves with the answer `settle` receives,
   * or rejects after `deadlineMs`.
   */
  ask<T>(send: (reqId: number) => boolean, deadlineMs: number = RELAY_LIMITS.deadlineMs): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.pending.size >= RELAY_LIMITS.maxPending) return reject(new Error("Too many requests are waiting for the initializer; try again."));
      const reqId = this.nextReqId++;
      const timer = this.clock.setTimeout(() => {
        this.pending.delete(reqId);
        reject(new Error(`The initializer did not answer within ${deadlineMs / 1000} s.`));
      }, deadlineMs);
      this.pending.set(reqId, { resolve: resolve as (b: unknown) => void, reject, timer });
      if (!send(reqId)) {
        this.clock.clearTimeout(timer);
        this.pending.delete(reqId);
        reject(new Error("The initializer is not reachable from this worker."));
      }
    });
  }

  /** The answer to `reqId`; an answer nobody waits for (late, or forged) is ignored. */
  settle(reqId: number, body: unknown): void {
    const r = this.pending.get(reqId);
    if (!r) return;
    this.clock.clearTimeout(r.timer);
    this.pending.delete(reqId);
    r.resolve(body);
  }

  /** Fails every waiting request (the worker is stopping). */
  failAll(reason: string): void {
    for (const [id, r] of this.pending) {
      this.clock.clearTimeout(r.timer);
      this.pending.delete(id);
      r.reject(new Error(reason));
    }
  }
}
