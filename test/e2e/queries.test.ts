// The external channel as the original's tools use it (issue 13): every query asked at every
// member answers, with the original's JSON value types; a malformed request gets an answer or a
// closed connection; RotateLog and ReportStatus do something; answers of any size get through;
// a shrink asked while a member is unreachable answers; Pony runtime flags are accepted.
import { describe, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { EXTERNAL_MSG as M, encodeExternal } from "../../src/codec/external.ts";
import { Cluster, ask, type Member } from "../support/cluster.ts";
import { AlphabetWorkload, SequenceWorkload } from "../support/load.ts";
import { HOST } from "../support/process.ts";
import { CountLines } from "../support/receiver.ts";
import { poll } from "../support/wait.ts";
import { cleanUpAfterEach, externalFrames, rawConnection, receiver, sendAll, tempDir } from "./fixtures.ts";

cleanUpAfterEach();

const resilienceDir = () => tempDir("wallaroo-queries-");

/** The answer to `type` at `m`, which must come (a worker never leaves a query unanswered). */
async function answer(m: Member, type: number, expected: number): Promise<unknown> {
  const r = await ask(m.external, type, "", 5000);
  expect({ at: m.name, asked: type, got: r?.type }).toEqual({ at: m.name, asked: type, got: expected });
  return JSON.parse(r!.payload);
}

const DIGITS = /^\d+$/;
const sorted = (xs: Iterable<string>) => [...xs].sort();

/**
 * Asks every query at every member of `c` (word_count: stateful "count", parallel stateless
 * "split") and checks each answer's shape and value types, and that together they cover the cluster.
 */
async function everyQueryEverywhere(c: Cluster, totalKeys: number): Promise<void> {
  const names = sorted(c.members.keys());
  const slots = new Set<string>();
  const stepIds = new Set<string>();
  let keys = 0;
  for (const m of c.members.values()) {
    const p = (await answer(m, M.PartitionQuery, M.PartitionQueryResponse)) as Record<string, Record<string, Record<string, unknown[]>>>;
    expect(Object.keys(p.state_partitions!)).toEqual(["count"]);
    expect(Object.keys(p.state_partitions!.count!)).toEqual([m.name]);
    const mine = p.state_partitions!.count![m.name]!;
    for (const s of mine) {
      expect({ at: m.name, slot: s, ok: typeof s === "string" && DIGITS.test(s) }).toEqual({ at: m.name, slot: s, ok: true });
      expect(slots.has(s as string)).toBe(false);
      slots.add(s as string);
    }
    const stateless = p.stateless_partitions!;
    expect(Object.keys(stateless)).toEqual(["split"]);
    const ids = stateless.split![m.name]!;
    expect(ids.length).toBe(1);
    expect(typeof ids[0] === "string" && DIGITS.test(ids[0])).toBe(true);
    stepIds.add(ids[0] as string);

    expect(await answer(m, M.PartitionCountQuery, M.PartitionCountQueryResponse)).toEqual({
      state_partitions: { count: { [m.name]: mine.length } },
      stateless_partitions: { split: { [m.name]: 1 } },
    });
    expect(await answer(m, M.StatelessPartitionQuery, M.StatelessPartitionQueryResponse)).toEqual(stateless);
    expect(await answer(m, M.StatelessPartitionCountQuery, M.StatelessPartitionCountQueryResponse)).toEqual({ split: { [m.name]: 1 } });

    const held = (await answer(m, M.StateEntityQuery, M.StateEntityQueryResponse)) as Record<string, string[]>;
    for (const k of held.count!) expect(typeof k).toBe("string");
    expect(await answer(m, M.StateEntityCountQuery, M.StateEntityCountQueryResponse)).toEqual({ count: held.count!.length });
    keys += held.count!.length;

    // The cluster-wide count at every member names every member (asked at the initializer it once
    // left out the workers from formation, after waiting 3 s for their dropped answers).
    const t0 = performance.now();
    const all = (await answer(m, M.ClusterStateEntityCountQuery, M.ClusterStateEntityCountQueryResponse)) as Record<string, Record<string, Record<string, number>>>;
    expect({ at: m.name, members: sorted(Object.keys(all)) }).toEqual({ at: m.name, members: names });
    expect(performance.now() - t0).toBeLessThan(2500);
    let counted = 0;
    for (const w of Object.values(all))
      for (const [slot, n] of Object.entries(w.count!)) {
        expect(DIGITS.test(slot) && Number.isInteger(n) && n > 0).toBe(true);
        counted += n;
      }
    expect({ at: m.name, counted }).toEqual({ at: m.name, counted: totalKeys });

    expect(await answer(m, M.SourceIdsQuery, M.SourceIdsQueryResponse)).toEqual({ source_ids: m.name === "initializer" ? ["word_count"] : [] });
    expect(((await answer(m, M.ClusterStatusQuery, M.ClusterStatusQueryResponse)) as { worker_names: string[] }).worker_names.length).toBe(names.length);
  }
  expect(slots.size).toBe(1024);
  expect(stepIds.size).toBe(names.length);
  expect(keys).toBe(totalKeys);
}

/** Sum of the key counts every member reports. */
async function keysHeld(c: Cluster): Promise<number> {
  let n = 0;
  for (const m of c.members.values()) n += Object.values(JSON.parse((await ask(m.external, M.StateEntityCountQuery))!.payload) as Record<string, number>).reduce((a, b) => a + b, 0);
  return n;
}

const PONY = ["--ponythreads=1", "--ponypinasio", "--ponynoblock", "--ponyminthreads", "0"];
const WORDS = 20; // the word_count generator's vocabulary

describe("queries", () => {
  test("every query at every member, before and after a grow through a formation member; Pony flags accepted", async () => {
    const rx = receiver(new CountLines());
    const c = await new Cluster("word_count", rx.port, { extraArgs: PONY }).start(3);
    for (const m of c.members.values()) {
      const warned = m.child.lines.filter((l) => l.includes("Pony runtime flags have no effect here")).length;
      expect({ at: m.name, warned }).toEqual({ at: m.name, warned: 1 });
      expect(m.child.find("ignored --ponythreads=1 --ponypinasio --ponynoblock --ponyminthreads 0")).not.toBeNull();
    }
    const sent = await c.run(["send", "--generator", "word_count", "--messages", "3000", "--to", `${HOST}:${c.sourcePort}`]);
    expect(sent.code).toBe(0);
    await poll("every word to be counted", 20_000, async () => (await keysHeld(c)) === WORDS);
    await everyQueryEverywhere(c, WORDS);
    await c.grow(["j1"], c.members.get("w1")!);
    await everyQueryEverywhere(c, WORDS);
  }, 120_000);

  test("without stateless steps 19 and 23 answer {}; a worker's keys over 16 KiB get through", async () => {
    const rx = receiver(new CountLines());
    const c = await new Cluster("sequence_window", rx.port).start(2);
    const KEYS = 4000;
    await sendAll(c.sourcePort, new SequenceWorkload(KEYS), KEYS, 50_000);
    await poll("every key to be held", 20_000, async () => (await keysHeld(c)) === KEYS);
    const seen = new Set<string>();
    for (const m of c.members.values()) {
      expect(await ask(m.external, M.StatelessPartitionQuery)).toEqual({ type: M.StatelessPartitionQueryResponse, payload: "{}" });
      expect(await ask(m.external, M.StatelessPartitionCountQuery)).toEqual({ type: M.StatelessPartitionCountQueryResponse, payload: "{}" });
      const r = await c.run(["query", "keys", "--json", "--external", `${HOST}:${m.external}`]);
      expect({ at: m.name, code: r.code, stderr: r.stderr }).toEqual({ at: m.name, code: 0, stderr: "" });
      // Each worker holds about half the keys: some 24 KB of JSON, over the 16 KiB request limit.
      expect(r.stdout.length).toBeGreaterThan(16 * 1024);
      for (const k of (JSON.parse(r.stdout) as Record<string, string[]>).window!) seen.add(k);
      const s = await c.run(["query", "stateless", "--json", "--external", `${HOST}:${m.external}`]);
      expect(s.stdout).toBe("{}\n");
    }
    expect(seen.size).toBe(KEYS);
  }, 120_000);
});

describe("malformed requests", () => {
  test("an answer or a closed connection at every member, never silence; node_count -1 is every eligible worker", async () => {
    const rx = receiver(new CountLines());
    const c = await new Cluster("alphabet", rx.port).start(3);
    const members = [...c.members.values()];
    for (const m of members) {
      const conn = await rawConnection(m.external);
      // Floats are not counts (the original dropped them, and its client waited for ever).
      conn.socket.write(encodeExternal(M.ShrinkRequest, `{"query":false,"node_names":[],"node_count":1e0}`));
      conn.socket.write(encodeExternal(M.ShrinkRequest, `{"query":false,"node_names":[],"node_count":0.0}`));
      conn.socket.write(encodeExternal(M.ShrinkRequest, `{"query":true,"node_names":[]}`));
      await conn.until(() => externalFrames(conn.received()).length >= 3, `${m.name}'s three answers`);
      expect(externalFrames(conn.received())).toEqual([
        { type: M.ShrinkErrorResponse, payload: "Malformed shrink request: node_count must be an integer, not 1e0." },
        { type: M.ShrinkErrorResponse, payload: "Malformed shrink request: node_count must be an integer, not 0.0." },
        { type: M.ShrinkErrorResponse, payload: "Malformed shrink request: node_count is missing." },
      ]);
      conn.socket.end();
      // Requests it cannot answer close the connection: an unknown type, a reply type, a body
      // shorter than its type, broken UTF-8, an unknown ReportStatus code.
      for (const bad of [
        new Uint8Array([0, 0, 0, 2, 0, 99]),
        encodeExternal(M.ClusterStatusQueryResponse, "{}"),
        new Uint8Array([0, 0, 0, 1, 9]),
        new Uint8Array([0, 0, 0, 3, 0, 1, 0xff]),
        encodeExternal(M.ReportStatus, "everything"),
        encodeExternal(M.RotateLog, "ghost"),
      ]) {
        const one = await rawConnection(m.external);
        one.socket.write(bad);
        await one.waitClosed();
        expect({ at: m.name, bad: [...bad.subarray(0, 6)], answered: one.received().length }).toEqual({ at: m.name, bad: [...bad.subarray(0, 6)], answered: 0 });
      }
    }
    expect(c.initializer.child.find("Initiating shrink")).toBeNull();
    await c.waitMembership(["initializer", "w1", "w2"]);
    // What the original's `cluster_shrinker --count -1` sends, through a non-initializer.
    const all = await c.shrink(["--count", "-1"], c.members.get("w2")!);
    expect(all.stdout).toBe("Cluster shrink response: Shrinking by 2 workers!\n");
    expect(sorted(all.leavers)).toEqual(["w1", "w2"]);
    expect((await c.status(c.initializer))!.worker_names).toEqual(["initializer"]);
  }, 120_000);
});

describe("RotateLog and ReportStatus", () => {
  test("RotateLog at a member naming the initializer starts a new input-log segment there; ReportStatus logs each status line", async () => {
    const rx = receiver(new CountLines());
    const dir = resilienceDir();
    // No checkpoint commits during the test: a commit also starts a segment.
    const c = await new Cluster("alphabet", rx.port, { extraArgs: ["--resilience-dir", dir, "--time-between-checkpoints", "60m"] }).start(2);
    const SENT = 1000;
    await sendAll(c.sourcePort, new AlphabetWorkload(3), SENT, 50_000);
    await rx.waitLines(SENT, 20_000);
    const segments = () => readdirSync(join(dir, "wallaroo-alphabet-initializer", "input")).filter((f) => f.endsWith(".log")).sort();
    const before = segments();
    const w1 = c.members.get("w1")!;
    const conn = await rawConnection(w1.external);
    conn.socket.write(encodeExternal(M.RotateLog, "initializer"));
    await c.initializer.child.waitForLog(`RotateLog: the input log goes on in a new segment from position ${SENT}`);
    expect(segments().length).toBe(before.length + 1);
    await w1.child.waitForLog("RotateLog: asked initializer to rotate its logs");
    // Naming itself: a worker that keeps no input log says so.
    conn.socket.write(encodeExternal(M.RotateLog, "w1"));
    await w1.child.waitForLog("RotateLog: nothing to rotate on w1");
    for (const m of c.members.values()) {
      const r = await rawConnection(m.external);
      r.socket.write(encodeExternal(M.ReportStatus, "boundary-count-status"));
      const line = await m.child.waitForLog(/Status of (\S+): processing messages: true; members: 2 \(initializer,w1\); down: none; slots: (\d+); keys: (\d+); table epoch: \d+; connected to: 1 members/);
      expect(line[1]).toBe(m.name);
      expect(Number(line[2])).toBe(512);
      r.socket.end();
    }
    expect(c.initializer.child.find(/Status of initializer: .*; autoscale: idle; last checkpoint: 0/)).not.toBeNull();
    conn.socket.end();
  }, 120_000);
});

describe("a shrink while a member is unreachable", () => {
  test("with resilience and the initializer frozen, every other member answers within the tool's 10 s", async () => {
    const rx = receiver(new CountLines());
    const c = await new Cluster("alphabet", rx.port, { extraArgs: ["--resilience-dir", resilienceDir()] }).start(3);
    c.initializer.child.kill("SIGSTOP");
    try {
      const asked = await Promise.all(
        ["w1", "w2"].map(async (n) => ({ n, r: await c.run(["shrink", "--workers", n === "w1" ? "w2" : "w1", "--external", `${HOST}:${c.members.get(n)!.external}`]) })),
      );
      for (const { n, r } of asked) {
        expect({ at: n, code: r.code }).toEqual({ at: n, code: 4 });
        expect(r.stdout).toMatch(/^Cluster shrink response: The initializer (is not reachable from this worker|did not answer within 5 s)\.\n$/);
      }
    } finally {
      c.initializer.child.kill("SIGCONT");
    }
  }, 60_000);

  test("without resilience and a member frozen, by names and by count at any member", async () => {
    const rx = receiver(new CountLines());
    const c = await new Cluster("alphabet", rx.port).start(4);
    const w3 = c.members.get("w3")!;
    w3.child.kill("SIGSTOP");
    try {
      const byName = await c.run(["shrink", "--workers", "w1", "--external", `${HOST}:${c.members.get("w2")!.external}`]);
      const byCount = await c.run(["shrink", "--count", "1", "--external", `${HOST}:${c.initializer.external}`]);
      for (const r of [byName, byCount]) {
        expect([0, 4]).toContain(r.code);
        expect(r.stdout).toStartWith("Cluster shrink response: ");
      }
      expect(byName.stdout).toBe("Cluster shrink response: Shrinking by 1 workers!\n");
    } finally {
      w3.child.kill("SIGCONT");
    }
  }, 60_000);
});
