// The cost of growing and shrinking a running cluster under load: sequence_window with 100 000
// keys (every key has state before the first event), grow 2→3, grow 3→4, shrink 4→3, shrink 3→2.
//
//   npm run build && bun bench/autoscale.ts [--keys 100000] [--rate N] [--fraction 0.5]
//        [--before-seconds 4] [--after-seconds 4] [--probe-seconds 4] [--binary dist/wallaroo]
//
// Offered load. On 2 cores a bigger cluster is not a faster one, so "half the max for that
// cluster size" must hold for the size before and the size after the event, or the cluster is
// saturated on one side and the figures measure queueing, not migration. A calibration pass
// therefore first grows the cluster 2→3→4 with no load, probing each size's max (flat out for
// --probe-seconds; the median of 250 ms windows after the first third), and shrinks it back
// 4→2, also without load (those four unloaded events are reported too, as "(no load)"). Each
// measured event then offers --fraction × min(max before, max after). --rate skips calibration.
//
// Per event it reports:
// - migration time: from the command (joiner spawned / `wallaroo shrink` started) until every
//   member's status (external channel) shows the new membership; and the coordinator's own
//   `Migration complete: N slots, K keys, B bytes in R rounds, T ms` line from the initializer.
// - end-to-end latency p50/p99/p99.9/max before, during and after. before = sent and received
//   before the command; after = sent after the new membership was visible everywhere; during =
//   the rest (every message that overlapped the migration).
// - moved keys: keys whose outputs came from another worker after the event (this must equal the
//   coordinator's key count), and the latency of each one's first output there.
// - the longest silence at the receiver (over all sink connections) while load was offered.
// - correctness: every output's window is valid, no output is seen twice, and after each event
//   every key has exactly as many outputs as inputs. PASS/FAIL per event and overall.
import { loadavg } from "node:os";
import { Cluster } from "../test/support/cluster.ts";
import { LoadSender, SequenceWorkload } from "../test/support/load.ts";
import { assertRunning, HOST, stopAll, type Child } from "../test/support/process.ts";
import { Receiver } from "../test/support/receiver.ts";
import { SequenceValidator } from "../test/support/validate.ts";
import { now } from "../test/support/wait.ts";
import {
  DEFAULT_BINARY,
  environment,
  fmtInt,
  fmtMs,
  killChildrenOnSignal,
  machineMeter,
  numFlag,
  parseFlags,
  peakRssMiB,
  runDir,
  SendLog,
  SequencePhases,
  SilenceMeter,
  stableBinary,
  summarize,
  table,
  type LatencySummary,
} from "./lib.ts";

const flags = parseFlags(process.argv.slice(2), {
  keys: "distinct keys (default 100000)",
  rate: "offered msg/s for every event; skips calibration (default: --fraction of the calibrated max)",
  fraction: "fraction of the calibrated max to offer (default 0.5)",
  "before-seconds": "seconds of load before each command (default 4)",
  "after-seconds": "seconds of load after each completion (default 4)",
  "probe-seconds": "seconds of each max-rate probe; the first third is not counted (default 4)",
  binary: `the wallaroo executable (default ${DEFAULT_BINARY})`,
});
const KEYS = numFlag(flags, "keys", 100_000);
const FIXED_RATE = flags.rate ? numFlag(flags, "rate", 0) : undefined;
const FRACTION = numFlag(flags, "fraction", 0.5);
const BEFORE_MS = numFlag(flags, "before-seconds", 4) * 1000;
const AFTER_MS = numFlag(flags, "after-seconds", 4) * 1000;
const PROBE_MS = numFlag(flags, "probe-seconds", 4) * 1000;
const MEMBERSHIP_DEADLINE_MS = 60_000;
const LEAVER_EXIT_DEADLINE_MS = 20_000;
const STALL_MS = 15_000;
const POLL_MS = 25;
const PHASES = ["before", "during", "after"] as const;
type LoadPhase = (typeof PHASES)[number];

