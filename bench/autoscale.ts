// The cost of growing and shrinking a running cluster under load: sequence_window with 100 000
// keys, grow 2→3, grow 3→4, shrink 4→3, shrink 3→2, each at half the maximum rate measured for
// the smaller of the two cluster sizes involved (each size is probed once, flat out, the first
// time the cluster has that size), or at --rate.
//
//   npm run build && bun bench/autoscale.ts [--keys 100000] [--rate N] [--fraction 0.5]
//        [--before-seconds 4] [--after-seconds 4] [--probe-seconds 3] [--binary dist/wallaroo]
//
// Per event it reports:
// - migration time: from the command (joiner spawned / `wallaroo shrink` started) until every
//   member's status (external channel) shows the new membership; and the coordinator's own
//   `Migration complete: N slots, K keys, B bytes in R rounds, T ms` line from the initializer.
// - end-to-end latency p50/p99/max before, during and after. before = sent and received before
//   the command; after = sent after the new membership was visible everywhere; during = the rest
//   (every message that overlapped the migration).
// - the longest silence at the receiver (over all sink connections) while load was offered.
// - correctness: every output's window is valid, no output is seen twice, and after each event
//   every key has exactly as many outputs as inputs. PASS/FAIL per event and overall.
import {
  Cluster,
  DEFAULT_BINARY,
  environment,
  fmtInt,
  fmtMs,
  killAll,
  LoadSender,
  machineMeter,
  now,
  numFlag,
  parseFlags,
  Receiver,
  runDir,
  SendLog,
  SequenceChecker,
  SequenceWorkload,
  sleep,
  stableBinary,
  summarize,
  table,
  type LatencySummary,
  type Phase,
} from "./lib.ts";
import { loadavg } from "node:os";

const flags = parseFlags(process.argv.slice(2), {
  keys: "distinct keys (default 100000)",
  rate: "offered msg/s for every event (default: --fraction of the max measured before each event)",
  fraction: "fraction of the measured max to offer (default 0.5)",
  "before-seconds": "seconds of load before each command (default 4)",
  "after-seconds": "seconds of load after each completion (default 4)",
  "probe-seconds": "seconds of each max-rate probe; the first third is not counted (default 3)",
  binary: `the wallaroo executable (default ${DEFAULT_BINARY})`,
});
const KEYS = numFlag(flags, "keys", 100_000);
const FIXED_RATE = flags.rate ? numFlag(flags, "rate", 0) : undefined;
const FRACTION = numFlag(flags, "fraction", 0.5);
const BEFORE_MS = numFlag(flags, "before-seconds", 4) * 1000;
const AFTER_MS = numFlag(flags, "after-seconds", 4) * 1000;
const PROBE_MS = numFlag(flags, "probe-seconds", 3) * 1000;
const MEMBERSHIP_DEADLINE_MS = 60_000;
const STALL_MS = 15_000;
const POLL_MS = 25;

const env = environment();
const benchStart = now();
const dir = runDir("autoscale");
const binary = stableBinary(flags.binary ?? DEFAULT_BINARY, dir);
console.log(`wallaroo autoscale bench — ${env.date}, Bun ${env.bun}, ${env.cpus} CPUs, ${env.platform}, load average ${loadavg()[0]!.toFixed(2)}`);
console.log(`logs: ${dir}`);
console.log(`sequence_window, ${fmtInt(KEYS)} keys; load ${FIXED_RATE ? `${fmtInt(FIXED_RATE)} msg/s` : `${FRACTION} × max measured before each event`}\n`);

const wl = new SequenceWorkload(KEYS);
const sendLog = new SendLog();
const checker = new SequenceChecker(KEYS, sendLog);
const rx = new Receiver(checker);
rx.listen();

interface EventResult {
  event: string;
  members_after: string[];
  /** The max the offered rate derives from: the lower of the sizes before and after, as probed. */
  max_rate_per_s?: number;
  offered_per_s: number;
  command_to_membership_ms?: number;
  coordinator?: { slots: number; keys: number; bytes: number; rounds: number; ms: number };
  latency: Record<"before" | "during" | "after", LatencySummary>;
  gap_max_ms: number;
  gap_at_ms_from_command?: number;
  gap_max_by_phase: Record<"before" | "during" | "after", number>;
  /** Keys seen answering from another worker afterwards, and their first output's latency there. */
  /** Share of all CPUs that other processes used during the event, in percent. */
  others_pct?: number;
  moved_keys: number;
  moved_key_first_latency: LatencySummary;
  command?: { code: number; output: string };
  leaver_exit?: number | null;
  outputs_ok: boolean;
  error?: string;
}

