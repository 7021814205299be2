// --metrics on the compiled binary: /metrics is valid exposition whose counters follow the traffic
// and agree with the receiver, /readyz turns unready on a leaver, /status shows an autoscale in
// progress, `wallaroo top` sees every member, and nothing a client sends hurts the worker.
import { describe, expect, test } from "bun:test";
import type { WorkerStatus } from "../../src/metrics/status.ts";
import { Cluster, type Member } from "../support/cluster.ts";
import { AlphabetWorkload } from "../support/load.ts";
import { HOST, run } from "../support/process.ts";
import { CountLines } from "../support/receiver.ts";
import { parseExposition, sampleValue, sumOf, type ParsedFamily } from "../support/prometheus.ts";
import { poll } from "../support/wait.ts";
import { cleanUpAfterEach, closedPort, rawConnection, receiver, sender, sendAll } from "./fixtures.ts";

cleanUpAfterEach();

const url = (m: Member, path: string) => `http://${HOST}:${m.metrics}${path}`;

/** A worker's /metrics, checked by the strict parser. */
async function scrape(m: Member): Promise<Map<string, ParsedFamily>> {
  const r = await fetch(url(m, "/metrics"));
  expect(r.status).toBe(200);
  expect(r.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
  return parseExposition(await r.text());
}

async function status(m: Member): Promise<WorkerStatus> {
  const r = await fetch(url(m, "/status"));
  expect(r.status).toBe(200);
  return (await r.json()) as WorkerStatus;
}

/** Sums `name` over every member's exposition. */
const total = (scrapes: Map<string, ParsedFamily>[], name: string, labels: Record<string, string> = {}) => scrapes.reduce((a, f) => a + sumOf(f, name, labels), 0);

describe("metrics", () => {
  test("counters follow the traffic and agree with the receiver; top sees every member; bad requests hurt nothing", async () => {
    const rx = receiver(new CountLines());
    const c = await new Cluster("alphabet", rx.port, { metrics: true }).start(2);
    const init = c.initializer;
    const w1 = c.members.get("w1")!;
    const idle = await scrape(init);
    expect(sampleValue(idle, "wallaroo_source_messages_total", { worker: "initializer", source: "alphabet" })).toBe(0);
    expect(sampleValue(idle, "wallaroo_ready")).toBe(1);
    expect(sampleValue(idle, "wallaroo_slots") + sampleValue(await scrape(w1), "wallaroo_slots")).toBe(1024);

    // Under load, top shows traffic through both workers.
    const s = await sender(c.sourcePort, new AlphabetWorkload(5));
    void s.atRate(20_000);
    await rx.waitLines(2000, 10_000, "load to flow");
    const top = await run(["top", "--json", "--interval", "0.5", "--external", `${HOST}:${w1.external}`]);
    expect(top.code).toBe(0);
    const view = JSON.parse(top.stdout) as { workers: { name: string; slots: number; in_per_s: number; out_per_s: number; p99_ms: number | null }[]; missing: string[]; cluster: string };
    expect(view.workers.map((w) => w.name).sort()).toEqual(["initializer", "w1"]);
    expect(view.missing).toEqual([]);
    expect(view.cluster).toBe("idle");
    expect(view.workers.reduce((a, w) => a + w.slots, 0)).toBe(1024);
    const topInit = view.workers.find((w) => w.name === "initializer")!;
    expect(topInit.in_per_s).toBeGreaterThan(1000);
    for (const w of view.workers) {
      expect(w.out_per_s).toBeGreaterThan(0);
      expect(w.p99_ms).not.toBeNull();
    }
    await s.stop();
    await rx.waitLines(s.sent, 20_000, `all ${s.sent} outputs`);

    // Every output the receiver has was written, and counted, before it left its worker.
    const n = s.sent;
    const all = await Promise.all([scrape(init), scrape(w1)]);
    const [fi, fw] = all as [Map<string, ParsedFamily>, Map<string, ParsedFamily>];
    expect(rx.lines).toBe(n);
    expect(sampleValue(fi, "wallaroo_source_messages_total", { source: "alphabet" })).toBe(n);
    expect(sampleValue(fi, "wallaroo_processing_seconds_count", { source: "alphabet" })).toBe(n);
    expect(total(all, "wallaroo_sink_messages_total")).toBe(n);
    expect(total(all, "wallaroo_latency_seconds_count")).toBe(n);
    // One sampled run per chunk at most, and some: every worker ran the step.
    for (const f of all) {
      const sampled = sampleValue(f, "wallaroo_step_seconds_count", { step: "add votes" });
      expect(sampled).toBeGreaterThan(0);
      expect(sampled).toBeLessThan(n / 2);
    }
    // What the initializer routed to w1 is what w1 read from it, and every record was timed.
    const routed = sampleValue(fi, "wallaroo_data_sent_messages_total", { peer: "w1" });
    expect(routed).toBeGreaterThan(0);
    expect(sampleValue(fw, "wallaroo_data_received_messages_total", { peer: "initializer" })).toBe(routed);
    expect(sampleValue(fw, "wallaroo_processing_seconds_count", { peer: "initializer" })).toBe(routed);
    expect(sampleValue(fw, "wallaroo_data_received_bytes_total", { peer: "initializer" })).toBe(sampleValue(fi, "wallaroo_data_sent_bytes_total", { peer: "w1" }));
    expect(sampleValue(fw, "wallaroo_sink_messages_total")).toBe(routed);
    // The sink's bytes are what the receiver read.
    expect(total(all, "wallaroo_sink_bytes_total")).toBe(rx.conns.reduce((a, conn) => a + conn.bytes, 0));

    // An unknown path, a method, garbage and an endless header: answered or closed, never fatal.
    expect((await fetch(url(init, "/nope"))).status).toBe(404);
    expect((await fetch(url(init, "/metrics"), { method: "POST", body: "x" })).status).toBe(405);
    for (const bytes of ["GARBAGE\r\n\r\n", "\x00\xff\xfe\r\n\r\n", `GET /metrics HTTP/1.1\r\nX: ${"a".repeat(200_000)}\r\n\r\n`]) {
      const raw = await rawConnection(init.metrics);
      raw.socket.write(bytes);
      raw.socket.end();
      await raw.waitClosed(5000);
    }
    expect((await fetch(url(init, "/healthz"))).status).toBe(200);
    // A request of a type nobody knows on the external port is refused, and counted.
    const ext = await rawConnection(init.external);
    ext.socket.write(new Uint8Array([0, 0, 0, 2, 0x03, 0xe7]));
    await poll("the undecodable request to be counted", 5000, async () => sampleValue(await scrape(init), "wallaroo_external_refused_total", { reason: "undecodable" }) === 1);
    ext.socket.end();
    const more = await sendAll(c.sourcePort, new AlphabetWorkload(6), 1000, 20_000);
    await rx.waitLines(n + more.sent, 10_000, "outputs after the bad requests");
    expect(init.child.exitCode).toBeNull();
    expect(sampleValue(await scrape(init), "wallaroo_source_messages_total", { source: "alphabet" })).toBe(n + 1000);
  }, 90_000);

  test("/readyz turns unready on a leaver as the shrink starts, and it still exits 0", async () => {
    const rx = receiver(new CountLines());
    const c = await new Cluster("alphabet", rx.port, { metrics: true }).start(2);
    // w2's receiver is gone: it keeps its outputs and, leaving, waits for it up to 5 s before it
    // exits, so its unready answer stays observable however fast the shrink is.
    const w2 = await c.spawnWorker("w2", ["--join", `${HOST}:${c.initializer.control}`], closedPort());
    c.members.set("w2", w2);
    await c.waitMembership(["initializer", "w1", "w2"]);
    expect((await fetch(url(w2, "/readyz"))).status).toBe(200);
    await sendAll(c.sourcePort, new AlphabetWorkload(8), 5000, 20_000);
    await poll("w2 to produce outputs", 10_000, async () => (await status(w2)).messages_out > 0);

    const r = await run(["shrink", "--workers", "w2", "--external", `${HOST}:${c.initializer.external}`]);
    expect(r.stdout.trim()).toBe("Cluster shrink response: Shrinking by 1 workers!");
    const unready = await poll("w2's /readyz to answer 503", 10_000, async () => {
      const res = await fetch(url(w2, "/readyz"));
      return res.status === 503 ? await res.text() : undefined;
    });
    expect(unready).toBe("not ready: leaving the cluster (a shrink removes it)\n");
    const st = await status(w2);
    expect(st.ready).toBe(false);
    expect(st.autoscale.phase).toBe("leaving");
    expect(sampleValue(await scrape(w2), "wallaroo_leaving")).toBe(1);
    // It logged that it leaves before the line it logs on its way out.
    const started = w2.child.lines.findIndex((l) => l.includes("this worker leaves the cluster"));
    expect(started).toBeGreaterThanOrEqual(0);
    expect(await w2.child.waitExit(20_000)).toBe(0);
    expect(w2.child.lines.findIndex((l) => l.includes("AUTOSCALE: Shutting down."))).toBeGreaterThan(started);
    c.members.delete("w2");
    await c.waitMembership(["initializer", "w1"]);
    expect((await fetch(url(c.members.get("w1")!, "/readyz"))).status).toBe(200);
  }, 90_000);

  test("/status and top show a grow in progress, and the metrics count it once done", async () => {
    const rx = receiver(new CountLines());
    const c = await new Cluster("alphabet", rx.port, { metrics: true }).start(2);
    const init = c.initializer;
    // One of two joiners announced together: the coordinator waits for the other.
    const [w2] = await c.spawnJoiners(["w2"], init, 2);
    const waiting = await poll("the initializer's status to show the grow", 10_000, async () => {
      const s = await status(init);
      return s.autoscale.phase === "waitingForJoiners" ? s.autoscale : undefined;
    });
    expect(waiting).toEqual({ phase: "waitingForJoiners", what: "grow", joiners: ["w2"], joiners_arrived: 1, joiners_expected: 2 });
    expect(sampleValue(await scrape(init), "wallaroo_autoscale_phase", { phase: "waitingForJoiners" })).toBe(1);
    const j = await fetch(url(w2!, "/readyz"));
    expect(j.status).toBe(503);
    expect(await j.text()).toBe("not ready: joining the cluster\n");
    const top = await run(["top", "--json", "--interval", "0.2", "--external", `${HOST}:${init.external}`]);
    expect((JSON.parse(top.stdout) as { cluster: string }).cluster).toBe("waitingForJoiners 1/2");

    const [w3] = await c.spawnJoiners(["w3"], init, 2);
    c.members.set("w2", w2!);
    c.members.set("w3", w3!);
    await c.waitMembership(["initializer", "w1", "w2", "w3"]);
    const all = await Promise.all([...c.members.values()].map(scrape));
    const fi = all[0]!;
    expect((await status(init)).autoscale).toEqual({ phase: "idle" });
    expect(sampleValue(fi, "wallaroo_autoscale_events_total", { kind: "grow" })).toBe(1);
    expect(sampleValue(fi, "wallaroo_migration_duration_seconds_count")).toBe(1);
    const moved = total(all, "wallaroo_migrated_slots_total", { direction: "out" });
    expect(moved).toBeGreaterThan(0);
    expect(total(all, "wallaroo_migrated_slots_total", { direction: "in" })).toBe(moved);
    expect(total(all, "wallaroo_slots")).toBe(1024);
    for (const m of [w2!, w3!]) expect((await fetch(url(m, "/readyz"))).status).toBe(200);
  }, 90_000);
});
