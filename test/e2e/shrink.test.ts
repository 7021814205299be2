// Shrink to fit: workers leave a running cluster under load, handing their state over.
import { describe, expect, test } from "bun:test";
import { EXTERNAL_MSG, encodeExternal } from "../../src/codec/external.ts";
import { Cluster, ask } from "../support/cluster.ts";
import { SequenceWorkload } from "../support/load.ts";
import { HOST, run } from "../support/process.ts";
import type { Receiver } from "../support/receiver.ts";
import { SequenceValidator } from "../support/validate.ts";
import { cleanUpAfterEach, externalFrames, rawConnection, receiver, sender } from "./fixtures.ts";

cleanUpAfterEach();

const KEYS = 1000;

/** A sequence_window cluster of `n` with its checking receiver. */
async function cluster(n: number): Promise<{ c: Cluster; rx: Receiver<SequenceValidator> }> {
  const rx = receiver(new SequenceValidator(KEYS));
  return { c: await new Cluster("sequence_window", rx.port).start(n), rx };
}

/**
 * Starts load. `done()` stops it and waits for an output per input; `exact()` then shuts the
 * cluster down, waits for EOF on every sink connection and checks every output exactly.
 */
async function startLoad(c: Cluster, rx: Receiver<SequenceValidator>, rate = 20_000) {
  const wl = new SequenceWorkload(KEYS);
  const s = await sender(c.sourcePort, wl);
  void s.atRate(rate);
  await rx.waitLines(rate / 10, 10_000, "load to flow");
  return {
    async done(): Promise<void> {
      // Outputs of load sent after the last event, not only of load sent before it.
      await rx.waitLines(s.sent + rate / 10, 10_000, "outputs after the last event");
      await s.stop();
      s.close();
      await rx.waitLines(s.sent, 30_000, `all ${s.sent} outputs`);
    },
    async exact(): Promise<void> {
      await c.shutdown(20_000, rx);
      expect(rx.handler.verify(wl, s.sent).problems).toEqual([]);
      expect(rx.lines).toBe(s.sent);
    },
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
    const { c, rx } = await cluster(3);
    const load = await startLoad(c, rx);
    const q1 = await run(["shrink", "--query", "--external", `${HOST}:${c.members.get("w2")!.external}`]);
    expect(q1.code).toBe(0);
    expect(q1.stdout.trim()).toMatch(/^Eligible for shrink: Node count: 2, Nodes: \|w\d,w\d,\|$/);
    await c.grow(["w3"]);
    const q2 = await run(["shrink", "--query", "--json", "--external", `${HOST}:${c.initializer.external}`]);
    const eligible = JSON.parse(q2.stdout) as { node_names: string[]; node_count: number };
    expect(eligible.node_count).toBe(3);
    expect(eligible.node_names.at(-1)).toBe("w3");
    expect(eligible.node_names).not.toContain("initializer");
    const r = await c.shrink(["--workers", "w1,w3"], c.members.get("w2")!);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe("Cluster shrink response: Shrinking by 2 workers!");
    expect(r.leavers.sort()).toEqual(["w1", "w3"]);
    await load.done();
    const owners = await expectOneOwnerPerKey(c);
    expect(new Set(owners.values())).toEqual(new Set(["initializer", "w2"]));
    await load.exact();
  }, 120_000);

  test("by count 1 (oldest first) and by a count above the eligible number", async () => {
    const { c, rx } = await cluster(4);
    const load = await startLoad(c, rx);
    const order = (await c.status(c.initializer))!.worker_names;
    const r1 = await c.shrink(["--count", "1"]);
    expect(r1.stdout.trim()).toBe("Cluster shrink response: Shrinking by 1 workers!");
    expect(r1.leavers).toEqual([order[1]!]);
    const r2 = await c.shrink(["--count", "9"], c.members.get(order[3]!)!);
    expect(r2.stdout.trim()).toBe("Cluster shrink response: Shrinking by 2 workers!");
    expect(r2.leavers.sort()).toEqual([order[2]!, order[3]!].sort());
    await load.done();
    const owners = await expectOneOwnerPerKey(c);
    expect(new Set(owners.values())).toEqual(new Set(["initializer"]));
    const none = await c.shrink(["--count", "1"]);
    expect(none.code).toBe(4);
    expect(none.stdout.trim()).toBe("Cluster shrink response: Cannot shrink 0 workers!");
    await load.exact();
  }, 120_000);

  test("5 → 1 in one request, then grow back to 5", async () => {
    const { c, rx } = await cluster(5);
    const load = await startLoad(c, rx);
    const r = await c.shrink(["--count", "4"]);
    expect(r.leavers.length).toBe(4);
    expect((await c.status(c.initializer))!.worker_names).toEqual(["initializer"]);
    await c.grow(["w5", "w6", "w7", "w8"]);
    await load.done();
    const owners = await expectOneOwnerPerKey(c);
    for (const n of ["w5", "w6", "w7", "w8"]) expect(new Set(owners.values()).has(n)).toBe(true);
    await load.exact();
  }, 120_000);

  test("shrink w2, re-join as w2, shrink it again", async () => {
    const { c, rx } = await cluster(3);
    const load = await startLoad(c, rx);
    await c.shrink(["--workers", "w2"]);
    await c.grow(["w2"], c.members.get("w1")!);
    let owners = await expectOneOwnerPerKey(c);
    expect(new Set(owners.values()).has("w2")).toBe(true);
    const r = await c.shrink(["--workers", "w2"]);
    expect(r.leavers).toEqual(["w2"]);
    await load.done();
    owners = await expectOneOwnerPerKey(c);
    expect(new Set(owners.values()).has("w2")).toBe(false);
    await load.exact();
  }, 120_000);
});