/** Waits until the receiver has a line for every message sent; fails on a stall or a dead worker. */
async function drained(tx: LoadSender, cluster: Cluster, what: string, ignore: string[] = []): Promise<void> {
  let last = rx.lines;
  let moved = now();
  while (rx.lines < tx.sent) {
    await sleep(20);
    if (rx.lines !== last) {
      last = rx.lines;
      moved = now();
    }
    for (const m of cluster.members.values()) {
      if (!ignore.includes(m.name) && m.child.exitCode !== null) throw new Error(`${what}: ${m.name} exited with ${m.child.exitCode} at ${rx.lines}/${tx.sent} outputs\n${m.child.tail(15)}`);
    }
    if (now() - moved > STALL_MS) {
      const tails = [...cluster.members.values()].map((m) => m.child.tail(6)).join("\n");
      throw new Error(`${what}: outputs stalled at ${rx.lines}/${tx.sent} for ${STALL_MS} ms\n${tails}`);
    }
  }
}

/** Max output rate of the current cluster: send flat out for PROBE_MS, count lines over the last 2/3. */
async function probe(tx: LoadSender, cluster: Cluster): Promise<number> {
  checker.recording = false;
  const done = tx.fast(1e12);
  await sleep(PROBE_MS / 3);
  const l0 = rx.lines;
  const t0 = now();
  await sleep((2 * PROBE_MS) / 3);
  const rate = ((rx.lines - l0) * 1000) / (now() - t0);
  await tx.stop();
  await done;
  await drained(tx, cluster, "after the max-rate probe");
  return rate;
}

/** Max output rate per cluster size, probed the first time each size is seen. */
const maxBySize = new Map<number, number>();

const COORDINATOR_RE = /Migration complete: (\d+) slots, (\d+) keys, (\d+) bytes in (\d+) rounds, ([\d.]+) ms/;

