// Shrink to fit: workers leave a running cluster under load, handing their state over.
import { describe, expect, test } from "bun:test";
import { EXTERNAL_MSG, encodeExternal } from "../../src/codec/external.ts";
import { Cluster, ask, statusOf } from "./cluster-harness.ts";
import { HOST, LoadSender, Receiver, SequenceLoad, checkSequence, cli, waitFor } from "./harness.ts";
import { withReceiver } from "./fixtures.ts";

let rx: Receiver;
withReceiver((r) => (rx = r));

const KEYS = 1000;

/** Starts load; returns a function that stops it and checks every output exactly. */
async function startLoad(c: Cluster, rate = 20_000): Promise<() => Promise<void>> {
  const load = new SequenceLoad(KEYS);
  const s = new LoadSender(c.sourcePort, load.next, rate);
  await s.start();
  await waitFor("load to flow", 10_000, () => rx.lines > rate / 10);
  return async () => {
    await Bun.sleep(300);
    await s.stop();
    s.close();
    await waitFor(`all ${load.count} outputs`, 30_000, () => rx.lines >= load.count);
    await Bun.sleep(200);
    expect(checkSequence(load, rx)).toEqual([]);
    expect(rx.lines).toBe(load.count);
  };
}

async function expectOneOwnerPerKey(c: Cluster): Promise<Map<string, string>> {
  const { owners, problems } = await c.keyOwners();
  expect(problems).toEqual([]);
  expect(owners.size).toBe(KEYS);
  return owners;
}

describe("shrink under load", () => {
  test("query before and after a grow; shrink by names through a non-initializer", async () => {
    const c = new Cluster("sequence_window", rx);
    await c.start(3);
    const done = await startLoad(c);
    const q1 = await cli(["shrink", "--query", "--external", `${HOST}:${c.members.get("w2")!.external}`]);
    expect(q1.code).toBe(0);
    expect(q1.stdout.trim()).toMatch(/^Eligible for shrink: Node count: 2, Nodes: \|w\d,w\d,\|$/);
    await c.grow(["w3"]);
    const q2 = await cli(["shrink", "--query", "--json", "--external", `${HOST}:${c.initializer.external}`]);
    const eligible = JSON.parse(q2.stdout) as { node_names: string[]; node_count: number };
    expect(eligible.node_count).toBe(3);
    expect(eligible.node_names.at(-1)).toBe("w3");
    expect(eligible.node_names).not.toContain("initializer");
    const r = await c.shrink(["--workers", "w1,w3"], c.members.get("w2")!);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe("Cluster shrink response: Shrinking by 2 workers!");
    expect(r.leavers.sort()).toEqual(["w1", "w3"]);
    await done();
    const owners = await expectOneOwnerPerKey(c);
    expect(new Set(owners.values())).toEqual(new Set(["initializer", "w2"]));
  }, 120_000);

  test("by count 1 (oldest first) and by a count above the eligible number", async () => {
    const c = new Cluster("sequence_window", rx);
    await c.start(4);
    const done = await startLoad(c);
    const order = (await statusOf(c.initializer))!.worker_names;
    const r1 = await c.shrink(["--count", "1"]);
    expect(r1.stdout.trim()).toBe("Cluster shrink response: Shrinking by 1 workers!");
    expect(r1.leavers).toEqual([order[1]!]);
    const r2 = await c.shrink(["--count", "9"], c.members.get(order[3]!)!);
    expect(r2.stdout.trim()).toBe("Cluster shrink response: Shrinking by 2 workers!");
    expect(r2.leavers.sort()).toEqual([order[2]!, order[3]!].sort());
    await done();
    const owners = await expectOneOwnerPerKey(c);
    expect(new Set(owners.values())).toEqual(new Set(["initializer"]));
    const none = await c.shrink(["--count", "1"]);
    expect(none.code).toBe(4);
    expect(none.stdout.trim()).toBe("Cluster shrink response: Cannot shrink 0 workers!");
  }, 120_000);

  test("5 → 1 in one request, then grow back to 5", async () => {
    const c = new Cluster("sequence_window", rx);
    await c.start(5);
    const done = await startLoad(c);
    const r = await c.shrink(["--count", "4"]);
    expect(r.leavers.length).toBe(4);
    expect((await statusOf(c.initializer))!.worker_names).toEqual(["initializer"]);
    await c.grow(["w5", "w6", "w7", "w8"]);
    await done();
    const owners = await expectOneOwnerPerKey(c);
    for (const n of ["w5", "w6", "w7", "w8"]) expect(new Set(owners.values()).has(n)).toBe(true);
  }, 120_000);

  test("shrink w2, re-join as w2, shrink it again", async () => {
    const c = new Cluster("sequence_window", rx);
    await c.start(3);
    const done = await startLoad(c);
    await c.shrink(["--workers", "w2"]);
    await c.grow(["w2"], c.members.get("w1")!);
    let owners = await expectOneOwnerPerKey(c);
    expect(new Set(owners.values()).has("w2")).toBe(true);
    const r = await c.shrink(["--workers", "w2"]);
    expect(r.leavers).toEqual(["w2"]);
    await done();
    owners = await expectOneOwnerPerKey(c);
    expect(new Set(owners.values()).has("w2")).toBe(false);
  }, 120_000);
});

describe("shrink refusals change nothing", () => {
  test("unknown, initializer, mixed, duplicate, empty, zero eligible, malformed", async () => {
    const c = new Cluster("sequence_window", rx);
    await c.start(3);
    const done = await startLoad(c, 10_000);
    const before = JSON.stringify([...(await expectOneOwnerPerKey(c))].sort());
    const membersBefore = (await statusOf(c.initializer))!.worker_names;
    const via = c.members.get("w1")!;
    for (const workers of ["nobody", "initializer", "w1,nobody", "w1,w1"]) {
      const r = await cli(["shrink", "--workers", workers, "--external", `${HOST}:${via.external}`]);
      expect({ workers, code: r.code, out: r.stdout.trim() }).toEqual({ workers, code: 4, out: "Cluster shrink response: Invalid shrink targets!" });
    }
    const empty = await cli(["shrink", "--workers", "", "--external", `${HOST}:${via.external}`]);
    expect(empty.code).toBe(2);
    // On the wire: an empty list with count 0 is "0 workers"; malformed JSON gets no answer.
    const zero = await ask(via.external, EXTERNAL_MSG.ShrinkRequest, '{"query":false,"node_names":[],"node_count":0}');
    expect(zero).toEqual({ type: EXTERNAL_MSG.ShrinkErrorResponse, payload: "Cannot shrink 0 workers!" });
    const s = await Bun.connect({ hostname: HOST, port: via.external, socket: { data() {} } });
    s.write(encodeExternal(EXTERNAL_MSG.ShrinkRequest, '{"query":false,"node_names":"w1"}'));
    s.write(encodeExternal(EXTERNAL_MSG.ShrinkRequest, "not json"));
    s.end();
    await c.members.get("w1")!.proc.waitForLog("malformed shrink request");
    await Bun.sleep(300);
    expect((await statusOf(c.initializer))!.worker_names).toEqual(membersBefore);
    expect(JSON.stringify([...(await expectOneOwnerPerKey(c))].sort())).toBe(before);
    for (const w of c.members.values()) expect(w.proc.exitCode).toBeNull();
    await done();
  }, 120_000);
});
