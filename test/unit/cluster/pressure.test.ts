// Backpressure decisions: the sources pause while this worker's held queue is above the high mark
// (until it falls below the low mark), while any member reports its own queue high, while a peer
// or the sink is congested; a congested sink also pauses inbound data, and nothing else does.
import { describe, expect, test } from "bun:test";
import { InvariantError } from "../../../src/assert.ts";
import { Pressure, type PressureHost } from "../../../src/cluster/pressure.ts";
import { logEvents } from "./support.ts";

logEvents();

class FakeSource {
  isPaused = false;
  pauses = 0;
  resumes = 0;
  pause(): void {
    if (!this.isPaused) this.pauses++;
    this.isPaused = true;
  }
  resume(): void {
    if (this.isPaused) this.resumes++;
    this.isPaused = false;
  }
}

const LIMITS = { high: 10, low: 4 };

function setup(sourceCount = 2) {
  const w = { sink: false, peers: false, held: 0 };
  const sources = Array.from({ length: sourceCount }, () => new FakeSource());
  const inbound: boolean[] = [];
  const reported: boolean[] = [];
  const host: PressureHost = {
    sinkCongested: () => w.sink,
    peersCongested: () => w.peers,
    heldCount: () => w.held,
    sources: () => sources,
    pauseInbound: (paused) => void inbound.push(paused),
    reportHeld: (high) => void reported.push(high),
  };
  const p = new Pressure(host, LIMITS);
  const paused = () => sources.map((s) => s.isPaused);
  /** Changes the world, runs a check and says which sources are paused after it. */
  const after = (change: Partial<typeof w>) => {
    Object.assign(w, change);
    p.check();
    return paused();
  };
  return { w, host, p, sources, inbound, reported, paused, after };
}

describe("Pressure: held messages", () => {
  test("sources pause above the high mark and resume only below the low mark", () => {
    const s = setup();
    expect(s.after({ held: LIMITS.high })).toEqual([false, false]);
    expect(s.after({ held: LIMITS.high + 1 })).toEqual([true, true]);
    expect(s.reported).toEqual([true]);
    // Between the marks, and at the low mark itself, they stay paused.
    for (const held of [LIMITS.high, LIMITS.low + 1, LIMITS.low]) expect(s.after({ held })).toEqual([true, true]);
    expect(s.after({ held: LIMITS.low - 1 })).toEqual([false, false]);
    expect(s.reported).toEqual([true, false]);
    // Between the marks on the way up again: still running.
    expect(s.after({ held: LIMITS.low + 1 })).toEqual([false, false]);
    expect(s.reported).toEqual([true, false]);
  });

  test("heldPauses counts sources paused for held messages, not re-checks while they are paused", () => {
    const s = setup(2);
    s.after({ held: LIMITS.high + 1 });
    s.p.check();
    expect(s.p.heldPauses).toBe(2);
    s.after({ held: 0 });
    s.p.memberHeld(5, true);
    expect(s.p.heldPauses).toBe(4);
    // A pause for the sink alone is not a held pause.
    s.p.memberHeld(5, false);
    expect(s.after({ sink: true })).toEqual([true, true]);
    expect(s.p.heldPauses).toBe(4);
  });

  test("a worker without sources still reports crossing its marks, once per crossing", () => {
    const s = setup(0);
    s.after({ held: LIMITS.high + 1 });
    s.p.check();
    s.after({ held: 0 });
    s.p.check();
    expect(s.reported).toEqual([true, false]);
    expect(s.p.heldPauses).toBe(0);
  });

  test("the low mark must be below the high mark", () => {
    const { host } = setup();
    expect(() => new Pressure(host, { high: 5, low: 5 })).toThrow(InvariantError);
    expect(() => new Pressure(host, { high: 5, low: 6 })).toThrow(InvariantError);
  });
});

describe("Pressure: members' reports", () => {
  test("any member's high report pauses the sources until every one is back low", () => {
    const s = setup();
    s.p.memberHeld(1, true);
    expect(s.paused()).toEqual([true, true]);
    s.p.memberHeld(2, true);
    s.p.memberHeld(1, false);
    expect(s.paused()).toEqual([true, true]);
    s.p.memberHeld(2, false);
    expect(s.paused()).toEqual([false, false]);
    // Reports from others are not this worker's own crossing.
    expect(s.reported).toEqual([]);
  });

  test("forgetting a member that held the sources back resumes them; forgetting another changes nothing", () => {
    const s = setup();
    s.p.memberHeld(1, true);
    s.p.forget(2);
    expect(s.paused()).toEqual([true, true]);
    s.p.forget(1);
    expect(s.paused()).toEqual([false, false]);
    s.sources[0]!.pause();
    // No check runs for a member that held nothing back.
    s.p.forget(1);
    expect(s.paused()).toEqual([true, false]);
  });
});

describe("Pressure: congestion", () => {
  test("a congested sink pauses the sources and inbound data, and resumes both when it drains", () => {
    const s = setup();
    expect(s.after({ sink: true })).toEqual([true, true]);
    s.p.check();
    expect(s.inbound).toEqual([true]);
    expect(s.p.inboundPausedForSink).toBe(true);
    expect(s.after({ sink: false })).toEqual([false, false]);
    expect(s.inbound).toEqual([true, false]);
    expect(s.p.inboundPausedForSink).toBe(false);
  });

  test("held messages and congested peers pause the sources but never inbound data", () => {
    const s = setup();
    expect(s.after({ peers: true })).toEqual([true, true]);
    expect(s.after({ peers: false })).toEqual([false, false]);
    expect(s.after({ held: LIMITS.high + 1 })).toEqual([true, true]);
    s.p.memberHeld(3, true);
    expect(s.inbound).toEqual([]);
    expect(s.p.inboundPausedForSink).toBe(false);
  });

  test("the sources stay paused while any cause remains", () => {
    const s = setup();
    s.w.sink = true;
    s.w.peers = true;
    s.p.memberHeld(1, true);
    expect(s.after({ sink: false })).toEqual([true, true]);
    expect(s.after({ peers: false })).toEqual([true, true]);
    s.p.memberHeld(1, false);
    expect(s.paused()).toEqual([false, false]);
  });
});

describe("down members and holds", () => {
  test("the sources stay paused while any member is down, and while any hold is on; inbound data is not paused for either", () => {
    const { p, paused, inbound } = setup();
    p.setDown([3]);
    expect(paused()).toEqual([true, true]);
    expect(p.anyDown).toBe(true);
    p.hold("checkpoint", true);
    p.setDown([]);
    expect(paused()).toEqual([true, true]);
    p.hold("checkpoint", false);
    expect(paused()).toEqual([false, false]);
    expect(inbound).toEqual([]);
  });

  test("a member forgotten (left or removed) does not end its down mark: only the coordinator does", () => {
    const { p, paused } = setup();
    p.setDown([3]);
    p.forget(3);
    expect(paused()).toEqual([true, true]);
    p.setDown([]);
    expect(paused()).toEqual([false, false]);
  });
});
