// `npm run bench`: every figure of issue 14 (and the speed figures of issue 10) in one table,
// each beside the reference measured in the same run (the hand-written baseline, one worker, the
// steady state before an event) and its target. Each bench runs as its own process, one after
// the other (on 2 cores two at once would measure each other), prints its report as it goes,
// and ends with one JSON line, which this reads.
//
//   npm run build && bun bench/all.ts [--memory-minutes 10] [--skip memory,autoscale,…]
//
// About 16 minutes with the 10-minute memory run. Parts: hot-path, throughput, scaleout,
// resilience, autoscale (1 000 000 keys), state-memory, memory.
import { join } from "node:path";
import { fmtInt, fmtMs, numFlag, parseFlags, table } from "./lib.ts";

const flags = parseFlags(process.argv.slice(2), {
  "memory-minutes": "minutes of the steady-load memory run (default 10)",
  skip: "parts to leave out, comma separated",
});
const MEMORY_MINUTES = numFlag(flags, "memory-minutes", 10);
const skip = new Set((flags.skip ?? "").split(",").filter(Boolean));

type Json = Record<string, any>;

/** Runs one bench, its output passed through; resolves to its last JSON line (undefined if none). */
async function run(part: string, args: string[]): Promise<Json | undefined> {
  if (skip.has(part)) return undefined;
  console.log(`\n════ ${part}: bun bench/${args.join(" ")}\n`);
  const proc = Bun.spawn([process.execPath, join(import.meta.dir, args[0]!), ...args.slice(1)], { stdout: "pipe", stderr: "inherit" });
  let last: Json | undefined;
  let carry = "";
  const dec = new TextDecoder();
  for await (const chunk of proc.stdout) {
    const text = carry + dec.decode(chunk, { stream: true });
    const lines = text.split("\n");
    carry = lines.pop()!;
    for (const line of lines) {
      if (line.startsWith("{")) {
        try {
          last = JSON.parse(line);
          continue;
        } catch {
          // not the report line: print it
        }
      }
      console.log(line);
    }
  }
  const code = await proc.exited;
  if (code !== 0) console.log(`  (${part} exited with ${code})`);
  return last;
}

const hot = await run("hot-path", ["hot-path.ts", "--messages", "10000000", "--rounds", "5"]);
const tput = await run("throughput", ["throughput.ts", "--rounds", "3"]);
const scale = await run("scaleout", ["scaleout.ts"]);
const res = await run("resilience", ["resilience.ts"]);
const auto = await run("autoscale", ["autoscale.ts", "--keys", "1000000"]);
const state = await run("state-memory", ["state-memory.ts"]);
const mem = await run("memory", ["memory.ts", "--minutes", String(MEMORY_MINUTES)]);

const rows: string[][] = [["figure", "measured", "reference, same run", "target", "met"]];
const met = (ok: boolean | undefined) => (ok === undefined ? "-" : ok ? "yes" : "NO");

