// Multi-worker clusters: formation, keyed state spread over workers, exact outputs.
import { describe, expect, test } from "bun:test";
import { EXTERNAL_MSG } from "../../src/codec/external.ts";
import { Cluster, ask, startInitializer, statusOf } from "./cluster-harness.ts";
import { AlphabetLoad, HOST, LoadSender, Receiver, SequenceLoad, checkAlphabet, checkSequence, cli, waitFor } from "./harness.ts";
import { withReceiver } from "./fixtures.ts";

let rx: Receiver;
withReceiver((r) => (rx = r));

describe("formation", () => {
  for (const n of [1, 2, 3, 5]) {
    test(`${n} workers: same membership everywhere, exact alphabet totals, each key on one worker`, async () => {
      const c = new Cluster("alphabet", rx);
      await c.start(n);
      const names = (await statusOf(c.initializer))!.worker_names;
      expect(names).toEqual(["initializer", ...Array.from({ length: n - 1 }, (_, i) => `w${i + 1}`)].slice(0, 1).concat(names.slice(1)));
      expect([...names].sort()).toEqual([...c.members.keys()].sort());
      for (const w of c.members.values()) expect((await statusOf(w))!.worker_names).toEqual(names);
      const load = new AlphabetLoad(n);
      const s = new LoadSender(c.sourcePort, load.next, 100_000, 30_000);
      await s.start();
      await s.done;
      await waitFor("all outputs", 20_000, () => rx.lines >= 30_000);
      await Bun.sleep(100);
      expect(checkAlphabet(load, rx)).toEqual([]);
      if (n >= 2) expect(rx.activeConnections()).toBeGreaterThan(1);
      const { owners, problems } = await c.keyOwners();
      expect(problems).toEqual([]);
      expect(owners.size).toBe(load.votes.size);
      if (n >= 2) expect(new Set(owners.values()).size).toBeGreaterThan(1);
      await c.shutdown();
    }, 90_000);
  }

  test("sequence_window on 3 workers: every key's windows exact", async () => {
    const c = new Cluster("sequence_window", rx);
    await c.start(3);
    const load = new SequenceLoad(300);
    const s = new LoadSender(c.sourcePort, load.next, 60_000, 30_000);
    await s.start();
    await s.done;
    await waitFor("all outputs", 20_000, () => rx.lines >= 30_000);
    expect(checkSequence(load, rx)).toEqual([]);
    const { owners, problems } = await c.keyOwners();
    expect(problems).toEqual([]);
    expect(owners.size).toBe(300);
  }, 90_000);

  test("slot and key queries answer per worker and cluster-wide", async () => {
    const c = new Cluster("alphabet", rx);
    await c.start(3);
    const load = new AlphabetLoad(11);
    const s = new LoadSender(c.sourcePort, load.next, 50_000, 5000);
    await s.start();
    await s.done;
    await waitFor("all outputs", 20_000, () => rx.lines >= 5000);
    let slots = 0;
    for (const w of c.members.values()) {
      const r = await ask(w.external, EXTERNAL_MSG.PartitionCountQuery);
      const body = JSON.parse(r!.payload);
      slots += body.state_partitions["add votes"][w.name];
    }
    expect(slots).toBe(1024);
    const all = await cli(["query", "cluster-key-counts", "--json", "--external", `${HOST}:${c.members.get("w1")!.external}`]);
    const counts = JSON.parse(all.stdout) as Record<string, Record<string, Record<string, number>>>;
    expect(Object.keys(counts).sort()).toEqual(["initializer", "w1", "w2"]);
    let keys = 0;
    for (const w of Object.values(counts)) for (const n of Object.values(w["add votes"] ?? {})) keys += n;
    expect(keys).toBe(load.votes.size);
    const kc = await cli(["query", "key-counts", "--json", "--external", `${HOST}:${c.initializer.external}`]);
    expect(typeof JSON.parse(kc.stdout)["add votes"]).toBe("number");
  }, 90_000);

  test("a second worker with a registered name is refused and exits non-zero", async () => {
    const c = new Cluster("alphabet", rx);
    // Start the initializer (expecting 3) and w1 only; then a duplicate w1, then w2.
    const { proc: init, control } = await startInitializer("alphabet", rx, 3);
    await init.waitForLog("Waiting for 2 workers");
    const w1 = await c.spawnWorker("w1", ["--control", `${HOST}:${control}`]);
    await init.waitForLog("Worker w1 registered (1/2)");
    const dup = await c.spawnWorker("w1", ["--control", `${HOST}:${control}`]);
    expect(await dup.proc.waitExit(15_000)).toBe(4);
    expect(dup.proc.stderr).toContain("Worker name w1 is already registered with the cluster.");
    const w2 = await c.spawnWorker("w2", ["--control", `${HOST}:${control}`]);
    await init.waitForLog("Application has successfully initialized.");
    for (const w of [w1, w2]) await w.proc.waitForLog("INIT PHASE IV");
    expect(init.exitCode).toBeNull();
  }, 60_000);

  test("shrinking a dead worker removes it and gives its slots to the living", async () => {
    const c = new Cluster("alphabet", rx);
    await c.start(3);
    c.members.get("w2")!.proc.kill("SIGKILL");
    await c.initializer.proc.waitForLog("Lost connection to worker w2");
    c.members.delete("w2");
    const r = await cli(["shrink", "--workers", "w2", "--external", `${HOST}:${c.initializer.external}`]);
    expect(r.stdout.trim()).toBe("Cluster shrink response: Shrinking by 1 workers!");
    await c.waitMembership(["initializer", "w1"]);
    // Every letter flows again, and every key is held by exactly one live worker.
    const load = new AlphabetLoad(17);
    const s = new LoadSender(c.sourcePort, load.next, 20_000, 5000);
    await s.start();
    await s.done;
    await waitFor("all outputs", 20_000, () => rx.lines >= 5000);
    expect(checkAlphabet(load, rx)).toEqual([]);
    const { problems } = await c.keyOwners();
    expect(problems).toEqual([]);
    // And the cluster can grow again.
    await c.grow(["w3"]);
  }, 60_000);

  test("a worker killed with SIGKILL does not take the others down", async () => {
    const c = new Cluster("alphabet", rx);
    await c.start(3);
    const load = new AlphabetLoad(5);
    const s = new LoadSender(c.sourcePort, load.next, 20_000);
    await s.start();
    await waitFor("some outputs", 10_000, () => rx.lines > 2000);
    c.members.get("w2")!.proc.kill("SIGKILL");
    await c.initializer.proc.waitForLog("Lost connection to worker w2");
    await Bun.sleep(500);
    s.close();
    for (const name of ["initializer", "w1"]) {
      const w = c.members.get(name)!;
      expect(w.proc.exitCode).toBeNull();
      expect((await statusOf(w))?.processing_messages).toBe(true);
    }
    const before = rx.lines;
    // Keys owned by the dead worker are lost (no recovery yet); the survivors' keys keep flowing.
    const more = new LoadSender(c.sourcePort, new AlphabetLoad(6).next, 5000, 500);
    await more.start();
    await more.done;
    await Bun.sleep(500);
    expect(rx.lines).toBeGreaterThan(before);
  }, 60_000);
});

