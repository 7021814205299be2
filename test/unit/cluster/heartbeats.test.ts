// Heartbeats: a watched member silent for the whole failure timeout is declared lost, once; any
// frame from it resets the count; this process's own stall blames nobody.
import { describe, expect, test } from "bun:test";
import { Heartbeats, HEARTBEAT_EVERY_MS } from "../../../src/cluster/heartbeats.ts";
import { ManualClock } from "../../sim/manual-clock.ts";

function setup(timeoutMs = 1000) {
  const clock = new ManualClock();
  // A process that stands still sees time jump between two ticks: `stall` moves its clock on
  // without running the timers in between.
  let offset = 0;
  const seen = { now: () => clock.now() + offset, epochMs: () => clock.now() + offset, setTimeout: clock.setTimeout.bind(clock), clearTimeout: clock.clearTimeout.bind(clock), sleep: clock.sleep.bind(clock) };
  const heard = new Map<number, number>();
  const sent: number[] = [];
  const silent: Array<[number, number]> = [];
  let watched = [1, 2];
  const hb = new Heartbeats(
    {
      clock: seen,
      pinged: () => [1, 2, 3],
      watched: () => watched,
      lastHeard: (id) => heard.get(id),
      send: (id) => void sent.push(id),
      silent: (id, ms) => {
        silent.push([id, ms]);
        watched = watched.filter((w) => w !== id);
      },
    },
    timeoutMs,
  );
  return { clock, heard, sent, silent, hb, stall: (ms: number) => (offset += ms) };
}

/** Advances in heartbeat steps, as a live process would (no stall). */
function run(clock: ManualClock, ms: number, each?: () => void): void {
  for (let t = 0; t < ms; t += HEARTBEAT_EVERY_MS) {
    each?.();
    clock.advance(HEARTBEAT_EVERY_MS);
  }
}

describe("heartbeats", () => {
  test("pings every pinged member each tick; a member heard from is never declared lost", () => {
    const { clock, heard, sent, silent, hb } = setup();
    hb.start();
    run(clock, 5000, () => {
      heard.set(1, clock.now());
      heard.set(2, clock.now());
    });
    expect(silent).toEqual([]);
    expect(sent.filter((id) => id === 3).length).toBeGreaterThanOrEqual(20);
  });

  test("a member silent for longer than the timeout is declared lost once; the others are not", () => {
    const { clock, heard, silent, hb } = setup();
    hb.start();
    run(clock, 3000, () => heard.set(1, clock.now()));
    expect(silent.map(([id]) => id)).toEqual([2]);
    expect(silent[0]![1]).toBeGreaterThan(1000);
    expect(silent[0]![1]).toBeLessThanOrEqual(1000 + HEARTBEAT_EVERY_MS);
  });

  test("this process standing still (a tick far too late) blames nobody; silence counts afresh", () => {
    const { clock, silent, hb, stall } = setup();
    hb.start();
    clock.advance(HEARTBEAT_EVERY_MS);
    stall(5000);
    clock.advance(HEARTBEAT_EVERY_MS); // the first tick after the stall
    expect(silent).toEqual([]);
    run(clock, 1500);
    expect(silent.map(([id]) => id).sort()).toEqual([1, 2]);
  });

  test("stop ends the ticks", () => {
    const { clock, sent, hb } = setup();
    hb.start();
    hb.stop();
    const n = sent.length;
    run(clock, 2000);
    expect(sent.length).toBe(n);
  });

  test("a timeout too short to mean anything is refused", () => {
    expect(() => setup(5)).toThrow(/too short/);
  });
});
