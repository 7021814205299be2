// A worker's durable side: files of another application or worker are refused before anything
// is read; what a member remembers makes a restart rejoin; checkpoint 0 stands in until the
// first commit; a snapshot writes what changed and waits for the sink.
import { describe, expect, test } from "bun:test";
import { APP_SPEC_KIND, type AppSpec } from "../../../src/app/types.ts";
import { Resilience, type CommitBody, type ResilienceHost } from "../../../src/cluster/resilience.ts";
import { Dataflow } from "../../../src/runtime/dataflow.ts";
import { MemoryCheckpointStore, ResilienceError } from "../../../src/resilience/checkpoint-store.ts";
import { MemoryInputLog } from "../../../src/resilience/input-log.ts";
import { ManualClock } from "../../sim/manual-clock.ts";

const app: AppSpec = {
  kind: APP_SPEC_KIND,
  name: "counter",
  source: { name: "src", decode: (p: Uint8Array) => new TextDecoder().decode(p) },
  stages: [
    { kind: "key", name: "by", fn: (m: string) => m },
    { kind: "stateful", name: "count", init: () => ({ n: 0 }), fn: (_m: unknown, s: { n: number }) => ++s.n },
  ],
  sink: { name: "out", encode: (n: number) => `${n}\n` },
} as unknown as AppSpec;

function make(store: MemoryCheckpointStore, name = "w1", appName = "counter", queued = () => 0) {
  const clock = new ManualClock();
  const written: string[] = [];
  const dataflow = new Dataflow(app, { owners: new Int32Array(1024), status: new Uint8Array(1024).fill(1), selfId: 0, initializerId: 0, isInitializer: true, forward() {} } as never, {} as never);
  const host: ResilienceHost = {
    clock,
    name,
    app: appName,
    dataflow,
    selfId: () => 0,
    initializerId: () => 0,
    others: () => [],
    owns: () => true,
    relayBarrier() {},
    roundDone() {},
    captured: (k) => void written.push(`captured ${k}`),
    written: (k, slots) => void written.push(`${k}:${slots}`),
    sinkMark: () => "mark",
    sinkHandedOver: () => queued() === 0,
  };
  return { r: new Resilience(host, { store, inputLog: new MemoryInputLog(), intervalMs: 1000, fsync: false }, name === "initializer"), written, clock, dataflow };
}

