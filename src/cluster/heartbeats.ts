// Liveness between the initializer and each member. A closed connection tells of a crash at
// once; a silent partition or a stopped process closes nothing, so each side sends a heartbeat
// every 250 ms and counts the other as lost when nothing at all (any
// control frame counts) arrived from it for the whole timeout. The heartbeat carries the keys the
// sender holds, so the coordinator can say how many were lost with a member it removes.
import { assert } from "../assert.ts";
import type { Clock, Timer } from "../clock.ts";

/** Default `--failure-timeout`: a silent member is declared lost after this long. */
export const DEFAULT_FAILURE_TIMEOUT_MS = 1000;
/**
 * Heartbeats go out this often (or every quarter of the timeout, if that is shorter), whatever a
 * member's own timeout: members started with different timeouts of 1 s or more still agree.
 */
export const HEARTBEAT_EVERY_MS = 250;

export interface HeartbeatsHost {
  readonly clock: Clock;
  /** The members this worker sends heartbeats to (the initializer: every live peer, joiners too). */
  pinged(): readonly number[];
  /** The members whose silence counts: the committed members (initializer), the initializer (others). */
  watched(): readonly number[];
  /** When a control frame from member `id` last arrived, if ever. */
  lastHeard(id: number): number | undefined;
  send(id: number): void;
  /** Nothing arrived from member `id` for `silentMs`. */
  silent(id: number, silentMs: number): void;
}

export class Heartbeats {
  private timer: Timer | undefined;
  private lastTick = -1;
  /** When each watched member was first watched: silence counts from then if it never spoke. */
  private readonly since = new Map<number, number>();

  constructor(
    private readonly host: HeartbeatsHost,
    readonly timeoutMs: number,
  ) {
    assert(Number.isFinite(timeoutMs) && timeoutMs >= 20, `failure timeout ${timeoutMs} ms is too short`);
  }

  start(): void {
    if (this.timer === undefined) this.tick();
  }

  /** Member `id` came back (a rollback): its silence counts from now. */
  reset(id: number): void {
    if (this.since.has(id)) this.since.set(id, this.host.clock.now());
  }

  stop(): void {
    this.host.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  private readonly tick = (): void => {
    const h = this.host;
    const now = h.clock.now();
    const watched = h.watched();
    // A tick this late means this process itself stood still (a stall, a long collection): what
    // the others sent may still sit unread, so their silence is not theirs. Count afresh.
    const stalled = this.lastTick >= 0 && now - this.lastTick > Math.max(this.timeoutMs / 2, 2 * HEARTBEAT_EVERY_MS);
    this.lastTick = now;
    for (const id of h.pinged()) h.send(id);
    for (const id of [...this.since.keys()]) if (!watched.includes(id)) this.since.delete(id);
    for (const id of watched) {
      if (!this.since.has(id) || stalled) this.since.set(id, now);
      const last = Math.max(h.lastHeard(id) ?? 0, this.since.get(id)!);
      if (now - last > this.timeoutMs) {
        this.since.delete(id);
        h.silent(id, Math.round(now - last));
      }
    }
    this.timer = h.clock.setTimeout(this.tick, Math.min(HEARTBEAT_EVERY_MS, this.timeoutMs / 4));
  };
}
