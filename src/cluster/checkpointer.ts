// The initializer's checkpoints (docs/resilience.md): one at a time, every interval while the
// cluster is idle, and one right after each grow or shrink. A checkpoint pauses the sources at
// input position P, runs the barrier rounds until nothing sent before P is in flight, has every
// member write what changed in its slots (phase one), and commits only when every member has
// written it (phase two): the commit record is what a recovery rolls back to. Anything that goes
// wrong before the commit (a member dies, a deadline passes, an autoscale event must start)
// abandons the checkpoint; the members' writes of it are then never read.
//
// "Every interval" is from start to start, as the original's and Flink's checkpoint intervals
// are: a recovery replays the input since the last committed start, so (with no grow or shrink
// under way, when none starts, and checkpoints shorter than half an interval) at most one
// interval plus the duration of the checkpoint in flight at the crash (from commit to start it
// was an interval plus two). A
// checkpoint that took more than half an interval is followed by a pause of half an interval,
// so that the sources, which each checkpoint holds while its images are taken, are not held
// back to back when the state is large.
import { assert } from "../assert.ts";
import type { Clock, Timer } from "../clock.ts";
import { log } from "../log.ts";
import { Histogram } from "../metrics/histogram.ts";

export const CHECKPOINT_LIMITS = {
  /** A checkpoint not committed after this long is abandoned (and tried again later). */
  deadlineMs: 30_000,
} as const;

export interface CheckpointerHost {
  readonly clock: Clock;
  /** Members that take part, this one included. */
  participants(): readonly number[];
  readonly selfId: number;
  /** False while an autoscale event runs, a member is down, or a recovery runs. */
  canStart(): boolean;
  /** Pauses (true) or resumes the sources for the checkpoint. */
  hold(on: boolean): void;
  /** The input log's end: frames before it are covered by the checkpoint. */
  position(): number;
  /** Starts barrier round `round` of checkpoint `k` here. */
  beginRound(k: number, round: number): void;
  /** Tells every member (this one included) to take and write checkpoint `k`. */
  snapshot(k: number): void;
  /** Durably records checkpoint `k` as committed at input position `position`; tells the members. */
  commit(k: number, position: number): void;
}

type State =
  | { kind: "idle" }
  | { kind: "rounds"; k: number; round: number; position: number; started: number; waiting: Set<number> }
  | {
      kind: "writing";
      k: number;
      position: number;
      started: number;
      /** Members whose images are not taken yet: the sources stay paused until none is left. */
      capturing: Set<number>;
      waiting: Set<number>;
      slots: number;
      bytes: number;
    };

export class Checkpointer {
  private state: State = { kind: "idle" };
  private timer: Timer | undefined;
  private deadline: Timer | undefined;
  private stopped = true;
  /** Checkpoints committed (the last one's number). */
  lastCommitted: number;
  /** Checkpoint numbers handed out; abandoned ones are never reused. */
  private lastStarted: number;
  /** Durations of committed checkpoints, newest last (at most 1000), for status and benchmarks. */
  readonly durationsMs: number[] = [];
  /** Every committed checkpoint's duration, for the metrics. */
  readonly seconds = new Histogram();
  abandoned = 0;

  constructor(
    private readonly host: CheckpointerHost,
    readonly intervalMs: number,
    /** Barrier rounds per checkpoint: as many as a message can make hops between workers. */
    readonly rounds: number,
    lastCommitted = 0,
  ) {
    assert(rounds >= 0 && rounds <= 255, `barrier rounds ${rounds} out of range`);
    assert(intervalMs > 0, "a checkpoint interval must be positive");
    this.lastCommitted = lastCommitted;
    this.lastStarted = lastCommitted;
  }

  get busy(): boolean {
    return this.state.kind !== "idle";
  }

  /** The checkpoint in flight, if any. */
  get inFlight(): number | undefined {
    return this.state.kind === "idle" ? undefined : this.state.k;
  }

  /** Starts the periodic checkpoints. */
  start(): void {
    this.stopped = false;
    this.schedule(this.intervalMs);
  }

  stop(): void {
    this.stopped = true;
    this.host.clock.clearTimeout(this.timer);
    this.timer = undefined;
    if (this.state.kind !== "idle") this.abandon("this worker is stopping");
  }

