// The routing table is the one writer of owners, epoch and slot status: every write checks its
// invariant (epochs only increase, a plan's epoch is exactly the next, a slot moves only from the
// owner the table names and never to itself, status changes follow the migration's order).
import { describe, expect, test } from "bun:test";
import { InvariantError } from "../../../src/assert.ts";
import { RoutingTable } from "../../../src/cluster/routing-table.ts";
import { SLOT_STATUS, type SlotStatus } from "../../../src/runtime/router.ts";
import { SLOT_COUNT } from "../../../src/runtime/slot-hash.ts";

/** Slot s belongs to ids[s % ids.length]. */
const roundRobin = (ids: number[]) => Array.from({ length: SLOT_COUNT }, (_, s) => ids[s % ids.length]!);

function adopted(selfId = 1, epoch = 4, owners = roundRobin([0, 1, 2])): RoutingTable {
  const t = new RoutingTable();
  t.adopt(selfId, epoch, owners);
  return t;
}

const S = SLOT_STATUS;
const NAMES = Object.fromEntries(Object.entries(S).map(([k, v]) => [v, k])) as Record<SlotStatus, string>;
const ALLOWED: Array<[SlotStatus, SlotStatus]> = [
  [S.owned, S.outgoing],
  [S.outgoing, S.none],
  [S.outgoing, S.owned],
  [S.none, S.incoming],
  [S.incoming, S.owned],
];
const ALL = Object.values(S) as SlotStatus[];
const FORBIDDEN = ALL.flatMap((a) => ALL.map((b) => [a, b] as [SlotStatus, SlotStatus])).filter(
  ([a, b]) => !ALLOWED.some(([x, y]) => x === a && y === b),
);

describe("RoutingTable.adopt", () => {
  test("takes the owners and epoch; this worker's slots are OWNED, every other NONE", () => {
    const t = adopted(1, 4);
    expect(t.selfId).toBe(1);
    expect(t.epoch).toBe(4);
    expect(Array.from(t.owners)).toEqual(roundRobin([0, 1, 2]));
    for (let s = 0; s < SLOT_COUNT; s++) expect(t.status[s]).toBe(s % 3 === 1 ? S.owned : S.none);
  });

  test("a second table replaces every status, not only the slots that changed hands", () => {
    const t = adopted(1, 4);
    t.status[0] = S.incoming;
    t.status[1] = S.outgoing;
    t.adopt(1, 5, roundRobin([1]));
    expect(t.status.every((x) => x === S.owned)).toBe(true);
    t.adopt(1, 5, roundRobin([0]));
    expect(t.status.every((x) => x === S.none)).toBe(true);
  });

  test("the same epoch may be adopted again, an earlier one throws and changes nothing", () => {
    const t = adopted(1, 4);
    t.adopt(2, 4, roundRobin([0, 1, 2]));
    expect(t.selfId).toBe(2);
    expect(() => t.adopt(1, 3, roundRobin([1]))).toThrow(InvariantError);
    expect(t.epoch).toBe(4);
    expect(t.selfId).toBe(2);
    expect(t.owners[0]).toBe(0);
  });

  test("a table of the wrong size throws", () => {
    const t = new RoutingTable();
    expect(() => t.adopt(0, 1, new Array(SLOT_COUNT - 1).fill(0))).toThrow(InvariantError);
    expect(() => t.adopt(0, 1, new Array(SLOT_COUNT + 1).fill(0))).toThrow(InvariantError);
    expect(t.owners[0]).toBe(-1);
    expect(t.epoch).toBe(0);
  });
});

describe("RoutingTable.advance", () => {
  test("only to the next epoch: going back, staying or skipping throws and leaves the epoch", () => {
    const t = adopted(1, 4);
    for (const bad of [0, 3, 4, 6, 100]) {
      expect(() => t.advance(bad)).toThrow(InvariantError);
      expect(t.epoch).toBe(4);
    }
    t.advance(5);
    expect(t.epoch).toBe(5);
    t.advance(6);
    expect(t.epoch).toBe(6);
  });

  test("changes no owner and no status", () => {
    const t = adopted(1, 4);
    const owners = Array.from(t.owners);
    const status = Array.from(t.status);
    t.advance(5);
    expect(Array.from(t.owners)).toEqual(owners);
    expect(Array.from(t.status)).toEqual(status);
  });
});

describe("RoutingTable.move", () => {
  test("names the new owner of a slot the named owner has", () => {
    const t = adopted(1, 4);
    t.move(3, 0, 2);
    expect(t.owners[3]).toBe(2);
    t.move(3, 2, 1);
    expect(t.owners[3]).toBe(1);
    // Status is the migration's business, through setStatus.
    expect(t.status[3]).toBe(S.none);
  });

  test("from any other owner throws and leaves the owner", () => {
    const t = adopted(1, 4);
    expect(() => t.move(3, 1, 2)).toThrow(InvariantError);
    expect(() => t.move(3, 2, 1)).toThrow(InvariantError);
    expect(t.owners[3]).toBe(0);
  });

  test("never to the slot's own owner", () => {
    const t = adopted(1, 4);
    expect(() => t.move(3, 0, 0)).toThrow(InvariantError);
    expect(t.owners[3]).toBe(0);
  });
});

describe("RoutingTable.setStatus", () => {
  test.each(ALLOWED.map(([a, b]) => [NAMES[a], NAMES[b], a, b] as const))("%s → %s is allowed", (_a, _b, from, to) => {
    const t = adopted(1, 4);
    t.status[7] = from;
    t.setStatus(7, to);
    expect(t.status[7]).toBe(to);
    // Only that slot changed.
    expect(t.status[6]).toBe(S.none);
    expect(t.status[8]).toBe(S.none);
  });

  test.each(FORBIDDEN.map(([a, b]) => [NAMES[a], NAMES[b], a, b] as const))("%s → %s throws", (_a, _b, from, to) => {
    const t = adopted(1, 4);
    t.status[7] = from;
    expect(() => t.setStatus(7, to)).toThrow(InvariantError);
    expect(t.status[7]).toBe(from);
  });

  test("a whole move away and back follows the order", () => {
    const t = adopted(1, 4);
    t.setStatus(1, S.outgoing);
    t.setStatus(1, S.none);
    t.setStatus(1, S.incoming);
    t.setStatus(1, S.owned);
    expect(t.status[1]).toBe(S.owned);
  });
});

describe("RoutingTable.ownedSlots", () => {
  test("the slots the owners name this worker for, in slot order", () => {
    const t = adopted(2, 1, roundRobin([0, 1, 2, 3]));
    const mine = t.ownedSlots();
    expect(mine.length).toBe(SLOT_COUNT / 4);
    expect(mine.slice(0, 3)).toEqual([2, 6, 10]);
    expect(mine.every((s) => s % 4 === 2)).toBe(true);
  });

  test("follows moves, whatever the status says", () => {
    const t = adopted(2, 1, roundRobin([0, 1, 2, 3]));
    t.move(2, 2, 0);
    t.move(4, 0, 2);
    const mine = t.ownedSlots();
    expect(mine).not.toContain(2);
    expect(mine).toContain(4);
    expect(mine.length).toBe(SLOT_COUNT / 4);
    // The status still says OWNED for slot 2 and NONE for slot 4: ownedSlots reads the owners.
    expect(t.status[2]).toBe(S.owned);
    expect(t.status[4]).toBe(S.none);
  });
});
