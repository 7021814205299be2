// One worker's part of a live slot migration (DESIGN §4), driven through a real RoutingTable and
// a real Dataflow with its KeyedState and Sink. Peers are fakes that record the markers and state
// the migration sends. This worker is 0; the others are 1 and 2.
//
// The app counts messages per key: "a:3" has key "a", and its output "a:3=n" says it was the
// key's n-th message, so lost state, reordered or lost messages all show in the output lines.
import { describe, expect, test } from "bun:test";
import { decodeValue, encodeValue } from "../../../src/codec/value.ts";
import { application } from "../../../src/app/builder.ts";
import { InvariantError } from "../../../src/assert.ts";
import { Migration, type MigrationHost } from "../../../src/cluster/migration.ts";
import type { Peer } from "../../../src/cluster/peer.ts";
import { RoutingTable } from "../../../src/cluster/routing-table.ts";
import { systemClock } from "../../../src/clock.ts";
import { RECORD_FLAG, unpackEntries, type StateEntry } from "../../../src/codec/data.ts";
import type { PackedSlot } from "../../../src/runtime/keyed-state.ts";
import type { Transport } from "../../../src/net/transport.ts";
import { Dataflow } from "../../../src/runtime/dataflow.ts";
import { SLOT_STATUS, type Router } from "../../../src/runtime/router.ts";
import { Sink } from "../../../src/runtime/sink.ts";
import { SLOT_COUNT, slotOf } from "../../../src/runtime/slot-hash.ts";
import { logEvents } from "./support.ts";

const logs = logEvents();

const { owned: OWNED, outgoing: OUTGOING, incoming: INCOMING, none: NONE } = SLOT_STATUS;
/** The stateful step's index in the app (the keyBy is 0). */
const COUNT_STAGE = 1;
const A = slotOf("a");
const B = slotOf("b");
const C = slotOf("c");
const D = slotOf("d");
if (new Set([A, B, C, D]).size !== 4) throw new Error("the test keys must fall in four different slots");

/** Records what the migration sends to one worker. */
class FakePeer {
  alive = true;
  constructor(
    readonly id: number,
    private readonly sent: string[],
  ) {}
  marker(epoch: number, slots: readonly number[]): void {
    this.sent.push(`marker to ${this.id} e${epoch} [${slots.join(",")}]`);
  }
  /** Records each key's count; returns a byte count the test can recognise. */
  sendState(epoch: number, slot: number, entries: readonly StateEntry[]): number {
    const counts = entries.map((e) => `${e.stage}/${e.key}=${(decodeValue(e.state) as { n: number }).n}`);
    this.sent.push(`state to ${this.id} e${epoch} slot ${slot} {${counts.join(",")}}`);
    return 1000 + entries.length;
  }
  sendStatePacked(epoch: number, slot: number, packed: PackedSlot): number {
    return this.sendState(epoch, slot, unpackEntries(packed.bytes, packed.count));
  }
}

/** A sink that is never connected: outputs wait in its buffer; the encoder records them. */
const noNetwork: Transport = {
  listen: () => Promise.reject(new Error("no network in this test")),
  connect: () => Promise.reject(new Error("no network in this test")),
};

/**
 * This worker (0) at epoch 1, owning every slot except those `owners` names for 1 or 2.
 * `peers` are the ids with a connection (all of 1 and 2 by default).
 */
