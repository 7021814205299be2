// The cost of crash recovery (issue 10): what checkpointing takes from throughput, how long a
// checkpoint takes and how much it writes, and how long a worker killed with SIGKILL takes to be
// back in the cluster after it is started again with its command line.
//
//   npm run build && bun bench/resilience.ts [--keys 100000] [--full] [--pairs 3]
//        [--messages 24000000] [--interval 1s] [--rate N] [--fraction 0.5] [--probe-seconds 6]
//        [--checkpoint-seconds 15] [--kills 2] [--down-seconds 1] [--after-seconds 4]
//        [--failure-timeout 1s] [--parts throughput,checkpoint,recovery] [--binary dist/wallaroo]
//
// ≈ 90 s on 2 cores with 100 000 keys. 1 000 000 keys (--full, or --keys 1000000) adds ≈ 90 s
// more; on 2 cores it needs --failure-timeout 10s (a checkpoint of that size stalls a worker for
// longer than the default 1 s, and the cluster then takes live members for dead: see
// docs/benchmarks.md).
//
// 1. Throughput: the alphabet job on 2 workers, --messages flat out (bench/throughput.ts's run,
//    shared through bench/lib.ts), without and with `--resilience-dir` (checkpoint every
//    --interval), alternating for --pairs pairs (the first of each pair alternates too, so a
//    drift of the shared machine falls on both); medians and their ratio.
// 2. Checkpoints: sequence_window on 2 workers with resilience and `--log-level debug`, every
//    key given state first (in a shuffled order: see SequenceWorkload's shuffleFirstRound; in key
//    order, a round-robin load over the keys reads their states as a sequential scan of memory and
//    the sustained max came out 1.3–1.5 × what the same cluster does once a rollback has
//    installed its state slot by slot), then a steady load at --fraction of the sustained max (measured flat
//    out on the same cluster: outputs over the last 2/3 of --probe-seconds, extended until the
//    window holds 2 whole checkpoint cycles, so pauses for checkpoints are included; the same
//    probe on a cluster without resilience is reported beside it). The load cycles through the
//    keys (message i is key i mod K), so every key is touched every K / rate seconds. Duration,
//    slots and bytes of each checkpoint come from the initializer's `Checkpoint K committed: S
//    slots, B bytes written in T ms` lines during --checkpoint-seconds (extended until 5
//    checkpoints are in, at most 90 s); latency is measured against the sender's schedule (an
//    input's due time at the fixed rate), so a pause of the sources counts in full.
// 3. Recovery, on the same cluster under the same load, --kills times: SIGKILL to w1; once the
//    initializer says `Worker w1 is down`, wait --down-seconds, start w1 again with its command
//    line, and time from that spawn: w1 listening, `Worker w1 is back`, `Rolling w1 back to
//    checkpoint K` (a local recovery; `Rolling the cluster back` otherwise), `Replayed N messages
//    … in T ms`, `No member is down: the sources resume.`
//    (the sources are back), the first output line at the receiver, and the first output whose
//    latency against the schedule is back to the steady p99 (the backlog of the pause is worked
//    off). Times of log lines are when this process read them from the worker's stderr.
//
// Correctness (RESULT: PASS/FAIL): alphabet totals exact in every throughput run; sequence_window:
// every input answered at least once, no invalid window (a key's state lost or reset), nothing
// unparsable. After a rollback the inputs after the checkpoint are processed again, so their
// outputs come twice: those are counted ("re-sent outputs"), not failures.
import { mkdirSync, readdirSync, readFileSync, statSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { Cluster, loggedPort } from "../test/support/cluster.ts";
import { LoadSender, SequenceWorkload } from "../test/support/load.ts";
import { assertRunning, Child, stopAll } from "../test/support/process.ts";
import { CountLines, Receiver, type Conn, type OutputHandler } from "../test/support/receiver.ts";
import { SequenceValidator } from "../test/support/validate.ts";
import { now } from "../test/support/wait.ts";
import {
  alphabetMaxThroughput,
  DEFAULT_BINARY,
  environment,
  fmtInt,
  fmtMs,
  killChildrenOnSignal,
  launchCluster,
  machineMeter,
  metered,
  numFlag,
  parseFlags,
  peakRssMiB,
  percentile,
  runDir,
  Samples,
  stableBinary,
  summarize,
  table,
  type LatencySummary,
  type ThroughputResult,
} from "./lib.ts";

const argv = process.argv.slice(2);
const FULL = argv.includes("--full");
const flags = parseFlags(
  argv.filter((a) => a !== "--full"),
  {
    keys: "key counts for parts 2 and 3, comma separated (default 100000; --full adds 1000000)",
    pairs: "throughput pairs (without, with resilience), alternating (default 3)",
    messages: "alphabet messages per throughput run (default 24000000: runs of 2-5 s, so that warming up and, with resilience, one checkpoint do not dominate them)",
    interval: "--time-between-checkpoints given to the workers (default 1s)",
    rate: "offered msg/s for parts 2 and 3 (default: --fraction of the sustained max, probed per key count)",
    fraction: "fraction of the sustained max to offer (default 0.5)",
    "probe-seconds": "seconds of the flat-out probe; its first third is not counted (default 6)",
    "checkpoint-seconds": "seconds of steady load whose checkpoints are measured (default 15)",
    kills: "kill/restart cycles per key count (default 2)",
    "down-seconds": "seconds between the initializer seeing w1 down and w1 started again (default 1)",
    "after-seconds": "seconds of load after the sources resume, before the next kill or the end (default 4)",
    "failure-timeout": "--failure-timeout given to every worker of parts 2 and 3 (default: the worker's own, 1s)",
    parts: "which parts: throughput,checkpoint,recovery (default all; recovery needs checkpoint's cluster)",
    binary: `the wallaroo executable (default ${DEFAULT_BINARY})`,
  },
);
const KEY_COUNTS = flags.keys ? flags.keys.split(",").map((k) => Number(k.replace(/_/g, ""))) : FULL ? [100_000, 1_000_000] : [100_000];
if (FULL && !KEY_COUNTS.includes(1_000_000)) KEY_COUNTS.push(1_000_000);
const PAIRS = numFlag(flags, "pairs", 3);
const N = numFlag(flags, "messages", 24_000_000);
const INTERVAL = flags.interval ?? "1s";
const FIXED_RATE = flags.rate ? numFlag(flags, "rate", 0) : undefined;
const FRACTION = numFlag(flags, "fraction", 0.5);
const PROBE_MS = numFlag(flags, "probe-seconds", 6) * 1000;
const STEADY_MS = numFlag(flags, "checkpoint-seconds", 15) * 1000;
const KILLS = numFlag(flags, "kills", 2);
const DOWN_MS = numFlag(flags, "down-seconds", 1) * 1000;
const AFTER_MS = numFlag(flags, "after-seconds", 4) * 1000;
const FAILURE_TIMEOUT = flags["failure-timeout"];
const PARTS = new Set((flags.parts ?? "throughput,checkpoint,recovery").split(","));
/** Load before the steady window opens: the first checkpoint under load is not counted. */
const WARMUP_MS = 2000;
/** The steady window goes on past --checkpoint-seconds until it holds this many checkpoints, up to STEADY_CAP_MS. */
const MIN_COMMITS = 5;
const STEADY_CAP_MS = 90_000;
const PROBE_CAP_MS = 60_000;
const STALL_MS = 15_000;
/** From the restart to `No member is down`, at most. */
const RECOVERY_DEADLINE_MS = 120_000;
const WORKER = "w1";

killChildrenOnSignal();
const env = environment();
const benchStart = now();
const dir = runDir("resilience");
const binary = stableBinary(flags.binary ?? DEFAULT_BINARY, dir);
const cpuModel = /^model name\s*:\s*(.*)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? "?";
console.log(`wallaroo resilience bench — ${env.date}, Bun ${env.bun}, ${env.cpus} CPUs (${cpuModel}), ${env.platform}, load average ${loadavg()[0]!.toFixed(2)}`);
console.log(`logs: ${dir}\n`);

const resilienceArgs = (rdir: string) => ["--resilience-dir", rdir, "--time-between-checkpoints", INTERVAL];
/** Workers of parts 2 and 3: debug for the checkpoint lines, and the failure timeout if one is given. */
const keyedArgs = ["--log-level", "debug", ...(FAILURE_TIMEOUT ? ["--failure-timeout", FAILURE_TIMEOUT] : [])];
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const fmtRate = (r: number) => (Number.isFinite(r) ? `${(r / 1e6).toFixed(2)} M msg/s` : "-");
const fmtBytes = (b: number) => (Number.isFinite(b) ? (b >= 1e6 ? `${(b / 1e6).toFixed(1)} MB` : `${(b / 1e3).toFixed(0)} kB`) : "-");

const START_RE = /Checkpoint (\d+) at input position (\d+)/;
const COMMIT_RE = /Checkpoint (\d+) committed: (\d+) slots, (\d+) bytes written in ([\d.]+) ms/;
const ABANDON_RE = /Checkpoint (\d+) abandoned: (.*)/;

interface Commit {
  k: number;
  /** Input position it covers (from its start line; NaN when that line is not in the range). */
  position: number;
  slots: number;
  bytes: number;
  ms: number;
}

/** The initializer's debug lines about checkpoints, among `lines`. */
function commitsIn(lines: readonly string[]): { commits: Commit[]; abandoned: string[] } {
  const commits: Commit[] = [];
  const abandoned: string[] = [];
  const positions = new Map<number, number>();
  for (const l of lines) {
    const s = START_RE.exec(l);
    if (s) positions.set(Number(s[1]), Number(s[2]));
    const m = COMMIT_RE.exec(l);
    if (m) commits.push({ k: Number(m[1]), position: positions.get(Number(m[1])) ?? NaN, slots: Number(m[2]), bytes: Number(m[3]), ms: Number(m[4]) });
    const a = ABANDON_RE.exec(l);
    if (a) abandoned.push(`${a[1]}: ${a[2]}`);
  }
  return { commits, abandoned };
}

/** Bytes of every file under `path`. */
function du(path: string): number {
  let total = 0;
  try {
    for (const e of readdirSync(path, { withFileTypes: true })) {
      const p = join(path, e.name);
      total += e.isDirectory() ? du(p) : statSync(p).size;
    }
  } catch {
    // gone (a clean shutdown removes the files)
  }
  return total;
}

// ------------------------------------------------------------------------ 1. throughput

interface TputRun extends ThroughputResult {
  resilience: boolean;
  pair: number;
  /** Checkpoints the initializer committed during the run, and their durations. */
  checkpoints?: number;
  checkpoint_ms?: number[];
}

async function throughputPart(): Promise<{ runs: TputRun[]; off: number; on: number; ratio: number }> {
  console.log(`1. alphabet max throughput, 2 workers, ${fmtInt(N)} messages per run, without / with resilience (checkpoint every ${INTERVAL}), ${PAIRS} pairs alternating`);
  const runs: TputRun[] = [];
  for (let p = 1; p <= PAIRS; p++) {
    for (const on of p % 2 === 1 ? [false, true] : [true, false]) {
      const label = on ? "with resilience" : "without";
      const logDir = join(dir, `throughput-${p}-${on ? "resilience" : "plain"}`);
      mkdirSync(logDir, { recursive: true });
      // Debug on both sides: the same logging, and the commit lines to count.
      const extraArgs = ["--log-level", "debug", ...(on ? resilienceArgs(join(logDir, "resilience")) : [])];
      const r: TputRun = {
        ...(await metered(() => alphabetMaxThroughput(label, (rx) => launchCluster("alphabet", 2, rx, { binary, logDir, extraArgs }, label), N, STALL_MS))),
        resilience: on,
        pair: p,
      };
      if (on) {
        // The checkpoint at input position 0 is the one every resilient cluster commits when it forms.
        const commits = commitsIn(readFileSync(join(logDir, "initializer.log"), "utf8").split("\n")).commits.filter((c) => c.position > 0);
        r.checkpoints = commits.length;
        r.checkpoint_ms = commits.map((c) => c.ms);
      }
      runs.push(r);
      const cps = on ? `; ${r.checkpoints} checkpoints committed during the run (${r.checkpoint_ms!.map(fmtMs).join(", ")} ms)` : "";
      console.log(`  pair ${p} ${label.padEnd(16)} ${r.ok ? fmtRate(r.msg_per_s) : "FAILED: " + r.error}  (first send→last line ${r.total_s.toFixed(2)} s, others' CPU ${r.others_pct}%)${cps}`);
    }
  }
  const ok = (on: boolean) => runs.filter((r) => r.ok && r.resilience === on).map((r) => r.msg_per_s);
  const off = median(ok(false));
  const on = median(ok(true));
  return { runs, off, on, ratio: on / off };
}

// ------------------------------------------------------------- 2 and 3. keyed state

/** When each input was due at the fixed rate: idx → time, for latency against the schedule. */
class Schedule {
  rate = 0;
  t0 = NaN;
  base = 0;
  start(rate: number, base: number): void {
    this.rate = rate;
    this.t0 = now();
    this.base = base;
  }
  dueAt(idx: number): number {
    return idx < this.base || Number.isNaN(this.t0) ? NaN : this.t0 + ((idx - this.base) * 1000) / this.rate;
  }
}

/** Arrivals at the receiver: the time of every chunk after a mark, first per connection too. */
class Arrivals implements OutputHandler {
  markAt = Infinity;
  firstAfter = NaN;
  linesAfter = 0;
  lastAt = NaN;
  readonly firstByConn = new Map<number, number>();
  constructor(private readonly inner: OutputHandler) {}
  onChunk(conn: Conn, chunk: Uint8Array, t: number): void {
    const before = conn.lines;
    this.inner.onChunk(conn, chunk, t);
    this.lastAt = t;
    if (t < this.markAt) return;
    if (Number.isNaN(this.firstAfter)) this.firstAfter = t;
    if (!this.firstByConn.has(conn.id)) this.firstByConn.set(conn.id, t);
    this.linesAfter += conn.lines - before;
  }
  mark(t: number): void {
    this.markAt = t;
    this.firstAfter = NaN;
    this.linesAfter = 0;
    this.firstByConn.clear();
  }
}

/** Checkpoints committed in `lines` from index `from` on. */
const commitsSince = (lines: readonly string[], from: number) => lines.slice(from).filter((l) => COMMIT_RE.test(l)).length;

/**
 * Sustained max of the cluster `tx` feeds: flat out for PROBE_MS, outputs over the last 2/3
 * (checkpoint pauses included, so it is a rate the cluster can keep up), then drained. With
 * `init` (a cluster with resilience) the window goes on until it holds 2 whole checkpoint cycles
 * (at most PROBE_CAP_MS): a 1 000 000-key checkpoint pauses the sources for longer than the window.
 */
async function sustainedMax(tx: LoadSender, answered: () => number, sleep: (ms: number) => Promise<void>, drained: (what: string) => Promise<void>, init?: Child): Promise<{ max: number; window_s: number }> {
  const done = tx.fast(1e12);
  await sleep(PROBE_MS / 3);
  const from = init?.lines.length ?? 0;
  const l0 = answered();
  const p0 = now();
  await sleep((2 * PROBE_MS) / 3);
  while (init && commitsSince(init.lines, from) < 3 && now() - p0 < PROBE_CAP_MS) await sleep(100);
  const window_s = (now() - p0) / 1000;
  const max = ((answered() - l0) * 1000) / (now() - p0);
  await tx.stop();
  await done;
  await drained("after the max-rate probe");
  return { max, window_s };
}

/** The same probe on a cluster without resilience (every key given state first), for comparison. */
async function plainSustainedMax(K: number): Promise<number> {
  const logDir = join(dir, `keys-${K}`, "plain");
  mkdirSync(logDir, { recursive: true });
  const rx = new Receiver(new CountLines());
  rx.listen();
  let cluster: Cluster | undefined;
  try {
    cluster = await new Cluster("sequence_window", rx.port, { binary, logDir, extraArgs: keyedArgs }).start(2);
    await rx.waitConnections(2, 10_000);
    const c = cluster;
    const tx = await new LoadSender(new SequenceWorkload(K, 0, { shuffleFirstRound: 1 })).connect(c.sourcePort);
    const drained = (what: string) => rx.waitLinesFlowing(tx.sent, STALL_MS, what, () => assertRunning([...c.members.values()].map((m) => m.child)));
    await tx.fast(K);
    await drained("priming every key");
    const { max } = await sustainedMax(tx, () => rx.lines, (ms) => Bun.sleep(ms), drained);
    tx.close();
    return max;
  } finally {
    await cluster?.shutdown().catch((e: Error) => console.log(`  note: shutdown: ${e.message.split("\n")[0]}`));
    rx.stop();
  }
}

interface CheckpointFigures {
  keys: number;
  rate: number;
  sustained_max?: number;
  window_s: number;
  commits: Commit[];
  abandoned: string[];
  duration_ms: { n: number; p50?: number; p99?: number; max?: number };
  bytes: { p50: number; max: number };
  slots_p50: number;
  /** Files under each worker's resilience directory at the end of the window. */
  disk_bytes: Record<string, number>;
  latency: LatencySummary;
  others_pct?: number;
}

interface RecoveryFigures {
  keys: number;
  kill: number;
  rate: number;
  kill_to_down_ms?: number;
  outputs_while_down: number;
  /** All from the restart (spawn of the new w1), bench clock. */
  listening_ms?: number;
  back_ms?: number;
  rollback_ms?: number;
  checkpoint?: number;
  position?: number;
  replayed_line_ms?: number;
  replayed?: number;
  /** A local recovery (w1 rolled back alone): the replayed messages forwarded to it. */
  forwarded?: number;
  replay_ms?: number;
  resumed_ms?: number;
  first_output_ms?: number;
  first_output_new_w1_ms?: number;
  /** Lines received between the restart and the rollback line (expected none). */
  lines_before_rollback: number;
  /** w1's own "Rolled back to checkpoint" line: its slots restored from its store. */
  restored_ms?: number;
  restored_keys?: number;
  restored_slots?: number;
  /** First output whose latency against the schedule is at most `normal_ms`, from the restart. */
  normal_ms?: number;
  normal_threshold_ms?: number;
  max_latency_ms?: number;
  others_pct?: number;
  error?: string;
}

interface KeyedResult {
  keys: number;
  /** Flat-out probes with and without resilience (msg/s). */
  sustained_max?: number;
  sustained_max_plain?: number;
  sustained_max_window_s?: number;
  checkpoint?: CheckpointFigures;
  recoveries: RecoveryFigures[];
  sent: number;
  answered: number;
  duplicates: number;
  out_of_order: number;
  bad_windows: number;
  unparsable: number;
  wrong_keys: number;
  peak_rss_mib: Record<string, number>;
  /** Rollbacks the initializer started (one per kill expected). */
  rollbacks?: number;
  /** The initializer's lines losing a member that was not killed (silence, or "it started again"). */
  false_losses?: string[];
  ok: boolean;
  error?: string;
}

async function keyedPart(K: number): Promise<KeyedResult> {
  const sub = join(dir, `keys-${K}`);
  mkdirSync(sub, { recursive: true });
  const rdir = join(sub, "resilience");
  const wl = new SequenceWorkload(K, 0, { shuffleFirstRound: 1 });
  const sched = new Schedule();
  let answered = 0;
  /** Latency against the schedule of outputs due in the steady window. */
  let steady: { from: number; to: number; samples: Samples } | undefined;
  /** During a recovery: the worst latency, and the first output back to normal. */
  let rec: { from: number; threshold: number; max: number; normalAt: number } | undefined;
  const validator = new SequenceValidator(
    K,
    (_c, _k, idx, t) => {
      answered++;
      const due = sched.dueAt(idx);
      if (Number.isNaN(due)) return;
      const lat = t - due;
      if (steady && due >= steady.from && due < steady.to) steady.samples.add(lat);
      if (rec && t >= rec.from) {
        if (lat > rec.max) rec.max = lat;
        if (Number.isNaN(rec.normalAt) && lat <= rec.threshold) rec.normalAt = t;
      }
    },
    1 << 25,
  );
  const arrivals = new Arrivals(validator);
  const rx = new Receiver(arrivals);
  rx.listen();
  const res: KeyedResult = { keys: K, recoveries: [], sent: 0, answered: 0, duplicates: 0, out_of_order: 0, bad_windows: 0, unparsable: 0, wrong_keys: 0, peak_rss_mib: {}, ok: false };
  let cluster: Cluster | undefined;
  let tx: LoadSender | undefined;
  let load: Promise<void> | undefined;
  const children = () => [...cluster!.members.values()].map((m) => m.child);

  /** Until every input sent so far has an output (re-sent ones do not count); fails on a stall or a dead worker. */
  async function drained(what: string): Promise<void> {
    let last = answered;
    let moved = now();
    while (answered < tx!.sent) {
      assertRunning(children());
      if (answered !== last) {
        last = answered;
        moved = now();
      } else if (now() - moved > STALL_MS) throw new Error(`${what}: outputs stalled at ${answered}/${tx!.sent} for ${STALL_MS} ms`);
      const seen = answered;
      await rx.until(() => answered !== seen, 100, "").catch(() => {});
    }
  }

  async function watchedSleep(ms: number): Promise<void> {
    const end = now() + ms;
    while (now() < end) {
      assertRunning(children());
      await Bun.sleep(Math.min(100, Math.max(0, end - now())));
    }
  }

  try {
    console.log(`\nsequence_window, ${fmtInt(K)} keys, 2 workers with resilience (checkpoint every ${INTERVAL}${FAILURE_TIMEOUT ? `, --failure-timeout ${FAILURE_TIMEOUT}` : ""}); logs in ${sub}`);
    const plainMax = FIXED_RATE === undefined ? await plainSustainedMax(K) : undefined;
    if (plainMax !== undefined) console.log(`  sustained max without resilience ${fmtInt(plainMax)} msg/s (2 workers, every key given state first, flat out, outputs over the last ${((2 * PROBE_MS) / 3000).toFixed(0)} s of ${PROBE_MS / 1000} s)`);
    const t0 = now();
    cluster = await new Cluster("sequence_window", rx.port, { binary, logDir: sub, extraArgs: [...resilienceArgs(rdir), ...keyedArgs] }).start(2);
    await rx.waitConnections(2, 10_000);
    tx = await new LoadSender(wl).connect(cluster.sourcePort);
    await tx.fast(K);
    await drained("priming every key");
    console.log(`  cluster formed and every key given state in ${((now() - t0) / 1000).toFixed(1)} s`);

    const init = cluster.initializer.child;
    let max: number | undefined;
    if (FIXED_RATE === undefined) {
      const p = await sustainedMax(tx, () => answered, watchedSleep, drained, init);
      max = p.max;
      res.sustained_max = Math.round(max);
      res.sustained_max_plain = Math.round(plainMax!);
      res.sustained_max_window_s = p.window_s;
      console.log(`  sustained max with resilience ${fmtInt(max)} msg/s (the same probe, outputs over ${p.window_s.toFixed(1)} s: at least 2 checkpoint cycles); offering ${FRACTION} × that from now on`);
    }
    const rate = FIXED_RATE ?? Math.max(1000, Math.round((max! * FRACTION) / 1000) * 1000);

    sched.start(rate, tx.sent);
    load = tx.atRate(rate);
    await watchedSleep(WARMUP_MS);

    // The steady window (part 2) also gives part 3 its threshold: the steady p99.
    {
      const m = machineMeter();
      const from = init.lines.length;
      const wFrom = now();
      steady = { from: wFrom, to: Infinity, samples: new Samples(Math.ceil((rate * STEADY_MS) / 1000) + 1024) };
      await watchedSleep(STEADY_MS);
      // Long checkpoints (1 000 000 keys) are few in the window: go on until there are enough.
      while (commitsSince(init.lines, from) < MIN_COMMITS && now() - wFrom < STEADY_CAP_MS) await watchedSleep(100);
      steady.to = now();
      const sentAtEnd = tx.sent;
      const disk: Record<string, number> = {};
      for (const e of readdirSync(rdir)) disk[e.replace(/^wallaroo-sequence_window-/, "")] = du(join(rdir, e));
      // Outputs due in the window arrive after it, a checkpoint's pause later at worst.
      const until = now() + 30_000;
      while (answered < sentAtEnd && now() < until) await watchedSleep(20);
      const { commits, abandoned } = commitsIn(init.lines.slice(from));
      const ms = commits.map((c) => c.ms).sort((a, b) => a - b);
      const bytes = commits.map((c) => c.bytes);
      const cp: CheckpointFigures = {
        keys: K,
        rate,
        sustained_max: max === undefined ? undefined : Math.round(max),
        window_s: Math.round(steady.to - wFrom) / 1000,
        commits,
        abandoned,
        duration_ms: { n: ms.length, p50: percentile(ms, 50), p99: percentile(ms, 99), max: ms[ms.length - 1] },
        bytes: { p50: median(bytes), max: Math.max(...bytes) },
        slots_p50: median(commits.map((c) => c.slots)),
        disk_bytes: disk,
        latency: summarize(steady.samples),
        others_pct: m.stop().others_pct,
      };
      res.checkpoint = cp;
      steady = undefined;
      console.log(
        `  2. checkpoints at ${fmtInt(rate)} msg/s over ${cp.window_s.toFixed(1)} s: ${ms.length} committed, ${abandoned.length} abandoned; ` +
          `duration p50 ${fmtMs(cp.duration_ms.p50)} / p99 ${fmtMs(cp.duration_ms.p99)} / max ${fmtMs(cp.duration_ms.max)} ms; ` +
          `${fmtBytes(cp.bytes.p50)} (${fmtInt(cp.slots_p50)} slots) per checkpoint; latency p50/p99/max ${fmtMs(cp.latency.p50_ms)}/${fmtMs(cp.latency.p99_ms)}/${fmtMs(cp.latency.max_ms)} ms; others' CPU ${cp.others_pct}%`,
      );
    }

    if (PARTS.has("recovery")) {
      const threshold = Math.max(10, res.checkpoint?.latency.p99_ms ?? 10);
      for (let i = 1; i <= KILLS; i++) {
        const r = await recoverOnce(cluster, i, rate, threshold);
        res.recoveries.push(r);
        if (r.error) throw new Error(`recovery ${i}: ${r.error}`);
      }
    }

    await tx.stop();
    await load;
    await drained("after the last phase");
    res.ok = true;
  } catch (e) {
    res.error = (e as Error).message;
    console.log(`  FAILED: ${res.error}`);
    await tx?.stop().catch(() => {});
  } finally {
    if (cluster) {
      for (const m of cluster.members.values()) res.peak_rss_mib[m.name] = peakRssMiB(m.child.pid);
      // A SIGKILL closes the connections; silence or a second process means a live member was taken for dead.
      const lines = cluster.initializer.child.lines;
      res.rollbacks = lines.filter((l) => /Rolling (the cluster|\S+) back to checkpoint/.test(l)).length;
      res.false_losses = lines.filter((l) => /Lost connection to worker \S+ \((nothing heard|it started again)/.test(l));
      if (res.false_losses.length > 0) console.log(`  note: ${res.rollbacks} rollbacks for ${res.recoveries.length} kills; the initializer lost a live member ${res.false_losses.length} times, e.g. "${res.false_losses[0]}"`);
    }
    res.sent = tx?.sent ?? 0;
    tx?.close();
    await cluster?.shutdown().catch((e: Error) => console.log(`  note: shutdown: ${e.message.split("\n")[0]}`));
    await stopAll();
    rx.stop();
  }
  const v = validator.verify(wl, res.sent);
  Object.assign(res, {
    answered: v.received,
    duplicates: validator.duplicates,
    out_of_order: validator.outOfOrder,
    bad_windows: validator.badWindows,
    unparsable: validator.unparsable,
    wrong_keys: v.wrongKeys,
  });
  if (v.wrongKeys > 0 || validator.badWindows > 0 || validator.unparsable > 0) {
    res.ok = false;
    res.error ??= `outputs: ${v.wrongKeys} keys without an output for every input, ${validator.badWindows} invalid windows, ${validator.unparsable} unparsable; ${validator.examples.filter((x) => !x.includes("output twice")).slice(0, 3).join(" | ")}`;
  }
  console.log(
    `  outputs: ${fmtInt(v.received)} of ${fmtInt(res.sent)} inputs answered, ${v.wrongKeys} keys short, ${fmtInt(validator.duplicates)} re-sent outputs, ` +
      `${fmtInt(validator.outOfOrder)} outputs behind their key's last on the same connection, ${validator.badWindows} invalid windows → ${res.ok ? "PASS" : "FAIL"}`,
  );
  return res;

  /** SIGKILL to w1 under load, start it again, time the recovery from the restart. */
  async function recoverOnce(c: Cluster, i: number, rate: number, threshold: number): Promise<RecoveryFigures> {
    const r: RecoveryFigures = { keys: K, kill: i, rate, outputs_while_down: 0, lines_before_rollback: 0 };
    const m = machineMeter();
    const init = c.initializer.child;
    const old = c.members.get(WORKER)!;
    try {
      await watchedSleep(i === 1 ? 0 : AFTER_MS);
      const killFrom = init.lines.length;
      const killAt = now();
      const linesAtKill = rx.lines;
      old.child.kill("SIGKILL");
      await old.child.exited;
      await init.waitForLog(new RegExp(`Worker ${WORKER} is down`), 30_000, killFrom);
      r.kill_to_down_ms = now() - killAt;
      const downEnd = now() + DOWN_MS;
      while (now() < downEnd) {
        assertRunning([init]);
        await Bun.sleep(Math.min(50, Math.max(0, downEnd - now())));
      }
      r.outputs_while_down = rx.lines - linesAtKill;

      const from = init.lines.length;
      const connsBefore = rx.conns.length;
      const restartAt = now();
      /** A log line of `child` (the initializer: from the restart on) and when it was read, from the restart. */
      const at = (child: Child, re: RegExp) => child.waitForLog(re, RECOVERY_DEADLINE_MS, child === init ? from : 0).then((mm) => ({ m: mm, t: now() - restartAt }));
      arrivals.mark(restartAt);
      rec = { from: restartAt, threshold, max: 0, normalAt: NaN };
      const child = new Child(WORKER, old.child.cmd, { logPath: join(sub, `${WORKER}-restart-${i}.log`) });
      const back = at(init, new RegExp(`Worker ${WORKER} is back`));
      // The whole cluster's rollback, or w1's alone (a local recovery).
      const rolling = at(init, /Rolling (?:the cluster|\S+) back to checkpoint (\d+) \(epoch \d+\); (?:its|the) input from position (\d+)/).then((x) => {
        r.lines_before_rollback = arrivals.linesAfter;
        return x;
      });
      const replayed = at(init, /Replayed (\d+) messages from the input log \(positions (\d+) to (\d+)\)(?:, (\d+) of them to \S+, the rest skipped,)? in (\d+) ms/);
      const resumed = at(init, /No member is down: the sources resume\./);
      const restored = at(child, /Rolled back to checkpoint (\d+) at epoch \d+: (\d+) keys in (\d+) slots/);
      const control = await loggedPort(child, "control");
      const external = await loggedPort(child, "external");
      r.listening_ms = now() - restartAt;
      c.members.set(WORKER, { name: WORKER, child, control, external, metrics: 0 });
      const [b, ro, rp, rs, rw] = await Promise.all([back, rolling, replayed, resumed, restored]);
      r.back_ms = b.t;
      r.rollback_ms = ro.t;
      r.checkpoint = Number(ro.m[1]);
      r.position = Number(ro.m[2]);
      r.replayed_line_ms = rp.t;
      r.replayed = Number(rp.m[1]);
      if (rp.m[4] !== undefined) r.forwarded = Number(rp.m[4]);
      r.replay_ms = Number(rp.m[5]);
      r.resumed_ms = rs.t;
      r.restored_ms = rw.t;
      r.restored_keys = Number(rw.m[2]);
      r.restored_slots = Number(rw.m[3]);
      // The backlog of the pause drains; the first output back at the steady p99 ends it.
      const end = now() + RECOVERY_DEADLINE_MS;
      while (Number.isNaN(rec.normalAt) && now() < end) await watchedSleep(50);
      r.first_output_ms = arrivals.firstAfter - restartAt;
      r.normal_ms = rec.normalAt - restartAt;
      r.normal_threshold_ms = threshold;
      await watchedSleep(AFTER_MS);
      r.max_latency_ms = rec.max;
      // The restarted w1's sink is a connection opened after the restart.
      const fromW1 = rx.conns.slice(connsBefore).flatMap((x) => arrivals.firstByConn.get(x.id) ?? []);
      r.first_output_new_w1_ms = fromW1.length > 0 ? Math.min(...fromW1) - restartAt : undefined;
    } catch (e) {
      r.error = (e as Error).message;
    } finally {
      rec = undefined;
      arrivals.mark(Infinity);
      r.others_pct = m.stop().others_pct;
    }
    console.log(
      `  3. kill ${i}: down seen ${fmtMs(r.kill_to_down_ms)} ms after SIGKILL; from the restart: listening ${fmtMs(r.listening_ms)}, back ${fmtMs(r.back_ms)}, ` +
        `rollback to checkpoint ${r.checkpoint ?? "-"} ${fmtMs(r.rollback_ms)}, w1 restored ${fmtMs(r.restored_ms)}, replayed ${r.replayed === undefined ? "-" : fmtInt(r.replayed)} msgs (${fmtMs(r.replay_ms)} ms) by ${fmtMs(r.replayed_line_ms)}, ` +
        `sources resume ${fmtMs(r.resumed_ms)}, first output ${fmtMs(r.first_output_ms)}, latency ≤ ${fmtMs(r.normal_threshold_ms)} ms again ${fmtMs(r.normal_ms)} ms; ` +
        `w1 restored ${r.restored_keys === undefined ? "-" : fmtInt(r.restored_keys)} keys; worst latency ${fmtMs(r.max_latency_ms)} ms; others' CPU ${r.others_pct}%${r.error ? `\n  FAILED: ${r.error}` : ""}`,
    );
    return r;
  }
}

// ------------------------------------------------------------------------------- main

const whole = machineMeter();
let tput: Awaited<ReturnType<typeof throughputPart>> | undefined;
const keyed: KeyedResult[] = [];
let pass = true;
try {
  if (PARTS.has("throughput")) {
    tput = await throughputPart();
    if (tput.runs.some((r) => !r.ok)) pass = false;
  }
  if (PARTS.has("checkpoint") || PARTS.has("recovery")) {
    for (const K of KEY_COUNTS) {
      const r = await keyedPart(K);
      keyed.push(r);
      if (!r.ok) pass = false;
    }
  }
} catch (e) {
  pass = false;
  console.log(`FAILED: ${(e as Error).message}`);
} finally {
  await stopAll();
}

// ------------------------------------------------------------------------------ report

const rows: (string | number)[][] = [["figure", "value", "target", "measured on"]];
if (tput) {
  const n = (on: boolean) => tput!.runs.filter((r) => r.ok && r.resilience === on).length;
  const cps = tput.runs.filter((r) => r.resilience && r.ok).map((r) => r.checkpoints ?? 0);
  const on = `alphabet, 2 workers, ${fmtInt(N)} msgs flat out, median of ${n(true)}`;
  rows.push(["max throughput without resilience", fmtRate(tput.off), "", `alphabet, 2 workers, ${fmtInt(N)} msgs flat out, median of ${n(false)}`]);
  rows.push([`max throughput with resilience (${INTERVAL})`, fmtRate(tput.on), "", `${on}; ${cps.join("/")} checkpoints per run`]);
  rows.push(["ratio with / without", tput.ratio.toFixed(3), "≥ 0.9", `medians above, runs alternating in one process`]);
}
for (const k of keyed) {
  const cp = k.checkpoint;
  const where = `sequence_window, 2 workers, ${fmtInt(k.keys)} keys`;
  if (k.sustained_max !== undefined && k.sustained_max_plain !== undefined) {
    rows.push([
      `sustained max without / with resilience, ${fmtInt(k.keys)} keys`,
      `${fmtInt(k.sustained_max_plain)} / ${fmtInt(k.sustained_max)} msg/s (${(k.sustained_max / k.sustained_max_plain).toFixed(2)})`,
      "",
      `${where}, every key given state first, flat out; outputs over the last ${((2 * PROBE_MS) / 3000).toFixed(0)} s of ${PROBE_MS / 1000} s (with resilience: over ${k.sustained_max_window_s?.toFixed(1)} s, ≥ 2 checkpoint cycles)`,
    ]);
  }
  if (cp) {
    const load = `${where}, ${fmtInt(cp.rate)} msg/s steady (${cp.sustained_max !== undefined ? `${FRACTION} × sustained max ${fmtInt(cp.sustained_max)}` : "--rate"}), ${cp.duration_ms.n} checkpoints in ${cp.window_s.toFixed(1)} s`;
    rows.push([`checkpoint duration p50 / p99, ${fmtInt(k.keys)} keys`, `${fmtMs(cp.duration_ms.p50)} / ${fmtMs(cp.duration_ms.p99)} ms`, "", `${load}, ${cp.abandoned.length} abandoned`]);
    rows.push([`bytes per checkpoint, ${fmtInt(k.keys)} keys`, `${fmtBytes(cp.bytes.p50)} (max ${fmtBytes(cp.bytes.max)})`, "", `median over the same checkpoints; ${fmtInt(cp.slots_p50)} of 1024 slots written`]);
    rows.push([`latency p50 / p99 / max with checkpoints, ${fmtInt(k.keys)} keys`, `${fmtMs(cp.latency.p50_ms)} / ${fmtMs(cp.latency.p99_ms)} / ${fmtMs(cp.latency.max_ms)} ms`, "", `against the schedule, inputs due in the same ${cp.window_s.toFixed(1)} s`]);
  }
  const recs = k.recoveries.filter((r) => !r.error);
  if (recs.length > 0) {
    const target = k.keys <= 100_000 ? "≤ 1 s" : k.keys <= 1_000_000 ? "≤ 5 s" : "";
    const list = (f: (r: RecoveryFigures) => number | undefined) => recs.map((r) => fmtMs(f(r))).join(" / ");
    const on = `${where}, SIGKILL of w1 at ${fmtInt(recs[0]!.rate)} msg/s, restarted ${DOWN_MS / 1000} s after it was seen down; ${recs.length} kill(s), each listed`;
    rows.push([`restart → sources resume ms, ${fmtInt(k.keys)} keys`, list((r) => r.resumed_ms), target, `${on}; "No member is down" on the initializer`]);
    rows.push([`restart → first output ms, ${fmtInt(k.keys)} keys`, list((r) => r.first_output_ms), target, "first line at the receiver after the spawn"]);
    rows.push([`restart → latency back ≤ steady p99 ms, ${fmtInt(k.keys)} keys`, list((r) => r.normal_ms), "", `first output within ${fmtMs(recs[0]!.normal_threshold_ms)} ms of its due time`]);
    // What the replay's length comes from: the input since the last commit, in seconds of the load
    // (between one checkpoint's duration and one interval plus that).
    const inputS = recs.map((r) => (r.replayed === undefined ? "-" : (r.replayed / r.rate).toFixed(2))).join(" / ");
    const forwarded = recs.some((r) => r.forwarded !== undefined) ? `; forwarded to w1 (a local recovery): ${recs.map((r) => (r.forwarded === undefined ? "-" : fmtInt(r.forwarded))).join(" / ")}` : "";
    rows.push([`messages replayed, ${fmtInt(k.keys)} keys`, recs.map((r) => fmtInt(r.replayed ?? NaN)).join(" / "), "", `"Replayed N messages" line: ${inputS} s of the load${forwarded}; replay took ${list((r) => r.replay_ms)} ms`]);
  }
}
console.log("\nsummary\n" + table(rows));

const recRows: (string | number)[][] = [
  ["keys", "kill", "down seen ms", "listening", "back", "rollback", "w1 restored", "replay line", "resume", "1st output", "1st from w1", "latency normal", "replayed msgs", "replay ms", "ckpt", "w1 keys restored", "worst latency ms", "others' CPU %"],
];
for (const k of keyed) {
  for (const r of k.recoveries) {
    recRows.push([
      fmtInt(k.keys),
      r.kill,
      fmtMs(r.kill_to_down_ms),
      fmtMs(r.listening_ms),
      fmtMs(r.back_ms),
      fmtMs(r.rollback_ms),
      fmtMs(r.restored_ms),
      fmtMs(r.replayed_line_ms),
      fmtMs(r.resumed_ms),
      fmtMs(r.first_output_ms),
      fmtMs(r.first_output_new_w1_ms),
      fmtMs(r.normal_ms),
      r.replayed === undefined ? "-" : fmtInt(r.replayed),
      fmtMs(r.replay_ms),
      r.checkpoint ?? "-",
      r.restored_keys === undefined ? "-" : fmtInt(r.restored_keys),
      fmtMs(r.max_latency_ms),
      r.others_pct ?? "-",
    ]);
  }
}
if (recRows.length > 1) console.log("\nrecoveries (ms from the spawn of the restarted w1, bench clock)\n" + table(recRows));
for (const k of keyed) {
  console.log(
    `\n${fmtInt(k.keys)} keys: ${fmtInt(k.answered)} of ${fmtInt(k.sent)} inputs answered, ${fmtInt(k.duplicates)} re-sent outputs, ${k.bad_windows} invalid windows; ` +
      `peak RSS MiB ${Object.entries(k.peak_rss_mib).map(([n, m]) => `${n} ${m}`).join(", ")}; resilience files at the end of the checkpoint window: ` +
      `${Object.entries(k.checkpoint?.disk_bytes ?? {}).map(([n, b]) => `${n} ${fmtBytes(b)}`).join(", ") || "-"}${k.error ? `\n  FAILED: ${k.error}` : ""}`,
  );
}
const share = whole.stop();
console.log(`\nmachine: this bench used ${share.ours_pct}% and other processes ${share.others_pct}% of all ${env.cpus} CPUs during the run`);
console.log(`${pass ? "RESULT: PASS" : "RESULT: FAIL"} (${((now() - benchStart) / 1000).toFixed(0)} s)`);
console.log(
  JSON.stringify({
    bench: "resilience",
    ...env,
    cpu_model: cpuModel,
    elapsed_s: Math.round((now() - benchStart) / 1000),
    load_average_end: loadavg()[0],
    machine_share: share,
    interval: INTERVAL,
    logs: dir,
    throughput: tput,
    keyed: keyed.map((k) => ({ ...k, checkpoint: k.checkpoint && { ...k.checkpoint, commits: k.checkpoint.commits.length } })),
    pass,
  }),
);
process.exit(pass ? 0 : 1);