async function autoscaleEvent(
  tx: LoadSender,
  cluster: Cluster,
  ev: { name: string; kind: "join" | "shrink"; worker: string; after: string[] },
): Promise<EventResult> {
  // The load is FRACTION of the max of the smaller of the two sizes involved (as measured so far),
  // so the cluster is below saturation both before and after the event; each size is probed once.
  const sizeBefore = cluster.members.size;
  if (FIXED_RATE === undefined && !maxBySize.has(sizeBefore)) maxBySize.set(sizeBefore, await probe(tx, cluster));
  const known = [sizeBefore, ev.after.length].map((n) => maxBySize.get(n)).filter((m): m is number => m !== undefined);
  const max = FIXED_RATE === undefined ? Math.min(...known) : undefined;
  const rate = FIXED_RATE ?? Math.max(1000, Math.round((max! * FRACTION) / 1000) * 1000);
  const gaps = { before: 0, during: 0, after: 0 };
  const res: EventResult = {
    event: ev.name,
    members_after: ev.after,
    max_rate_per_s: max === undefined ? undefined : Math.round(max),
    offered_per_s: rate,
    latency: { before: { n: 0 }, during: { n: 0 }, after: { n: 0 } },
    gap_max_ms: 0,
    gap_max_by_phase: gaps,
    moved_keys: 0,
    moved_key_first_latency: { n: 0 },
    outputs_ok: false,
  };
  checker.resetPhases();
  checker.recording = true;
  rx.onGap = (gap, _from, to) => {
    const ph: Phase = Number.isNaN(checker.cmdAt) || to < checker.cmdAt ? "before" : Number.isNaN(checker.doneAt) || to <= checker.doneAt ? "during" : "after";
    if (ph !== "other" && gap > gaps[ph]) gaps[ph] = gap;
  };
  const logFrom = cluster.initializer.child.lines.length;
  let leaver: Promise<number> | undefined;
  rx.watch();
  const sentAtStart = tx.sent;
  const loadStart = now();
  const load = tx.atRate(rate);
  try {
    await sleep(BEFORE_MS);
    const cmdAt = now();
    checker.cmdAt = cmdAt;
    let shrink: ReturnType<Cluster["shrink"]> | undefined;
    if (ev.kind === "join") cluster.join([ev.worker]);
    else {
      leaver = cluster.members.get(ev.worker)!.child.exited;
      shrink = cluster.shrink([ev.worker]);
    }
    // Poll every member (old and new) until all of the new membership agree on it.
    const deadline = cmdAt + MEMBERSHIP_DEADLINE_MS;
    for (;;) {
      if (await cluster.membershipIs(ev.after)) break;
      if (now() > deadline) throw new Error(`membership ${ev.after.join(",")} not visible on every worker after ${MEMBERSHIP_DEADLINE_MS} ms`);
      const joiner = cluster.members.get(ev.worker)!;
      if (ev.kind === "join" && joiner.child.exitCode !== null) throw new Error(`joiner ${ev.worker} exited with ${joiner.child.exitCode}\n${joiner.child.tail(15)}`);
      await sleep(POLL_MS);
    }
    const doneAt = now();
    checker.doneAt = doneAt;
    res.command_to_membership_ms = doneAt - cmdAt;
    if (shrink) {
      const r = await shrink;
      res.command = { code: r.code, output: (r.stdout + r.stderr).trim() };
      if (r.code !== 0) throw new Error(`wallaroo shrink exited ${r.code}: ${res.command.output}`);
    }
    await sleep(AFTER_MS);
    await tx.stop();
    await load;
    const g = rx.unwatch();
    res.gap_max_ms = g.gap_max_ms;
    res.gap_at_ms_from_command = g.at - cmdAt;
    res.offered_per_s = Math.round(((tx.sent - sentAtStart) * 1000) / (now() - loadStart));
    await drained(tx, cluster, ev.name, ev.kind === "shrink" ? [ev.worker] : []);
    checker.recording = false;
    for (const p of ["before", "during", "after"] as const) res.latency[p] = summarize(checker.phases[p]);
    res.moved_keys = checker.movedKeys;
    res.moved_key_first_latency = summarize(checker.movedFirst);
    const m = await cluster.initializer.child.waitFor(COORDINATOR_RE, 10_000, logFrom).catch(() => null);
    if (m) res.coordinator = { slots: Number(m[1]), keys: Number(m[2]), bytes: Number(m[3]), rounds: Number(m[4]), ms: Number(m[5]) };
    if (leaver) {
      res.leaver_exit = await Promise.race([leaver, sleep(20_000).then(() => null)]);
      if (res.leaver_exit === null) cluster.members.get(ev.worker)!.child.kill("SIGKILL");
      cluster.members.delete(ev.worker);
    }
    const v = checker.verify(wl, tx.sent);
    res.outputs_ok = v.ok;
    if (!v.ok) res.error = `outputs: ${v.received}/${tx.sent} received, ${v.wrongKeys} keys wrong (${v.example ?? "-"}), ${checker.duplicates} duplicates, ${checker.badWindows} bad windows; ${checker.badExamples.slice(0, 3).join(" | ")}`;
    return res;
  } catch (e) {
    await tx.stop().catch(() => {});
    rx.unwatch();
    res.error = (e as Error).message;
    return res;
  } finally {
    rx.onGap = undefined;
    checker.recording = false;
  }
}

const events = [
  { name: "grow 2→3", kind: "join", worker: "w2", after: ["initializer", "w1", "w2"] },
  { name: "grow 3→4", kind: "join", worker: "w3", after: ["initializer", "w1", "w2", "w3"] },
  { name: "shrink 4→3", kind: "shrink", worker: "w3", after: ["initializer", "w1", "w2"] },
  { name: "shrink 3→2", kind: "shrink", worker: "w2", after: ["initializer", "w1"] },
] as const;