killChildrenOnSignal();
const env = environment();
const benchStart = now();
const dir = runDir("autoscale");
const binary = stableBinary(flags.binary ?? DEFAULT_BINARY, dir);
console.log(`wallaroo autoscale bench — ${env.date}, Bun ${env.bun}, ${env.cpus} CPUs, ${env.platform}, load average ${loadavg()[0]!.toFixed(2)}`);
console.log(`logs: ${dir}`);
console.log(`sequence_window, ${fmtInt(KEYS)} keys; load ${FIXED_RATE ? `${fmtInt(FIXED_RATE)} msg/s` : `${FRACTION} × min(max before, max after)`}\n`);

const wl = new SequenceWorkload(KEYS);
const sendLog = new SendLog();
const phases = new SequencePhases(KEYS, sendLog);
const validator = new SequenceValidator(KEYS, phases.onOutput, 1 << 25);
const silence = new SilenceMeter(validator);
const rx = new Receiver(silence);
rx.listen();

interface AutoscaleEvent {
  name: string;
  kind: "join" | "shrink";
  worker: string;
  after: string[];
}

interface EventResult {
  event: string;
  members_after: string[];
  /** The max the offered rate derives from: the lower of the sizes before and after. */
  max_rate_per_s?: number;
  /** Offered rate actually achieved; 0 for the calibration events. */
  offered_per_s: number;
  command_to_membership_ms?: number;
  /** When each worker first reported the new membership, ms after the command (poll resolution). */
  membership_by_worker_ms?: Record<string, number>;
  coordinator?: { slots: number; keys: number; bytes: number; rounds: number; ms: number };
  latency?: Record<LoadPhase, LatencySummary>;
  gap_max_ms?: number;
  gap_at_ms_from_command?: number;
  gap_max_by_phase?: Record<LoadPhase, number>;
  /** Keys seen answering from another worker afterwards, and their first output's latency there. */
  moved_keys?: number;
  moved_key_first_latency?: LatencySummary;
  /** Share of all CPUs that other processes used during the event, in percent. */
  others_pct?: number;
  command?: { code: number; output: string };
  leaver_exit?: number | null;
  outputs_ok: boolean;
  error?: string;
}

/** Waits until the receiver has a line for every message sent; fails on a stall or a dead worker. */
function drained(tx: LoadSender, cluster: Cluster, what: string): Promise<void> {
  return rx.waitLinesFlowing(tx.sent, STALL_MS, what, () => assertRunning([...cluster.members.values()].map((m) => m.child)));
}

/**
 * Max output rate of the current cluster: flat out for PROBE_MS; over the last 2/3 the output
 * rate is sampled every 250 ms and the median taken, so a neighbour's burst on a shared machine
 * moves it less than a plain average would.
 */
async function probe(tx: LoadSender, cluster: Cluster): Promise<number> {
  phases.recording = false;
  const done = tx.fast(1e12);
  await Bun.sleep(PROBE_MS / 3);
  const rates: number[] = [];
  const end = now() + (2 * PROBE_MS) / 3;
  while (now() < end) {
    const l0 = rx.lines;
    const t0 = now();
    await Bun.sleep(250);
    rates.push(((rx.lines - l0) * 1000) / (now() - t0));
  }
  rates.sort((a, b) => a - b);
  const rate = rates[rates.length >> 1]!;
  await tx.stop();
  await done;
  await drained(tx, cluster, "after the max-rate probe");
  return rate;
}

/** A member that exited on its own (a leaver is no longer a member once its shrink is done). */
function deadMember(cluster: Cluster, except?: string): Error | null {
  for (const m of cluster.members.values()) {
    if (m.name !== except && m.child.exitCode !== null) return new Error(`${m.name} exited with ${m.child.exitCode}\n${m.child.tail(10)}`);
  }
  return null;
}

