// Slot placement: which worker owns which slot, and the fewest moves between two tables. The
// key → slot hash itself lives with the runtime (src/runtime/slot-hash.ts).
import { assert } from "../assert.ts";
import { SLOT_COUNT } from "../runtime/slot-hash.ts";

/**
 * Slots moved per migration round (DESIGN §4: bounded batches keep latency flat). A round
 * starts at the minimum; the coordinator doubles it while rounds take longer than the target
 * (the cluster is busy, so every round waits behind full queues and fewer rounds finish sooner)
 * and halves it again when they are quick.
 */
export const ROUND_SLOTS = { min: 8, max: 128, targetMs: 50 } as const;

/**
 * Keys a round may move, at most (estimated from the keys per slot of the rounds before): the
 * messages of a slot in transit wait for the slots shipped ahead of it in its round, so its size
 * in keys, not slots, sets a moved key's wait. At a million keys a round of 128 slots was 125 000
 * keys, and a moved key's first output waited 300–1300 ms (bench/autoscale.ts --keys 1000000).
 */
export const ROUND_KEYS_MAX = 16_384;

/** Round-robin over members in cluster order: balanced by construction. */
export function initialOwners(memberIds: readonly number[]): number[] {
  assert(memberIds.length > 0, "a slot table needs at least one member");
  const owners: number[] = new Array(SLOT_COUNT);
  for (let s = 0; s < SLOT_COUNT; s++) owners[s] = memberIds[s % memberIds.length]!;
  return owners;
}

export type Move = [slot: number, from: number, to: number];

/**
 * The fewest moves that leave `targetIds` owning every slot, balanced (owners differ by at most
 * one slot). Slots only leave members above their target (every slot of a member not in
 * `targetIds`), and only go to members below it: a grow moves slots existing → joiners, a shrink
 * leavers → remaining. Deterministic: every worker computing it gets the same answer.
 */
export function planMoves(owners: readonly number[], targetIds: readonly number[]): Move[] {
  assert(targetIds.length > 0, "cannot plan a table with no owners");
  const held = new Map<number, number[]>();
  for (const id of targetIds) held.set(id, []);
  const leaving: number[] = [];
  for (let s = 0; s < owners.length; s++) {
    const o = owners[s]!;
    let list = held.get(o);
    if (!list) {
      list = [];
      held.set(o, list);
      leaving.push(o);
    }
    list.push(s);
  }
  const n = targetIds.length;
  const base = Math.floor(owners.length / n);
  let extra = owners.length % n;
  // The +1 shares go to members already holding the most, so fewer slots move.
  const byHeld = [...targetIds].sort((a, b) => held.get(b)!.length - held.get(a)!.length || targetIds.indexOf(a) - targetIds.indexOf(b));
  const target = new Map<number, number>();
  for (const id of byHeld) target.set(id, base + (extra-- > 0 ? 1 : 0));
  for (const id of leaving) target.set(id, 0);

  const freed: Array<[number, number]> = []; // [slot, from]
  for (const [id, slots] of held) {
    const surplus = slots.length - target.get(id)!;
    // Give away the highest-numbered slots: stable and easy to reason about in logs.
    for (let i = 0; i < surplus; i++) freed.push([slots[slots.length - 1 - i]!, id]);
  }
  freed.sort((a, b) => a[0] - b[0]);
  const moves: Move[] = [];
  let k = 0;
  for (const id of targetIds) {
    const deficit = target.get(id)! - held.get(id)!.length;
    for (let i = 0; i < deficit; i++) {
      const f = freed[k++]!;
      moves.push([f[0], f[1], id]);
    }
  }
  assert(k === freed.length, "every freed slot must find a new owner");
  return moves;
}

export function applyMoves(owners: number[], moves: readonly Move[]): void {
  for (const [slot, from, to] of moves) {
    assert(owners[slot] === from, `slot ${slot} moves from ${from} but is owned by ${owners[slot]}`);
    owners[slot] = to;
  }
}

export function slotCounts(owners: readonly number[]): Map<number, number> {
  const m = new Map<number, number>();
  for (const o of owners) m.set(o, (m.get(o) ?? 0) + 1);
  return m;
}