if (hot) {
  rows.push(["alphabet in process, source→dataflow→sink", `${hot.ns_per_msg.toFixed(1)} ns/msg`, `by hand ${hot.hand_ns_per_msg.toFixed(1)} ns/msg`, "-", "-"]);
}
if (tput) {
  const t = (name: string) => (tput.throughput as Json[]).find((r) => r.target === name);
  const one = t("wallaroo 1w");
  const base = t("baseline");
  if (one?.ok && base?.ok) {
    const r = one.msg_per_s / base.msg_per_s;
    rows.push(["1 worker, alphabet, end to end (median of 3)", `${fmtInt(one.msg_per_s)} msg/s`, `hand-written ${fmtInt(base.msg_per_s)} msg/s: ×${r.toFixed(3)}`, "≥ 0.5 ×", met(r >= 0.5)]);
  }
  for (const w of [2, 3]) {
    const x = t(`wallaroo ${w}w`);
    if (x?.ok) rows.push([`${w} workers, alphabet (2 cores shared)`, `${fmtInt(x.msg_per_s)} msg/s`, one?.ok ? `1 worker ${fmtInt(one.msg_per_s)}` : "-", "-", "-"]);
  }
  const lat = (tput.latency as Json[]).find((r) => r.target === "wallaroo 3w");
  const blat = (tput.latency as Json[]).find((r) => r.target === "baseline");
  if (lat?.ok)
    rows.push([
      `latency p50 / p99 / p99.9 ms, 3 workers at ${fmtInt(lat.rate)} msg/s (half their max)`,
      `${fmtMs(lat.p50_ms)} / ${fmtMs(lat.p99_ms)} / ${fmtMs(lat.p999_ms)}`,
      blat?.ok ? `hand-written at that rate ${fmtMs(blat.p50_ms)} / ${fmtMs(blat.p99_ms)} / ${fmtMs(blat.p999_ms)}` : "-",
      "≤ 1 / 5 / 20",
      met(lat.p50_ms <= 1 && lat.p99_ms <= 5 && lat.p999_ms <= 20),
    ]);
}
if (scale) {
  rows.push([
    "scale-out, compute-bound step, 2 workers / 1",
    `×${scale.ratio.toFixed(2)} (CPU ${scale.cpu_pct_2w.join(" / ")} %)`,
    `1 worker ${fmtInt(scale.one_msg_per_s)} msg/s (CPU ${scale.cpu_pct_1w.join(" / ")} %)`,
    "≥ 1.7 ×",
    met(scale.ratio >= 1.7),
  ]);
}
if (res) {
  const tp = res.throughput;
  if (tp?.ratio) rows.push(["alphabet with resilience (1 s checkpoints) / without, 2 workers", `×${tp.ratio.toFixed(3)}`, `without ${fmtInt(tp.off)} msg/s`, "≥ 0.9 ×", met(tp.ratio >= 0.9)]);
  const k = (res.keyed as Json[] | undefined)?.[0];
  if (k?.sustained_max && k.sustained_max_plain)
    rows.push([`sequence_window with / without resilience, ${fmtInt(k.keys)} keys`, `×${(k.sustained_max / k.sustained_max_plain).toFixed(2)}`, `without ${fmtInt(k.sustained_max_plain)} msg/s`, "-", "-"]);
  if (k?.checkpoint?.duration_ms) rows.push([`checkpoint p50 / p99, ${fmtInt(k.keys)} keys`, `${fmtMs(k.checkpoint.duration_ms.p50)} / ${fmtMs(k.checkpoint.duration_ms.p99)} ms`, `${(k.checkpoint.bytes.p50 / 1e6).toFixed(1)} MB each`, "-", "-"]);
  const recs = (k?.recoveries as Json[] | undefined) ?? [];
  if (recs.length > 0) {
    const worst = Math.max(...recs.map((r) => r.resumed_ms));
    rows.push([`restart → sources resume, ${fmtInt(k!.keys)} keys (worst of ${recs.length})`, `${fmtMs(worst)} ms`, `${fmtInt(Math.max(...recs.map((r) => r.replayed)))} messages replayed`, "≤ 1000 ms", met(worst <= 1000)]);
  }
}
if (auto) {
  const ev = (auto.events as Json[]).filter((e) => e.offered_per_s > 0 && e.latency);
  if (ev.length > 0) {
    const worstGap = Math.max(...ev.map((e) => e.gap_max_by_phase?.during ?? e.gap_max_ms));
    const before = Math.max(...ev.map((e) => e.gap_max_by_phase?.before ?? 0));
    rows.push([`autoscale, ${fmtInt(auto.keys)} keys, half load: longest output gap during an event`, `${fmtMs(worstGap)} ms`, `before the events ${fmtMs(before)} ms`, "≤ 100 ms", met(worstGap <= 100)]);
    const ratios = ev.map((e) => e.latency.during.p99_ms / e.latency.before.p99_ms);
    rows.push([
      "… p99 during an event / p99 before it (worst)",
      `×${Math.max(...ratios).toFixed(1)}`,
      ev.map((e) => `${fmtMs(e.latency.before.p99_ms)}→${fmtMs(e.latency.during.p99_ms)}`).join(", ") + " ms",
      "≤ 3 ×",
      met(Math.max(...ratios) <= 3),
    ]);
    const moved = Math.max(...ev.map((e) => e.moved_key_first_latency?.p99_ms ?? NaN));
    rows.push(["… a moved key's first output, p99 (worst event)", `${fmtMs(moved)} ms`, `p99 before: ${ev.map((e) => fmtMs(e.latency.before.p99_ms)).join(", ")} ms`, "≤ 50 ms", met(moved <= 50)]);
    rows.push(["… event duration (coordinator)", ev.map((e) => `${(e.coordinator.ms / 1000).toFixed(1)}`).join(" / ") + " s", `peak RSS initializer ${auto.peak_rss_mib?.initializer} MiB`, "-", "-"]);
  }
}
if (state) {
  const total = state.key_bytes + state.map_bytes + state.state_bytes;
  rows.push([
    `state memory per key, ${fmtInt(state.keys)} ${state.app} keys`,
    `${total.toFixed(0)} bytes`,
    `key ${state.key_bytes.toFixed(0)} + Map entry ${state.map_bytes.toFixed(0)} + state ${state.state_bytes.toFixed(0)}; image ${state.image_bytes.toFixed(0)} bytes/key`,
    "stated",
    "yes",
  ]);
}
if (mem) {
  for (const w of mem.rss as Json[])
    rows.push([`RSS over ${mem.minutes} min at ${fmtInt(mem.rate)} msg/s: ${w.worker}`, `${w.start_mib.toFixed(0)} → ${w.end_mib.toFixed(0)} MiB`, `slope ${w.slope_mib_per_min.toFixed(2)} MiB/min, peak ${w.peak_mib.toFixed(0)}`, "flat", "-"]);
}

console.log(`\n════ summary (${new Date().toISOString()}, Bun ${Bun.version}, ${navigator.hardwareConcurrency} CPUs)\n`);
console.log(table(rows));
