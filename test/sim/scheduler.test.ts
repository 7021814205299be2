// The simulation's scheduler: virtual time, order (time, then scheduling order), per-process
// events (a killed process's never run, a paused one's wait), microtasks settled between events.
import { describe, expect, test } from "bun:test";
import { deriveRandom, Scheduler } from "./scheduler.ts";

async function drain(s: Scheduler): Promise<void> {
  while (await s.step()) {}
}

describe("Scheduler", () => {
  test("runs events in time order, ties in the order scheduled, and moves time only forward", async () => {
    const s = new Scheduler(1);
    const a = s.process("a");
    const seen: string[] = [];
    s.schedule(a, 20, "x", () => seen.push(`b@${s.now()}`));
    s.schedule(a, 10, "x", () => seen.push(`a@${s.now()}`));
    s.schedule(a, 10, "x", () => seen.push(`a2@${s.now()}`));
    s.cancel(s.schedule(a, 5, "x", () => seen.push("cancelled")));
    await drain(s);
    expect(seen).toEqual(["a@10", "a2@10", "b@20"]);
    expect(s.now()).toBe(20);
  });

  test("a process's clock: setTimeout, clearTimeout and sleep are its events", async () => {
    const s = new Scheduler(1);
    const clock = s.clockFor(s.process("a"));
    const seen: number[] = [];
    clock.setTimeout(() => seen.push(clock.now()), 30);
    clock.clearTimeout(clock.setTimeout(() => seen.push(-1), 10));
    void clock.sleep(15).then(() => seen.push(clock.now()));
    await drain(s);
    expect(seen).toEqual([15, 30]);
  });

  test("every microtask an event starts runs before the next event", async () => {
    const s = new Scheduler(1);
    const a = s.process("a");
    const seen: string[] = [];
    s.schedule(a, 1, "x", () => {
      void Promise.resolve()
        .then(() => Promise.resolve())
        .then(() => queueMicrotask(() => seen.push("deep microtask of 1")));
    });
    s.schedule(a, 1, "x", () => seen.push("event 2"));
    await drain(s);
    expect(seen).toEqual(["deep microtask of 1", "event 2"]);
  });

  test("a killed process's events are dropped; a revived name is a new process", async () => {
    const s = new Scheduler(1);
    const seen: string[] = [];
    const old = s.process("a");
    s.schedule(old, 10, "x", () => seen.push("old"));
    s.kill("a");
    expect(() => s.revive("b")).not.toThrow();
    const fresh = s.revive("a");
    expect(fresh.incarnation).toBe(2);
    s.schedule(fresh, 5, "x", () => seen.push("new"));
    await drain(s);
    expect(seen).toEqual(["new"]);
    expect(() => s.revive("a")).toThrow("still running");
  });

  test("a paused process runs nothing until resumed, then what it missed, in order", async () => {
    const s = new Scheduler(1);
    const a = s.process("a");
    const b = s.process("b");
    const seen: string[] = [];
    s.pause("a");
    s.schedule(a, 1, "x", () => seen.push(`a1@${s.now()}`));
    s.schedule(a, 2, "x", () => seen.push(`a2@${s.now()}`));
    s.schedule(b, 3, "x", () => seen.push(`b@${s.now()}`));
    s.schedule(undefined, 50, "x", () => s.resume("a"));
    await drain(s);
    expect(seen).toEqual(["b@3", "a1@50", "a2@50"]);
  });

  test("an exception in an event is that process's failure, and the run goes on", async () => {
    const s = new Scheduler(1);
    const a = s.process("a");
    const seen: string[] = [];
    s.schedule(a, 1, "x", () => {
      throw new Error("boom");
    });
    s.schedule(a, 2, "x", () => seen.push("after"));
    await drain(s);
    expect(s.failures.map((f) => [f.node, (f.error as Error).message, f.at])).toEqual([["a", "boom", 1]]);
    expect(seen).toEqual(["after"]);
  });

  test("an unhandled rejection during an event is that process's failure (outside bun test, which reports it itself)", () => {
    const script = `
      import { Scheduler } from ${JSON.stringify(import.meta.dir + "/scheduler.ts")};
      const s = new Scheduler(1);
      s.schedule(s.process("a"), 1, "x", () => void Promise.reject(new Error("rejected")));
      while (await s.step()) {}
      console.log(JSON.stringify(s.failures.map((f) => [f.node, f.error.message])));`;
    const r = Bun.spawnSync([process.execPath, "-e", script]);
    expect(r.stdout.toString().trim()).toBe('[["a","rejected"]]');
  });

  test("a real timer or a wall-clock read during an event is that process's failure", async () => {
    const s = new Scheduler(1);
    s.schedule(s.process("a"), 1, "x", () => void Date.now());
    s.schedule(s.process("b"), 2, "x", () => void Promise.resolve().then(() => clearTimeout(setTimeout(() => {}, 1))));
    await drain(s);
    expect(s.failures.map((f) => [f.node, (f.error as Error).message])).toEqual([
      ["a", "Date.now during a simulated run: use the Clock"],
      ["b", "setTimeout during a simulated run: use the Clock"],
    ]);
    expect(typeof Date.now()).toBe("number");
  });

  test("random streams: the same seed gives the same numbers; the three streams differ", () => {
    const x = deriveRandom(7);
    const y = deriveRandom(7);
    const take = (r: () => number) => Array.from({ length: 5 }, r);
    const xs = take(x.scenario);
    expect(take(y.scenario)).toEqual(xs);
    expect(take(x.network)).not.toEqual(take(x.load));
    expect(take(deriveRandom(8).scenario)).not.toEqual(xs);
  });
});