function setup(owners: Record<number, number> = {}, peerIds = [1, 2], shipKeysPerTurn?: number) {
  const lines: string[] = [];
  const app = application("t")
    .source("s", (p) => new TextDecoder().decode(p))
    .keyBy((m) => m.split(":")[0]!)
    .toStateful("count", () => ({ n: 0 }), (m, st) => ({ m, n: ++st.n }))
    .toSink((o) => {
      lines.push(`${o.m}=${o.n}`);
      return `${o.m}=${o.n}\n`;
    });
  const table = new RoutingTable();
  const initial = new Array<number>(SLOT_COUNT).fill(0);
  for (const [s, o] of Object.entries(owners)) initial[Number(s)] = o;
  table.adopt(0, 1, initial);

  const forwarded: string[] = [];
  const router: Router = {
    get selfId() {
      return table.selfId;
    },
    initializerId: 0,
    isInitializer: true,
    owners: table.owners,
    status: table.status,
    forward: (peer, _stage, _raw, _slot, key) => void forwarded.push(`${key} to ${peer}`),
  };
  const sink = new Sink({ host: "h", port: 1 }, noNetwork, systemClock);
  const df = new Dataflow(app, router, sink);
  /** Markers, state, flushes and epoch changes, in the order the migration made them. */
  const sent: string[] = [];
  const peers = new Map(peerIds.map((id) => [id, new FakePeer(id, sent)]));
  const reports: Array<{ epoch: number; slots: number[]; keys: number; bytes: number }> = [];
  const host: MigrationHost = {
    table,
    dataflow: df,
    peer: (id) => peers.get(id) as unknown as Peer | undefined,
    flushAllPeers: () => void sent.push("flush"),
    reportInstalled: (epoch, slots, keys, bytes) => void reports.push({ epoch, slots, keys, bytes }),
    epochAdvanced: (epoch) => void sent.push(`advanced to ${epoch}`),
    defer: (fn) => void deferred.push(fn),
    ...(shipKeysPerTurn !== undefined ? { shipKeysPerTurn } : {}),
  };
  /** Work the migration left for a later turn; `later()` runs it. */
  const deferred: Array<() => void> = [];
  const m = new Migration(host);
  const bytes = (text: string) => new TextEncoder().encode(text);
  return {
    m,
    later: () => {
      for (const fn of deferred.splice(0)) fn();
    },
    table,
    df,
    peers,
    lines,
    forwarded,
    sent,
    reports,
    /** A message from this worker's source. */
    ingest: (text: string) => {
      const b = bytes(text);
      df.ingest(b, 0, b.length);
    },
    /** A message a peer routed here for the stateful step (raw: the source payload). */
    receive: (text: string) => {
      const b = bytes(text);
      df.receive(COUNT_STAGE, RECORD_FLAG.raw, slotOf(text.split(":")[0]!), text.split(":")[0]!, b, 0, b.length);
    },
    plan: (epoch: number, moves: Array<[number, number, number]>, participants = [0, 1, 2], dead?: number[]) =>
      m.apply({ epoch, moves, participants, ...(dead ? { dead } : {}) }),
    /** Installs part of an incoming slot's state: key `key` counted `n` times already. */
    state: (slot: number, key: string, n: number) => {
      const b = encodeValue({ n });
      m.onState(slot, COUNT_STAGE, key, b, 0, b.length);
    },
  };
}

/** The migration reports installed slots in a microtask (one report per batch): let it run. */
const microtasks = () => Promise.resolve();

