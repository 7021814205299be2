// Who is in the cluster, as this worker knows it: every known member in cluster order (joiners
// included once announced), the membership the cluster has committed to (what status reports),
// and the names that left or were removed, so that their connections closing is not taken for
// a failure. Pure bookkeeping: no connection, no timer.
import { assert } from "../assert.ts";
import type { Member } from "../codec/control.ts";

export const INITIALIZER_NAME = "initializer";

export class Membership {
  private known: Member[] = [];
  private committedMembers: Member[] = [];
  private readonly departed = new Set<string>();
  private me: Member;

  constructor(self: Member) {
    this.me = self;
  }

  get self(): Member {
    return this.me;
  }

  /**
   * The address this worker is reached at, learned late (it listens on a wildcard address):
   * only while nobody else knows this worker's entry, so every member sees one address.
   */
  learnSelfHost(host: string): void {
    assert(this.known.length <= 1, "the own address can change only before anyone was told it");
    this.me = { ...this.me, host };
    this.known = this.known.map((m) => (m.id === this.me.id ? this.me : m));
  }

  get selfId(): number {
    return this.me.id;
  }

  /** Every known member in cluster order, this worker included. */
  get members(): readonly Member[] {
    return this.known;
  }

  /** The committed membership in cluster order. */
  get committed(): readonly Member[] {
    return this.committedMembers;
  }

  get initializerId(): number {
    return this.byName(INITIALIZER_NAME)?.id ?? 0;
  }

  /** Members other than this worker. */
  others(): Member[] {
    return this.known.filter((m) => m.id !== this.me.id);
  }

  byId(id: number): Member | undefined {
    return this.known.find((m) => m.id === id);
  }

  byName(name: string): Member | undefined {
    return this.known.find((m) => m.name === name);
  }

  /** Left the cluster or was removed: its connections closing is expected. */
  hasDeparted(name: string): boolean {
    return this.departed.has(name);
  }

  /** The cluster's member list as formed or as a joiner received it; this worker is in it. */
  adopt(members: readonly Member[]): void {
    const me = members.find((m) => m.name === this.me.name);
    assert(me, `the topology must name this worker (${this.me.name})`);
    this.me = { ...me };
    this.known = [...members];
  }

  /** Members announced by the coordinator (joiners of a grow). */
  add(ms: readonly Member[]): void {
    for (const m of ms) {
      this.departed.delete(m.name);
      if (!this.known.some((x) => x.id === m.id)) this.known = [...this.known, m];
    }
  }

  /** Forgets members that left, were removed or never finished joining; returns them. */
  remove(pred: (m: Member) => boolean): Member[] {
    const gone = this.known.filter((m) => m.id !== this.me.id && pred(m));
    for (const m of gone) this.departed.add(m.name);
    this.known = this.known.filter((m) => !gone.includes(m));
    return gone;
  }

  /** The cluster committed to `members`. */
  commit(members: readonly Member[]): void {
    this.committedMembers = [...members];
  }
}
