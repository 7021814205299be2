// Targeted scenarios on the deterministic scheduler: a joiner that dies in round N of its grow,
// a co-joiner that dies, a leaver that dies mid-shrink, held-queue pressure, and a multi-join
// whose co-joiner never comes. Each failure names its seed.
import { afterEach, describe, expect, test } from "bun:test";
import { COORDINATOR_LIMITS } from "../../src/cluster/coordinator.ts";
import { checkOutputs, checkQuiescent, quiescent } from "./checks.ts";
import { INIT, SimCluster } from "./sim-cluster.ts";

let current: SimCluster | undefined;
afterEach(() => current?.dispose());

function cluster(seed: number, keys: number, heldLimits?: { high: number; low: number }): SimCluster {
  current = new SimCluster(seed, { keys, heldLimits });
  return current;
}

/** Fails with the seed in the message. */
function ok(c: SimCluster, problem: string | undefined): void {
  expect(problem === undefined ? undefined : `seed ${c.seed}: ${problem}`).toBeUndefined();
}

describe("simulation: targeted scenarios", () => {
  /**
   * Starts `n` workers under load, runs `event`, kills `victim` once the coordinator has issued
   * `round` plans, and checks the event completes without it: every slot on exactly one live
   * member, processing going on, nothing output twice or out of order.
   */
  async function dieMidway(seed: number, n: number, round: number, victim: string, event: (c: SimCluster) => void, expected: string[]): Promise<void> {
    const c = cluster(seed, 300);
    await c.start(n);
    const total = 6000;
    c.startLoad(total, { batch: 20, everyMs: 2 });
    await c.runUntil("some outputs", () => c.received > 500, 10_000);
    const init = c.initializer!;
    const epoch0 = init.epoch;
    event(c);
    await c.runUntil(`round ${round} of the event`, () => init.epoch >= epoch0 + round && init.autoscaling, 10_000);
    c.kill(victim);
    await c.runUntil(`the event to finish without ${victim}`, () => quiescent(c) && c.live().every((w) => w.membership.join() === expected.join()), 30_000);
    ok(c, checkQuiescent(c));
    const before = c.received;
    await c.runUntil("outputs for new messages", () => c.received >= before + 1000, 10_000);
    await c.runUntil(`all ${total} messages sent`, () => c.sent >= total, 10_000);
    await c.runUntil("every output of a key the victim never had", () => c.receivedExact >= c.expected, 10_000);
    // What was routed to the victim before it died is lost (and logged); every other key is exact;
    // nothing is output twice or out of order.
    ok(c, checkOutputs(c));
  }

  for (const round of [1, 2, 4]) {
    test(`a joiner that dies in round ${round} of its grow: the grow completes without it`, async () => {
      await dieMidway(100 + round, 2, round, "w2", (c) => void c.spawn("w2", { role: "joiner", join: c.controlOf("w1") }), [INIT, "w1"]);
    });
  }

  test("one of two co-joiners dies mid-grow: the other joins", async () => {
    await dieMidway(
      7,
      2,
      2,
      "w3",
      (c) => {
        c.spawn("w2", { role: "joiner", join: c.controlOf(INIT), workerCount: 2 });
        c.spawn("w3", { role: "joiner", join: c.controlOf("w1"), workerCount: 2 });
      },
      [INIT, "w1", "w2"],
    );
  });

  test("a leaver that dies mid-shrink: the shrink completes and the rest keep its other slots", async () => {
    await dieMidway(8, 4, 2, "w2", (c) => void c.shrink(["w1", "w2"], 0), [INIT, "w3"]);
  });

  test("a full held queue pauses the sources until the state arrives; outputs stay exact", async () => {
    const c = cluster(9, 200, { high: 4, low: 1 });
    await c.start(2);
    const init = c.initializer!;
    c.startLoad(30_000, { batch: 100, everyMs: 1 });
    await c.runUntil("some outputs", () => c.received > 500, 10_000);
    for (const nm of ["w2", "w3"]) c.spawn(nm, { role: "joiner", join: c.controlOf("w1"), workerCount: 2 });
    await c.runUntil("grow to 4", () => c.formed(4) && !init.autoscaling, 30_000);
    const req = c.shrink(["w1"], 0);
    await c.runUntil("the shrink answer", () => req.answer !== undefined, 1000);
    expect(req.answer).toBe("Shrinking by 1 workers!");
    await c.runUntil("shrink to 3", () => init.membership.length === 3 && !init.autoscaling, 30_000);
    await c.runUntil(`all 30000 outputs`, () => c.received >= 30_000, 60_000);
    // The last outputs may come before every member has read the shrink's `complete`.
    await c.runUntil("every member at rest", () => quiescent(c), 10_000);
    expect(init.heldPauses).toBeGreaterThan(0);
    ok(c, checkOutputs(c));
    ok(c, checkQuiescent(c));
  });

  test("a multi-join whose co-joiner never comes is refused at the deadline; nothing changes; a later join works", async () => {
    const c = cluster(10, 100);
    await c.start(2);
    const init = c.initializer!;
    c.startLoad(3000, { batch: 10, everyMs: 5 });
    await c.runUntil("some outputs", () => c.received > 300, 10_000);
    const owners = Array.from(init.owners);
    const lone = c.spawn("w2", { role: "joiner", join: c.controlOf("w1"), workerCount: 2 });
    await c.runUntil("the coordinator to wait for joiners", () => init.coordinatorPhase === "waitingForJoiners", 1000);
    const since = c.now;
    await c.runUntil("the join deadline", () => !init.autoscaling, COORDINATOR_LIMITS.joinersWaitMs + 1000);
    expect(c.now - since).toBeGreaterThanOrEqual(COORDINATOR_LIMITS.joinersWaitMs - 1);
    await c.runUntil("the lone joiner to exit", () => !c.isAlive("w2"), 10_000);
    expect(c.exits.find((e) => e.name === "w2")?.code).not.toBe(0);
    expect(lone.isReady).toBe(false);
    for (const w of c.live()) expect(w.membership).toEqual([INIT, "w1"]);
    expect(Array.from(init.owners)).toEqual(owners);
    c.spawn("w3", { role: "joiner", join: c.controlOf(INIT) });
    await c.runUntil("grow to 3", () => c.formed(3) && !init.autoscaling, 30_000);
    await c.runUntil("all 3000 outputs", () => c.received >= 3000, 200_000);
    ok(c, checkOutputs(c));
    ok(c, checkQuiescent(c));
  });
});