describe("a plan moving slots away", () => {
  test("OUTGOING until every other participant's marker, then the state leaves and the slot is NONE", () => {
    const t = setup();
    t.ingest("a:1");
    t.ingest("a:2");
    t.plan(2, [[A, 0, 1]]);
    expect(t.table.epoch).toBe(2);
    expect(t.table.owners[A]).toBe(1);
    expect(t.table.status[A]).toBe(OUTGOING);
    expect(t.m.inFlight).toBe(1);
    // This worker owes no marker for its own slot; the batches routed under epoch 1 went first.
    expect(t.sent).toEqual(["flush", "advanced to 2"]);

    t.m.onMarker(1, 2, [A]);
    // Still routed under the old table by worker 2 (before its marker): applied here.
    t.receive("a:3");
    expect(t.lines).toEqual(["a:1=1", "a:2=2", "a:3=3"]);
    expect(t.sent).toEqual(["flush", "advanced to 2"]);
    expect(t.table.status[A]).toBe(OUTGOING);

    t.m.onMarker(2, 2, [A]);
    expect(t.sent).toEqual(["flush", "advanced to 2", `state to 1 e2 slot ${A} {1/a=3}`]);
    expect(t.table.status[A]).toBe(NONE);
    expect(t.df.state.slotKeyCount(A)).toBe(0);
    expect(t.m.inFlight).toBe(0);
    expect(t.m.stats).toMatchObject({ slotsOut: 1, keysOut: 1, bytesOut: 1001 });

    // From now on the key's messages go to its new owner.
    t.ingest("a:4");
    expect(t.forwarded).toEqual(["a to 1"]);
    expect(t.lines.length).toBe(3);
  });

  test("a turn ships whole slots up to its share of keys; the rest leave in later turns, in order", () => {
    const t = setup({}, [1, 2], 2);
    for (const k of ["a", "b", "c"]) {
      t.ingest(`${k}:1`);
      t.ingest(`${k}x:1`);
    }
    const slots = [A, B, C];
    // Each slot holds its key (and maybe another); the share is 2 keys per turn.
    t.plan(2, slots.map((s) => [s, 0, 1] as [number, number, number]), [0, 1]);
    t.m.onMarker(1, 2, slots);
    const shipped = () => t.sent.filter((l) => l.startsWith("state to 1")).length;
    const first = shipped();
    expect(first).toBeGreaterThanOrEqual(1);
    expect(first).toBeLessThan(3);
    expect(t.m.inFlight).toBe(3 - first);
    while (shipped() < 3) {
      const before = shipped();
      t.later();
      expect(shipped()).toBeGreaterThan(before);
    }
    expect(t.m.inFlight).toBe(0);
    // In the order they became ready (the marker's order).
    expect(t.sent.filter((l) => l.startsWith("state to 1")).map((l) => Number(/slot (\d+)/.exec(l)![1]))).toEqual(slots);
  });

  test("a destination that dies while its slot waits for its turn keeps the slot here, with its state", () => {
    const t = setup({}, [1, 2], 1);
    t.ingest("a:1");
    t.ingest("b:1");
    t.plan(2, [[A, 0, 1], [B, 0, 1]], [0, 1]);
    t.m.onMarker(1, 2, [A, B]);
    expect(t.sent.filter((l) => l.startsWith("state to 1")).length).toBe(1);
    const waiting = t.sent.some((l) => l.includes(`slot ${A} `)) ? B : A;
    expect(t.m.onLost(1)).toEqual({ kept: 1, lost: 0 });
    t.later();
    expect(t.sent.filter((l) => l.startsWith("state to 1")).length).toBe(1);
    expect(t.table.status[waiting]).toBe(OWNED);
    expect(t.df.state.slotKeyCount(waiting)).toBe(1);
  });

  test("each slot leaves when its own last marker arrives, to its own new owner", () => {
    const t = setup();
    t.ingest("a:1");
    t.ingest("b:1");
    t.plan(2, [
      [A, 0, 1],
      [B, 0, 2],
    ]);
    t.m.onMarker(1, 2, [A, B]);
    expect(t.sent.filter((x) => x.startsWith("state"))).toEqual([]);
    t.m.onMarker(2, 2, [B]);
    expect(t.sent.filter((x) => x.startsWith("state"))).toEqual([`state to 2 e2 slot ${B} {1/b=1}`]);
    expect(t.table.status[A]).toBe(OUTGOING);
    t.m.onMarker(2, 2, [A]);
    expect(t.sent.filter((x) => x.startsWith("state"))).toEqual([`state to 2 e2 slot ${B} {1/b=1}`, `state to 1 e2 slot ${A} {1/a=1}`]);
    expect(t.m.stats).toMatchObject({ slotsOut: 2, keysOut: 2, bytesOut: 2002 });
  });

  test("only the plan's participants are waited for; with no other participant the state leaves at once", () => {
    const two = setup();
    two.plan(2, [[A, 0, 1]], [0, 1]);
    two.m.onMarker(1, 2, [A]);
    expect(two.table.status[A]).toBe(NONE);
    // A slot with no keys still ends its transfer (the new owner waits for STATE_END).
    expect(two.sent).toContain(`state to 1 e2 slot ${A} {}`);

    const alone = setup();
    alone.ingest("a:1");
    alone.plan(2, [[A, 0, 1]], [0]);
    expect(alone.table.status[A]).toBe(NONE);
    expect(alone.sent).toEqual(["flush", `state to 1 e2 slot ${A} {1/a=1}`, "advanced to 2"]);
  });

  test("a second marker from one participant, or a marker for a slot nobody waits for, is an invariant error", () => {
    const t = setup();
    t.plan(2, [[A, 0, 1]]);
    t.m.onMarker(1, 2, [A]);
    expect(() => t.m.onMarker(1, 2, [A])).toThrow(InvariantError);
    expect(() => t.m.onMarker(2, 2, [C])).toThrow(InvariantError);
    t.m.onMarker(2, 2, [A]);
    expect(t.table.status[A]).toBe(NONE);
    // Shipped: no marker is awaited for it any more.
    expect(() => t.m.onMarker(2, 2, [A])).toThrow(InvariantError);
  });

  test("a marker of an earlier epoch is ignored; one of a later epoch is an invariant error", () => {
    const t = setup();
    t.plan(2, [[A, 0, 1]]);
    t.m.onMarker(1, 1, [A]);
    t.m.onMarker(2, 2, [A]);
    // Worker 1's epoch-1 marker did not count: the slot still waits for its epoch-2 one.
    expect(t.table.status[A]).toBe(OUTGOING);
    expect(() => t.m.onMarker(1, 3, [A])).toThrow(InvariantError);
    t.m.onMarker(1, 2, [A]);
    expect(t.table.status[A]).toBe(NONE);
  });

  test("a new owner that is gone when the state is ready: the state is dropped with a state_lost line", () => {
    const t = setup();
    t.ingest("a:1");
    t.plan(2, [[A, 0, 1]]);
    t.peers.get(1)!.alive = false;
    t.m.onMarker(1, 2, [A]);
    t.m.onMarker(2, 2, [A]);
    expect(t.sent.filter((x) => x.startsWith("state"))).toEqual([]);
    expect(logs.events).toContain("error state_lost");
    expect(t.table.status[A]).toBe(NONE);
    expect(t.df.state.slotKeyCount(A)).toBe(0);
    expect(t.m.stats.slotsOut).toBe(0);
  });
});

