// Backpressure decisions for one worker. A congested sink pauses this worker's inbound data
// connections; congested peers, or a held queue above its high mark on any member, pause the
// sources (which only the initializer has). Messages that wait for a slot in transit are bounded
// this way: above `high` of them a worker tells the initializer, which pauses the sources until
// every member is back below `low`. The state that releases them travels on data connections,
// which this never pauses for held messages. While a member is down the sources stay paused too:
// what would be routed to it has nowhere to go (docs/operators.md, "When a worker dies").
import { assert } from "../assert.ts";
import { log } from "../log.ts";

/**
 * Messages held for incoming slots: above `high` the cluster's sources pause until they fall
 * below `low`, so the queue is bounded by `high` plus what was already on its way (itself bounded
 * by the links' high-water marks).
 */
export const HELD_LIMITS = { high: 65_536, low: 16_384 } as const;

export interface PressureHost {
  sinkCongested(): boolean;
  peersCongested(): boolean;
  heldCount(): number;
  sources(): ReadonlyArray<{ readonly isPaused: boolean; pause(): void; resume(): void }>;
  /** Pauses (true) or resumes every inbound data connection. */
  pauseInbound(paused: boolean): void;
  /** Non-initializers: tell the initializer this worker's held queue crossed a mark. */
  reportHeld(high: boolean): void;
}

export class Pressure {
  private heldHighHere = false;
  /** Initializer: members whose held queue is high; the sources stay paused while any is. */
  private readonly highAt = new Set<number>();
  /** Initializer: members that are down; the sources stay paused while any is. */
  private readonly downAt = new Set<number>();
  /** Initializer: other reasons the sources stay paused (a checkpoint's barrier rounds, a recovery). */
  private readonly holds = new Set<string>();
  private inboundPaused = false;
  /** Times the sources paused for a held queue, for tests and counters. */
  heldPauses = 0;

  constructor(
    private readonly host: PressureHost,
    private readonly limits: { high: number; low: number } = HELD_LIMITS,
  ) {
    assert(limits.low < limits.high, "held low mark must be below the high mark");
  }

  /** Inbound data connections stay paused while the sink is congested. */
  get inboundPausedForSink(): boolean {
    return this.inboundPaused;
  }

  /** A member reported its held queue above (true) or back below (false) its marks. */
  memberHeld(id: number, high: boolean): void {
    if (high) this.highAt.add(id);
    else this.highAt.delete(id);
    this.check();
  }

  /** The members that are down now (the coordinator's word): the sources pause while any is. */
  setDown(ids: Iterable<number>): void {
    this.downAt.clear();
    for (const id of ids) this.downAt.add(id);
    this.check();
  }

  get anyDown(): boolean {
    return this.downAt.size > 0;
  }

  /** Pauses (on) or releases the sources for `reason`. */
  hold(reason: string, on: boolean): void {
    if (on) this.holds.add(reason);
    else this.holds.delete(reason);
    this.check();
  }

  /** A held queue is above its mark somewhere: replaying more would only be held. */
  get heldHigh(): boolean {
    return this.heldHighHere || this.highAt.size > 0;
  }

  /** A rollback emptied every held queue: marks reported before it are moot. */
  forgetHeld(): void {
    this.highAt.clear();
    this.check();
  }

  /** A member that left or died holds nothing back any more. */
  forget(id: number): void {
    if (this.highAt.delete(id)) this.check();
  }

  /** Why the sources would stop now (each one alone is enough): for the metrics. */
  causes(): Record<"sink" | "peers" | "held" | "down" | "checkpoint" | "recovery", boolean> {
    const h = this.host;
    return {
      sink: h.sinkCongested(),
      peers: h.peersCongested(),
      held: this.heldHigh,
      down: this.downAt.size > 0,
      checkpoint: this.holds.has("checkpoint"),
      recovery: this.holds.has("recovery"),
    };
  }

  check(): void {
    const h = this.host;
    const sinkFull = h.sinkCongested();
    const held = h.heldCount();
    if (!this.heldHighHere && held > this.limits.high) this.setHeldHigh(true, held);
    else if (this.heldHighHere && held < this.limits.low) this.setHeldHigh(false, held);
    const heldFull = this.heldHighHere || this.highAt.size > 0;
    const sources = h.sources();
    if (sources.length > 0) {
      const stop = sinkFull || heldFull || this.downAt.size > 0 || this.holds.size > 0 || h.peersCongested();
      for (const s of sources) {
        if (heldFull && !s.isPaused) this.heldPauses++;
        if (stop) s.pause();
        else s.resume();
      }
    }
    if (sinkFull !== this.inboundPaused) {
      this.inboundPaused = sinkFull;
      h.pauseInbound(sinkFull);
    }
  }

  private setHeldHigh(high: boolean, held: number): void {
    this.heldHighHere = high;
    log.debug("held_pressure", `${held} messages wait for incoming slots: ${high ? "asking the sources to pause" : "sources may resume"}`);
    this.host.reportHeld(high);
  }
}