/** Sleeps `ms`, failing early if a member dies meanwhile. */
async function watchedSleep(cluster: Cluster, ms: number): Promise<void> {
  const end = now() + ms;
  while (now() < end) {
    const dead = deadMember(cluster);
    if (dead) throw dead;
    await Bun.sleep(Math.min(100, Math.max(0, end - now())));
  }
}

const COORDINATOR_RE = /Migration complete: (\d+) slots, (\d+) keys, (\d+) bytes in (\d+) rounds, ([\d.]+) ms/;

/**
 * Issues the event and waits until every member of the new membership reports it. `onCommand`
 * and `onDone` are called at the two instants that bound the migration. A leaver is awaited (it
 * must exit 0) and dropped from the cluster; the coordinator's summary line is parsed.
 */
async function perform(cluster: Cluster, ev: AutoscaleEvent, res: EventResult, onCommand: (t: number) => void, onDone: (t: number) => void): Promise<void> {
  const logFrom = cluster.initializer.child.lines.length;
  const leaver = ev.kind === "shrink" ? cluster.members.get(ev.worker) : undefined;
  const cmdAt = now();
  onCommand(cmdAt);
  const shrink = ev.kind === "shrink" ? cluster.run(["shrink", "--external", `${HOST}:${cluster.initializer.external}`, "--workers", ev.worker], 30_000) : undefined;
  if (ev.kind === "join") for (const j of await cluster.spawnJoiners([ev.worker])) cluster.members.set(j.name, j);
  const deadline = cmdAt + MEMBERSHIP_DEADLINE_MS;
  const agreed = new Set<string>();
  res.membership_by_worker_ms = {};
  for (;;) {
    const done = await cluster.membershipIs(ev.after, agreed);
    for (const n of agreed) res.membership_by_worker_ms[n] ??= Math.round(now() - cmdAt);
    if (done) break;
    if (now() > deadline) throw new Error(`membership ${ev.after.join(",")} not visible on every worker ${MEMBERSHIP_DEADLINE_MS} ms after the command`);
    const dead = deadMember(cluster, ev.kind === "shrink" ? ev.worker : undefined);
    if (dead) throw dead;
    await Bun.sleep(POLL_MS);
  }
  const doneAt = now();
  onDone(doneAt);
  res.command_to_membership_ms = doneAt - cmdAt;
  if (shrink) {
    const r = await shrink;
    res.command = { code: r.code, output: (r.stdout + r.stderr).trim() };
    if (r.code !== 0) throw new Error(`wallaroo shrink exited ${r.code}: ${res.command.output}`);
  }
  const m = await cluster.initializer.child.waitForLog(COORDINATOR_RE, 10_000, logFrom).catch(() => null);
  if (m) res.coordinator = { slots: Number(m[1]), keys: Number(m[2]), bytes: Number(m[3]), rounds: Number(m[4]), ms: Number(m[5]) };
  if (leaver) {
    // No longer a member; reapLeavers() checks that it exits 0 once the caller's load is over.
    cluster.members.delete(ev.worker);
    pendingLeavers.push({ res, leaver: leaver.child, name: ev.worker });
  }
}

const pendingLeavers: { res: EventResult; leaver: Child; name: string }[] = [];

/** Every leaver must exit on its own, with 0, within the deadline. */
async function reapLeavers(): Promise<void> {
  for (const p of pendingLeavers.splice(0)) {
    const code = await p.leaver.waitExit(LEAVER_EXIT_DEADLINE_MS).catch(() => null);
    p.res.leaver_exit = code;
    if (code === null) {
      p.leaver.kill("SIGKILL");
      p.res.error ??= `leaver ${p.name} did not exit within ${LEAVER_EXIT_DEADLINE_MS} ms after the shrink\n${p.leaver.tail(10)}`;
    } else if (code !== 0) {
      p.res.error ??= `leaver ${p.name} exited with ${code}\n${p.leaver.tail(10)}`;
    }
  }
}

