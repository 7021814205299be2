// One peer's outbound side: records staged during a turn leave as one DATA frame, any other frame
// closes the open batch first (so records and markers keep the order they were produced in),
// sequence numbers count every frame, a slot's state streams in bounded frames, and records
// without a data link are counted as dropped. What a peer wrote is read back with the data codec.
import { describe, expect, test } from "bun:test";
import { BATCH_MAX_OPEN_MS, Peer } from "../../../src/cluster/peer.ts";
import { encodeControl } from "../../../src/codec/control.ts";
import { DATA_KIND, DATA_MAX_FRAME, readHead, stateEntryBytes, visitBody, type StateEntry } from "../../../src/codec/data.ts";
import { FrameReader } from "../../../src/codec/frame.ts";
import { FakeLink, logEvents, member } from "./support.ts";

logEvents();

const KIND_NAME: Record<number, string> = Object.fromEntries(Object.entries(DATA_KIND).map(([k, v]) => [v, k]));
const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

interface Frame {
  kind: string;
  seq: number;
  epoch: number;
  /** Body bytes after the length prefix. */
  size: number;
  /** What the frame carries, one line per record / marker / state entry / end / hello. */
  items: string[];
}

/** Every frame in `bytes`, decoded with the data codec; a partial or malformed frame fails the test. */
function frames(bytes: Uint8Array): Frame[] {
  const out: Frame[] = [];
  const reader = new FrameReader(DATA_MAX_FRAME);
  const err = reader.feed(bytes, (buf, start, end) => {
    const head = { kind: 0, seq: 0, epoch: 0 };
    expect(readHead(buf, start, end, head)).toBeNull();
    const f: Frame = { kind: KIND_NAME[head.kind]!, seq: head.seq, epoch: head.epoch, size: end - start, items: [] };
    const bad = visitBody(buf, start, end, head.kind, {
      record: (stage, flags, slot, key, b, s, e) => void f.items.push(`record ${stage} ${flags} ${slot} ${key} ${dec(b.subarray(s, e))}`),
      marker: (slots) => void f.items.push(`marker ${slots.join(",")}`),
      state: (slot, stage, key, b, s, e) => void f.items.push(`state ${slot} ${stage} ${key} ${e - s} ${b[s]}`),
      stateEnd: (slot, keys) => void f.items.push(`end ${slot} ${keys}`),
      hello: (name, id) => void f.items.push(`hello ${name} ${id}`),
      barrier: (k, round) => void f.items.push(`barrier ${k} ${round}`),
      time: (ms) => void f.items.push(`time ${ms}`),
    });
    expect(bad).toBeNull();
    out.push(f);
  });
  expect(err).toBeNull();
  expect(reader.pending).toBe(0);
  return out;
}

function setup(opts: { data?: boolean } = {}) {
  let epoch = 7;
  const peer = new Peer(member(3, "w3"), () => epoch);
  const data = new FakeLink("w3:data");
  const control = new FakeLink("w3:control");
  if (opts.data !== false) peer.data = data;
  peer.control = control;
  const record = (key: string, text: string, o: { stage?: number; raw?: boolean; slot?: number } = {}) => {
    const b = enc(text);
    peer.record(o.stage ?? 1, o.raw ?? false, o.slot ?? 5, key, b, 0, b.length);
  };
  return {
    peer,
    data,
    control,
    record,
    setEpoch: (e: number) => void (epoch = e),
    sent: () => frames(data.bytes()),
  };
}

/** The peer closes its batch in a microtask queued by the turn's first record: let it run. */
const endOfTurn = () => Promise.resolve();