  /** A checkpoint as soon as possible (after a grow or shrink): restarts the interval. */
  now(): void {
    if (this.stopped) return;
    this.host.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.trigger();
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.host.clock.clearTimeout(this.timer);
    this.timer = this.host.clock.setTimeout(() => {
      this.timer = undefined;
      this.trigger();
    }, ms);
  }

  private trigger(): void {
    if (this.state.kind !== "idle") return;
    if (!this.host.canStart()) return this.schedule(this.intervalMs);
    const h = this.host;
    const k = ++this.lastStarted;
    h.hold(true);
    const started = h.clock.now();
    this.state = { kind: "rounds", k, round: 1, position: h.position(), started, waiting: new Set(h.participants()) };
    this.deadline = h.clock.setTimeout(() => this.abandon(`not committed within ${CHECKPOINT_LIMITS.deadlineMs} ms`), CHECKPOINT_LIMITS.deadlineMs);
    log.debug("checkpoint_start", `Checkpoint ${k} at input position ${this.state.position}`);
    if (this.rounds > 0) return h.beginRound(k, 1);
    // No rounds (every message makes one hop, from here): this worker takes its images, then a
    // barrier on every data link makes each member take its own before reading on; the sources
    // go on as soon as this worker's are taken.
    const ids = h.participants();
    this.state = { kind: "writing", k, position: this.state.position, started, capturing: new Set([h.selfId]), waiting: new Set(ids), slots: 0, bytes: 0 };
    h.snapshot(k);
  }

  /** Member `from` has round `round` of checkpoint `k` from every other member. */
  onRoundDone(from: number, k: number, round: number): void {
    const s = this.state;
    if (s.kind !== "rounds" || s.k !== k || s.round !== round) return;
    s.waiting.delete(from);
    if (s.waiting.size > 0) return;
    if (round < this.rounds) {
      s.round++;
      s.waiting = new Set(this.host.participants());
      this.host.beginRound(k, s.round);
      return;
    }
    const ids = this.host.participants();
    this.state = { kind: "writing", k, position: s.position, started: s.started, capturing: new Set(ids), waiting: new Set(ids), slots: 0, bytes: 0 };
    this.host.snapshot(k);
  }

  /** Member `from` has taken checkpoint `k`'s images: once every member has, the sources go on. */
  onCaptured(from: number, k: number): void {
    const s = this.state;
    if (s.kind !== "writing" || s.k !== k || !s.capturing.delete(from)) return;
    if (s.capturing.size === 0) this.host.hold(false);
  }

  /** Member `from` has written checkpoint `k` (or could not: `failed` says why). */
  onWritten(from: number, k: number, slots: number, bytes: number, failed?: string): void {
    const s = this.state;
    if (s.kind !== "writing" || s.k !== k) return;
    if (failed !== undefined) return this.abandon(failed);
    s.waiting.delete(from);
    s.slots += slots;
    s.bytes += bytes;
    if (s.waiting.size > 0) return;
    this.host.clock.clearTimeout(this.deadline);
    this.host.commit(k, s.position);
    this.lastCommitted = k;
    const ms = this.host.clock.now() - s.started;
    this.durationsMs.push(ms);
    this.seconds.observe(ms / 1000);
    if (this.durationsMs.length > 1000) this.durationsMs.shift();
    log.debug("checkpoint_committed", `Checkpoint ${k} committed: ${s.slots} slots, ${s.bytes} bytes written in ${ms.toFixed(1)} ms`, {
      k,
      slots: s.slots,
      bytes: s.bytes,
      elapsed_ms: ms,
    });
    this.state = { kind: "idle" };
    this.host.hold(false);
    this.schedule(Math.max(this.intervalMs - ms, this.intervalMs / 2));
  }

  /** Gives up the checkpoint in flight (a member died, an autoscale event starts, a deadline). */
  abandon(why: string): void {
    const s = this.state;
    if (s.kind === "idle") return;
    this.host.clock.clearTimeout(this.deadline);
    this.abandoned++;
    log.warn("checkpoint_abandoned", `Checkpoint ${s.k} abandoned: ${why}`);
    this.state = { kind: "idle" };
    this.host.hold(false);
    this.schedule(this.intervalMs);
  }
}