describe("shrink refusals change nothing", () => {
  test("unknown, initializer, mixed, duplicate, empty, zero eligible, malformed", async () => {
    const { c, rx } = await cluster(3);
    const load = await startLoad(c, rx, 10_000);
    const before = JSON.stringify([...(await expectOneOwnerPerKey(c))].sort());
    const membersBefore = (await c.status(c.initializer))!.worker_names;
    const via = c.members.get("w1")!;
    for (const workers of ["nobody", "initializer", "w1,nobody", "w1,w1"]) {
      const r = await run(["shrink", "--workers", workers, "--external", `${HOST}:${via.external}`]);
      expect({ workers, code: r.code, out: r.stdout.trim() }).toEqual({ workers, code: 4, out: "Cluster shrink response: Invalid shrink targets!" });
    }
    const empty = await run(["shrink", "--workers", "", "--external", `${HOST}:${via.external}`]);
    expect(empty.code).toBe(2);
    // On the wire: an empty list with count 0 is "0 workers"; malformed JSON is answered with why.
    const zero = await ask(via.external, EXTERNAL_MSG.ShrinkRequest, '{"query":false,"node_names":[],"node_count":0}');
    expect(zero).toEqual({ type: EXTERNAL_MSG.ShrinkErrorResponse, payload: "Cannot shrink 0 workers!" });
    const raw = await rawConnection(via.external);
    raw.socket.write(encodeExternal(EXTERNAL_MSG.ShrinkRequest, '{"query":false,"node_names":"w1"}'));
    raw.socket.write(encodeExternal(EXTERNAL_MSG.ShrinkRequest, "not json"));
    await raw.until(() => externalFrames(raw.received()).length >= 2, "the answers to both malformed requests");
    expect(externalFrames(raw.received())).toEqual([
      { type: EXTERNAL_MSG.ShrinkErrorResponse, payload: "Malformed shrink request: node_names must be an array of worker names." },
      { type: EXTERNAL_MSG.ShrinkErrorResponse, payload: "Malformed shrink request: the payload is not JSON." },
    ]);
    raw.socket.end();
    // Had either started a shrink, a request after them through the same worker would meet the
    // event under way; it meets the idle cluster and is judged on its own.
    const after = await run(["shrink", "--workers", "nobody", "--external", `${HOST}:${via.external}`]);
    expect(after.stdout.trim()).toBe("Cluster shrink response: Invalid shrink targets!");
    expect(c.initializer.child.stderr).not.toContain("Initiating shrink");
    expect((await c.status(c.initializer))!.worker_names).toEqual(membersBefore);
    expect(JSON.stringify([...(await expectOneOwnerPerKey(c))].sort())).toBe(before);
    for (const w of c.members.values()) expect(w.child.exitCode).toBeNull();
    await load.done();
    await load.exact();
  }, 120_000);
});