describe("Peer data batches", () => {
  test("the records of one turn leave as one DATA frame, written after the turn", async () => {
    const s = setup();
    s.record("a", "one");
    // A payload of 64 bytes or more is copied another way; a sub-range must be honoured.
    const long = enc("<" + "x".repeat(80) + ">");
    s.peer.record(2, true, 1023, "ké", long, 1, 81);
    s.record("a", "");
    expect(s.data.out.len).toBe(0);
    await endOfTurn();
    expect(s.sent()).toEqual([
      {
        kind: "data",
        seq: 0,
        epoch: 7,
        size: expect.any(Number),
        items: ["record 1 0 5 a one", `record 2 1 1023 ké ${"x".repeat(80)}`, "record 1 0 5 a "],
      },
    ]);
    // One flush for the whole batch.
    expect(s.data.calls).toEqual(["flushSoon"]);

    s.setEpoch(8);
    s.record("b", "two", { slot: 6 });
    await endOfTurn();
    const second = s.sent()[1]!;
    expect([second.seq, second.epoch, second.items]).toEqual([1, 8, ["record 1 0 6 b two"]]);
  });

  test("a batch open for BATCH_MAX_OPEN_MS of processing goes out at once, not at the end of a long turn", async () => {
    let now = 100;
    const peer = new Peer(member(3, "w3"), () => 7, () => -1, () => now);
    const data = new FakeLink("w3:data");
    peer.data = data;
    const b = enc("x");
    // The clock is read every 64 records: 63 records in no time, then the 64th after the limit.
    for (let i = 0; i < 63; i++) peer.record(1, true, 5, "k", b, 0, 1);
    now += BATCH_MAX_OPEN_MS;
    peer.record(1, true, 5, "k", b, 0, 1);
    // Still inside the turn: the batch of 64 is in the link and handed to the kernel.
    expect(data.calls).toEqual(["flushSoon", "flush"]);
    expect(frames(data.bytes()).map((f) => [f.kind, f.items.length])).toEqual([["data", 64]]);
    // The next records open a new batch, which waits for the end of the turn as usual.
    peer.record(1, true, 5, "k", b, 0, 1);
    await endOfTurn();
    expect(frames(data.bytes()).map((f) => [f.kind, f.items.length])).toEqual([
      ["data", 64],
      ["data", 1],
    ]);
    expect(data.calls).toEqual(["flushSoon", "flush", "flushSoon"]);
  });

  test("a batch that is quick to fill still waits for the end of the turn", async () => {
    const peer = new Peer(member(3, "w3"), () => 7, () => -1, () => 0);
    const data = new FakeLink("w3:data");
    peer.data = data;
    const b = enc("x");
    for (let i = 0; i < 1000; i++) peer.record(1, true, 5, "k", b, 0, 1);
    expect(data.out.len).toBe(0);
    await endOfTurn();
    expect(frames(data.bytes()).map((f) => [f.kind, f.items.length])).toEqual([["data", 1000]]);
  });

  test("a large batch grows the staging buffer without losing a byte", async () => {
    const s = setup();
    const payload = "p".repeat(1000);
    for (let i = 0; i < 200; i++) s.record(`k${i}`, payload + i);
    await endOfTurn();
    const [f] = s.sent();
    expect(f!.items.length).toBe(200);
    expect(f!.items[0]).toBe(`record 1 0 5 k0 ${payload}0`);
    expect(f!.items[199]).toBe(`record 1 0 5 k199 ${payload}199`);
  });

  test("a marker closes the open batch first, so it follows the records routed before it", async () => {
    const s = setup();
    s.record("a", "1");
    s.record("b", "2");
    s.peer.marker(8, [3, 900]);
    s.record("c", "3");
    // The batch before the marker went out at once; the record after it waits for the turn's end.
    expect(s.sent().map((f) => [f.kind, f.seq, f.epoch, f.items])).toEqual([
      ["data", 0, 7, ["record 1 0 5 a 1", "record 1 0 5 b 2"]],
      ["marker", 1, 8, ["marker 3,900"]],
    ]);
    await endOfTurn();
    expect(s.sent().map((f) => [f.kind, f.seq, f.items])).toEqual([
      ["data", 0, ["record 1 0 5 a 1", "record 1 0 5 b 2"]],
      ["marker", 1, ["marker 3,900"]],
      ["data", 2, ["record 1 0 5 c 3"]],
    ]);
  });

  test("sequence numbers run on across every kind of frame", async () => {
    const s = setup();
    s.peer.helloData("w0", 0);
    s.record("a", "1");
    s.peer.marker(7, [5]);
    s.record("a", "2");
    s.peer.sendState(7, 5, [{ stage: 1, key: "a", state: new Uint8Array([42]) }]);
    s.peer.marker(7, []);
    await endOfTurn();
    expect(s.sent().map((f) => [f.seq, f.kind, f.items])).toEqual([
      [0, "hello", ["hello w0 0"]],
      [1, "data", ["record 1 0 5 a 1"]],
      [2, "marker", ["marker 5"]],
      [3, "data", ["record 1 0 5 a 2"]],
      [4, "state", ["state 5 1 a 1 42"]],
      [5, "stateEnd", ["end 5 1"]],
      [6, "marker", ["marker "]],
    ]);
  });

  test("close() sends the open batch, then ends both links", () => {
    const s = setup();
    s.record("a", "1");
    s.peer.close();
    expect(s.peer.alive).toBe(false);
    expect(s.sent().map((f) => f.items)).toEqual([["record 1 0 5 a 1"]]);
    expect(s.data.calls).toEqual(["flushSoon", "end"]);
    expect(s.control.calls).toEqual(["end"]);
  });
});