describe("a plan moving slots here", () => {
  test("INCOMING: messages wait, the state is installed, STATE_END runs them in arrival order", async () => {
    const t = setup({ [B]: 1 });
    t.ingest("b:1");
    expect(t.forwarded).toEqual(["b to 1"]);
    t.plan(2, [[B, 1, 0]]);
    expect(t.table.status[B]).toBe(INCOMING);
    expect(t.table.owners[B]).toBe(0);
    // One marker, to the old owner only, after the old batches and before the epoch moves on.
    expect(t.sent).toEqual(["flush", `marker to 1 e2 [${B}]`, "advanced to 2"]);

    t.ingest("b:2");
    t.receive("b:3");
    t.ingest("b:4");
    expect(t.df.heldCount).toBe(3);
    t.state(B, "b", 5);
    expect(t.lines).toEqual([]);
    expect(t.table.status[B]).toBe(INCOMING);

    t.m.onStateEnd(B, 1);
    expect(t.table.status[B]).toBe(OWNED);
    expect(t.lines).toEqual(["b:2=6", "b:3=7", "b:4=8"]);
    expect(t.df.heldCount).toBe(0);
    expect(t.m.inFlight).toBe(0);
    expect(t.m.stats).toMatchObject({ slotsIn: 1, keysIn: 1 });
    expect(t.reports).toEqual([]);
    await microtasks();
    const bytes = encodeValue({ n: 5 }).length + "b".length;
    expect(t.reports).toEqual([{ epoch: 2, slots: [B], keys: 1, bytes }]);
    expect(t.m.stats.bytesIn).toBe(bytes);
  });

  test("one marker per old owner; slots installed in one microtask batch are reported once, later ones again", async () => {
    const t = setup({ [B]: 1, [C]: 1, [D]: 2 });
    t.plan(2, [
      [B, 1, 0],
      [C, 1, 0],
      [D, 2, 0],
    ]);
    expect(t.sent).toEqual(["flush", `marker to 1 e2 [${B},${C}]`, `marker to 2 e2 [${D}]`, "advanced to 2"]);
    t.state(B, "b", 1);
    t.m.onStateEnd(B, 1);
    t.state(C, "c", 1);
    t.state(C, "cc", 1);
    t.m.onStateEnd(C, 2);
    await microtasks();
    t.m.onStateEnd(D, 0);
    await microtasks();
    const entry = (key: string) => encodeValue({ n: 1 }).length + key.length;
    expect(t.reports).toEqual([
      { epoch: 2, slots: [B, C], keys: 3, bytes: entry("b") + entry("c") + entry("cc") },
      { epoch: 2, slots: [D], keys: 0, bytes: 0 },
    ]);
    expect(t.m.stats).toMatchObject({ slotsIn: 3, keysIn: 3, bytesIn: entry("b") + entry("c") + entry("cc") });
  });

  test("state or its end for a slot that is not coming here is an invariant error", () => {
    const t = setup({ [B]: 1 });
    t.plan(2, [[B, 1, 0]]);
    expect(() => t.state(A, "a", 1)).toThrow(InvariantError);
    expect(() => t.m.onStateEnd(A, 0)).toThrow(InvariantError);
    t.m.onStateEnd(B, 0);
    expect(() => t.m.onStateEnd(B, 0)).toThrow(InvariantError);
    expect(() => t.state(B, "b", 1)).toThrow(InvariantError);
  });

  test("an old owner with no connection cannot be sent its marker: logged, the slot keeps waiting", () => {
    const t = setup({ [B]: 1 }, [2]);
    t.plan(2, [[B, 1, 0]]);
    expect(logs.events).toContain("error marker_unsendable");
    expect(t.table.status[B]).toBe(INCOMING);
    expect(t.sent).toEqual(["flush", "advanced to 2"]);
  });
});