function verifyOutputs(tx: LoadSender, res: EventResult): void {
  const v = validator.verify(wl, tx.sent);
  res.outputs_ok = v.problems.length === 0;
  if (!res.outputs_ok) {
    res.error ??= `outputs: ${v.received}/${tx.sent} received, ${v.wrongKeys} keys wrong, ${validator.duplicates} duplicates, ${validator.badWindows} bad windows; ${v.problems.slice(0, 3).join(" | ")}`;
  }
}

/** An event with no load offered (calibration), still checked and timed. */
async function quietEvent(tx: LoadSender, cluster: Cluster, ev: AutoscaleEvent): Promise<EventResult> {
  const res: EventResult = { event: `${ev.name} (no load)`, members_after: ev.after, offered_per_s: 0, outputs_ok: false };
  try {
    await perform(cluster, ev, res, () => {}, () => {});
    await reapLeavers();
    await drained(tx, cluster, res.event);
    verifyOutputs(tx, res);
  } catch (e) {
    res.error = (e as Error).message;
  }
  return res;
}

/** An event under load at `rate`, with latency by phase and receiver silences. */
async function loadedEvent(tx: LoadSender, cluster: Cluster, ev: AutoscaleEvent, rate: number, max: number | undefined): Promise<EventResult> {
  const gaps: Record<LoadPhase, number> = { before: 0, during: 0, after: 0 };
  const res: EventResult = { event: ev.name, members_after: ev.after, max_rate_per_s: max === undefined ? undefined : Math.round(max), offered_per_s: rate, gap_max_by_phase: gaps, outputs_ok: false };
  phases.resetPhases();
  phases.recording = true;
  silence.onGap = (gap, _from, to) => {
    const ph: LoadPhase = Number.isNaN(phases.cmdAt) || to < phases.cmdAt ? "before" : Number.isNaN(phases.doneAt) || to <= phases.doneAt ? "during" : "after";
    if (gap > gaps[ph]) gaps[ph] = gap;
  };
  silence.watch();
  const sentAtStart = tx.sent;
  const loadStart = now();
  const load = tx.atRate(rate);
  let cmdAt = NaN;
  try {
    await watchedSleep(cluster, BEFORE_MS);
    await perform(
      cluster,
      ev,
      res,
      (t) => (phases.cmdAt = cmdAt = t),
      (t) => (phases.doneAt = t),
    );
    await watchedSleep(cluster, Math.max(0, phases.doneAt + AFTER_MS - now()));
    await tx.stop();
    await load;
    const g = silence.unwatch();
    res.gap_max_ms = g.gap_max_ms;
    res.gap_at_ms_from_command = g.at - cmdAt;
    res.offered_per_s = Math.round(((tx.sent - sentAtStart) * 1000) / (now() - loadStart));
    await drained(tx, cluster, ev.name);
    phases.recording = false;
    res.latency = { before: summarize(phases.phases.before), during: summarize(phases.phases.during), after: summarize(phases.phases.after) };
    res.moved_keys = phases.movedKeys;
    res.moved_key_first_latency = summarize(phases.movedFirst);
    await reapLeavers();
    verifyOutputs(tx, res);
  } catch (e) {
    await tx.stop().catch(() => {});
    silence.unwatch();
    res.error = (e as Error).message;
  } finally {
    silence.onGap = undefined;
    phases.recording = false;
  }
  return res;
}

