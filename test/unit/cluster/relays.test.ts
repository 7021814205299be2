// Requests forwarded to the coordinator, on virtual time: each settles exactly once (its answer,
// its deadline, a failed send, or failAll), late and forged answers are ignored, and at most
// RELAY_LIMITS.maxPending wait at a time.
import { describe, expect, test } from "bun:test";
import { RELAY_LIMITS, Relays } from "../../../src/cluster/relays.ts";
import { ManualClock } from "../../sim/manual-clock.ts";

type Outcome = { state: "pending" } | { state: "resolved"; value: unknown } | { state: "rejected"; message: string };

function setup() {
  const clock = new ManualClock();
  const relays = new Relays(clock);
  const sent: number[] = [];
  /** Asks with a send that succeeds (or not); tracks how the promise settled. */
  const ask = (sendOk = true) => {
    let reqId = -1;
    const outcome: { now: Outcome } = { now: { state: "pending" } };
    relays
      .ask<unknown>((id) => {
        reqId = id;
        sent.push(id);
        return sendOk;
      })
      .then(
        (value) => void (outcome.now = { state: "resolved", value }),
        (err: Error) => void (outcome.now = { state: "rejected", message: err.message }),
      );
    return { reqId, outcome };
  };
  return { clock, relays, sent, ask };
}

/** A settled promise runs its callbacks in a microtask: let them run. */
const microtasks = () => Promise.resolve();

describe("Relays", () => {
  test("the answer under a request's id resolves it, once; a second answer is ignored", async () => {
    const s = setup();
    const a = s.ask();
    const b = s.ask();
    expect(a.reqId).not.toBe(b.reqId);
    expect(s.clock.timers).toBe(2);
    s.relays.settle(b.reqId, { ok: "b" });
    s.relays.settle(b.reqId, { ok: "again" });
    await microtasks();
    expect(b.outcome.now).toEqual({ state: "resolved", value: { ok: "b" } });
    expect(a.outcome.now).toEqual({ state: "pending" });
    // The answered request's deadline is gone; the other's still runs.
    expect(s.clock.timers).toBe(1);
    s.relays.settle(a.reqId, "a");
    await microtasks();
    expect(a.outcome.now).toEqual({ state: "resolved", value: "a" });
    expect(s.clock.timers).toBe(0);
  });

  test("an answer to an id nobody asked for is ignored", async () => {
    const s = setup();
    const a = s.ask();
    s.relays.settle(a.reqId + 100, "forged");
    await microtasks();
    expect(a.outcome.now).toEqual({ state: "pending" });
  });

  test("no answer by the deadline fails the request; a late answer is ignored", async () => {
    const s = setup();
    const a = s.ask();
    s.clock.advance(RELAY_LIMITS.deadlineMs - 1);
    await microtasks();
    expect(a.outcome.now).toEqual({ state: "pending" });
    s.clock.advance(1);
    await microtasks();
    expect(a.outcome.now).toEqual({ state: "rejected", message: "The initializer did not answer within 15 s." });
    s.relays.settle(a.reqId, "late");
    await microtasks();
    expect(a.outcome.now.state).toBe("rejected");
  });

  test("a request that cannot be sent fails at once and leaves no timer", async () => {
    const s = setup();
    const a = s.ask(false);
    await microtasks();
    expect(a.outcome.now).toEqual({ state: "rejected", message: "The initializer is not reachable from this worker." });
    expect(s.clock.timers).toBe(0);
    expect(s.sent).toEqual([a.reqId]);
  });

  test(`at most ${RELAY_LIMITS.maxPending} wait at a time; the next is refused without being sent`, async () => {
    const s = setup();
    // A request that could not be sent holds no place.
    s.ask(false);
    const waiting = Array.from({ length: RELAY_LIMITS.maxPending }, () => s.ask());
    await microtasks();
    expect(waiting.every((r) => r.outcome.now.state === "pending")).toBe(true);
    const sentBefore = s.sent.length;
    const refused = s.ask();
    await microtasks();
    expect(refused.outcome.now).toEqual({ state: "rejected", message: "Too many requests are waiting for the initializer; try again." });
    expect(s.sent.length).toBe(sentBefore);
    expect(s.clock.timers).toBe(RELAY_LIMITS.maxPending);

    // Every way a request ends frees its place: an answer…
    s.relays.settle(waiting[0]!.reqId, "done");
    const next = s.ask();
    s.relays.settle(next.reqId, "next");
    await microtasks();
    expect(next.outcome.now).toEqual({ state: "resolved", value: "next" });
    // …its deadline…
    s.clock.advance(RELAY_LIMITS.deadlineMs);
    const full = Array.from({ length: RELAY_LIMITS.maxPending }, () => s.ask());
    // …or failAll.
    s.relays.failAll("stopping");
    const last = Array.from({ length: RELAY_LIMITS.maxPending }, () => s.ask());
    await microtasks();
    expect(full.filter((r) => r.outcome.now.state === "rejected" && r.outcome.now.message === "stopping").length).toBe(RELAY_LIMITS.maxPending);
    expect(last.every((r) => r.outcome.now.state === "pending")).toBe(true);
  });

  test("failAll fails every waiting request with the reason and clears their deadlines", async () => {
    const s = setup();
    const a = s.ask();
    const b = s.ask();
    s.relays.settle(a.reqId, "answered");
    const c = s.ask();
    s.relays.failAll("The worker is stopping.");
    await microtasks();
    expect([a, b, c].map((r) => r.outcome.now)).toEqual([
      { state: "resolved", value: "answered" },
      { state: "rejected", message: "The worker is stopping." },
      { state: "rejected", message: "The worker is stopping." },
    ]);
    expect(s.clock.timers).toBe(0);
    s.relays.settle(b.reqId, "late");
    s.clock.advance(RELAY_LIMITS.deadlineMs);
    await microtasks();
    expect(b.outcome.now.state).toBe("rejected");
  });
});