describe("plans and epochs", () => {
  test("a plan while slots are on their way out is an invariant error", () => {
    const t = setup();
    t.plan(2, [[A, 0, 1]]);
    expect(() => t.plan(3, [])).toThrow(InvariantError);
    expect(t.table.epoch).toBe(2);
    t.m.onMarker(1, 2, [A]);
    t.m.onMarker(2, 2, [A]);
    t.plan(3, []);
    expect(t.table.epoch).toBe(3);
  });

  test("a plan while slots are on their way in is an invariant error", () => {
    const t = setup({ [B]: 1 });
    t.plan(2, [[B, 1, 0]]);
    expect(() => t.plan(3, [])).toThrow(InvariantError);
    expect(t.table.epoch).toBe(2);
    t.m.onStateEnd(B, 0);
    t.plan(3, []);
    expect(t.table.epoch).toBe(3);
  });

  test("a plan that is not for the next epoch is refused before it changes anything", () => {
    const t = setup();
    expect(() => t.plan(3, [[A, 0, 1]])).toThrow(InvariantError);
    expect(t.table.owners[A]).toBe(0);
    expect(t.table.status[A]).toBe(OWNED);
    expect(t.sent).toEqual([]);
  });

  test("moves between two other workers change only the owner here", () => {
    const t = setup({ [B]: 1 });
    t.plan(2, [[B, 1, 2]]);
    expect(t.table.owners[B]).toBe(2);
    expect(t.table.status[B]).toBe(NONE);
    expect(t.m.inFlight).toBe(0);
    // This worker routed to 1 for the slot: it tells 1 where its messages stop.
    expect(t.sent).toEqual(["flush", `marker to 1 e2 [${B}]`, "advanced to 2"]);
  });
});

