// This worker's part of a live slot migration (DESIGN §4). A plan for epoch e+1 lists moves
// [slot, from, to]. On receipt every worker closes the data batches it routed under the old
// table, switches the moved slots to their new owners and sends each old owner one MARKER with
// the slots it moved away from it. An old owner ships a slot's state once it holds a marker for
// it from every other participant; the new owner holds that slot's messages until the state is
// complete, then runs them in arrival order and reports the slot installed to the coordinator.
import { assert } from "../assert.ts";
import type { ControlBody } from "../codec/control.ts";
import { log } from "../log.ts";
import type { Dataflow } from "../runtime/dataflow.ts";
import { SLOT_STATUS } from "../runtime/router.ts";
import type { Peer } from "./peer.ts";
import type { RoutingTable } from "./routing-table.ts";

export interface MigrationHost {
  readonly table: RoutingTable;
  readonly dataflow: Dataflow;
  peer(id: number): Peer | undefined;
  flushAllPeers(): void;
  reportInstalled(epoch: number, slots: number[], keys: number, bytes: number): void;
  epochAdvanced(epoch: number): void;
  /** Runs `fn` in a later turn of the event loop (the clock's timer of 0 ms). */
  defer(fn: () => void): void;
  /** Overrides SHIP_KEYS_PER_TURN (tests). */
  readonly shipKeysPerTurn?: number;
}

/**
 * Keys shipped in one turn of the event loop, at most (a slot is never split). Shipping
 * serialises every key of a slot: at a million keys a round of 128 slots is 125 000 keys, and
 * done at once it held the loop for over a second, past the failure timeout, so the others took
 * this worker for dead. The rest waits for the next turn, with the loop free in between.
 */
export const SHIP_KEYS_PER_TURN = 16_384;

export interface MigrationStats {
  slotsOut: number;
  slotsIn: number;
  keysOut: number;
  keysIn: number;
  bytesOut: number;
  bytesIn: number;
}

export class Migration {
  /** slot → participants whose marker is still expected before its state can leave */
  private readonly awaiting = new Map<number, Set<number>>();
  private readonly destination = new Map<number, number>();
  private readonly incomingEpoch = new Map<number, number>();
  private readonly incomingFrom = new Map<number, number>();
  /** Slots of the current epoch whose move was aborted because its destination died. */
  private readonly aborted = new Set<number>();
  private installed: number[] = [];
  private installedKeys = 0;
  private installedBytes = 0;
  private ackScheduled = false;
  /** The event in flight was undone (resilience): its frames are ignored until the rollback resets this. */
  private suspended = false;
  /** Slots with every marker in, in the order they became ready, waiting for their turn to ship. */
  private readonly ready: number[] = [];
  private shipsDeferred = false;
  readonly stats: MigrationStats = { slotsOut: 0, slotsIn: 0, keysOut: 0, keysIn: 0, bytesOut: 0, bytesIn: 0 };

  constructor(private readonly host: MigrationHost) {}

  get epoch(): number {
    return this.host.table.epoch;
  }

  /** Slots whose state is in transit to or from here. */
  get inFlight(): number {
    return this.awaiting.size + this.ready.length + this.incomingEpoch.size;
  }

