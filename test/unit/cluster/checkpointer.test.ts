// Checkpointer: pause, rounds, every member written, then commit and resume; one at a time;
// abandoned on a deadline or when asked, and tried again after the interval.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { CHECKPOINT_LIMITS, Checkpointer } from "../../../src/cluster/checkpointer.ts";
import { configureLog } from "../../../src/log.ts";
import { ManualClock } from "../../sim/manual-clock.ts";

beforeAll(() => configureLog({ level: "silent" }));
afterAll(() => configureLog({ level: "info" }));

function setup(rounds = 2, participants = [0, 1, 2]) {
  const clock = new ManualClock();
  const events: string[] = [];
  let position = 100;
  let can = true;
  const cp = new Checkpointer(
    {
      clock,
      selfId: 0,
      participants: () => participants,
      canStart: () => can,
      hold: (on) => void events.push(on ? "hold" : "release"),
      position: () => position,
      beginRound: (k, r) => void events.push(`round ${k}/${r}`),
      snapshot: (k) => void events.push(`snapshot ${k}`),
      commit: (k, p) => void events.push(`commit ${k} at ${p}`),
    },
    1000,
    rounds,
  );
  return { clock, events, cp, setPosition: (p: number) => (position = p), setCan: (c: boolean) => (can = c) };
}

const allDone = (cp: Checkpointer, k: number, r: number, ids = [0, 1, 2]) => ids.forEach((id) => cp.onRoundDone(id, k, r));
const allWritten = (cp: Checkpointer, k: number, ids = [0, 1, 2]) => ids.forEach((id) => cp.onWritten(id, k, 1, 10));
/** Checkpoint `k` of a one-member cluster without rounds, `ms` after now: its images taken and written. */
function takeFor(clock: ManualClock, cp: Checkpointer, k: number, ms: number): void {
  clock.advance(ms);
  cp.onCaptured(0, k);
  cp.onWritten(0, k, 1, 10);
}
/** Checkpoint `k` starts `ms` from now, and not a millisecond before. */
function startsIn(clock: ManualClock, events: string[], k: number, ms: number): void {
  clock.advance(ms - 1);
  expect(events).not.toContain(`snapshot ${k}`);
  clock.advance(1);
  expect(events.at(-1)).toBe(`snapshot ${k}`);
}

describe("checkpointer", () => {
  test("pause, every round done by every member, every member written, then commit at the paused position and resume", () => {
    const { clock, events, cp } = setup();
    cp.start();
    clock.advance(1000);
    expect(events).toEqual(["hold", "round 1/1"]);
    cp.onRoundDone(0, 1, 1);
    cp.onRoundDone(1, 1, 1);
    expect(events.at(-1)).toBe("round 1/1");
    cp.onRoundDone(2, 1, 1);
    expect(events.at(-1)).toBe("round 1/2");
    allDone(cp, 1, 2);
    expect(events.at(-1)).toBe("snapshot 1");
    // The sources go on once every member has taken its images, before they are written.
    cp.onCaptured(0, 1);
    cp.onCaptured(1, 1);
    expect(events.at(-1)).toBe("snapshot 1");
    cp.onCaptured(2, 1);
    expect(events.at(-1)).toBe("release");
    cp.onWritten(0, 1, 1, 10);
    cp.onWritten(1, 1, 1, 10);
    expect(events).not.toContain("commit 1 at 100");
    cp.onWritten(2, 1, 1, 10);
    expect(events.slice(-2)).toEqual(["commit 1 at 100", "release"]);
    expect(cp.lastCommitted).toBe(1);
    expect(cp.busy).toBe(false);
  });

  test("the next one starts an interval after this one started, and at least half an interval after its commit", () => {
    const { clock, events, cp } = setup(0, [0]);
    cp.start();
    clock.advance(1000);
    expect(events).toEqual(["hold", "snapshot 1"]);
    takeFor(clock, cp, 1, 300);
    // Started at 1000, committed at 1300: the next starts at 2000.
    startsIn(clock, events, 2, 700);
    // Took 800 ms (more than half the interval): the next waits half an interval after the commit.
    takeFor(clock, cp, 2, 800);
    startsIn(clock, events, 3, 500);
  });

  test("one longer than the interval is followed half an interval after its commit; one started by now() counts from its start", () => {
    const { clock, events, cp } = setup(0, [0]);
    cp.start();
    clock.advance(1000);
    takeFor(clock, cp, 1, 1500);
    startsIn(clock, events, 2, 500);
    // Exactly half an interval: both rules say the same.
    takeFor(clock, cp, 2, 500);
    startsIn(clock, events, 3, 500);
    takeFor(clock, cp, 3, 0);
    // A grow's checkpoint, right away: the next starts an interval after it started.
    clock.advance(200);
    cp.now();
    expect(events.at(-1)).toBe("snapshot 4");
    takeFor(clock, cp, 4, 100);
    startsIn(clock, events, 5, 900);
  });

  test("answers of another checkpoint or round count for nothing", () => {
    const { clock, events, cp } = setup(1);
    cp.start();
    clock.advance(1000);
    allDone(cp, 2, 1);
    allDone(cp, 1, 2);
    expect(events.at(-1)).toBe("round 1/1");
    allDone(cp, 1, 1);
    allWritten(cp, 2);
    expect(events.at(-1)).toBe("snapshot 1");
  });

  test("not while the host says no: it tries again after the interval", () => {
    const { clock, events, cp, setCan } = setup(1);
    setCan(false);
    cp.start();
    clock.advance(3000);
    expect(events).toEqual([]);
    setCan(true);
    clock.advance(1000);
    expect(events).toEqual(["hold", "round 1/1"]);
  });

  test("abandoned at the deadline: the sources resume, the next one gets a new number", () => {
    const { clock, events, cp } = setup(1);
    cp.start();
    clock.advance(1000);
    allDone(cp, 1, 1);
    clock.advance(CHECKPOINT_LIMITS.deadlineMs);
    expect(events.at(-1)).toBe("release");
    expect(cp.abandoned).toBe(1);
    allWritten(cp, 1); // too late
    expect(events.filter((e) => e.startsWith("commit"))).toEqual([]);
    clock.advance(1000);
    expect(events.at(-1)).toBe("round 2/1");
  });

  test("now() starts one at once (after a grow or shrink); abandon() gives it up", () => {
    const { events, cp } = setup(1);
    cp.start();
    cp.now();
    expect(events).toEqual(["hold", "round 1/1"]);
    cp.now(); // one in flight at a time
    expect(events).toEqual(["hold", "round 1/1"]);
    cp.abandon("a grow starts");
    expect(events.at(-1)).toBe("release");
    expect(cp.busy).toBe(false);
  });
});

describe("checkpointer, one-hop pipelines (no rounds)", () => {
  test("this worker takes its images and the sources go on; the commit waits for every member's write", () => {
    const { clock, events, cp } = setup(0);
    cp.start();
    clock.advance(1000);
    expect(events).toEqual(["hold", "snapshot 1"]);
    cp.onCaptured(1, 1); // a member's capture does not hold the sources
    expect(events.at(-1)).toBe("snapshot 1");
    cp.onCaptured(0, 1);
    expect(events.at(-1)).toBe("release");
    cp.onWritten(0, 1, 1, 10);
    cp.onWritten(1, 1, 1, 10);
    expect(events.filter((e) => e.startsWith("commit"))).toEqual([]);
    cp.onWritten(2, 1, 1, 10);
    expect(events.slice(-2)).toEqual(["commit 1 at 100", "release"]);
  });
});
