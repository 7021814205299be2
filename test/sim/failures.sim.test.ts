// Who is removed when something breaks: one fault must cost at most the worker it is about.
// A dropped link between two members removes one of them, not both; a joiner that cannot reach a
// member costs its join, not the member; a member that dies while joiners connect does not hold
// the grow for the connect deadline; a second process claiming a member's name is refused and
// the member keeps its place. Each failure names its seed.
import { afterEach, describe, expect, test } from "bun:test";
import { COORDINATOR_LIMITS } from "../../src/cluster/coordinator.ts";
import { Worker } from "../../src/cluster/worker.ts";
import { buildSequenceWindow } from "./app.ts";
import { quiescent } from "./checks.ts";
import { H, INIT, PORTS, SIM_FAILURE_TIMEOUT_MS, SimCluster } from "./sim-cluster.ts";

let current: SimCluster | undefined;
afterEach(() => current?.dispose());

function cluster(seed: number): SimCluster {
  current = new SimCluster(seed, { keys: 100 });
  return current;
}

const exited = (c: SimCluster, name: string) => c.exits.filter((e) => e.name === name);
/** The initializer's committed membership, sorted (registration order varies with the seed). */
const members = (c: SimCluster) => [...c.initializer!.membership].sort();

describe("simulation: one fault, one casualty", () => {
  for (const seed of [1, 2, 3, 4, 5]) {
    test(`a dropped link between two workers removes one of them, not both (seed ${seed})`, async () => {
      const c = cluster(seed);
      await c.start(2);
      c.spawn("w2", { role: "joiner", workerCount: 2, join: c.controlOf("w1") });
      c.spawn("w3", { role: "joiner", workerCount: 2, join: c.controlOf(INIT) });
      await c.runUntil("grow to 4", () => quiescent(c) && c.live().length === 4 && c.live().every((w) => w.isReady && w.membership.length === 4), 60_000);
      const link = c.net.openLinks().find((l) => (l.from === "w2" && l.to === "w3") || (l.from === "w3" && l.to === "w2"));
      expect(link, `seed ${seed}`).toBeDefined();
      c.drop(link!.id);
      await c.runFor(20_000);
      const gone = ["w2", "w3"].filter((n) => exited(c, n).length > 0);
      expect({ seed, gone: gone.length }).toEqual({ seed, gone: 1 });
      expect(c.isAlive("w1") && c.isAlive(INIT), `seed ${seed}`).toBe(true);
    }, 60_000);
  }

  for (const seed of [1, 2]) {
    test(`a joiner that cannot reach a member costs its join, never the member (seed ${seed})`, async () => {
      const c = cluster(seed);
      await c.start(3);
      c.partition(["w3"], ["w1"]);
      c.spawn("w3", { role: "joiner", workerCount: 1, join: c.controlOf(INIT) });
      await c.runFor(45_000);
      expect(exited(c, "w1"), `seed ${seed}`).toEqual([]);
      expect(members(c), `seed ${seed}`).toEqual([INIT, "w1", "w2"]);
      expect(c.initializer!.coordinatorPhase, `seed ${seed}`).toBe("idle");
      // Told why (`Join abandoned: …`), it exits 1, not 3 for a lost initializer.
      expect(exited(c, "w3"), `seed ${seed}: the joiner stops, told why`).toEqual([{ name: "w3", code: 1 }]);
    }, 60_000);
  }

  for (const seed of [1, 2]) {
    test(`a member that dies while joiners connect does not hold the grow for the connect deadline (seed ${seed})`, async () => {
      const c = cluster(seed);
      await c.start(3);
      c.spawn("w3", { role: "joiner", workerCount: 1, join: c.controlOf(INIT) });
      await c.runUntil("connecting", () => c.initializer!.coordinatorPhase === "connecting", 10_000);
      c.kill("w2");
      await c.runUntil("the grow completes without w2", () => c.initializer!.coordinatorPhase === "idle", COORDINATOR_LIMITS.connectWaitMs / 2);
      expect(members(c), `seed ${seed}`).toEqual([INIT, "w1", "w3"]);
    }, 60_000);
  }

  /** A joiner named `name` in a process of its own (the old one may still run). */
  function joinerIncarnation(c: SimCluster, proc: string, name: string) {
    const p = c.sched.process(proc);
    const w = new Worker({
      name,
      role: "joiner",
      workerCount: 1,
      join: c.controlOf(INIT),
      myControl: { host: H, port: 0 },
      myData: { host: H, port: 0 },
      sources: [],
      out: { host: H, port: PORTS.receiver },
      app: buildSequenceWindow(),
      transport: c.net.transport(proc),
      clock: c.sched.clockFor(p),
      failureTimeoutMs: SIM_FAILURE_TIMEOUT_MS,
    });
    const st: { code: number | undefined } = { code: undefined };
    void w.exited.then((x) => (st.code = x));
    c.sched.schedule(p, 0, "start", () => void w.start().catch(() => (st.code = -1)));
    return st;
  }

  test("a member that dies after a joiner linked to it, even reported first by the joiner, does not cost the join (60 seeds)", async () => {
    const wrong: string[] = [];
    for (let seed = 1; seed <= 60; seed++) {
      const c = cluster(seed);
      await c.start(3);
      c.spawn("w3", { role: "joiner", workerCount: 1, join: c.controlOf(INIT) });
      await c.runUntil("connecting", () => c.initializer!.coordinatorPhase === "connecting", 10_000);
      await c.runUntil("w3 linked to w2", () => c.net.openLinks().some((l) => l.from === "w3" && l.to === "w2"), 10_000);
      await c.runFor(seed % 4);
      c.kill("w2");
      await c.runUntil("the grow to end", () => c.initializer!.coordinatorPhase === "idle", 40_000);
      await c.runFor(5000);
      if (members(c).join() !== [INIT, "w1", "w3"].join()) wrong.push(`seed ${seed}: ${members(c).join()}`);
      c.dispose();
    }
    expect(wrong).toEqual([]);
  }, 120_000);

  for (const lingerFirst of [false, true]) {
    test(`a worker shrunk away frees its name: a new w2 joins while the old one still finishes (linger first: ${lingerFirst})`, async () => {
      const c = cluster(1);
      await c.start(3);
      c.shrink(["w2"], 0);
      await c.runUntil("the shrink", () => c.initializer!.coordinatorPhase === "idle" && members(c).join() === [INIT, "w1"].join(), 30_000);
      c.pause("w2"); // the leaver has not closed its links yet (a slow sink flush, a GC pause)
      if (lingerFirst) await c.runFor(11_000);
      const fresh = joinerIncarnation(c, "w2-new", "w2");
      await c.runFor(40_000);
      expect(fresh.code).toBeUndefined();
      expect(members(c)).toEqual([INIT, "w1", "w2"]);
      c.resume("w2");
      await c.runFor(20_000);
      expect(fresh.code).toBeUndefined();
      expect(members(c)).toEqual([INIT, "w1", "w2"]);
    }, 120_000);
  }

  for (const seed of [1, 2, 3, 4]) {
    test(`the old w2's late close is nobody's: the new w2's join survives it (seed ${seed})`, async () => {
      const c = cluster(seed);
      await c.start(3);
      c.shrink(["w2"], 0);
      await c.runUntil("the shrink", () => c.initializer!.coordinatorPhase === "idle" && members(c).join() === [INIT, "w1"].join(), 30_000);
      c.pause("w2");
      await c.runFor(11_000);
      const fresh = joinerIncarnation(c, "w2-new", "w2");
      await c.runUntil("the new w2's grow to start", () => c.initializer!.coordinatorPhase !== "idle", 20_000);
      c.kill("w2"); // the old process finally goes: its links close now
      await c.runFor(60_000);
      expect({ seed, code: fresh.code }).toEqual({ seed, code: undefined });
      expect(members(c), `seed ${seed}`).toEqual([INIT, "w1", "w2"]);
    }, 120_000);
  }

  test("a second --control w1 while w1 runs is refused, and w1 keeps its place", async () => {
    const c = cluster(1);
    await c.start(3);
    const proc = c.sched.process("imposter");
    const imposter = new Worker({
      name: "w1",
      role: "worker",
      workerCount: 1,
      control: { host: H, port: PORTS.control },
      myControl: { host: H, port: 0 },
      myData: { host: H, port: 0 },
      sources: [],
      out: { host: H, port: PORTS.receiver },
      app: buildSequenceWindow(),
      transport: c.net.transport("imposter"),
      clock: c.sched.clockFor(proc),
    });
    let code: number | undefined;
    void imposter.exited.then((x) => (code = x));
    c.sched.schedule(proc, 0, "start", () => void imposter.start());
    await c.runUntil("the imposter to be refused", () => code !== undefined, 10_000);
    expect(code).not.toBe(0);
    await c.runFor(5000);
    expect(c.exits).toEqual([]);
    expect(c.isAlive("w1")).toBe(true);
    expect(members(c)).toEqual([INIT, "w1", "w2"]);
  }, 60_000);
});
