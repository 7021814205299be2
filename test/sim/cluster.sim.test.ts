// Seeded simulation of whole clusters in one process: random grows and shrinks under load, and
// a joiner that dies in the middle of a migration. The seed is in every failure message;
// `SIM_SEEDS=500 bun test test/sim` runs more of them (the default keeps CI short).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { COORDINATOR_LIMITS } from "../../src/cluster/coordinator.ts";
import { configureLog } from "../../src/log.ts";
import { createUnitRng as rng } from "../../src/tools/generators.ts";
import { SimCluster } from "./sim-cluster.ts";

const SEEDS = Number(process.env.SIM_SEEDS ?? 12);
const FIRST_SEED = Number(process.env.SIM_FIRST_SEED ?? 1);

beforeAll(() => configureLog({ level: "silent" }));
afterAll(() => configureLog({ level: "info" }));

/** Runs one random sequence of autoscale events; returns a description of what happened. */
async function randomRun(seed: number): Promise<string[]> {
  const r = rng(seed);
  const c = new SimCluster(r, 50 + Math.floor(r() * 400));
  const story: string[] = [];
  const n0 = 1 + Math.floor(r() * 3);
  await c.start(n0);
  story.push(`start ${n0}`);
  let next = n0;
  const load = setInterval(() => c.send(20 + Math.floor(r() * 200)), 1);
  try {
    for (let step = 0; step < 4; step++) {
      const members = c.workers.get("initializer")!.membership;
      const grow = members.length === 1 || (members.length < 6 && r() < 0.55);
      if (grow) {
        const k = 1 + Math.floor(r() * 2);
        const via = members[Math.floor(r() * members.length)]!;
        const names = Array.from({ length: k }, () => `w${next++}`);
        story.push(`grow ${names.join(",")} via ${via}`);
        for (const nm of names) void c.spawn(nm, { role: "joiner", workerCount: k, join: c.controlOf(via) });
        await c.until(`grow to ${members.length + k} (${story.join("; ")})`, () => c.live().every((w) => w.isReady && w.membership.length === members.length + k));
      } else {
        const eligible = members.filter((m) => m !== "initializer");
        const k = 1 + Math.floor(r() * eligible.length);
        const leaving = eligible.filter(() => r() < 0.5).slice(0, k);
        const names = leaving.length > 0 ? leaving : eligible.slice(0, 1);
        story.push(`shrink ${names.join(",")}`);
        const init = c.workers.get("initializer")!;
        const reply = init.shrink({ query: false, names, count: 0 }) as { payload: string };
        expect(reply.payload).toBe(`Shrinking by ${names.length} workers!`);
        await c.until(`shrink of ${names} (${story.join("; ")})`, () => init.membership.length === members.length - names.length && !init.autoscaling);
        for (const nm of names) await c.workers.get(nm)!.exited;
        for (const nm of names) c.net.kill(nm);
      }
      await c.until("the event to settle", () => !c.workers.get("initializer")!.autoscaling);
      expect(c.checkOwnership(), `seed ${seed}: ${story.join("; ")}`).toEqual([]);
    }
  } finally {
    clearInterval(load);
  }
  await c.until(`all ${c.sent} outputs (${story.join("; ")})`, () => c.received >= c.sent);
  expect(c.checkOutputs(true), `seed ${seed}: ${story.join("; ")}`).toEqual([]);
  expect(c.net.failures, `seed ${seed}`).toEqual([]);
  await c.stop();
  return story;
}