describe("a participant dies during a migration", () => {
  test("dead destination: the slot stays OWNED with its state; the repair plan bringing it back keeps the state", async () => {
    const t = setup();
    t.ingest("a:1");
    t.ingest("a:2");
    t.plan(2, [[A, 0, 1]]);
    expect(t.m.onLost(1)).toEqual({ kept: 1, lost: 0 });
    expect(t.table.status[A]).toBe(OWNED);
    expect(t.df.state.slotKeyCount(A)).toBe(1);
    expect(t.m.inFlight).toBe(0);
    // Worker 2's marker for the aborted move arrives late: nothing waits for it, and it is no error.
    t.m.onMarker(2, 2, [A]);
    t.receive("a:3");
    expect(t.sent.filter((x) => x.startsWith("state"))).toEqual([]);

    t.plan(3, [[A, 1, 0]], [0, 2], [1]);
    expect(t.table.owners[A]).toBe(0);
    expect(t.table.status[A]).toBe(OWNED);
    // Nobody is asked for a marker for a slot coming from a dead worker.
    expect(t.sent.filter((x) => x.startsWith("marker"))).toEqual([]);
    expect(t.m.inFlight).toBe(0);
    t.ingest("a:4");
    expect(t.lines).toEqual(["a:1=1", "a:2=2", "a:3=3", "a:4=4"]);
    await microtasks();
    expect(t.reports).toEqual([{ epoch: 3, slots: [A], keys: 0, bytes: 0 }]);
  });

  test("dead destination: a repair plan that would give the kept slot to a third worker (its state would stay here unseen) is an invariant error", () => {
    const t = setup();
    t.ingest("a:1");
    t.plan(2, [[A, 0, 1]]);
    expect(t.m.onLost(1)).toEqual({ kept: 1, lost: 0 });
    expect(() => t.plan(3, [[A, 1, 2]], [0, 2], [1])).toThrow("must come back here");
  });

  test("a dead participant's marker is no longer awaited: the state leaves when the others' are in", () => {
    const t = setup();
    t.ingest("a:1");
    t.plan(2, [[A, 0, 1]]);
    t.m.onMarker(1, 2, [A]);
    expect(t.m.onLost(2)).toEqual({ kept: 0, lost: 0 });
    expect(t.sent.filter((x) => x.startsWith("state"))).toEqual([`state to 1 e2 slot ${A} {1/a=1}`]);
    expect(t.table.status[A]).toBe(NONE);
  });

  test("dead source: the slots it owed continue here from what arrived, with a state_lost line", async () => {
    const t = setup({ [B]: 1, [C]: 2 });
    t.plan(2, [
      [B, 1, 0],
      [C, 2, 0],
    ]);
    t.ingest("b:1");
    t.ingest("c:1");
    t.state(B, "b", 5);
    expect(t.m.onLost(1)).toEqual({ kept: 0, lost: 1 });
    expect(logs.events).toContain("error state_lost");
    expect(t.table.status[B]).toBe(OWNED);
    // The slot owed by the live worker 2 still waits for its state.
    expect(t.table.status[C]).toBe(INCOMING);
    expect(t.lines).toEqual(["b:1=6"]);
    expect(t.m.inFlight).toBe(1);
    await microtasks();
    expect(t.reports).toEqual([{ epoch: 2, slots: [B], keys: 0, bytes: encodeValue({ n: 5 }).length + 1 }]);
  });

  test("moves from a dead worker (orphans) are installed at once, empty, and ask nobody for a marker", async () => {
    const t = setup({ [B]: 1, [C]: 1 });
    t.plan(
      2,
      [
        [B, 1, 0],
        [C, 1, 2],
      ],
      [0, 2],
      [1],
    );
    expect(t.table.status[B]).toBe(OWNED);
    expect(t.table.owners[C]).toBe(2);
    expect(t.table.status[C]).toBe(NONE);
    expect(t.m.inFlight).toBe(0);
    expect(t.sent).toEqual(["flush", "advanced to 2"]);
    t.ingest("b:1");
    t.ingest("c:1");
    expect(t.lines).toEqual(["b:1=1"]);
    expect(t.forwarded).toEqual(["c to 2"]);
    await microtasks();
    expect(t.reports).toEqual([{ epoch: 2, slots: [B], keys: 0, bytes: 0 }]);
  });
});
