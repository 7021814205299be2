// This worker's routing table: slot → owner, the epoch of that table, and each slot's status
// here (owned, outgoing, incoming, none). It is the only code that writes them; the dataflow
// reads them through the Router interface, the migration changes them through the methods
// below, which check the invariants on every write: epochs only increase, a slot moves only
// from the owner the table names, and a status change follows the migration's order.
import { assert } from "../assert.ts";
import { SLOT_STATUS, type SlotStatus } from "../runtime/router.ts";
import { SLOT_COUNT } from "../runtime/slot-hash.ts";

/** Status changes a migration may make: [from, to]. */
const ALLOWED: ReadonlyArray<readonly [SlotStatus, SlotStatus]> = [
  [SLOT_STATUS.owned, SLOT_STATUS.outgoing], // a plan moves the slot away
  [SLOT_STATUS.outgoing, SLOT_STATUS.none], // its state left
  [SLOT_STATUS.outgoing, SLOT_STATUS.owned], // its destination died: it stays
  [SLOT_STATUS.none, SLOT_STATUS.incoming], // a plan moves the slot here
  [SLOT_STATUS.incoming, SLOT_STATUS.owned], // its state arrived
];

export class RoutingTable {
  /** slot → owner id; -1 before the first table */
  readonly owners = new Int32Array(SLOT_COUNT).fill(-1);
  /** slot → SLOT_STATUS on this worker */
  readonly status = new Uint8Array(SLOT_COUNT);
  private epochNow = 0;
  private self = -1;

  get epoch(): number {
    return this.epochNow;
  }

  get selfId(): number {
    return this.self;
  }

  /**
   * A whole table: formation, a joiner adopting the cluster's, or a rollback. Every slot this
   * worker owns is OWNED (INCOMING when `restoring`: a rollback installs each slot's state, then
   * makes it OWNED), every other NONE.
   */
  adopt(selfId: number, epoch: number, owners: ArrayLike<number>, restoring = false): void {
    assert(owners.length === SLOT_COUNT, `a table has ${SLOT_COUNT} slots, not ${owners.length}`);
    assert(epoch >= this.epochNow, `epoch ${epoch} would go back from ${this.epochNow}`);
    this.self = selfId;
    this.epochNow = epoch;
    this.owners.set(owners);
    const mine = restoring ? SLOT_STATUS.incoming : SLOT_STATUS.owned;
    for (let s = 0; s < SLOT_COUNT; s++) this.status[s] = this.owners[s] === selfId ? mine : SLOT_STATUS.none;
  }

  /** A plan's epoch: exactly the next one. */
  advance(epoch: number): void {
    assert(epoch === this.epochNow + 1, `plan epoch ${epoch} must follow ${this.epochNow}`);
    this.epochNow = epoch;
  }

  /** Names `to` as the slot's owner; the slot must be `from`'s now. */
  move(slot: number, from: number, to: number): void {
    assert(this.owners[slot] === from, `slot ${slot} moves from ${from} but this worker has it at ${this.owners[slot]}`);
    assert(from !== to, `slot ${slot} moves to its own owner`);
    this.owners[slot] = to;
  }

  setStatus(slot: number, next: SlotStatus): void {
    const now = this.status[slot] as SlotStatus;
    assert(ALLOWED.some(([a, b]) => a === now && b === next), `slot ${slot} cannot go from status ${now} to ${next}`);
    this.status[slot] = next;
  }

  /** Slots this worker owns under the current table (none before it has one). */
  ownedSlots(): number[] {
    const out: number[] = [];
    if (this.self < 0) return out;
    for (let s = 0; s < SLOT_COUNT; s++) if (this.owners[s] === this.self) out.push(s);
    return out;
  }
}
