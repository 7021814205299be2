// What the benchmarks in bench/ measure with, beside the shared harness in test/support (child
// processes, cluster driver, receiver, load sender, validators): run directories, latency
// samples and percentiles, the send log, latency meters, receiver silences, the machine meter,
// the alphabet max-throughput run (bench/throughput.ts and bench/resilience.ts), tables and
// flags. Benchmarks are never part of `npm test`.
//
// Timing: every timestamp is `performance.now()` of the bench process. The sender and the
// receiver share that process, so an end-to-end latency is one clock read at send minus one at
// receive — no cross-process clock agreement is needed.
import { chmodSync, copyFileSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Cluster, type ClusterOptions } from "../test/support/cluster.ts";
import { AlphabetWorkload, LoadSender } from "../test/support/load.ts";
import { assertRunning, BIN, Child, HOST, liveChildren, onChildExit } from "../test/support/process.ts";
import { CountLines, eachLine, Receiver, type Conn, type OutputHandler } from "../test/support/receiver.ts";
import { alphabetTotalsFromTails, checkAlphabetTotals } from "../test/support/validate.ts";
import { now } from "../test/support/wait.ts";

export const ROOT = resolve(import.meta.dir, "..");
export const DEFAULT_BINARY = BIN;

// ------------------------------------------------------------------------------------ misc

/** A fresh directory for this run's logs and binary copy; kept afterwards for inspection. */
export function runDir(bench: string): string {
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  const dir = join(tmpdir(), `wallaroo-bench-${bench}-${stamp}`);
  mkdirSync(dir, { recursive: true });
  return dir;
}

/**
 * Copies the binary into the run directory, so an engineer rebuilding dist/wallaroo during a run
 * cannot mix two versions in one cluster (joiners are spawned minutes after the first workers).
 */
export function stableBinary(binary: string, dir: string): string {
  const copy = join(dir, "wallaroo");
  copyFileSync(binary, copy);
  chmodSync(copy, 0o755);
  // ≈ 109 MB per run: the logs stay, the copy goes when the bench exits.
  process.on("exit", () => rmSync(copy, { force: true }));
  return copy;
}

/** Whatever path the bench leaves by (a signal included), no child outlives it. */
export function killChildrenOnSignal(): void {
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.on(sig, () => {
      for (const c of liveChildren()) c.kill("SIGKILL");
      process.exit(130);
    });
  }
}

export function fmtInt(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

export function fmtMs(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms)) return "-";
  if (ms >= 100) return ms.toFixed(0);
  if (ms >= 10) return ms.toFixed(1);
  return ms.toFixed(2);
}

/** A plain-text table: first row is the header; columns are right-aligned except the first. */
export function table(rows: (string | number)[][]): string {
  const cells = rows.map((r) => r.map(String));
  const widths: number[] = [];
  for (const r of cells) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  const out = [line(cells[0]!), widths.map((w) => "-".repeat(w)).join("  "), ...cells.slice(1).map(line)];
  return out.join("\n");
}

// ----------------------------------------------------------------------------- percentiles

/** A growable Float64Array of samples (latencies in ms). */
export class Samples {
  private buf: Float64Array;
  length = 0;
  /** Size `capacity` to the expected count: growing copies the array, a pause of its own (≈10 ms at 4 M). */
  constructor(capacity = 1 << 16) {
    this.buf = new Float64Array(capacity);
  }
  add(v: number): void {
    if (this.length === this.buf.length) {
      const next = new Float64Array(this.buf.length * 2);
      next.set(this.buf);
      this.buf = next;
    }
    this.buf[this.length++] = v;
  }
  sorted(): Float64Array {
    return this.buf.slice(0, this.length).sort();
  }
}

export interface LatencySummary {
  n: number;
  p50_ms?: number;
  p99_ms?: number;
  p999_ms?: number;
  max_ms?: number;
  mean_ms?: number;
}