const whole = machineMeter();
const results: EventResult[] = [];
let pass = true;
let fatal: string | undefined;
let totalSent = 0;
let cluster: Cluster | undefined;
try {
  cluster = await Cluster.start({ binary, app: "sequence_window", workers: 2, sinkPort: rx.port, dir });
  const t0 = now();
  while (rx.open < 2 && now() - t0 < 10_000) await sleep(10);
  const tx = new LoadSender(wl, sendLog);
  await tx.connect(cluster.sourcePort);
  // Every key gets its state before the first event, so each migration moves all of its keys.
  await tx.fast(KEYS);
  await drained(tx, cluster, "priming every key");
  for (const ev of events) {
    const m = machineMeter();
    const r = await autoscaleEvent(tx, cluster, { ...ev, after: [...ev.after] });
    r.others_pct = m.stop().others_pct;
    results.push(r);
    const lat = (p: "before" | "during" | "after") => `${fmtMs(r.latency[p].p50_ms)}/${fmtMs(r.latency[p].p99_ms)}/${fmtMs(r.latency[p].max_ms)}`;
    console.log(
      `${r.event}: ${r.error ? "FAIL" : "PASS"}  max ${r.max_rate_per_s ? fmtInt(r.max_rate_per_s) : "-"} msg/s, offered ${fmtInt(r.offered_per_s)} msg/s, ` +
        `membership after ${fmtMs(r.command_to_membership_ms)} ms, coordinator ${r.coordinator ? `${r.coordinator.slots} slots ${fmtInt(r.coordinator.keys)} keys ${fmtInt(r.coordinator.bytes)} B ${r.coordinator.rounds} rounds ${fmtMs(r.coordinator.ms)} ms` : "-"}, ` +
        `latency p50/p99/max ms before ${lat("before")} during ${lat("during")} after ${lat("after")}, longest silence ${fmtMs(r.gap_max_ms)} ms`,
    );
    if (r.error) {
      pass = false;
      console.log(`  ${r.error.split("\n").join("\n  ")}`);
      break;
    }
  }
  totalSent = tx.sent;
  tx.close();
} catch (e) {
  pass = false;
  fatal = (e as Error).message;
  console.log(`FAILED: ${fatal}`);
} finally {
  await cluster?.shutdown().catch(() => {});
  await killAll();
  rx.stop();
}

const v = checker.verify(wl, totalSent);
if (!v.ok) pass = false;
const migRows: (string | number)[][] = [
  ["event", "max msg/s", "offered msg/s", "cmd→membership ms", "coordinator ms", "slots", "keys", "bytes", "rounds", "moved keys seen", "moved key 1st output p50/p99/max ms", "others' CPU %", "check"],
];
const latRows: (string | number)[][] = [["event", "phase", "samples", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "longest silence ms"]];
for (const r of results) {
  const c = r.coordinator;
  const mk = r.moved_key_first_latency;
  migRows.push([
    r.event,
    r.max_rate_per_s ? fmtInt(r.max_rate_per_s) : "-",
    fmtInt(r.offered_per_s),
    fmtMs(r.command_to_membership_ms),
    fmtMs(c?.ms),
    c?.slots ?? "-",
    c ? fmtInt(c.keys) : "-",
    c ? fmtInt(c.bytes) : "-",
    c?.rounds ?? "-",
    fmtInt(r.moved_keys),
    `${fmtMs(mk.p50_ms)} / ${fmtMs(mk.p99_ms)} / ${fmtMs(mk.max_ms)}`,
    r.others_pct ?? "-",
    r.error ? "FAIL" : "PASS",
  ]);
  for (const p of ["before", "during", "after"] as const) {
    const l = r.latency[p];
    latRows.push([p === "before" ? r.event : "", p, fmtInt(l.n), fmtMs(l.p50_ms), fmtMs(l.p99_ms), fmtMs(l.p999_ms), fmtMs(l.max_ms), fmtMs(r.gap_max_by_phase[p])]);
  }
}
console.log("\nmigrations\n" + table(migRows));
console.log("\nend-to-end latency and receiver silence by phase\n" + table(latRows) + "\n");
console.log(
  `outputs: ${fmtInt(v.received)} of ${fmtInt(totalSent)} inputs, ${v.wrongKeys} keys with outputs ≠ inputs${v.example ? ` (${v.example})` : ""}, ` +
    `${checker.duplicates} duplicates, ${checker.badWindows} invalid windows, ${checker.unparsable} unparsable lines`,
);
const share = whole.stop();
console.log(`machine: this bench used ${share.ours_pct}% and other processes ${share.others_pct}% of all ${env.cpus} CPUs during the run`);
console.log(`${pass ? "RESULT: PASS" : "RESULT: FAIL"} (${((now() - benchStart) / 1000).toFixed(0)} s)`);
console.log(JSON.stringify({ bench: "autoscale", ...env, elapsed_s: Math.round((now() - benchStart) / 1000), load_average_end: loadavg()[0], machine_share: share, keys: KEYS, logs: dir, events: results, sent: totalSent, received: v.received, duplicates: checker.duplicates, invalid_windows: checker.badWindows, wrong_keys: v.wrongKeys, fatal, pass }));
process.exit(pass ? 0 : 1);