const members = (n: number, joiners: readonly string[]) => ["initializer", "w1", ...joiners].slice(0, n);
const calibration: AutoscaleEvent[] = [
  { name: "grow 2→3", kind: "join", worker: "c2", after: members(3, ["c2"]) },
  { name: "grow 3→4", kind: "join", worker: "c3", after: members(4, ["c2", "c3"]) },
  { name: "shrink 4→3", kind: "shrink", worker: "c3", after: members(3, ["c2"]) },
  { name: "shrink 3→2", kind: "shrink", worker: "c2", after: members(2, []) },
];
const events: AutoscaleEvent[] = [
  { name: "grow 2→3", kind: "join", worker: "w2", after: members(3, ["w2"]) },
  { name: "grow 3→4", kind: "join", worker: "w3", after: members(4, ["w2", "w3"]) },
  { name: "shrink 4→3", kind: "shrink", worker: "w3", after: members(3, ["w2"]) },
  { name: "shrink 3→2", kind: "shrink", worker: "w2", after: members(2, []) },
];

function report(r: EventResult): void {
  const c = r.coordinator;
  const coord = c ? `${c.slots} slots, ${fmtInt(c.keys)} keys, ${fmtInt(c.bytes)} B, ${c.rounds} rounds, ${fmtMs(c.ms)} ms` : "-";
  const per = Object.entries(r.membership_by_worker_ms ?? {}).map(([n, ms]) => `${n} ${ms}`).join(", ");
  let line = `${r.error ? "FAIL" : "PASS"} ${r.event}: membership after ${fmtMs(r.command_to_membership_ms)} ms (${per}); coordinator ${coord}`;
  if (r.latency) {
    const lat = (p: LoadPhase) => `${fmtMs(r.latency![p].p50_ms)}/${fmtMs(r.latency![p].p99_ms)}/${fmtMs(r.latency![p].max_ms)}`;
    line += `; offered ${fmtInt(r.offered_per_s)} msg/s; p50/p99/max ms before ${lat("before")}, during ${lat("during")}, after ${lat("after")}; longest silence ${fmtMs(r.gap_max_ms)} ms`;
  }
  console.log(line);
  if (r.error) console.log(`  ${r.error.split("\n").join("\n  ")}`);
}

const whole = machineMeter();
const maxBySize = new Map<number, number>();
const results: EventResult[] = [];
let pass = true;
let fatal: string | undefined;
let totalSent = 0;
let cluster: Cluster | undefined;
let tx: LoadSender | undefined;
const peakRss: Record<string, number> = {};
try {
  cluster = await new Cluster("sequence_window", rx.port, { binary, logDir: dir }).start(2);
  await rx.waitConnections(2, 10_000);
  tx = await new LoadSender(wl, sendLog.record).connect(cluster.sourcePort);
  // Every key gets its state before the first event, so each migration moves all of its keys.
  await tx.fast(KEYS);
  await drained(tx, cluster, "priming every key");

  if (FIXED_RATE === undefined) {
    maxBySize.set(2, await probe(tx, cluster));
    for (const ev of calibration) {
      const m = machineMeter();
      const r = await quietEvent(tx, cluster, ev);
      r.others_pct = m.stop().others_pct;
      results.push(r);
      report(r);
      if (r.error) throw new Error(`calibration failed at ${r.event}`);
      if (!maxBySize.has(ev.after.length)) maxBySize.set(ev.after.length, await probe(tx, cluster));
    }
    console.log(`calibrated max msg/s by cluster size: ${[...maxBySize].map(([n, m]) => `${n} workers ${fmtInt(m)}`).join(", ")}\n`);
  }

  for (const ev of events) {
    const max = FIXED_RATE === undefined ? Math.min(maxBySize.get(cluster.members.size)!, maxBySize.get(ev.after.length)!) : undefined;
    const rate = FIXED_RATE ?? Math.max(1000, Math.round((max! * FRACTION) / 1000) * 1000);
    const m = machineMeter();
    const r = await loadedEvent(tx, cluster, ev, rate, max);
    r.others_pct = m.stop().others_pct;
    results.push(r);
    report(r);
    if (r.error) throw new Error(`stopped after ${r.event} failed`);
  }
} catch (e) {
  pass = false;
  fatal = (e as Error).message;
  console.log(`FAILED: ${fatal}`);
} finally {
  // Every member has held its share of the 100 000 keys (and the 2 that stay held them all).
  if (cluster) for (const m of cluster.members.values()) peakRss[m.name] = peakRssMiB(m.child.proc.pid);
  totalSent = tx?.sent ?? 0;
  tx?.close();
  await cluster?.shutdown().catch(() => {});
  await stopAll();
  rx.stop();
}