describe("simulation", () => {
  for (let seed = FIRST_SEED; seed < FIRST_SEED + SEEDS; seed++) {
    test(`random grows and shrinks under load are exact (seed ${seed})`, async () => {
      await randomRun(seed);
    }, 60_000);
  }

  /**
   * Starts `n` workers under load, runs `event`, kills `victim` once the coordinator has issued
   * `round` plans of it, and checks the event completes without the victim with every slot on
   * exactly one live member and processing going on for every key.
   */
  async function dieMidway(seed: number, n: number, round: number, victim: string, event: (c: SimCluster) => void, expected: string[]): Promise<void> {
    const c = new SimCluster(rng(seed), 300);
    await c.start(n);
    const load = setInterval(() => c.send(100), 1);
    try {
      await c.until("some outputs", () => c.received > 1000);
      const init = c.workers.get("initializer")!;
      const epoch0 = init.epoch;
      event(c);
      await c.until(`round ${round} of the event`, () => init.epoch >= epoch0 + round && init.autoscaling);
      c.net.kill(victim);
      await c.until(`the event to finish without ${victim}`, () => !init.autoscaling && c.live().every((w) => !w.isReady || w.membership.join() === expected.join()), 20_000);
      for (const w of c.live()) if (w.isReady) expect(w.membership).toEqual(expected);
      expect(c.checkOwnership()).toEqual([]);
      const before = c.received;
      await c.until("outputs for new messages", () => c.received >= before + 3000);
    } finally {
      clearInterval(load);
    }
    // What was routed to the victim before it died is lost; nothing is output twice or out of order.
    expect(c.checkOutputs(false)).toEqual([]);
    expect(c.net.failures).toEqual([]);
    await c.stop();
  }

  for (const round of [1, 2, 4]) {
    test(`a joiner that dies in round ${round} of its grow: the grow completes without it`, async () => {
      await dieMidway(100 + round, 2, round, "w2", (c) => void c.spawn("w2", { role: "joiner", join: c.controlOf("w1") }), ["initializer", "w1"]);
    }, 60_000);
  }

  test("one of two co-joiners dies mid-grow: the other joins", async () => {
    await dieMidway(
      7,
      2,
      2,
      "w3",
      (c) => {
        void c.spawn("w2", { role: "joiner", join: c.controlOf("initializer"), workerCount: 2 });
        void c.spawn("w3", { role: "joiner", join: c.controlOf("w1"), workerCount: 2 });
      },
      ["initializer", "w1", "w2"],
    );
  }, 60_000);

  test("a leaver that dies mid-shrink: the shrink completes and the rest keep its other slots", async () => {
    await dieMidway(
      8,
      4,
      2,
      "w2",
      (c) => {
        const init = c.workers.get("initializer")!;
        void init.shrink({ query: false, names: ["w1", "w2"], count: 0 });
      },
      ["initializer", "w3"],
    );
  }, 60_000);

  test("a full held queue pauses the sources until the state arrives; outputs stay exact", async () => {
    const c = new SimCluster(rng(9), 200, { high: 4, low: 1 });
    await c.start(2);
    const load = setInterval(() => c.send(100), 1);
    const init = c.workers.get("initializer")!;
    try {
      await c.until("some outputs", () => c.received > 1000);
      for (const nm of ["w2", "w3"]) void c.spawn(nm, { role: "joiner", join: c.controlOf("w1"), workerCount: 2 });
      await c.until("grow to 4", () => c.live().every((w) => w.isReady && w.membership.length === 4) && !init.autoscaling);
      const reply = init.shrink({ query: false, names: ["w1"], count: 0 }) as { payload: string };
      expect(reply.payload).toBe("Shrinking by 1 workers!");
      await c.until("shrink to 3", () => init.membership.length === 3 && !init.autoscaling);
    } finally {
      clearInterval(load);
    }
    await c.until(`all ${c.sent} outputs`, () => c.received >= c.sent);
    expect(init.heldPauses).toBeGreaterThan(0);
    expect(c.checkOutputs(true)).toEqual([]);
    expect(c.checkOwnership()).toEqual([]);
    expect(c.net.failures).toEqual([]);
    await c.stop();
  }, 60_000);

  test("a multi-join whose co-joiner never comes is refused at the deadline; nothing changes; a later join works", async () => {
    const c = new SimCluster(rng(10), 100);
    await c.start(2);
    const load = setInterval(() => c.send(50), 1);
    const init = c.workers.get("initializer")!;
    try {
      await c.until("some outputs", () => c.received > 500);
      const owners = Array.from(init.owners);
      const lone = await c.spawn("w2", { role: "joiner", join: c.controlOf("w1"), workerCount: 2 });
      await c.until("the coordinator to wait for joiners", () => init.coordinatorPhase === "waitingForJoiners");
      c.clock.advance(COORDINATOR_LIMITS.joinersWaitMs - 1);
      expect(init.autoscaling).toBe(true);
      c.clock.advance(1);
      expect(await lone.exited).not.toBe(0);
      c.net.kill("w2");
      expect(init.autoscaling).toBe(false);
      for (const w of c.live()) expect(w.membership).toEqual(["initializer", "w1"]);
      expect(Array.from(init.owners)).toEqual(owners);
      void c.spawn("w3", { role: "joiner", join: c.controlOf("initializer") });
      await c.until("grow to 3", () => c.live().every((w) => w.isReady && w.membership.length === 3) && !init.autoscaling);
    } finally {
      clearInterval(load);
    }
    await c.until(`all ${c.sent} outputs`, () => c.received >= c.sent);
    expect(c.checkOutputs(true)).toEqual([]);
    expect(c.checkOwnership()).toEqual([]);
    expect(c.net.failures).toEqual([]);
    await c.stop();
  }, 60_000);
});
