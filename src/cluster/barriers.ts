// One member's part of a checkpoint's barrier rounds (docs/resilience.md). The initializer starts
// round r of checkpoint k by sending BARRIER(k, r) on its data link to every member; each member,
// once it has the initializer's barrier, sends BARRIER(k, r) on its own data links to every other
// member; a member that has round r's barrier from every other member has processed everything
// they sent it before, and tells the coordinator. Links are FIFO and a message is processed when
// it is read, so each round moves every message still in flight at least one hop further; after
// as many rounds as a message can make hops, nothing sent before the checkpoint is in flight.
import { assert } from "../assert.ts";

export interface BarriersHost {
  initializerId(): number;
  /** Every other member taking part (every member known here but this one). */
  others(): readonly number[];
  /** Sends BARRIER(k, round) on this worker's data link to every other member. */
  relay(k: number, round: number): void;
  /** This member has round `round` of checkpoint `k` from every other member. */
  done(k: number, round: number): void;
}

export class Barriers {
  /** The newest checkpoint seen; barriers of older (abandoned) ones are ignored. */
  private k = 0;
  /** round → members whose barrier of checkpoint `k` arrived */
  private readonly seen = new Map<number, Set<number>>();
  private readonly relayed = new Set<number>();
  private readonly finished = new Set<number>();

  constructor(private readonly host: BarriersHost) {}

  /** The initializer starts round `round` of checkpoint `k`: it is the round's first sender. */
  begin(k: number, round: number): void {
    this.enter(k);
    this.relayOnce(round);
    this.check(round);
  }

  /** BARRIER(k, round) arrived on the data link from member `from`. */
  onBarrier(from: number, k: number, round: number): void {
    if (k < this.k || from < 0) return;
    this.enter(k);
    let s = this.seen.get(round);
    if (!s) {
      s = new Set();
      this.seen.set(round, s);
    }
    s.add(from);
    if (from === this.host.initializerId()) this.relayOnce(round);
    this.check(round);
  }

  /** A rollback to checkpoint `k`: the next checkpoint is numbered after it, whatever was seen since. */
  rollback(k: number): void {
    this.k = k;
    this.reset();
  }

  /** Forgets every round. */
  reset(): void {
    this.seen.clear();
    this.relayed.clear();
    this.finished.clear();
  }

  private enter(k: number): void {
    assert(Number.isInteger(k) && k > 0, `checkpoint ${k} is not a positive integer`);
    if (k === this.k) return;
    this.k = k;
    this.reset();
  }

  private relayOnce(round: number): void {
    if (this.relayed.has(round)) return;
    this.relayed.add(round);
    this.host.relay(this.k, round);
  }

  private check(round: number): void {
    if (this.finished.has(round) || !this.relayed.has(round)) return;
    const s = this.seen.get(round);
    for (const id of this.host.others()) if (!s?.has(id)) return;
    this.finished.add(round);
    this.host.done(this.k, round);
  }
}
