// Metrics on the deterministic scheduler: a leaver is unready before it hands a slot over, and
// what every worker counts agrees with what the receiver got.
import { afterEach, describe, expect, test } from "bun:test";
import { checkOutputs, quiescent } from "./checks.ts";
import { INIT, SimCluster } from "./sim-cluster.ts";
import { parseExposition, sumOf } from "../support/prometheus.ts";

let current: SimCluster | undefined;
afterEach(() => current?.dispose());

describe("simulation: metrics and readiness", () => {
  test("a leaver turns unready before it ships any state, and stays so until it exits", async () => {
    const c = (current = new SimCluster(41, { keys: 300 }));
    await c.start(3);
    c.startLoad(4000, { batch: 20, everyMs: 2 });
    await c.runUntil("some outputs", () => c.received > 500, 10_000);
    const w2 = c.workers.get("w2")!;
    expect(w2.readiness()).toEqual({ ready: true });
    expect(c.shrink(["w2"], 0).answer).toBeUndefined(); // answered when the initializer's event runs
    let shippedWhileReady = 0;
    let unreadyAt = -1;
    let readyAgain = false;
    await c.runUntil(
      "w2 to leave",
      () => {
        const ready = w2.readiness().ready;
        if (ready && w2.migration.stats.slotsOut > 0) shippedWhileReady = w2.migration.stats.slotsOut;
        if (!ready && unreadyAt < 0) unreadyAt = w2.migration.stats.slotsOut;
        if (ready && unreadyAt >= 0) readyAgain = true;
        return c.exits.some((e) => e.name === "w2");
      },
      30_000,
    );
    expect(shippedWhileReady).toBe(0);
    expect(unreadyAt).toBe(0);
    expect(readyAgain).toBe(false);
    expect(w2.migration.stats.slotsOut).toBeGreaterThan(0);
    expect(w2.statusReport().autoscale.phase).toBe("leaving");
  });

  test("every worker's exposition parses; sink and latency counts equal the outputs received", async () => {
    const c = (current = new SimCluster(42, { keys: 200 }));
    await c.start(3);
    const total = 3000;
    c.startLoad(total, { batch: 20, everyMs: 2 });
    await c.runUntil(`all ${total} sent and answered`, () => c.sent >= total && c.received >= total && quiescent(c), 30_000);
    expect(checkOutputs(c)).toBeUndefined();
    let sink = 0;
    let latency = 0;
    let read = 0;
    for (const w of c.live()) {
      const f = parseExposition(w.metricsText());
      sink += sumOf(f, "wallaroo_sink_messages_total");
      latency += sumOf(f, "wallaroo_latency_seconds_count");
      read += sumOf(f, "wallaroo_processing_seconds_count");
      // Every output's ingest time is known (a TIME frame precedes every data batch).
      expect(sumOf(f, "wallaroo_latency_seconds_count")).toBe(sumOf(f, "wallaroo_sink_messages_total"));
      expect(sumOf(f, "wallaroo_processing_seconds_count")).toBe(sumOf(f, "wallaroo_messages_in_total"));
    }
    expect(sink).toBe(c.received);
    expect(latency).toBe(c.received);
    const init = parseExposition(c.workers.get(INIT)!.metricsText());
    expect(sumOf(init, "wallaroo_source_messages_total")).toBe(total);
    expect(read).toBeGreaterThanOrEqual(total);
  });
});