describe("Peer state transfer", () => {
  const MiB = 1024 * 1024;

  test("a large slot streams in frames of bounded size, then STATE_END with the key count", () => {
    const s = setup();
    const entries: StateEntry[] = Array.from({ length: 40 }, (_, i) => ({ stage: 1, key: `k${i}`, state: new Uint8Array(100 * 1024).fill(i) }));
    const bytes = s.peer.sendState(3, 17, entries);
    const fs = s.sent();
    expect(bytes).toBe(s.data.out.len);
    const states = fs.filter((f) => f.kind === "state");
    expect(states.length).toBeGreaterThan(2);
    expect(fs.slice(states.length)).toEqual([{ kind: "stateEnd", seq: states.length, epoch: 3, size: 15, items: ["end 17 40"] }]);
    const largest = Math.max(...entries.map(stateEntryBytes));
    for (const f of states) {
      expect(f.epoch).toBe(3);
      // A frame stops once its entries pass 1 MiB: it holds at most 1 MiB plus the last entry.
      expect(f.size).toBeLessThanOrEqual(MiB + largest + 16);
    }
    expect(states.map((f) => f.seq)).toEqual(states.map((_, i) => i));
    // Every entry exactly once, in order, intact.
    expect(states.flatMap((f) => f.items)).toEqual(entries.map((e, i) => `state 17 1 ${e.key} ${100 * 1024} ${i}`));
  });

  test("a slot with no keys sends only STATE_END, after the open batch", () => {
    const s = setup();
    s.record("a", "1");
    const bytes = s.peer.sendState(3, 17, []);
    expect(s.sent().map((f) => [f.kind, f.items])).toEqual([
      ["data", ["record 1 0 5 a 1"]],
      ["stateEnd", ["end 17 0"]],
    ]);
    expect(bytes).toBe(15 + 4);
  });
});

describe("Peer without a data link", () => {
  test("records to a peer that has no data link are dropped and counted", async () => {
    const s = setup({ data: false });
    s.record("a", "1");
    s.record("b", "2");
    await endOfTurn();
    expect(s.peer.dropped).toBe(2);
    expect(s.data.out.len).toBe(0);
    // Other frames are skipped without throwing.
    s.peer.marker(8, [1]);
    s.peer.helloData("w0", 0);
  });

  test("records staged before the data link closed are dropped at the end of the turn", async () => {
    const s = setup();
    s.record("a", "1");
    s.record("b", "2");
    s.data.closed = true;
    s.record("c", "3");
    expect(s.peer.dropped).toBe(1);
    await endOfTurn();
    expect(s.peer.dropped).toBe(3);
    expect(s.data.out.len).toBe(0);
  });
});

describe("Peer control and congestion", () => {
  test("sendControl writes one control frame on an open control link, and says false otherwise", () => {
    const s = setup();
    expect(s.peer.sendControl("lost", { id: 4 })).toBe(true);
    expect(s.control.bytes()).toEqual(encodeControl("lost", { id: 4 }));
    s.control.closed = true;
    expect(s.peer.sendControl("lost", { id: 5 })).toBe(false);
    s.peer.control = undefined;
    expect(s.peer.sendControl("lost", { id: 6 })).toBe(false);
    expect(s.control.bytes()).toEqual(encodeControl("lost", { id: 4 }));
  });

  test("congested while the data link is, or while more than 4 MiB wait in this turn's batch", async () => {
    const s = setup();
    expect(s.peer.congested).toBe(false);
    const big = "z".repeat(64 * 1024);
    for (let i = 0; i < 65; i++) s.record(`k${i}`, big);
    expect(s.data.congested).toBe(false);
    expect(s.peer.congested).toBe(true);
    await endOfTurn();
    // The batch is now the link's: congested through the link until its kernel takes it.
    expect(s.data.congested).toBe(true);
    expect(s.peer.congested).toBe(true);
    s.data.out.len = 0;
    expect(s.peer.congested).toBe(false);
  });
});
