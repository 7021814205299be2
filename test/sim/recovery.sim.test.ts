// Which recovery a crash gets, on the deterministic scheduler. The simulated application has one
// stateful step and no other crossing, so a member that dies while nothing else runs is rolled
// back alone: the others keep their state, and the initializer replays only what its slots had.
// A member that dies during a grow rolls the whole cluster back. Either way every output is
// exact once the load is over.
import { afterEach, describe, expect, test } from "bun:test";
import { checkOutputs, checkQuiescent, quiescent } from "./checks.ts";
import { INIT, SimCluster } from "./sim-cluster.ts";

let current: SimCluster | undefined;
afterEach(() => current?.dispose());

function ok(c: SimCluster, problem: string | undefined): void {
  expect(problem === undefined ? undefined : `seed ${c.seed}: ${problem}`).toBeUndefined();
}

/** Trace lines of `node` (a worker's name) from line `from` on that contain `text`. */
function said(c: SimCluster, node: string, text: string | RegExp, from = 0): string[] {
  return c.sched.trace.lines.slice(from).filter((l) => l.slice(12, 23).trim() === node && (typeof text === "string" ? l.includes(text) : text.test(l)));
}

const COMMITTED = /checkpoint_committed: Checkpoint \d+ committed/;
const RESUMED = "No member is down: the sources resume.";

/**
 * Three resilient workers under load; once a checkpoint committed and more outputs came, `w1`
 * is killed (after `before` runs, if given) and started again; returns the trace line at the
 * kill. The load then finishes and every output must be exact.
 */
async function crashW1(seed: number, before?: (c: SimCluster) => Promise<void>): Promise<{ c: SimCluster; at: number }> {
  const c = new SimCluster(seed, { keys: 200, resilient: true, fullTrace: true, debugLog: true });
  current = c;
  await c.start(3);
  const total = 8000;
  c.startLoad(total, { batch: 20, everyMs: 2 });
  await c.runUntil("a checkpoint committed under load", () => c.received > 500 && said(c, INIT, COMMITTED).length >= 2, 20_000);
  const outputs = c.received;
  await c.runUntil("outputs after the checkpoint", () => c.received > outputs + 300, 10_000);
  if (before) await before(c);
  const at = c.sched.trace.lines.length;
  c.kill("w1");
  await c.runUntil("w1 down", () => said(c, INIT, /Worker w1 is down|worker w1 died during/, at).length > 0, 20_000);
  c.restart("w1");
  await c.runUntil("the recovery to end", () => said(c, INIT, RESUMED, at).length > 0 && quiescent(c), 30_000);
  ok(c, checkQuiescent(c));
  await c.runUntil(`all ${total} messages sent`, () => c.sent >= total, 20_000);
  await c.runUntil("every output", () => c.receivedExact >= c.expected, 20_000);
  ok(c, checkOutputs(c));
  return { c, at };
}

describe("simulation: which recovery a crash gets", () => {
  for (const seed of [31, 32, 33]) {
    test(`a member that dies while nothing else runs rolls back alone; the others keep their state (seed ${seed})`, async () => {
      const { c, at } = await crashW1(seed);
      const lines = {
        alone: said(c, INIT, /Rolling w1 back to checkpoint \d+ \(epoch \d+\); the input from position \d+ will be replayed for its slots/, at).length,
        cluster: said(c, INIT, "Rolling the cluster back", at).length,
        rolledBack: ["w1", "w2", INIT].map((n) => said(c, n, "Rolled back to checkpoint", at).length),
        kept: ["w1", "w2", INIT].map((n) => said(c, n, "Kept this worker's state through w1's rollback", at).length),
      };
      expect(lines).toEqual({ alone: 1, cluster: 0, rolledBack: [1, 0, 0], kept: [0, 1, 1] });
      // Replayed: every message since the checkpoint was read, only w1's were forwarded.
      const replayed = said(c, INIT, "Replayed", at);
      expect(replayed.length).toBe(1);
      const m = replayed[0]!.match(/Replayed (\d+) messages from the input log \(positions \d+ to \d+\), (\d+) of them to w1, the rest skipped,/);
      expect(m).not.toBeNull();
      const [read, forwarded] = [Number(m![1]), Number(m![2])];
      expect(forwarded).toBeGreaterThan(0);
      expect(forwarded).toBeLessThan(read);
    });
  }

  test("a member that dies during a grow rolls the whole cluster back", async () => {
    const { c, at } = await crashW1(34, async (c) => {
      const epoch = c.initializer!.epoch;
      c.spawn("w3", { role: "joiner", join: c.controlOf(INIT) });
      await c.runUntil("the grow to move slots", () => c.initializer!.epoch > epoch && c.initializer!.autoscaling, 20_000);
    });
    const lines = {
      alone: said(c, INIT, "Rolling w1 back", at).length,
      cluster: said(c, INIT, "Rolling the cluster back", at).length,
      kept: said(c, "w2", "Kept this worker's state", at).length,
      rolledBack: ["w1", "w2", INIT].map((n) => said(c, n, "Rolled back to checkpoint", at).length),
    };
    expect(lines).toEqual({ alone: 0, cluster: 1, kept: 0, rolledBack: [1, 1, 1] });
  });
});
