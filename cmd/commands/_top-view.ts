// What `wallaroo top` shows, from two answers of the cluster some seconds apart: per worker its
// slots, keys, messages in and out per second, p99 end-to-end latency and held messages over the
// interval, and its autoscale phase. Pure: the command fetches, this computes and renders.
import { dense, difference, quantile } from "../../src/metrics/histogram.ts";
import type { Autoscale, ClusterStatuses, WorkerStatus } from "../../src/metrics/status.ts";

export interface TopRow {
  name: string;
  role: WorkerStatus["role"];
  ready: boolean;
  slots: number;
  keys: number;
  /** Per second over the interval; null on the first answer or after a restart (a counter went down). */
  in_per_s: number | null;
  out_per_s: number | null;
  /** p99 of the outputs written in the interval, ms; null when there were none. */
  p99_ms: number | null;
  held: number;
  phase: Autoscale["phase"];
  /** The phase with its progress, as one phrase. */
  autoscale: string;
}

export interface TopView {
  workers: TopRow[];
  /** Members that did not answer in time. */
  missing: string[];
  /** Workers left out of the answer to fit the external channel. */
  omitted: number;
  /** The coordinator's view of the event in flight (from the initializer's answer), if it answered. */
  cluster: string | undefined;
  interval_s: number;
}

/** The phase with its progress: `migrating 120/512 slots`, `waitingForJoiners 1/2`, `idle`. */
export function describeAutoscale(a: Autoscale): string {
  const what = a.what ? ` (${a.what})` : "";
  if (a.phase === "migrating" && a.slots_total !== undefined) return `migrating${what} ${a.slots_moved ?? 0}/${a.slots_total} slots`;
  if (a.phase === "waitingForJoiners") return `waitingForJoiners ${a.joiners_arrived ?? 0}/${a.joiners_expected ?? "?"}`;
  if (a.phase === "connecting" && a.waiting_for) return `connecting${what}, waiting for ${a.waiting_for.join(",")}`;
  return a.phase + what;
}

function rate(now: number, before: number | undefined, seconds: number): number | null {
  if (before === undefined || now < before || seconds <= 0) return null;
  return (now - before) / seconds;
}

export function topView(cur: ClusterStatuses, prev: ClusterStatuses | undefined, intervalS: number): TopView {
  const before = new Map((prev?.workers ?? []).map((w) => [w.name, w]));
  const workers = cur.workers.map((w): TopRow => {
    const b = before.get(w.name);
    const lat = difference({ counts: dense(w.latency.buckets), count: w.latency.count, sum: w.latency.sum }, b && { counts: dense(b.latency.buckets), count: b.latency.count, sum: b.latency.sum });
    const p99 = lat.count > 0 && !cur.trimmed ? quantile(lat.counts, 0.99) : undefined;
    return {
      name: w.name,
      role: w.role,
      ready: w.ready,
      slots: w.slots,
      keys: w.keys,
      in_per_s: rate(w.messages_in, b?.messages_in, intervalS),
      out_per_s: rate(w.messages_out, b?.messages_out, intervalS),
      p99_ms: p99 === undefined || !b ? null : p99 * 1000,
      held: w.held,
      phase: w.autoscale.phase,
      autoscale: describeAutoscale(w.autoscale),
    };
  });
  const init = cur.workers.find((w) => w.role === "initializer");
  return { workers, missing: cur.missing, omitted: cur.omitted ?? 0, cluster: init ? describeAutoscale(init.autoscale) : undefined, interval_s: intervalS };
}

const num = (n: number | null, digits = 0) => (n === null ? "-" : n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits }));

/** The screen: a heading line, then one row per worker, columns aligned. */
export function renderTop(v: TopView, where: string): string {
  const head = ["worker", "role", "ready", "slots", "keys", "in/s", "out/s", "p99 ms", "held", "autoscale"];
  const rows = v.workers.map((r) => [
    r.name,
    r.role,
    r.ready ? "yes" : "no",
    num(r.slots),
    num(r.keys),
    num(r.in_per_s),
    num(r.out_per_s),
    num(r.p99_ms, 2),
    num(r.held),
    r.autoscale,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const right = new Set([3, 4, 5, 6, 7, 8]);
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : right.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join("  ");
  const out = [
    `wallaroo top — ${where} — ${v.workers.length} ${v.workers.length === 1 ? "worker" : "workers"} answered${v.missing.length > 0 ? `, no answer from ${v.missing.join(",")}` : ""}${v.omitted > 0 ? `, ${v.omitted} more not shown (the answer is limited to 16 KiB)` : ""}; autoscale: ${v.cluster ?? "unknown (the initializer did not answer)"}; rates over ${v.interval_s} s`,
    "",
    line(head),
    ...rows.map(line),
  ];
  return out.join("\n") + "\n";
}
