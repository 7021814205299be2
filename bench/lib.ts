// Shared helpers for the benchmarks in bench/: ports, child processes with deadlines, a load
// sender and a receiver that live inside the bench process, latency bookkeeping, percentiles,
// and a small cluster driver around the compiled binary. Benchmarks are never part of `npm test`.
//
// Timing: every timestamp here is `performance.now()` of the bench process. The sender and the
// receiver share that process, so an end-to-end latency is one clock read at send minus one at
// receive — no cross-process clock agreement is needed.
import type { Socket, Subprocess, TCPSocketListener } from "bun";
import { chmodSync, copyFileSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { EXTERNAL_MSG, parseClusterStatus } from "../src/codec/external.ts";
import { externalRequest } from "../src/net/external-client.ts";
import { alphabetGenerator } from "../src/tools/generators.ts";

export const ROOT = resolve(import.meta.dir, "..");
export const DEFAULT_BINARY = join(ROOT, "dist", "wallaroo");
export const HOST = "127.0.0.1";
/** Size of one pre-built write: 64 KiB, the size at which loopback TCP stops being syscall-bound. */
export const BATCH_BYTES = 64 * 1024;

export const now = (): number => performance.now();
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ------------------------------------------------------------------------------------ misc

/** Rejects with `what` if `p` has not settled within `ms`. */
export async function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`deadline of ${ms} ms passed: ${what}`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `cond` every `every_ms` until it is true; throws after `deadline_ms`. */
export async function waitUntil(cond: () => boolean | Promise<boolean>, deadline_ms: number, what: string, every_ms = 20): Promise<void> {
  const end = now() + deadline_ms;
  while (!(await cond())) {
    if (now() > end) throw new Error(`deadline of ${deadline_ms} ms passed: ${what}`);
    await sleep(every_ms);
  }
}

/** `n` distinct free ports: all are bound at once (so none repeats), then released. */
export function freePorts(n: number): number[] {
  const held: TCPSocketListener<undefined>[] = [];
  try {
    for (let i = 0; i < n; i++) {
      held.push(Bun.listen({ hostname: HOST, port: 0, socket: { data() {} } }));
    }
    return held.map((l) => l.port);
  } finally {
    for (const l of held) l.stop(true);
  }
}

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
let childCpu_us = 0;

function noteChildCpu(p: Subprocess<any, any, any>): void {
  const ru = p.resourceUsage();
  if (ru) childCpu_us += Number(ru.cpuTime.total);
}

/** CPU time (µs) of every child so far: exited ones exactly, running ones from /proc/<pid>/stat. */
function childrenCpu_us(): number {
  let live = 0;
  for (const c of children) {
    try {
      const stat = readFileSync(`/proc/${c.proc.pid}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      // Fields 14 and 15 (utime, stime) are the 12th and 13th after the command name, in ticks of 10 ms.
      live += (Number(f[11]) + Number(f[12])) * 10_000;
    } catch {
      // gone or not Linux
    }
  }
  return childCpu_us + live;
}

/** Busy and total jiffies of the whole machine (first line of /proc/stat); null off Linux. */
function machineJiffies(): { busy: number; total: number } | null {
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
 * How much of the machine this bench (itself and its exited children) and everything else used
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

// -------------------------------------------------------------------------- child processes

const children = new Set<Child>();
let exitHooked = false;

function hookExit(): void {
  if (exitHooked) return;
  exitHooked = true;
  // Last resort: whatever path the bench leaves by, no child outlives it.
  process.on("exit", () => {
    for (const c of children) c.kill("SIGKILL");
  });
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.on(sig, () => {
      for (const c of children) c.kill("SIGKILL");
      process.exit(130);
    });
  }
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

/** A spawned process whose stderr (and stdout) lines are kept in memory and teed to a log file. */
export class Child {
  readonly proc: Subprocess<"ignore", "pipe", "pipe">;
  readonly lines: string[] = [];
  readonly stdout: string[] = [];
  readonly startedAt = now();
  exitCode: number | null = null;
  readonly exited: Promise<number>;
  private waiters: { re: RegExp; from: number; resolve: (m: RegExpMatchArray) => void }[] = [];
  private readonly log: ReturnType<ReturnType<typeof Bun.file>["writer"]>;

  constructor(
    readonly name: string,
    readonly cmd: string[],
    logPath: string,
  ) {
    hookExit();
    this.log = Bun.file(logPath).writer();
    this.log.write(`$ ${cmd.join(" ")}\n`);
    this.proc = Bun.spawn(cmd, { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
    children.add(this);
    void this.pump(this.proc.stderr, this.lines, "");
    void this.pump(this.proc.stdout, this.stdout, "[stdout] ");
    this.exited = this.proc.exited.then((code) => {
      this.exitCode = code;
      children.delete(this);
      noteChildCpu(this.proc);
      return code;
    });
  }

  private async pump(stream: ReadableStream<Uint8Array>, into: string[], prefix: string): Promise<void> {
    const dec = new TextDecoder();
    let carry = "";
    for await (const chunk of stream) {
      const text = carry + dec.decode(chunk, { stream: true });
      const parts = text.split("\n");
      carry = parts.pop()!;
      for (const line of parts) this.addLine(line, into, prefix);
    }
    if (carry) this.addLine(carry, into, prefix);
    this.log.flush();
  }

  private addLine(line: string, into: string[], prefix: string): void {
    into.push(line);
    this.log.write(prefix + line + "\n");
    if (into !== this.lines) return;
    for (const w of [...this.waiters]) {
      const m = line.match(w.re);
      if (m && this.lines.length - 1 >= w.from) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  }

  /** The first stderr line from index `from` on matching `re`. */
  find(re: RegExp, from = 0): RegExpMatchArray | null {
    for (let i = from; i < this.lines.length; i++) {
      const m = this.lines[i]!.match(re);
      if (m) return m;
    }
    return null;
  }

  /** Waits for a stderr line (from index `from` on) matching `re`; rejects if the process exits first. */
  async waitFor(re: RegExp, deadline_ms: number, from = 0): Promise<RegExpMatchArray> {
    const found = this.find(re, from);
    if (found) return found;
    const p = new Promise<RegExpMatchArray>((resolve) => this.waiters.push({ re, from, resolve }));
    const died = this.exited.then((code) => {
      throw new Error(`${this.name} exited with ${code} before logging ${re}; last lines:\n${this.tail(15)}`);
    });
    return withDeadline(Promise.race([p, died]), deadline_ms, `${this.name} to log ${re}; last lines:\n${this.tail(15)}`);
  }

  tail(n: number): string {
    return this.lines.slice(-n).map((l) => `    ${this.name}| ${l}`).join("\n");
  }

  kill(sig: "SIGTERM" | "SIGKILL" = "SIGTERM"): void {
    if (this.exitCode !== null) return;
    try {
      this.proc.kill(sig);
    } catch {
      // already gone
    }
  }

  /** SIGTERM, then SIGKILL if it is still there after `grace_ms`. */
  async stop(grace_ms = 3000): Promise<number> {
    if (this.exitCode !== null) return this.exitCode;
    this.kill("SIGTERM");
    try {
      return await withDeadline(this.exited, grace_ms, `${this.name} to exit`);
    } catch {
      this.kill("SIGKILL");
      return await this.exited;
    }
  }
}

export async function killAll(): Promise<void> {
  await Promise.all([...children].map((c) => c.stop(2000)));
}

/** Runs a short command to completion under a deadline (killed if it overruns). */
export async function runCommand(cmd: string[], deadline_ms: number): Promise<{ code: number; stdout: string; stderr: string; ms: number }> {
  const t0 = now();
  const p = Bun.spawn(cmd, { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => p.kill("SIGKILL"), deadline_ms);
  try {
    const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    noteChildCpu(p);
    return { code, stdout, stderr, ms: now() - t0 };
  } finally {
    clearTimeout(timer);
  }
}

// ------------------------------------------------------------------------------ workloads

/** What the sender sends: message `idx` of an endless, deterministic stream, as whole frames. */
export interface Workload {
  readonly name: string;
  /** Frames of messages idx … idx+n−1 (n ≤ max, n ≥ 1), valid until the next call. */
  chunk(idx: number, max: number): { bytes: Uint8Array; count: number };
}

/**
 * Alphabet frames (9 bytes: u32 BE 5, letter, u32 BE votes) from a pool of pre-built 64 KiB
 * batches, cycled. The pool is known, so expected totals and "which message was the j-th of
 * letter L" are arithmetic — the receiver can verify totals and look up send times for free.
 */
export class AlphabetWorkload implements Workload {
  static readonly FRAME = 9;
  static readonly PER_BATCH = Math.floor(BATCH_BYTES / AlphabetWorkload.FRAME);
  readonly name = "alphabet";
  readonly size: number;
  readonly pool: Uint8Array;
  /** Positions (message offsets in the pool) of each letter code, ascending. */
  readonly positions: Int32Array[] = [];

  constructor(batches = 16, seed = 1) {
    this.size = AlphabetWorkload.PER_BATCH * batches;
    this.pool = new Uint8Array(this.size * AlphabetWorkload.FRAME);
    const gen = alphabetGenerator({ seed });
    const pos: number[][] = Array.from({ length: 256 }, () => []);
    for (let i = 0; i < this.size; i++) {
      const f = gen.next();
      this.pool.set(f, i * AlphabetWorkload.FRAME);
      pos[f[4]!]!.push(i);
    }
    for (let c = 0; c < 256; c++) this.positions[c] = Int32Array.from(pos[c]!);
  }

  chunk(idx: number, max: number): { bytes: Uint8Array; count: number } {
    const off = idx % this.size;
    const n = Math.min(max, this.size - off, AlphabetWorkload.PER_BATCH);
    return { bytes: this.pool.subarray(off * AlphabetWorkload.FRAME, (off + n) * AlphabetWorkload.FRAME), count: n };
  }

  votesAt(poolOffset: number): number {
    const b = poolOffset * AlphabetWorkload.FRAME + 5;
    const p = this.pool;
    return p[b]! * 0x1000000 + ((p[b + 1]! << 16) | (p[b + 2]! << 8) | p[b + 3]!);
  }

  /** Letter → total votes over messages 0 … total−1. */
  expectedTotals(total: number): Map<string, number> {
    const cycle = new Map<string, number>();
    const partial = new Map<string, number>();
    const rest = total % this.size;
    for (let i = 0; i < this.size; i++) {
      const l = String.fromCharCode(this.pool[i * AlphabetWorkload.FRAME + 4]!);
      const v = this.votesAt(i);
      cycle.set(l, (cycle.get(l) ?? 0) + v);
      if (i < rest) partial.set(l, (partial.get(l) ?? 0) + v);
    }
    const full = Math.floor(total / this.size);
    const out = new Map<string, number>();
    for (const [l, v] of cycle) out.set(l, v * full + (partial.get(l) ?? 0));
    return out;
  }

  /** The global message index of the j-th (0-based) message carrying letter `code`. */
  indexOfOccurrence(code: number, j: number): number {
    const pos = this.positions[code]!;
    const c = Math.floor(j / pos.length);
    return c * this.size + pos[j - c * pos.length]!;
  }
}

/**
 * sequence_window frames: message idx carries key `key-(idx mod K)` and value ⌊idx / K⌋ + 1, so
 * each key counts 1, 2, 3, … and an output's (key, value) gives back idx exactly.
 */
export class SequenceWorkload implements Workload {
  readonly name = "sequence_window";
  private readonly keyBytes: Uint8Array[];
  private readonly buf = new Uint8Array(BATCH_BYTES);

  constructor(readonly keys: number) {
    const enc = new TextEncoder();
    this.keyBytes = Array.from({ length: keys }, (_, i) => enc.encode(`key-${i}`));
  }

  chunk(idx: number, max: number): { bytes: Uint8Array; count: number } {
    const b = this.buf;
    let pos = 0;
    let n = 0;
    const K = this.keys;
    while (n < max) {
      const i = idx + n;
      const k = i % K;
      const key = this.keyBytes[k]!;
      const len = 8 + key.length;
      if (pos + 4 + len > b.length) break;
      const value = Math.floor(i / K) + 1;
      const hi = Math.floor(value / 0x1_0000_0000);
      const lo = value >>> 0;
      b[pos] = len >>> 24; b[pos + 1] = (len >>> 16) & 255; b[pos + 2] = (len >>> 8) & 255; b[pos + 3] = len & 255;
      b[pos + 4] = hi >>> 24; b[pos + 5] = (hi >>> 16) & 255; b[pos + 6] = (hi >>> 8) & 255; b[pos + 7] = hi & 255;
      b[pos + 8] = lo >>> 24; b[pos + 9] = (lo >>> 16) & 255; b[pos + 10] = (lo >>> 8) & 255; b[pos + 11] = lo & 255;
      b.set(key, pos + 12);
      pos += 4 + len;
      n++;
    }
    return { bytes: b.subarray(0, pos), count: n };
  }

  /** Messages of key k among the first `total`. */
  sentForKey(k: number, total: number): number {
    return Math.floor(total / this.keys) + (k < total % this.keys ? 1 : 0);
  }
}

// ------------------------------------------------------------------------------- send log

/** When each contiguous run of message indices was handed to the socket (one entry per chunk). */
export class SendLog {
  private starts = new Float64Array(1 << 14);
  private times = new Float64Array(1 << 14);
  length = 0;

  record(firstIdx: number, t: number): void {
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
  }

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

// --------------------------------------------------------------------------------- sender

/**
 * The load generator, inside the bench process: one Bun.connect socket, pre-built batches, every
 * partial write honoured (the rest is kept and resumed in `drain`). Either as fast as the socket
 * takes it or at a fixed rate (a 1 ms tick sends what the schedule owes).
 */
export class LoadSender {
  /** Messages handed to chunk() so far: the next message index. */
  sent = 0;
  bytes = 0;
  private sock!: Socket<undefined>;
  private pending: Uint8Array | null = null;
  private limit = 0;
  private rate = 0;
  private rateT0 = 0;
  private rateBase = 0;
  private timer: ReturnType<typeof setInterval> | undefined;
  private idle: (() => void)[] = [];
  private failed: Error | null = null;
  private scheduled = false;
  shortWrites = 0;

  constructor(
    readonly workload: Workload,
    readonly log?: SendLog,
  ) {}

  async connect(port: number, deadline_ms = 10_000): Promise<void> {
    const end = now() + deadline_ms;
    for (;;) {
      try {
        this.sock = await Bun.connect<undefined>({
          hostname: HOST,
          port,
          socket: {
            data() {},
            drain: () => this.pump(),
            close: () => this.fail(new Error("source connection closed")),
            error: (_s, e) => this.fail(e),
          },
        });
        return;
      } catch (e) {
        if (now() > end) throw new Error(`could not connect to source port ${port}: ${(e as Error).message}`);
        await sleep(50);
      }
    }
  }

  private fail(e: Error): void {
    if (!this.failed && this.limit > this.sent) this.failed = e;
    this.finishIfIdle();
  }

  /** Sends `count` more messages as fast as the socket accepts them. */
  fast(count: number): Promise<void> {
    this.stopTimer();
    this.rate = 0;
    this.limit = this.sent + count;
    const p = this.whenIdle();
    this.pump();
    return p;
  }

  /** Offers `rate` msg/s until `stop()` (or until `count` more messages, if given). */
  atRate(rate: number, count = Infinity): Promise<void> {
    this.stopTimer();
    this.rate = rate;
    this.rateT0 = now();
    this.rateBase = this.sent;
    this.limit = this.sent + count;
    const p = this.whenIdle();
    this.timer = setInterval(() => this.pump(), 1);
    this.pump();
    return p;
  }

  /** Stops generating; resolves once what was generated is in the kernel. */
  stop(): Promise<void> {
    this.stopTimer();
    this.limit = this.sent;
    const p = this.whenIdle();
    this.finishIfIdle();
    return p;
  }

  close(): void {
    this.stopTimer();
    this.sock?.end();
  }

  private stopTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private whenIdle(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.idle.push(() => (this.failed ? reject(this.failed) : resolve()));
    });
  }

  private finishIfIdle(): void {
    if (this.failed || (this.pending === null && this.sent >= this.limit)) {
      this.stopTimer();
      const waiting = this.idle;
      this.idle = [];
      for (const f of waiting) f();
    }
  }

  private target(): number {
    if (this.rate === 0) return this.limit;
    const owed = this.rateBase + Math.floor((this.rate * (now() - this.rateT0)) / 1000);
    return Math.min(this.limit, owed);
  }

  private pump(): void {
    if (this.failed) return this.finishIfIdle();
    let written = 0;
    // One snapshot of the schedule per call: re-reading the clock inside the loop would keep
    // owing a message or two per write and never return to the event loop.
    const target = this.target();
    for (;;) {
      if (this.pending === null) {
        const want = Math.min(target, this.limit) - this.sent;
        if (want <= 0) break;
        const c = this.workload.chunk(this.sent, want);
        this.log?.record(this.sent, now());
        this.sent += c.count;
        this.pending = c.bytes;
      }
      const n = this.sock.write(this.pending);
      if (n < 0) return this.fail(new Error("source connection closed"));
      this.bytes += n;
      written += n;
      if (n < this.pending.length) {
        // Bun keeps nothing of a short write: hold the rest; `drain` calls pump again.
        this.pending = this.pending.subarray(n);
        this.shortWrites++;
        // The workload's buffer is reused by chunk(): keep a private copy of the rest.
        this.pending = this.pending.slice();
        return;
      }
      this.pending = null;
      if (written >= 4 * 1024 * 1024) {
        // Let the receiver in this same process run; come back on the next turn.
        if (!this.scheduled) {
          this.scheduled = true;
          setImmediate(() => {
            this.scheduled = false;
            this.pump();
          });
        }
        return;
      }
    }
    this.finishIfIdle();
  }
}

// ------------------------------------------------------------------------------- receiver

/** Per-connection state the receiver keeps; handlers may hang their own fields on `carry`. */
export interface Conn {
  readonly id: number;
  lines: number;
  bytes: number;
  /** Bytes of an unfinished line from the previous chunk. */
  carry: Uint8Array;
  /** The last bytes received (for a final parse of the tail, e.g. alphabet totals). */
  tail: Uint8Array[];
  openedAt: number;
  closedAt?: number;
}

/** What the receiver does with each chunk; it must count complete lines into conn.lines. */
export interface OutputHandler {
  onChunk(conn: Conn, chunk: Uint8Array, t: number): void;
}

/**
 * The sink receiver: Bun.listen, one connection per worker. Counts lines, remembers when the
 * first and last arrived, and tracks the longest silence between receptions while `watching`.
 */
export class Receiver {
  private server!: TCPSocketListener<Conn>;
  readonly conns: Conn[] = [];
  lines = 0;
  firstAt = NaN;
  lastAt = NaN;
  private nextId = 0;
  /** Gap tracking: only while a load window is open. */
  private watchFrom = NaN;
  private lastRx = NaN;
  gapMax_ms = 0;
  gapMaxAt = NaN;
  onGap?: (gap_ms: number, from: number, to: number) => void;

  constructor(readonly handler: OutputHandler) {}

  listen(port = 0): number {
    this.server = Bun.listen<Conn>({
      hostname: HOST,
      port,
      socket: {
        open: (s) => {
          const c: Conn = { id: this.nextId++, lines: 0, bytes: 0, carry: new Uint8Array(0), tail: [], openedAt: now() };
          s.data = c;
          this.conns.push(c);
        },
        data: (s, chunk) => {
          const t = now();
          const c = s.data;
          const before = c.lines;
          c.bytes += chunk.length;
          this.handler.onChunk(c, chunk, t);
          c.tail.push(chunk);
          if (c.tail.length > 4) c.tail.shift();
          this.lines += c.lines - before;
          if (Number.isNaN(this.firstAt)) this.firstAt = t;
          this.lastAt = t;
          if (!Number.isNaN(this.watchFrom)) this.noteRx(t);
        },
        close: (s) => {
          s.data.closedAt = now();
        },
        error() {},
      },
    });
    return this.server.port;
  }

  get port(): number {
    return this.server.port;
  }

  get open(): number {
    return this.conns.filter((c) => c.closedAt === undefined).length;
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

  /** Opens a gap-measurement window (load is being offered from now on). */
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

  stop(): void {
    this.server?.stop(true);
  }
}

/**
 * Only counts newlines: the cheapest receiver, for throughput. A plain loop (≈2 GB/s here) beats
 * Buffer.indexOf per line (≈0.9 GB/s on 15-byte lines: the call costs more than the scan).
 */
export class CountLines implements OutputHandler {
  onChunk(conn: Conn, chunk: Uint8Array): void {
    let n = 0;
    for (let i = 0; i < chunk.length; i++) if (chunk[i] === 10) n++;
    conn.lines += n;
  }
}

/** Complete lines of a chunk, with the previous chunk's unfinished line glued on. */
function eachLine(conn: Conn, chunk: Uint8Array, fn: (buf: Uint8Array, start: number, end: number) => void): void {
  let b = chunk as Buffer;
  let start = 0;
  if (conn.carry.length > 0) {
    const nl = b.indexOf(10);
    if (nl === -1) {
      const joined = new Uint8Array(conn.carry.length + b.length);
      joined.set(conn.carry);
      joined.set(b, conn.carry.length);
      conn.carry = joined;
      return;
    }
    const line = new Uint8Array(conn.carry.length + nl);
    line.set(conn.carry);
    line.set(b.subarray(0, nl), conn.carry.length);
    conn.carry = new Uint8Array(0);
    fn(line, 0, line.length);
    conn.lines++;
    start = nl + 1;
  }
  let nl = b.indexOf(10, start);
  while (nl !== -1) {
    fn(b, start, nl);
    conn.lines++;
    start = nl + 1;
    nl = b.indexOf(10, start);
  }
  if (start < b.length) conn.carry = b.slice(start);
}

/** Parses the last `<letter> => <total>` line per letter out of each connection's tail. */
export function alphabetTotalsFromTails(conns: Conn[]): Map<string, number> {
  const out = new Map<string, number>();
  const dec = new TextDecoder();
  for (const c of conns) {
    const text = dec.decode(Buffer.concat(c.tail));
    for (const line of text.split("\n")) {
      const m = line.match(/^(.) => (\d+)$/);
      if (m) out.set(m[1]!, Number(m[2]));
    }
  }
  return out;
}

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
 * sequence_window checker and latency meter. Each line `key-<k> [a,b,c,d]` names message
 * idx = (d−1)·K + k. It checks the window is valid (zeros, then a run increasing by one that
 * starts at 1 when zeros lead, ending at d), marks idx seen (a second sighting is a duplicate),
 * counts outputs per key, and files the latency under a phase.
 */
export class SequenceChecker implements OutputHandler {
  private seen: Uint8Array;
  readonly perKey: Uint32Array;
  duplicates = 0;
  badWindows = 0;
  unparsable = 0;
  badExamples: string[] = [];
  readonly phases: Record<Phase, Samples> = SequenceChecker.freshPhases();
  /** Phase boundaries (bench clock); classification is online, see `phaseOf`. */
  cmdAt = NaN;
  doneAt = NaN;
  recording = false;
  /**
   * Keys whose outputs moved to another sink connection (= another worker) between two outputs
   * both received while recording since resetPhases(), and the latency of each such key's first
   * output there: the pause a migrated key felt.
   */
  private readonly lastConn: Int32Array;
  /** The resetPhases() generation of each key's last output: only moves within one count. */
  private readonly lastGen: Uint32Array;
  private gen = 1;
  movedKeys = 0;
  movedFirst = new Samples(1 << 12);

  constructor(
    readonly keys: number,
    private readonly sendLog: SendLog,
    capacity = 1 << 25,
  ) {
    this.seen = new Uint8Array(capacity);
    this.perKey = new Uint32Array(keys);
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
    Object.assign(this.phases, SequenceChecker.freshPhases());
    this.cmdAt = NaN;
    this.doneAt = NaN;
    this.movedKeys = 0;
    this.movedFirst = new Samples(1 << 12);
    this.gen++;
  }

  private markSeen(idx: number): boolean {
    if (idx >= this.seen.length) {
      let size = this.seen.length * 2;
      while (size <= idx) size *= 2;
      const next = new Uint8Array(size);
      next.set(this.seen);
      this.seen = next;
    }
    if (this.seen[idx]) return false;
    this.seen[idx] = 1;
    return true;
  }

  private bad(b: Uint8Array, start: number, end: number, why: string): void {
    if (this.badExamples.length < 10) this.badExamples.push(`${why}: ${new TextDecoder().decode(b.subarray(start, end))}`);
  }

  onChunk(conn: Conn, chunk: Uint8Array, t: number): void {
    eachLine(conn, chunk, (b, start, end) => this.line(conn.id, b, start, end, t));
  }

  private readonly w = [0, 0, 0, 0];

  private line(connId: number, b: Uint8Array, start: number, end: number, t: number): void {
    // "key-" digits " [" n "," n "," n "," n "]"
    let i = start + 4;
    let k = 0;
    while (i < end && b[i] !== 32) k = k * 10 + (b[i++]! - 48);
    i += 2;
    const w = this.w;
    for (let j = 0; j < 4; j++) {
      let v = 0;
      while (i < end && b[i] !== 44 && b[i] !== 93) v = v * 10 + (b[i++]! - 48);
      w[j] = v;
      i++;
    }
    if (b[start] !== 107 || k >= this.keys || b[end - 1] !== 93) {
      this.unparsable++;
      this.bad(b, start, end, "unparsable");
      return;
    }
    const d = w[3]!;
    if (!windowOk(w)) {
      this.badWindows++;
      this.bad(b, start, end, "bad window");
    }
    if (d < 1) return;
    const idx = (d - 1) * this.keys + k;
    if (!this.markSeen(idx)) {
      this.duplicates++;
      this.bad(b, start, end, "duplicate");
      return;
    }
    this.perKey[k]!++;
    const sentAt = this.sendLog.timeOf(idx);
    if (!Number.isNaN(sentAt)) this.phases[this.phaseOf(sentAt, t)].add(t - sentAt);
    const before = this.lastConn[k]!;
    const sameWindow = this.recording && this.lastGen[k] === this.gen;
    this.lastConn[k] = connId;
    this.lastGen[k] = this.recording ? this.gen : 0;
    if (sameWindow && before !== connId) {
      this.movedKeys++;
      if (!Number.isNaN(sentAt)) this.movedFirst.add(t - sentAt);
    }
  }

  /** Keys whose output count differs from their input count, among the first `sent` messages. */
  verify(wl: SequenceWorkload, sent: number): { ok: boolean; received: number; missing: number; wrongKeys: number; example?: string } {
    let received = 0;
    let wrongKeys = 0;
    let example: string | undefined;
    for (let k = 0; k < this.keys; k++) {
      received += this.perKey[k]!;
      const want = wl.sentForKey(k, sent);
      if (this.perKey[k] !== want) {
        wrongKeys++;
        example ??= `key-${k}: ${this.perKey[k]} outputs for ${want} inputs`;
      }
    }
    const missing = sent - received;
    return { ok: wrongKeys === 0 && this.duplicates === 0 && this.badWindows === 0 && this.unparsable === 0, received, missing, wrongKeys, example };
  }
}

/** Same rule as the app's windowIsValid. */
function windowOk(w: number[]): boolean {
  let i = 0;
  while (i < 4 && w[i] === 0) i++;
  if (i === 4) return true;
  if (i > 0 && w[i] !== 1) return false;
  for (let j = i + 1; j < 4; j++) if (w[j] !== w[j - 1]! + 1) return false;
  return true;
}

// -------------------------------------------------------------------------------- cluster

export interface ClusterOptions {
  binary: string;
  app: string;
  workers: number;
  sinkPort: number;
  dir: string;
  /** Extra flags for every worker (e.g. --log-level warn). */
  extra?: string[];
}

export interface Member {
  name: string;
  child: Child;
  external: number;
  control: number;
}

/** A cluster of dist/wallaroo processes on 127.0.0.1, with every port chosen by the OS. */
export class Cluster {
  readonly members = new Map<string, Member>();
  sourcePort = 0;
  private constructor(readonly opts: ClusterOptions) {}

  get initializer(): Member {
    return this.members.get("initializer")!;
  }

  static async start(opts: ClusterOptions, deadline_ms = 30_000): Promise<Cluster> {
    const c = new Cluster(opts);
    const [pin, pc, pd, pe, ...rest] = freePorts(4 + 2 * (opts.workers - 1));
    c.sourcePort = pin!;
    const b = opts.binary;
    const out = `${HOST}:${opts.sinkPort}`;
    const initCmd = [b, "worker", "--application-module", opts.app, "--in", `${opts.app}@${HOST}:${pin}`, "--out", out, "--control", `${HOST}:${pc}`, "--data", `${HOST}:${pd}`, "--external", `${HOST}:${pe}`, "--cluster-initializer", "--worker-count", String(opts.workers), ...(opts.extra ?? [])];
    c.members.set("initializer", { name: "initializer", child: new Child("initializer", initCmd, join(opts.dir, "initializer.log")), external: pe!, control: pc! });
    for (let i = 1; i < opts.workers; i++) {
      const name = `w${i}`;
      const xc = rest[2 * (i - 1)]!;
      const xe = rest[2 * (i - 1) + 1]!;
      const cmd = [b, "worker", "--application-module", opts.app, "--out", out, "--control", `${HOST}:${pc}`, "--my-control", `${HOST}:${xc}`, "--external", `${HOST}:${xe}`, "--name", name, ...(opts.extra ?? [])];
      c.members.set(name, { name, child: new Child(name, cmd, join(opts.dir, `${name}.log`)), external: xe, control: xc });
    }
    try {
      await c.initializer.child.waitFor(/Application has successfully initialized\./, deadline_ms);
    } catch (e) {
      c.kill();
      throw e;
    }
    return c;
  }

  /** Spawns joiners (they contact `via`'s control port); returns at once, the join runs on. */
  join(names: string[], via = "initializer"): Member[] {
    const viaPort = this.members.get(via)!.control;
    const out = `${HOST}:${this.opts.sinkPort}`;
    return names.map((name) => {
      const [xc, xe] = freePorts(2);
      const cmd = [this.opts.binary, "worker", "--application-module", this.opts.app, "--out", out, "--join", `${HOST}:${viaPort}`, "--my-control", `${HOST}:${xc}`, "--external", `${HOST}:${xe}`, "--name", name, ...(names.length > 1 ? ["--worker-count", String(names.length)] : []), ...(this.opts.extra ?? [])];
      const m: Member = { name, child: new Child(name, cmd, join(this.opts.dir, `${name}.log`)), external: xe!, control: xc! };
      this.members.set(name, m);
      return m;
    });
  }

  /** `wallaroo shrink --workers …` through the initializer's external channel. */
  async shrink(names: string[]): Promise<{ code: number; stdout: string; stderr: string; ms: number }> {
    return runCommand([this.opts.binary, "shrink", "--external", `${HOST}:${this.initializer.external}`, "--workers", names.join(",")], 30_000);
  }

  /** One worker's status, straight over the external channel (no process per poll). */
  async status(name: string, timeout_ms = 2000): Promise<{ worker_count: number; worker_names: string[] } | null> {
    const m = this.members.get(name);
    if (!m) return null;
    try {
      const r = await externalRequest({ host: HOST, port: m.external }, EXTERNAL_MSG.ClusterStatusQuery, "", { expectReply: true, timeoutMs: timeout_ms });
      if (!r || r.type !== EXTERNAL_MSG.ClusterStatusQueryResponse) return null;
      const s = parseClusterStatus(r.payload);
      return s ? { worker_count: s.worker_count, worker_names: [...s.worker_names] } : null;
    } catch {
      return null;
    }
  }

  /** True when every one of `names` reports exactly `names` as the membership; `agreed` collects those that do. */
  async membershipIs(names: string[], agreed?: Set<string>): Promise<boolean> {
    const want = [...names].sort().join(",");
    const all = await Promise.all(names.map((n) => this.status(n)));
    const ok = all.map((s) => s !== null && [...s.worker_names].sort().join(",") === want);
    ok.forEach((y, i) => y && agreed?.add(names[i]!));
    return ok.every((y) => y);
  }

  /** Clean shutdown through the external channel; whatever has not exited after the deadline is killed. */
  async shutdown(deadline_ms = 10_000): Promise<void> {
    await runCommand([this.opts.binary, "shutdown", "--external", `${HOST}:${this.initializer.external}`], 5000).catch(() => {});
    await Promise.all(
      [...this.members.values()].map(async (m) => {
        try {
          await withDeadline(m.child.exited, deadline_ms, `${m.name} to exit`);
        } catch {
          m.child.kill("SIGKILL");
        }
      }),
    );
  }

  kill(): void {
    for (const m of this.members.values()) m.child.kill("SIGKILL");
  }
}

/** The hand-written baseline (bench/baseline.ts) as a child process, ready to receive. */
export async function startBaseline(sinkPort: number, dir: string, deadline_ms = 10_000): Promise<{ child: Child; sourcePort: number }> {
  const [pin] = freePorts(1);
  const child = new Child("baseline", [process.execPath, join(import.meta.dir, "baseline.ts"), "--in", `${HOST}:${pin}`, "--out", `${HOST}:${sinkPort}`], join(dir, "baseline.log"));
  await child.waitFor(/baseline: ready/, deadline_ms);
  return { child, sourcePort: pin! };
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
