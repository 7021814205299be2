// The dataflow's routing decisions: local slots are applied, remote ones forwarded, incoming ones
// held in arrival order until their state is complete, and keys that cannot cross the data
// channel refused. The app's encoder records each output as the sink asks for it (the real Sink,
// never connected, holds the bytes), so outputs are seen synchronously.
import { afterAll, describe, expect, test } from "bun:test";
import { serialize } from "bun:jsc";
import { application } from "../../../src/app/builder.ts";
import { SLOT_COUNT, slotOf } from "../../../src/runtime/slot-hash.ts";
import { MAX_KEY_BYTES } from "../../../src/codec/data.ts";
import { configureLog } from "../../../src/log.ts";
import type { Transport } from "../../../src/net/transport.ts";
import { Dataflow } from "../../../src/runtime/dataflow.ts";
import { SLOT_STATUS, type Router } from "../../../src/runtime/router.ts";
import { Sink } from "../../../src/runtime/sink.ts";
import { systemClock } from "../../../src/clock.ts";

/** Outputs in the order the sink encoded them. */
let lines: string[] = [];

const app = application("t")
  .source("s", (p) => new TextDecoder().decode(p))
  .keyBy((m) => m)
  .toStateful("count", () => ({ n: 0 }), (m, st) => ({ key: m, n: ++st.n }))
  .toSink((o) => {
    const line = `${o.key}=${o.n}`;
    lines.push(line);
    return `${line}\n`;
  });

const unused: Transport = {
  listen: () => Promise.reject(new Error("the sink is never started here")),
  connect: () => Promise.reject(new Error("the sink is never started here")),
};

function setup() {
  configureLog({ level: "silent" });
  lines = [];
  const sink = new Sink({ host: "h", port: 1 }, unused, systemClock);
  const forwarded: Array<{ peer: number; key: string; raw: boolean }> = [];
  const owners = new Int32Array(SLOT_COUNT).fill(0);
  const router: Router = {
    selfId: 0,
    initializerId: 0,
    isInitializer: true,
    owners,
    status: new Uint8Array(SLOT_COUNT).fill(SLOT_STATUS.owned),
    forward: (peer, _stage, raw, _slot, key) => void forwarded.push({ peer, key, raw }),
  };
  const df = new Dataflow(app, router, sink);
  const frame = (text: string) => {
    const b = new TextEncoder().encode(text);
    df.ingest(b, 0, b.length);
  };
  return { df, owners, forwarded, lines: () => lines, frame };
}

afterAll(() => configureLog({ level: "info" }));

describe("dataflow routing", () => {
  test("local slots are applied; a slot owned elsewhere is forwarded raw", () => {
    const t = setup();
    t.owners[slotOf("b")] = 1;
    t.frame("a");
    t.frame("a");
    t.frame("b");
    expect(t.lines()).toEqual(["a=1", "a=2"]);
    expect(t.forwarded).toEqual([{ peer: 1, key: "b", raw: true }]);
  });

  test("an incoming slot holds its messages, then runs them in arrival order", () => {
    const t = setup();
    const s = slotOf("k");
    t.df.status[s] = SLOT_STATUS.incoming;
    t.frame("k");
    t.frame("k");
    expect(t.df.heldCount).toBe(2);
    // The migrated state says "k" had already been counted 5 times.
    t.df.state.install(1, s, "k", new Uint8Array(serialize({ n: 5 })));
    expect(() => t.df.release(s)).toThrow("released before it is owned");
    t.df.status[s] = SLOT_STATUS.owned;
    expect(t.df.release(s)).toBe(2);
    expect(t.lines()).toEqual(["k=6", "k=7"]);
    expect(t.df.heldCount).toBe(0);
  });

  test("a key longer than the data channel can carry is refused, not corrupted", () => {
    const t = setup();
    t.frame("x".repeat(MAX_KEY_BYTES + 1));
    t.frame("ok");
    expect(t.df.errors).toBe(1);
    expect(t.lines()).toEqual(["ok=1"]);
  });

  test("a record a peer routes to a stage this application does not have is refused, not emitted", () => {
    const t = setup();
    const b = new TextEncoder().encode("z");
    // Stage 2 is past the stateful step (0 source decode → 0 keyBy, 1 count): there is no stage 2 to run.
    t.df.receive(2, 1, slotOf("z"), "z", b, 0, b.length);
    t.df.receive(9, 1, slotOf("z"), "z", b, 0, b.length);
    expect(t.lines()).toEqual([]);
    expect(t.df.errors).toBe(2);
    t.df.receive(1, 1, slotOf("z"), "z", b, 0, b.length);
    expect(t.lines()).toEqual(["z=1"]);
  });

  test("a local replay forwards only the restored member's messages, raw, to its stateful step; nothing runs or is emitted here", () => {
    const t = setup();
    const keys = ["a", "b", "c", "d", "e", "f", "g", "h"];
    // Half the keys' slots are member 3's, the rest this worker's (which has state for all).
    const theirs = new Set(keys.filter((_, i) => i % 2 === 0));
    for (const k of keys) t.frame(k);
    for (const k of theirs) t.owners[slotOf(k)] = 3;
    const before = { lines: t.lines().length, forwarded: t.forwarded.length };
    const replay = (text: string) => {
      const b = new TextEncoder().encode(text);
      t.df.replayFor(3, b, 0, b.length);
    };
    for (const k of keys) replay(k);
    expect(t.lines().length).toBe(before.lines);
    // Two keys may share a slot: what is forwarded is every key whose slot is member 3's.
    const forwardedKeys = keys.filter((k) => t.owners[slotOf(k)] === 3);
    expect(forwardedKeys.length).toBeGreaterThanOrEqual(theirs.size);
    expect(forwardedKeys.length).toBeLessThan(keys.length);
    expect(t.forwarded.slice(before.forwarded)).toEqual(forwardedKeys.map((key) => ({ peer: 3, key, raw: true })));
    expect(t.df.replayForwarded).toBe(forwardedKeys.length);
    // This worker's state did not move: its keys count on from 1.
    const mine = keys.find((k) => t.owners[slotOf(k)] === 0)!;
    t.frame(mine);
    expect(t.lines().at(-1)).toBe(`${mine}=2`);
  });

  test("a local replay of an application without a stateful step forwards and emits nothing: it all ran on the initializer", () => {
    const t = setup();
    const out: string[] = [];
    const stateless = application("u")
      .source("s", (p) => new TextDecoder().decode(p))
      .to("upper", (m) => m.toUpperCase())
      .toSink((o) => {
        out.push(o);
        return `${o}\n`;
      });
    t.owners.fill(3);
    const df = new Dataflow(stateless, { selfId: 0, initializerId: 0, isInitializer: true, owners: t.owners, status: new Uint8Array(SLOT_COUNT), forward: () => void t.forwarded.push({ peer: -1, key: "", raw: false }) }, new Sink({ host: "h", port: 1 }, unused, systemClock));
    const b = new TextEncoder().encode("x");
    df.replayFor(3, b, 0, b.length);
    expect({ out, forwarded: t.forwarded.length, counted: df.replayForwarded }).toEqual({ out: [], forwarded: 0, counted: 0 });
    df.ingest(b, 0, b.length);
    expect(out).toEqual(["X"]);
  });
});