  apply(plan: ControlBody<"plan">): void {
    // A plan sent before the event was undone: the rollback replaces it.
    if (this.suspended) return;
    const h = this.host;
    const t = h.table;
    const self = t.selfId;
    assert(this.inFlight === 0, `plan ${plan.epoch} arrived while ${this.inFlight} slots of an earlier plan are in transit`);
    t.advance(plan.epoch);
    // Everything routed under the old table goes out before the markers.
    h.flushAllPeers();
    this.aborted.clear();
    const others = plan.participants.filter((p) => p !== self);
    const dead = new Set(plan.dead ?? []);
    const markersTo = new Map<number, number[]>();
    const orphans: number[] = [];
    for (const [slot, from, to] of plan.moves) {
      const keptHere = dead.has(from) && t.status[slot] === SLOT_STATUS.owned;
      assert(!keptHere || to === self, `slot ${slot}, kept here when its destination died, must come back here, not go to ${to}`);
      t.move(slot, from, to);
      if (dead.has(from)) {
        // Nobody routes to a dead worker any more and it has no state to send: the new owner
        // takes the slot at once, with whatever state it still holds for it (none, unless it
        // was the slot's owner before the aborted move).
        if (to === self) orphans.push(slot);
        continue;
      }
      if (from === self) {
        t.setStatus(slot, SLOT_STATUS.outgoing);
        this.awaiting.set(slot, new Set(others));
        this.destination.set(slot, to);
      } else {
        let l = markersTo.get(from);
        if (!l) markersTo.set(from, (l = []));
        l.push(slot);
      }
      if (to === self) {
        t.setStatus(slot, SLOT_STATUS.incoming);
        this.incomingEpoch.set(slot, plan.epoch);
        this.incomingFrom.set(slot, from);
      }
    }
    for (const slot of orphans) {
      // A slot kept here when its move was aborted is still OWNED with its state.
      if (t.status[slot] !== SLOT_STATUS.owned) t.setStatus(slot, SLOT_STATUS.incoming);
      this.incomingEpoch.set(slot, plan.epoch);
      this.onStateEnd(slot, 0);
    }
    for (const [from, slots] of markersTo) {
      const p = h.peer(from);
      if (p) p.marker(plan.epoch, slots);
      else log.error("marker_unsendable", `no connection to worker ${from}; its slots ${slots.length} cannot be released`);
    }
    for (const [slot, waiting] of [...this.awaiting]) if (waiting.size === 0) this.ship(slot);
    this.shipReady();
    h.epochAdvanced(plan.epoch);
  }

  onMarker(fromId: number, epoch: number, slots: readonly number[]): void {
    if (this.suspended) return;
    // A round completes only once all its markers arrived, so a marker of an earlier epoch can
    // only belong to a move that a participant's death aborted: nothing waits for it any more.
    if (epoch < this.epoch) return;
    assert(epoch === this.epoch, `marker for epoch ${epoch} from worker ${fromId} while at ${this.epoch}`);
    for (const slot of slots) {
      if (this.aborted.has(slot)) continue;
      const waiting = this.awaiting.get(slot);
      assert(waiting !== undefined && waiting.delete(fromId), `marker from worker ${fromId} for slot ${slot}, which is not waiting for it`);
      if (waiting.size === 0) this.ship(slot);
    }
    this.shipReady();
  }

  /** Every marker for `slot` is in: its state may leave (in its turn, shipReady). */
  private ship(slot: number): void {
    this.awaiting.delete(slot);
    this.ready.push(slot);
  }

  /**
   * Ships ready slots, in order, until this turn's share of keys is used; the rest in later
   * turns. Nothing changes a ready slot's state meanwhile: every participant's marker promised
   * nothing more is routed here for it, and this worker's own messages for it go to the new owner,
   * which holds them until the state is complete.
   */
  private shipReady(): void {
    if (this.shipsDeferred || this.suspended) return;
    let keys = 0;
    const budget = this.host.shipKeysPerTurn ?? SHIP_KEYS_PER_TURN;
    while (this.ready.length > 0 && keys < budget) keys += this.shipNow(this.ready.shift()!);
    if (this.ready.length === 0) return;
    this.shipsDeferred = true;
    this.host.defer(() => {
      this.shipsDeferred = false;
      this.shipReady();
    });
  }

  /** Sends `slot`'s state to its new owner; returns how many keys it held. */
  private shipNow(slot: number): number {
    const h = this.host;
    const to = this.destination.get(slot)!;
    this.destination.delete(slot);
    const packed = h.dataflow.state.takePacked(slot);
    h.table.setStatus(slot, SLOT_STATUS.none);
    const peer = h.peer(to);
    if (!peer || !peer.alive) {
      log.error("state_lost", `slot ${slot} (${packed.count} keys) cannot reach its new owner ${to}: state dropped`);
      return packed.count;
    }
    this.stats.slotsOut++;
    this.stats.keysOut += packed.count;
    this.stats.bytesOut += peer.sendStatePacked(this.epoch, slot, packed);
    return packed.count;
  }