const v = validator.verify(wl, totalSent);
if (v.problems.length > 0 || results.some((r) => r.error)) pass = false;

const migRows: (string | number)[][] = [
  ["event", "offered msg/s", "of max", "cmd→membership ms", "coordinator ms", "slots", "keys", "bytes", "rounds", "moved keys seen", "moved key 1st output p50/p99/max ms", "others' CPU %", "check"],
];
for (const r of results) {
  const c = r.coordinator;
  const mk = r.moved_key_first_latency;
  migRows.push([
    r.event,
    fmtInt(r.offered_per_s),
    r.max_rate_per_s ? fmtInt(r.max_rate_per_s) : "-",
    fmtMs(r.command_to_membership_ms),
    fmtMs(c?.ms),
    c?.slots ?? "-",
    c ? fmtInt(c.keys) : "-",
    c ? fmtInt(c.bytes) : "-",
    c?.rounds ?? "-",
    r.moved_keys === undefined ? "-" : fmtInt(r.moved_keys),
    mk ? `${fmtMs(mk.p50_ms)} / ${fmtMs(mk.p99_ms)} / ${fmtMs(mk.max_ms)}` : "-",
    r.others_pct ?? "-",
    r.error ? "FAIL" : "PASS",
  ]);
}
const latRows: (string | number)[][] = [["event", "phase", "samples", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "longest silence ms"]];
for (const r of results) {
  if (!r.latency) continue;
  for (const p of PHASES) {
    const l = r.latency[p];
    latRows.push([p === "before" ? r.event : "", p, fmtInt(l.n), fmtMs(l.p50_ms), fmtMs(l.p99_ms), fmtMs(l.p999_ms), fmtMs(l.max_ms), fmtMs(r.gap_max_by_phase?.[p])]);
  }
}
console.log("\nmigrations\n" + table(migRows));
console.log("\nend-to-end latency and receiver silence by phase\n" + table(latRows) + "\n");
console.log(
  `outputs: ${fmtInt(v.received)} of ${fmtInt(totalSent)} inputs, ${v.wrongKeys} keys with outputs ≠ inputs${v.problems.length > 0 ? ` (${v.problems[0]})` : ""}, ` +
    `${validator.duplicates} duplicates, ${validator.badWindows} invalid windows, ${validator.unparsable} unparsable lines`,
);
console.log(`peak RSS MiB of the members at the end: ${Object.entries(peakRss).map(([n, m]) => `${n} ${m}`).join(", ")}`);
const share = whole.stop();
console.log(`machine: this bench used ${share.ours_pct}% and other processes ${share.others_pct}% of all ${env.cpus} CPUs during the run`);
console.log(`${pass ? "RESULT: PASS" : "RESULT: FAIL"} (${((now() - benchStart) / 1000).toFixed(0)} s)`);
console.log(
  JSON.stringify({
    bench: "autoscale",
    ...env,
    elapsed_s: Math.round((now() - benchStart) / 1000),
    load_average_end: loadavg()[0],
    machine_share: share,
    keys: KEYS,
    fraction: FRACTION,
    max_by_size: Object.fromEntries([...maxBySize].map(([n, m]) => [n, Math.round(m)])),
    logs: dir,
    events: results,
    peak_rss_mib: peakRss,
    sent: totalSent,
    received: v.received,
    duplicates: validator.duplicates,
    invalid_windows: validator.badWindows,
    wrong_keys: v.wrongKeys,
    fatal,
    pass,
  }),
);
process.exit(pass ? 0 : 1);