/** Nearest-rank percentile of an ascending array; `p` in [0, 100]. */
export function percentile(sorted: ArrayLike<number>, p: number): number | undefined {
  if (sorted.length === 0) return undefined;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank];
}

export function summarize(s: Samples): LatencySummary {
  const a = s.sorted();
  if (a.length === 0) return { n: 0 };
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += a[i]!;
  const r = (v: number | undefined) => (v === undefined ? undefined : Math.round(v * 1000) / 1000);
  return { n: a.length, p50_ms: r(percentile(a, 50)), p99_ms: r(percentile(a, 99)), p999_ms: r(percentile(a, 99.9)), max_ms: r(a[a.length - 1]), mean_ms: r(sum / a.length) };
}

// ------------------------------------------------------------------------ machine share

/** CPU time (µs) of every child of this bench that has exited so far. */
let exitedCpu_us = 0;
onChildExit((c) => {
  const ru = c.proc.resourceUsage();
  if (ru) exitedCpu_us += Number(ru.cpuTime.total);
});

/** CPU time (µs) of every child so far: exited ones exactly, running ones from /proc/<pid>/stat. */
function childrenCpu_us(): number {
  let live = 0;
  for (const c of liveChildren()) {
    try {
      const stat = readFileSync(`/proc/${c.pid}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      // Fields 14 and 15 (utime, stime) are the 12th and 13th after the command name, in ticks of 10 ms.
      live += (Number(f[11]) + Number(f[12])) * 10_000;
    } catch {
      // gone or not Linux
    }
  }
  return exitedCpu_us + live;
}

/** Busy and total jiffies of the whole machine (first line of /proc/stat); null off Linux. */
export function machineJiffies(): { busy: number; total: number } | null {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n")[0] as string;
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    const [user, nice, system, idle, iowait, irq, softirq, steal] = f as number[];
    const busy = user! + nice! + system! + irq! + softirq! + (steal ?? 0);
    return { busy, total: busy + idle! + iowait! };
  } catch {
    return null;
  }
}

/**
 * How much of the machine this bench (itself and its children) and everything else used
 * between `machineMeter()` and `stop()`, in percent of all CPUs. Others' share is what makes
 * figures on a shared machine noisy; every bench prints it.
 */
export function machineMeter(): { stop(): { ours_pct: number; others_pct: number } } {
  const j0 = machineJiffies();
  const self0 = process.cpuUsage();
  const child0 = childrenCpu_us();
  const t0 = now();
  return {
    stop() {
      const j1 = machineJiffies();
      const self = process.cpuUsage(self0);
      const ours_us = self.user + self.system + (childrenCpu_us() - child0);
      const capacity_us = (now() - t0) * 1000 * navigator.hardwareConcurrency;
      const ours_pct = (100 * ours_us) / capacity_us;
      if (!j0 || !j1 || j1.total === j0.total) return { ours_pct, others_pct: NaN };
      const busy_pct = (100 * (j1.busy - j0.busy)) / (j1.total - j0.total);
      return { ours_pct: Math.round(ours_pct), others_pct: Math.max(0, Math.round(busy_pct - ours_pct)) };
    },
  };
}

/** A running process's peak resident memory (VmHWM) in MiB, or NaN once it is gone. */
export function peakRssMiB(pid: number): number {
  try {
    const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Math.round(Number(m[1]) / 1024) : NaN;
  } catch {
    return NaN;
  }
}

// ------------------------------------------------------------------------------- send log

/** When each contiguous run of message indices was handed to the socket (one entry per chunk). */
export class SendLog {
  private starts = new Float64Array(1 << 14);
  private times = new Float64Array(1 << 14);
  length = 0;

  /** For LoadSender's `onChunk`. */
  readonly record = (firstIdx: number, t: number): void => {
    if (this.length === this.starts.length) {
      const s = new Float64Array(this.starts.length * 2);
      s.set(this.starts);
      this.starts = s;
      const tt = new Float64Array(this.times.length * 2);
      tt.set(this.times);
      this.times = tt;
    }
    this.starts[this.length] = firstIdx;
    this.times[this.length] = t;
    this.length++;
  };

  /** Send time of message `idx` (the time its chunk was created); NaN if not sent. */
  timeOf(idx: number): number {
    let lo = 0;
    let hi = this.length - 1;
    if (hi < 0 || idx < this.starts[0]!) return NaN;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (this.starts[mid]! <= idx) lo = mid;
      else hi = mid - 1;
    }
    return this.times[lo]!;
  }
}

// -------------------------------------------------------------------------- latency meters

/**
 * Alphabet latency: each output line is the next output of its letter, and outputs of one letter
 * come in input order, so the j-th line of letter L answers the j-th message of L, whose send
 * time the SendLog knows.
 */
export class AlphabetLatency implements OutputHandler {
  private readonly seen = new Float64Array(256);
  readonly latencies: Samples;
  /** Messages sent before this time (warm-up) are not counted. */
  from = -Infinity;

  constructor(
    private readonly wl: AlphabetWorkload,
    private readonly sendLog: SendLog,
    capacity?: number,
  ) {
    this.latencies = new Samples(capacity);
  }

  onChunk(conn: Conn, chunk: Uint8Array, t: number): void {
    eachLine(conn, chunk, (b, start, end) => {
      if (end <= start) return;
      const code = b[start]!;
      const j = this.seen[code]!;
      this.seen[code] = j + 1;
      const sentAt = this.sendLog.timeOf(this.wl.indexOfOccurrence(code, j));
      if (sentAt >= this.from) this.latencies.add(t - sentAt);
    });
  }
}

export type Phase = "before" | "during" | "after" | "other";

/**
 * sequence_window latency around an autoscale event, fed by SequenceValidator's `onOutput`: files
 * each output's latency under a phase, and counts keys whose outputs moved to another sink
 * connection (= another worker) with the latency of each one's first output there.
 */
export class SequencePhases {
  readonly phases: Record<Phase, Samples> = SequencePhases.freshPhases();
  /** Phase boundaries (bench clock); classification is online, see `phaseOf`. */
  cmdAt = NaN;
  doneAt = NaN;
  recording = false;
  /** Each key's last connection, and the resetPhases() generation it was seen in: only moves within one count. */
  private readonly lastConn: Int32Array;
  private readonly lastGen: Uint32Array;
  private gen = 1;
  movedKeys = 0;
  movedFirst = new Samples(1 << 12);

  constructor(
    keys: number,
    private readonly sendLog: SendLog,
  ) {
    this.lastConn = new Int32Array(keys).fill(-1);
    this.lastGen = new Uint32Array(keys);
  }

  /**
   * before = sent and received before the command; after = sent after completion; during =
   * everything that overlaps the migration (sent or received between command and completion).
   */
  phaseOf(sentAt: number, t: number): Phase {
    if (!this.recording) return "other";
    if (Number.isNaN(this.cmdAt) || t < this.cmdAt) return "before";
    if (!Number.isNaN(this.doneAt) && sentAt > this.doneAt) return "after";
    return "during";
  }

  /** Sized for a few seconds at ~500 k msg/s so that growing (a copy) rarely happens mid-run. */
  private static freshPhases(): Record<Phase, Samples> {
    return { before: new Samples(1 << 21), during: new Samples(1 << 20), after: new Samples(1 << 21), other: new Samples(1 << 16) };
  }

  resetPhases(): void {
    Object.assign(this.phases, SequencePhases.freshPhases());
    this.cmdAt = NaN;
    this.doneAt = NaN;
    this.movedKeys = 0;
    this.movedFirst = new Samples(1 << 12);
    this.gen++;
  }

  readonly onOutput = (conn: Conn, k: number, idx: number, t: number): void => {
    const sentAt = this.sendLog.timeOf(idx);
    if (!Number.isNaN(sentAt)) this.phases[this.phaseOf(sentAt, t)].add(t - sentAt);
    const before = this.lastConn[k]!;
    const sameWindow = this.recording && this.lastGen[k] === this.gen;
    this.lastConn[k] = conn.id;
    this.lastGen[k] = this.recording ? this.gen : 0;
    if (sameWindow && before !== conn.id) {
      this.movedKeys++;
      if (!Number.isNaN(sentAt)) this.movedFirst.add(t - sentAt);
    }
  };
}

/**
 * Wraps a receiver's handler to track the longest silence between receptions (over all sink
 * connections) while a load window is open.
 */
export class SilenceMeter implements OutputHandler {
  private watchFrom = NaN;
  private lastRx = NaN;
  gapMax_ms = 0;
  gapMaxAt = NaN;
  onGap?: (gap_ms: number, from: number, to: number) => void;

  constructor(private readonly inner: OutputHandler) {}

  onChunk(conn: Conn, chunk: Uint8Array, t: number): void {
    this.inner.onChunk(conn, chunk, t);
    if (!Number.isNaN(this.watchFrom)) this.noteRx(t);
  }

  private noteRx(t: number): void {
    const gap = t - this.lastRx;
    if (gap > this.gapMax_ms) {
      this.gapMax_ms = gap;
      this.gapMaxAt = this.lastRx;
    }
    this.onGap?.(gap, this.lastRx, t);
    this.lastRx = t;
  }

  /** Opens a window (load is being offered from now on). */
  watch(): void {
    this.watchFrom = now();
    this.lastRx = this.watchFrom;
    this.gapMax_ms = 0;
    this.gapMaxAt = NaN;
  }

  /** Closes the window; the silence from the last reception to now counts too. */
  unwatch(): { gap_max_ms: number; at: number } {
    if (!Number.isNaN(this.watchFrom)) this.noteRx(now());
    this.watchFrom = NaN;
    return { gap_max_ms: this.gapMax_ms, at: this.gapMaxAt };
  }
}

// ------------------------------------------------------------------------------- baseline

/** The hand-written baseline (bench/baseline.ts) as a child process, ready to receive. */
export async function startBaseline(sinkPort: number, dir: string, deadline_ms = 10_000): Promise<{ child: Child; sourcePort: number }> {
  const child = new Child("baseline", [process.execPath, join(import.meta.dir, "baseline.ts"), "--in", `${HOST}:0`, "--out", `${HOST}:${sinkPort}`], { logPath: join(dir, "baseline.log") });
  const m = await child.waitForLog(/baseline: ready \(in \S+:(\d+),/, deadline_ms);
  return { child, sourcePort: Number(m[1]) };
}

// ------------------------------------------------------------------- alphabet max throughput

/** A target under measurement (a cluster or the baseline): where its source listens, its processes, how it stops. */
export interface Running {
  sourcePort: number;
  children: Child[];
  stop(): Promise<void>;
}

/** The sink connections a target opens before it takes load. */
const SINK_DEADLINE_MS = 10_000;

/** A cluster of `workers` running `app` as a Running, once its sink connections are open (a shortfall is noted, not fatal). */
export async function launchCluster(app: string, workers: number, rx: Receiver, opts: ClusterOptions, label: string): Promise<Running> {
  const c = await new Cluster(app, rx.port, opts).start(workers);
  await rx.waitConnections(workers, SINK_DEADLINE_MS).catch(() => console.log(`  note: only ${rx.connections}/${workers} sink connections after ${SINK_DEADLINE_MS} ms`));
  const stop = () => c.shutdown().catch((e: Error) => console.log(`  note: ${label} shutdown: ${e.message.split("\n")[0]}`));
  return { sourcePort: c.sourcePort, children: [...c.members.values()].map((m) => m.child), stop };
}

export interface ThroughputResult {
  target: string;
  /** Share of all CPUs used by other processes on the machine during this run, in percent. */
  others_pct?: number;
  msgs: number;
  msg_per_s: number;
  send_s: number;
  total_s: number;
  /** Peak resident memory of each process of the target (workers in cluster order), MiB. */
  peak_rss_mib?: number[];
  ok: boolean;
  error?: string;
}

/**
 * Max throughput of the alphabet job: `n` messages as fast as the source accepts them; msg/s = n
 * ÷ (last output line − first output line) at the receiver. Checked: n lines arrived and each
 * letter's last line carries the sum of its votes. `launch` starts the target; it is stopped after.
 */
export async function alphabetMaxThroughput(label: string, launch: (rx: Receiver) => Promise<Running>, n: number, stall_ms: number): Promise<ThroughputResult> {
  // A fresh stream per run: the expected totals count from its first message.
  const wl = new AlphabetWorkload();
  const rx = new Receiver(new CountLines());
  rx.listen();
  let run: Running | undefined;
  try {
    run = await launch(rx);
    const tx = await new LoadSender(wl).connect(run.sourcePort);
    const t0 = now();
    await tx.fast(n);
    const sent = now();
    await rx.waitLinesFlowing(n, stall_ms, label, () => assertRunning(run!.children));
    tx.close();
    const wrong = checkAlphabetTotals(wl.expectedTotals(n), alphabetTotalsFromTails(rx.conns));
    const ok = rx.lines === n && wrong.length === 0;
    return {
      target: label,
      msgs: rx.lines,
      msg_per_s: Math.round(n / ((rx.lastAt - rx.firstAt) / 1000)),
      send_s: (sent - t0) / 1000,
      total_s: (rx.lastAt - t0) / 1000,
      peak_rss_mib: run.children.map((c) => peakRssMiB(c.proc.pid)),
      ok,
      error: ok ? undefined : `lines ${rx.lines}/${n}; wrong totals: ${wrong.slice(0, 5).join(", ")}`,
    };
  } catch (e) {
    return { target: label, msgs: rx.lines, msg_per_s: NaN, send_s: NaN, total_s: NaN, ok: false, error: (e as Error).message };
  } finally {
    await run?.stop();
    rx.stop();
  }
}

/** Runs one measurement and notes how busy the rest of the machine was meanwhile. */
export async function metered<R extends { others_pct?: number }>(f: () => Promise<R>): Promise<R> {
  const m = machineMeter();
  const r = await f();
  r.others_pct = m.stop().others_pct;
  return r;
}

// ------------------------------------------------------------------------------ arguments

/** `--name value` flags into a record (numbers stay strings); unknown flags are an error. */
export function parseFlags(argv: string[], known: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--help" || a === "-h") {
      console.log(Object.entries(known).map(([k, d]) => `  --${k.padEnd(16)} ${d}`).join("\n"));
      process.exit(0);
    }
    const m = a.match(/^--([a-z0-9-]+)(?:=(.*))?$/);
    if (!m || !(m[1]! in known)) throw new Error(`unknown argument ${a}; known: ${Object.keys(known).map((k) => "--" + k).join(" ")}`);
    const v = m[2] ?? argv[++i];
    if (v === undefined) throw new Error(`${a} needs a value`);
    out[m[1]!] = v;
  }
  return out;
}

export function numFlag(flags: Record<string, string>, name: string, dflt: number): number {
  const v = flags[name];
  if (v === undefined) return dflt;
  const n = Number(v.replace(/_/g, ""));
  if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a non-negative number, not ${v}`);
  return n;
}

/** Bun version and machine facts for the report. */
export function environment(): { date: string; bun: string; cpus: number; platform: string } {
  return { date: new Date().toISOString(), bun: Bun.version, cpus: navigator.hardwareConcurrency, platform: `${process.platform}-${process.arch}` };
}