describe("Resilience", () => {
  test("files of another application or worker are refused, naming both", () => {
    const store = new MemoryCheckpointStore();
    make(store);
    expect(() => make(store, "w1", "other")).toThrow(ResilienceError);
    expect(() => make(store, "w1", "other")).toThrow(/holds the checkpoints of application counter, not other/);
    expect(() => make(store, "w2")).toThrow(/holds the checkpoints of worker w1, not w2/);
  });

  test("a member remembers its place; a fresh one has none", () => {
    const store = new MemoryCheckpointStore();
    const { r } = make(store);
    expect(r.memberId).toBeUndefined();
    r.rememberCluster("c-1", { id: 0, name: "initializer", host: "h", controlPort: 6000, dataPort: 6001 });
    expect(make(store).r.memberId).toBeUndefined();
    r.rememberMember(4);
    const again = make(store).r;
    expect(again.memberId).toBe(4);
    expect(again.clusterId).toBe("c-1");
    expect(again.initializerAddress).toEqual({ host: "h", port: 6000 });
  });

  test("checkpoint 0 (the cluster as formed) stands in until the first commit", () => {
    const store = new MemoryCheckpointStore();
    const { r } = make(store, "initializer");
    const body: CommitBody = { k: 0, position: 0, epoch: 1, owners: [0], members: [], nextId: 1, cluster: "c" };
    r.recordFormation(body);
    expect(r.lastCommit()).toEqual(body);
    store.commit(3, JSON.stringify({ ...body, k: 3, position: 50 }));
    expect(r.lastCommit()?.k).toBe(3);
  });

  test("a snapshot writes the slots that changed and says written only once the sink took its output", async () => {
    const store = new MemoryCheckpointStore();
    let queued = 100;
    const { r, written, clock, dataflow } = make(store, "w1", "counter", () => queued);
    /** Runs the virtual clock (and the promise continuations between its timers) until `p` settles. */
    const drive = async (p: Promise<void>, until: () => boolean = () => false) => {
      let done = false;
      void p.then(() => (done = true));
      for (let i = 0; i < 200 && !done && !until(); i++) {
        clock.advance(1);
        for (let j = 0; j < 5; j++) await Promise.resolve();
      }
      return done;
    };
    dataflow.state.get(1, 7, "a");
    dataflow.state.get(1, 900, "c");
    const done = r.snapshot(1);
    // Written in parts: both slots end up in checkpoint 1.
    expect(await drive(done, () => store.slotsAt(1).has(900))).toBe(false);
    expect([...store.slotsAt(1).keys()].sort((a, b) => a - b)).toEqual([7, 900]);
    // Every image was taken before the first was written: the sources could go on already.
    expect(written).toEqual(["captured 1"]);
    queued = 0;
    expect(await drive(done)).toBe(true);
    expect(written).toEqual(["captured 1", "1:2"]);
    // Asked again for an older number: ignored, nothing cleared.
    dataflow.state.get(1, 8, "b");
    await drive(r.snapshot(1));
    await drive(r.snapshot(2));
    expect(written).toEqual(["captured 1", "1:2", "captured 2", "2:1"]);
    expect([...store.slotsAt(2).keys()].sort((a, b) => a - b)).toEqual([7, 8, 900]);
  });

  test("a snapshot yields to the event loop after CHECKPOINT_YIELD_MS of work, however few its bytes", async () => {
    const store = new MemoryCheckpointStore();
    const { r, written, clock, dataflow } = make(store);
    // Work as slow as a process whose code is not compiled yet: every look at the clock finds
    // another 60 ms gone. The state is a few bytes, far below CHECKPOINT_YIELD_BYTES.
    const now = clock.now.bind(clock);
    let slow = true;
    let skew = 0;
    clock.now = () => now() + (slow ? (skew += 60) : skew);
    const sleep = clock.sleep.bind(clock);
    let yields = 0;
    clock.sleep = (ms: number) => {
      if (ms === 0) yields++;
      return sleep(ms);
    };
    for (let slot = 0; slot < 1024; slot += 64) dataflow.state.get(1, slot, `k${slot}`);
    const done = r.snapshot(1);
    let finished = false;
    void done.then(() => (finished = true));
    let yieldsWhenCaptured = -1;
    for (let i = 0; i < 500 && !finished; i++) {
      clock.advance(1);
      for (let j = 0; j < 5; j++) await Promise.resolve();
      if (yieldsWhenCaptured < 0 && written.length > 0) yieldsWhenCaptured = yields;
    }
    slow = false;
    expect(finished).toBe(true);
    expect(written).toEqual(["captured 1", "1:16"]);
    // Capturing 16 parts of 64 slots looked at the clock after each and yielded between them,
    // and so did writing them.
    expect(yieldsWhenCaptured).toBeGreaterThanOrEqual(15);
    expect(yields - yieldsWhenCaptured).toBeGreaterThanOrEqual(15);
  });

  test("idle() resolves once a snapshot's images are all written, before its sink is flushed", async () => {
    const store = new MemoryCheckpointStore();
    let queued = 100;
    const { r, written, clock, dataflow } = make(store, "w1", "counter", () => queued);
    let idle = false;
    await r.idle();
    // Slow work: every look at the clock finds 60 ms gone, so images are taken and written in parts.
    const now = clock.now.bind(clock);
    let skew = 0;
    clock.now = () => now() + (skew += 60);
    for (let slot = 0; slot < 1024; slot += 64) dataflow.state.get(1, slot, `k${slot}`);
    const done = r.snapshot(1);
    void r.idle().then(() => (idle = true));
    let finished = false;
    void done.then(() => (finished = true));
    const slotsWhenIdle: number[] = [];
    for (let i = 0; i < 500 && !idle; i++) {
      clock.advance(1);
      for (let j = 0; j < 5; j++) await Promise.resolve();
      if (!idle) slotsWhenIdle.push(store.slotsAt(1).size);
    }
    expect(idle).toBe(true);
    // Not before the last part was written: while it waited, fewer than 16 slots were there.
    expect(slotsWhenIdle.some((n) => n > 0 && n < 16)).toBe(true);
    expect(store.slotsAt(1).size).toBe(16);
    expect({ finished, written }).toEqual({ finished: false, written: ["captured 1"] });
    queued = 0;
    for (let i = 0; i < 50 && !finished; i++) {
      clock.advance(1);
      for (let j = 0; j < 5; j++) await Promise.resolve();
    }
    expect(written).toEqual(["captured 1", "1:16"]);
  });

  test("a checkpoint asked while the previous one is still being written waits for it: one at a time, in order", async () => {
    const store = new MemoryCheckpointStore();
    const { r, written, clock, dataflow } = make(store);
    // Slow work, so that checkpoint 1 is taken and written in parts, yielding between them.
    const now = clock.now.bind(clock);
    let skew = 0;
    clock.now = () => now() + (skew += 60);
    for (let slot = 0; slot < 1024; slot += 64) dataflow.state.get(1, slot, `k${slot}`);
    const first = r.snapshot(1);
    const second = r.snapshot(2);
    const errors: unknown[] = [];
    let done = 0;
    for (const p of [first, second]) p.then(() => done++, (e: unknown) => errors.push(e));
    for (let i = 0; i < 500 && done + errors.length < 2; i++) {
      clock.advance(1);
      for (let j = 0; j < 5; j++) await Promise.resolve();
    }
    expect({ errors: errors.map(String), written }).toEqual({ errors: [], written: ["captured 1", "1:16", "captured 2", "2:0"] });
    expect({ slots: store.slotsAt(1).size, lastWritten: store.lastWritten }).toEqual({ slots: 16, lastWritten: 2 });
  });
});
