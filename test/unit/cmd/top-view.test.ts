// What `wallaroo top` computes from two answers: rates, the p99 of the interval, phases.
import { describe, expect, test } from "bun:test";
import { describeAutoscale, renderTop, topView } from "../../../cmd/commands/_top-view.ts";
import { bucketIndex } from "../../../src/metrics/histogram.ts";
import type { ClusterStatuses, WorkerStatus } from "../../../src/metrics/status.ts";

function worker(name: string, over: Partial<WorkerStatus> = {}): WorkerStatus {
  return {
    name,
    role: name === "initializer" ? "initializer" : "worker",
    ready: true,
    epoch: 1,
    members: ["initializer", "w1"],
    down: [],
    slots: 512,
    keys: 10,
    held: 0,
    slots_in_transit: 0,
    messages_in: 0,
    messages_out: 0,
    sources_paused: false,
    latency: { count: 0, sum: 0, buckets: [] },
    autoscale: { phase: "idle" },
    ...over,
  };
}
const answer = (...workers: WorkerStatus[]): ClusterStatuses => ({ workers, missing: [] });

describe("top view", () => {
  test("rates and p99 are over the interval between the two answers", () => {
    const fast = bucketIndex(0.001);
    const slow = bucketIndex(0.1);
    const before = answer(worker("initializer", { messages_in: 1000, messages_out: 500, latency: { count: 500, sum: 0, buckets: [[slow, 500]] } }));
    const after = answer(
      worker("initializer", { messages_in: 3000, messages_out: 1500, latency: { count: 1500, sum: 0, buckets: [[fast, 1000], [slow, 500]] } }),
      worker("w1"),
    );
    const v = topView(after, before, 2);
    expect(v.workers[0]).toMatchObject({ name: "initializer", in_per_s: 1000, out_per_s: 500 });
    // The 1000 outputs of the interval were all fast; the slow ones before it do not count.
    expect(v.workers[0]!.p99_ms).toBeLessThanOrEqual(1);
    expect(v.workers[0]!.p99_ms).toBeGreaterThan(0.5);
    // A worker not in the first answer has no rate yet.
    expect(v.workers[1]).toMatchObject({ name: "w1", in_per_s: null, p99_ms: null });
    expect(v.cluster).toBe("idle");
  });

  test("a counter that went down (a restart) has no rate", () => {
    const v = topView(answer(worker("w1", { messages_in: 10 })), answer(worker("w1", { messages_in: 99 })), 1);
    expect(v.workers[0]!.in_per_s).toBeNull();
  });

  test("phases with their progress", () => {
    expect(describeAutoscale({ phase: "migrating", what: "grow", slots_moved: 120, slots_total: 512 })).toBe("migrating (grow) 120/512 slots");
    expect(describeAutoscale({ phase: "waitingForJoiners", joiners_arrived: 1, joiners_expected: 2 })).toBe("waitingForJoiners 1/2");
    expect(describeAutoscale({ phase: "leaving" })).toBe("leaving");
  });

  test("the screen: a heading, aligned columns, missing members named", () => {
    const v = topView({ workers: [worker("initializer")], missing: ["w1"] }, undefined, 1);
    const text = renderTop(v, "h:1");
    expect(text.split("\n")[0]).toBe("wallaroo top — h:1 — 1 worker answered, no answer from w1; autoscale: idle; rates over 1 s");
    expect(text).toContain("worker       role         ready  slots  keys  in/s  out/s  p99 ms  held  autoscale");
    expect(text).toContain("initializer  initializer  yes      512    10     -      -       -     0  idle");
  });
});
