// Multi-worker clusters: formation, keyed state spread over workers, exact outputs.
import { describe, expect, test } from "bun:test";
import { EXTERNAL_MSG } from "../../src/codec/external.ts";
import { Cluster, ask } from "../support/cluster.ts";
import { AlphabetWorkload, SequenceWorkload } from "../support/load.ts";
import { HOST, run } from "../support/process.ts";
import { CountLines, KeepLines } from "../support/receiver.ts";
import { AlphabetValidator, SequenceValidator } from "../support/validate.ts";
import { cleanUpAfterEach, receiver, sendAll, sender } from "./fixtures.ts";
import { poll } from "../support/wait.ts";

cleanUpAfterEach();

describe("formation", () => {
  for (const n of [1, 2, 3, 5]) {
    test(`${n} workers: same membership everywhere, exact alphabet totals, each key on one worker`, async () => {
      const rx = receiver(new AlphabetValidator());
      const c = await new Cluster("alphabet", rx.port).start(n);
      const names = (await c.status(c.initializer))!.worker_names;
      expect(names[0]).toBe("initializer");
      expect([...names].sort()).toEqual([...c.members.keys()].sort());
      for (const w of c.members.values()) expect((await c.status(w))!.worker_names).toEqual(names);
      const wl = new AlphabetWorkload(n);
      await sendAll(c.sourcePort, wl, 30_000, 100_000);
      await rx.waitLines(30_000, 20_000);
      if (n >= 2) expect(rx.activeConnections).toBeGreaterThan(1);
      const { owners, problems } = await c.keyOwners();
      expect(problems).toEqual([]);
      expect(owners.size).toBe(wl.expectedTotals(30_000).size);
      if (n >= 2) expect(new Set(owners.values()).size).toBeGreaterThan(1);
      await c.shutdown(20_000, rx);
      expect(rx.handler.verify(wl, 30_000)).toEqual([]);
    }, 90_000);
  }

  test("sequence_window on 3 workers: every key's windows exact", async () => {
    const rx = receiver(new SequenceValidator(300));
    const c = await new Cluster("sequence_window", rx.port).start(3);
    const wl = new SequenceWorkload(300);
    await sendAll(c.sourcePort, wl, 30_000, 60_000);
    await rx.waitLines(30_000, 20_000);
    const { owners, problems } = await c.keyOwners();
    expect(problems).toEqual([]);
    expect(owners.size).toBe(300);
    await c.shutdown(20_000, rx);
    expect(rx.handler.verify(wl, 30_000).problems).toEqual([]);
  }, 90_000);

  test("slot and key queries answer per worker and cluster-wide", async () => {
    const rx = receiver(new CountLines());
    const c = await new Cluster("alphabet", rx.port).start(3);
    const wl = new AlphabetWorkload(11);
    await sendAll(c.sourcePort, wl, 5000, 50_000);
    await rx.waitLines(5000, 20_000);
    let slots = 0;
    for (const w of c.members.values()) {
      const r = await ask(w.external, EXTERNAL_MSG.PartitionCountQuery);
      const body = JSON.parse(r!.payload);
      slots += body.state_partitions["add votes"][w.name];
    }
    expect(slots).toBe(1024);
    // Asked at every member (the initializer reaches formation workers over their registration
    // link, where their answer once went unheard), the count names every member.
    for (const asked of c.members.values()) {
      const all = await run(["query", "cluster-key-counts", "--json", "--external", `${HOST}:${asked.external}`]);
      const counts = JSON.parse(all.stdout) as Record<string, Record<string, Record<string, number>>>;
      expect({ asked: asked.name, members: Object.keys(counts).sort() }).toEqual({ asked: asked.name, members: ["initializer", "w1", "w2"] });
      let keys = 0;
      for (const w of Object.values(counts)) for (const n of Object.values(w["add votes"] ?? {})) keys += n;
      expect(keys).toBe(wl.expectedTotals(5000).size);
    }
    const kc = await run(["query", "key-counts", "--json", "--external", `${HOST}:${c.initializer.external}`]);
    expect(typeof JSON.parse(kc.stdout)["add votes"]).toBe("number");
  }, 90_000);

  test("a second worker with a registered name is refused and exits non-zero", async () => {
    const rx = receiver(new CountLines());
    const c = new Cluster("alphabet", rx.port);
    // Start the initializer (expecting 3) and w1 only; then a duplicate w1, then w2.
    const init = await c.startInitializer(3);
    await init.child.waitForLog("Waiting for 2 workers");
    const via = ["--control", `${HOST}:${init.control}`];
    const w1 = await c.spawnWorker("w1", via);
    await init.child.waitForLog("Worker w1 registered (1/2)");
    const dup = await c.spawnWorker("w1", via);
    expect(await dup.child.waitExit(15_000)).toBe(4);
    expect(dup.child.stderr).toContain("Worker name w1 is already registered with the cluster.");
    const w2 = await c.spawnWorker("w2", via);
    await init.child.waitForLog("Application has successfully initialized.");
    for (const w of [w1, w2]) await w.child.waitForLog("INIT PHASE IV");
    expect(init.child.exitCode).toBeNull();
  }, 60_000);

  test("shrinking a dead worker removes it and gives its slots to the living", async () => {
    const rx = receiver(new AlphabetValidator());
    const c = await new Cluster("alphabet", rx.port).start(3);
    c.members.get("w2")!.child.kill("SIGKILL");
    await c.initializer.child.waitForLog("Lost connection to worker w2");
    c.members.delete("w2");
    const r = await run(["shrink", "--workers", "w2", "--external", `${HOST}:${c.initializer.external}`]);
    expect(r.stdout.trim()).toBe("Cluster shrink response: Shrinking by 1 workers!");
    await c.waitMembership(["initializer", "w1"]);
    // Every letter flows again, and every key is held by exactly one live worker.
    const wl = new AlphabetWorkload(17);
    await sendAll(c.sourcePort, wl, 5000, 20_000);
    await rx.waitLines(5000, 20_000);
    const { problems } = await c.keyOwners();
    expect(problems).toEqual([]);
    // And the cluster can grow again.
    await c.grow(["w3"]);
    await c.shutdown(20_000, rx);
    expect(rx.handler.verify(wl, 5000)).toEqual([]);
  }, 60_000);

  test("a worker killed with SIGKILL: the others stay up, the sources pause (status says so) until the operator shrinks it away", async () => {
    const rx = receiver(new KeepLines());
    const c = await new Cluster("alphabet", rx.port).start(3);
    const s = await sender(c.sourcePort, new AlphabetWorkload(5, 1, "abcdefghijklm"));
    void s.atRate(20_000);
    await rx.waitLines(2001, 10_000, "some outputs");
    c.members.get("w2")!.child.kill("SIGKILL");
    await c.initializer.child.waitForLog("Worker w2 is down: the sources are paused");
    await s.stop();
    s.close();
    for (const name of ["initializer", "w1"]) {
      const w = c.members.get(name)!;
      expect(w.child.exitCode).toBeNull();
      const st = await poll(`${name} to report w2 down`, 5000, async () => {
        const x = await c.status(w);
        return x?.down_workers?.includes("w2") ? x : undefined;
      });
      expect(st.processing_messages).toBe(false);
      expect(st.worker_names).toContain("w2");
    }
    // No recovery without resilience: the operator removes it, its keys start empty elsewhere.
    const r = await c.run(["shrink", "--external", `${HOST}:${c.initializer.external}`, "--workers", "w2"]);
    expect(r.code).toBe(0);
    await c.initializer.child.waitForLog(/worker w2 is dead; this shrink removes it .* its \d+ keys \(as of its last heartbeat\) are lost/);
    c.members.delete("w2");
    await c.waitMembership(["initializer", "w1"], 30_000);
    // Letters the first load never used: an output for one of them can only come from new work.
    const fresh = "nopqrstuvwxyz";
    await sendAll(c.sourcePort, new AlphabetWorkload(6, 1, fresh), 500, 5000);
    await rx.until(() => fresh.split("").every((l) => rx.handler.all().some((x) => x[0] === l)), 10_000, "outputs of the new load for every letter");
  }, 60_000);
});
