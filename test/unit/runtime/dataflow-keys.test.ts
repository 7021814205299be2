// The dataflow's routing decisions with the real Sink over the in-memory network: local slots
// are applied, remote ones forwarded, incoming ones held in arrival order until their state is
// complete, and keys that cannot cross the data channel refused.
import { afterAll, describe, expect, test } from "bun:test";
import { serialize } from "bun:jsc";
import { application } from "../../../src/app/builder.ts";
import { SLOT_COUNT, slotOf } from "../../../src/runtime/slot-hash.ts";
import { MAX_KEY_BYTES } from "../../../src/codec/data.ts";
import { configureLog } from "../../../src/log.ts";
import { MemoryNetwork } from "../../../src/net/memory.ts";
import { Dataflow } from "../../../src/runtime/dataflow.ts";
import { SLOT_STATUS, type Router } from "../../../src/runtime/router.ts";
import { Sink } from "../../../src/runtime/sink.ts";
import { systemClock } from "../../../src/clock.ts";

const app = application("t")
  .source("s", (p) => new TextDecoder().decode(p))
  .keyBy((m) => m)
  .toStateful("count", () => ({ n: 0 }), (m, st) => ({ key: m, n: ++st.n }))
  .toSink((o) => `${o.key}=${o.n}\n`);

async function setup() {
  configureLog({ level: "silent" });
  const net = new MemoryNetwork(() => 0.5);
  const lines: string[] = [];
  const server = await net.transport("rx").listen("h", 0, () => ({
    data: (_l, c) => void lines.push(...new TextDecoder().decode(c).split("\n").filter((x) => x)),
    close() {},
  }));
  const sink = new Sink({ host: "h", port: server.port }, net.transport("w"), systemClock);
  sink.start();
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
  const settle = () => Bun.sleep(20);
  return { df, owners, forwarded, lines, frame, settle };
}

afterAll(() => configureLog({ level: "info" }));

describe("dataflow routing", () => {
  test("local slots are applied; a slot owned elsewhere is forwarded raw", async () => {
    const t = await setup();
    t.owners[slotOf("b")] = 1;
    t.frame("a");
    t.frame("a");
    t.frame("b");
    await t.settle();
    expect(t.lines).toEqual(["a=1", "a=2"]);
    expect(t.forwarded).toEqual([{ peer: 1, key: "b", raw: true }]);
  });

  test("an incoming slot holds its messages, then runs them in arrival order", async () => {
    const t = await setup();
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
    await t.settle();
    expect(t.lines).toEqual(["k=6", "k=7"]);
    expect(t.df.heldCount).toBe(0);
  });

  test("a key longer than the data channel can carry is refused, not corrupted", async () => {
    const t = await setup();
    t.frame("x".repeat(MAX_KEY_BYTES + 1));
    t.frame("ok");
    await t.settle();
    expect(t.df.errors).toBe(1);
    expect(t.lines).toEqual(["ok=1"]);
  });
});
