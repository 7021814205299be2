// The system clock's 0 ms timers are immediates: they run, in order, before any real timer, and
// clearTimeout cancels them like any other.
import { expect, test } from "bun:test";
import { systemClock } from "../../src/clock.ts";

test("a 0 ms timer runs before a 5 ms one set earlier, and sleep(0) resolves", async () => {
  const seen: string[] = [];
  const done = new Promise<void>((resolve) => {
    systemClock.setTimeout(() => {
      seen.push("5ms");
      resolve();
    }, 5);
  });
  systemClock.setTimeout(() => seen.push("0ms a"), 0);
  systemClock.setTimeout(() => seen.push("0ms b"), 0);
  await systemClock.sleep(0);
  seen.push("slept");
  await done;
  expect(seen).toEqual(["0ms a", "0ms b", "slept", "5ms"]);
});

test("clearTimeout cancels a 0 ms timer and a real one", async () => {
  let fired = 0;
  const a = systemClock.setTimeout(() => fired++, 0);
  const b = systemClock.setTimeout(() => fired++, 1);
  systemClock.clearTimeout(a);
  systemClock.clearTimeout(b);
  systemClock.clearTimeout(undefined);
  // Timers run in order of their due time: once a later one ran, the cancelled ones would have.
  await new Promise<void>((resolve) => systemClock.setTimeout(resolve, 5));
  expect(fired).toBe(0);
});
