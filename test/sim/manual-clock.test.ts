// The simulation's virtual clock: timers fire only when time is advanced past them, in due order.
import { describe, expect, test } from "bun:test";
import { ManualClock } from "./manual-clock.ts";

describe("ManualClock", () => {
  test("fires due timers in time order, ties in the order set, and not before", () => {
    const c = new ManualClock();
    const fired: string[] = [];
    c.setTimeout(() => fired.push(`b@${c.now()}`), 20);
    c.setTimeout(() => fired.push(`a@${c.now()}`), 10);
    c.setTimeout(() => fired.push(`a2@${c.now()}`), 10);
    const gone = c.setTimeout(() => fired.push("cleared"), 5);
    c.clearTimeout(gone);
    c.advance(9);
    expect(fired).toEqual([]);
    expect(c.now()).toBe(9);
    c.advance(100);
    expect(fired).toEqual(["a@10", "a2@10", "b@20"]);
    expect(c.now()).toBe(109);
    expect(c.timers).toBe(0);
  });

  test("a timer set by a firing timer fires in the same advance when it falls due", () => {
    const c = new ManualClock();
    const fired: number[] = [];
    c.setTimeout(() => c.setTimeout(() => fired.push(c.now()), 5), 5);
    c.advance(10);
    expect(fired).toEqual([10]);
  });

  test("sleep resolves once time passes", async () => {
    const c = new ManualClock();
    let done = false;
    const p = c.sleep(50).then(() => (done = true));
    c.advance(49);
    await Bun.sleep(0);
    expect(done).toBe(false);
    c.advance(1);
    await p;
    expect(done).toBe(true);
  });
});