  /** One key's state, `buf[start…end)` of a STATE frame (valid only during the call). */
  onState(slot: number, stage: number, key: string, buf: Uint8Array, start: number, end: number): void {
    if (this.suspended) return;
    assert(this.incomingEpoch.has(slot), `state for slot ${slot}, which is not coming to this worker`);
    this.host.dataflow.state.installAt(stage, slot, key, buf, start, end);
    this.installedBytes += end - start + key.length;
  }

  onStateEnd(slot: number, keys: number): void {
    if (this.suspended) return;
    const epoch = this.incomingEpoch.get(slot);
    assert(epoch !== undefined, `end of state for slot ${slot}, which is not coming to this worker`);
    this.incomingEpoch.delete(slot);
    this.incomingFrom.delete(slot);
    const t = this.host.table;
    if (t.status[slot] !== SLOT_STATUS.owned) t.setStatus(slot, SLOT_STATUS.owned);
    // The slot is this worker's now: its next checkpoint writes it whole.
    this.host.dataflow.state.touch(slot);
    this.host.dataflow.release(slot);
    this.stats.slotsIn++;
    this.stats.keysIn += keys;
    this.installed.push(slot);
    this.installedKeys += keys;
    if (!this.ackScheduled) {
      this.ackScheduled = true;
      queueMicrotask(() => {
        this.ackScheduled = false;
        const slots = this.installed;
        this.installed = [];
        this.stats.bytesIn += this.installedBytes;
        this.host.reportInstalled(epoch, slots, this.installedKeys, this.installedBytes);
        this.installedKeys = 0;
        this.installedBytes = 0;
      });
    }
  }

  /** The event in flight is undone: its markers and state are ignored until the rollback. */
  suspend(): void {
    this.suspended = true;
  }

  /** A rollback: every move in transit is forgotten (the table and the state come from a checkpoint). */
  reset(): void {
    this.suspended = false;
    this.awaiting.clear();
    this.ready.length = 0;
    this.destination.clear();
    this.incomingEpoch.clear();
    this.incomingFrom.clear();
    this.aborted.clear();
    this.installed = [];
    this.installedKeys = 0;
    this.installedBytes = 0;
  }

  /**
   * A participant died during a migration. Stop waiting for its markers (it routes nothing
   * more); slots that were on their way to it stay here, with their state, until the
   * coordinator's repair plan names their owner; slots it owed us start empty here.
   */
  onLost(deadId: number): { kept: number; lost: number } {
    const h = this.host;
    let kept = 0;
    let lost = 0;
    for (const [slot, waiting] of [...this.awaiting]) {
      if (this.destination.get(slot) === deadId) {
        this.awaiting.delete(slot);
        this.destination.delete(slot);
        this.aborted.add(slot);
        h.table.setStatus(slot, SLOT_STATUS.owned);
        kept++;
        continue;
      }
      if (waiting.delete(deadId) && waiting.size === 0) this.ship(slot);
    }
    // Ready but not shipped yet, to the dead: kept here like those still waiting for markers.
    for (let i = this.ready.length - 1; i >= 0; i--) {
      const slot = this.ready[i]!;
      if (this.destination.get(slot) !== deadId) continue;
      this.ready.splice(i, 1);
      this.destination.delete(slot);
      this.aborted.add(slot);
      h.table.setStatus(slot, SLOT_STATUS.owned);
      kept++;
    }
    this.shipReady();
    for (const [slot, from] of [...this.incomingFrom]) {
      if (from !== deadId) continue;
      log.error("state_lost", `worker ${deadId} died before handing over slot ${slot} (${h.dataflow.state.slotKeyCount(slot)} keys arrived); the slot continues here from what arrived`);
      lost++;
      this.onStateEnd(slot, 0);
    }
    return { kept, lost };
  }
}
