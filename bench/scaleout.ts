// Scale-out (issue 14): does a second worker make a compute-bound job faster? The application is
// bench/apps/busy.ts (a stateful step of ≈ 35 µs of pure computation per message, keyed over
// --keys keys so they spread evenly), run on 1 and then 2 workers, alternating for --pairs pairs.
//
//   npm run build && bun bench/scaleout.ts [--messages 200000] [--keys 10000] [--pairs 2]
//        [--iters 12000] [--binary dist/wallaroo]
//
// Each run sends --messages flat out (backpressure honoured) and measures msg/s at the receiver
// over the middle of the run (outputs between 10 % and 90 % of the total, so start-up and the
// tail do not count), and each worker's CPU over the same window, in % of one core, from
// /proc/<pid>/stat. Checked: every key's outputs come in order with count = value (nothing lost,
// nothing twice). The ratio 2 workers / 1 worker is the figure; 2 cores bound it by 2, less what
// the sender and the receiver (this process) take.
import { mkdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { LoadSender, SequenceWorkload } from "../test/support/load.ts";
import { Receiver, type OutputHandler } from "../test/support/receiver.ts";
import { now } from "../test/support/wait.ts";
import { DEFAULT_BINARY, environment, fmtInt, killChildrenOnSignal, launchCluster, machineJiffies, metered, numFlag, parseFlags, runDir, stableBinary, table, type Running } from "./lib.ts";

const flags = parseFlags(process.argv.slice(2), {
  messages: "messages per run (default 200000)",
  keys: "distinct keys (default 10000: 49.6 % of them on the initializer, 1000 would put 45.7 % there)",
  pairs: "pairs of (1 worker, 2 workers), alternating (default 2)",
  iters: "xorshift rounds per message in the step (default 12000, ≈ 35 µs here)",
  binary: `the wallaroo executable (default ${DEFAULT_BINARY})`,
});
const N = numFlag(flags, "messages", 200_000);
const KEYS = numFlag(flags, "keys", 10_000);
const PAIRS = numFlag(flags, "pairs", 2);
process.env.WALLAROO_BUSY_ITERS = String(numFlag(flags, "iters", 12_000));
const APP = resolve(import.meta.dir, "apps/busy.ts");

killChildrenOnSignal();
const dir = runDir("scaleout");
const binary = stableBinary(flags.binary ?? DEFAULT_BINARY, dir);

/** Checks each line (`key value count hash`) and notes when the 10 % and 90 % marks passed. */
class BusyCheck implements OutputHandler {
  lines = 0;
  problems: string[] = [];
  private readonly last = new Map<string, number>();
  private readonly carry = new Map<number, string>();
  private readonly dec = new TextDecoder();
  marks: { at: number; lines: number }[] = [];
  constructor(private readonly total: number) {}
  onChunk(conn: { id: number; lines: number }, chunk: Uint8Array, t: number): void {
    const text = (this.carry.get(conn.id) ?? "") + this.dec.decode(chunk);
    const parts = text.split("\n");
    this.carry.set(conn.id, parts.pop()!);
    // The receiver's waits count lines per connection.
    conn.lines += parts.length;
    for (const line of parts) {
      const [key, value, count] = line.split(" ");
      const v = Number(value);
      if (Number(count) !== v && this.problems.length < 5) this.problems.push(`${key}: count ${count} for value ${value}`);
      if ((this.last.get(key!) ?? 0) + 1 !== v && this.problems.length < 5) this.problems.push(`${key}: ${value} after ${this.last.get(key!) ?? 0}`);
      this.last.set(key!, v);
      this.lines++;
      for (const f of [0.1, 0.9]) if (this.lines === Math.floor(this.total * f)) this.marks.push({ at: t, lines: this.lines });
    }
  }
}

/** CPU seconds (user + system) of a process so far. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / 100;
}

interface Result {
  workers: number;
  msg_per_s: number;
  cpu_pct: number[];
  /** This process (sender, receiver, checks) and the whole machine, in % of one core, over the same window. */
  bench_pct?: number;
  machine_pct?: number;
  ok: boolean;
  error?: string;
  others_pct?: number;
}

async function once(workers: number, label: string): Promise<Result> {
  const check = new BusyCheck(N);
  const rx = new Receiver(check);
  rx.listen();
  const logDir = join(dir, label);
  mkdirSync(logDir, { recursive: true });
  let run: Running | undefined;
  const sender = new LoadSender(new SequenceWorkload(KEYS));
  try {
    run = await launchCluster(APP, workers, rx, { binary, logDir }, label);
    const pids = run.children.map((c) => c.proc.pid);
    await sender.connect(run.sourcePort);
    void sender.fast(N);
    // CPU over the measured window: sampled when the 10 % mark passes, and at the 90 % mark.
    let cpu0: number[] | undefined;
    let cpu1: number[] | undefined;
    await rx.waitLines(Math.floor(N * 0.1), 120_000, "10 % of the outputs");
    cpu0 = pids.map(cpuSeconds);
    const self0 = process.cpuUsage();
    const j0 = machineJiffies();
    const t0 = now();
    await rx.waitLines(Math.floor(N * 0.9), 300_000, "90 % of the outputs");
    cpu1 = pids.map(cpuSeconds);
    const self1 = process.cpuUsage(self0);
    const j1 = machineJiffies();
    const t1 = now();
    // Where the rest of the two cores went: this process (the sender and the receiver) and the machine in all.
    const bench_pct = Math.round(((self1.user + self1.system) / 1e6 / ((t1 - t0) / 1000)) * 100);
    const machine_pct = j0 && j1 && j1.total > j0.total ? Math.round(((j1.busy - j0.busy) / (j1.total - j0.total)) * 100 * navigator.hardwareConcurrency) : NaN;
    await rx.waitLines(N, 120_000, "every output");
    const [m10, m90] = check.marks;
    const rate = m10 && m90 ? (m90.lines - m10.lines) / ((m90.at - m10.at) / 1000) : NaN;
    const cpu_pct = pids.map((_, i) => Math.round(((cpu1![i]! - cpu0![i]!) / ((t1 - t0) / 1000)) * 100));
    const ok = check.problems.length === 0 && check.lines === N;
    return { workers, msg_per_s: Math.round(rate), cpu_pct, bench_pct, machine_pct, ok, error: ok ? undefined : check.problems.join("; ") || `${check.lines}/${N} lines` };
  } catch (e) {
    return { workers, msg_per_s: NaN, cpu_pct: [], ok: false, error: (e as Error).message.split("\n")[0] };
  } finally {
    sender.close();
    await run?.stop();
    rx.stop();
  }
}

const median = (xs: number[]) => {
  const s = [...xs].filter(Number.isFinite).sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

console.log(`scale-out: busy (${process.env.WALLAROO_BUSY_ITERS} rounds per message), ${fmtInt(KEYS)} keys, ${fmtInt(N)} messages per run, ${PAIRS} pairs; ${JSON.stringify(environment())}; logs in ${dir}`);
const results: Result[] = [];
for (let p = 1; p <= PAIRS; p++) {
  for (const w of p % 2 === 1 ? [1, 2] : [2, 1]) {
    const r = await metered(() => once(w, `pair${p}-${w}w`));
    results.push(r);
    console.log(`  pair ${p}, ${w} worker${w > 1 ? "s" : " "}: ${r.ok ? `${fmtInt(r.msg_per_s)} msg/s, CPU ${r.cpu_pct.map((c) => `${c}%`).join(" / ")}, bench process ${r.bench_pct}%, machine ${r.machine_pct}% of ${navigator.hardwareConcurrency * 100}%` : `FAILED: ${r.error}`} (others' CPU ${r.others_pct}%)`);
  }
}
const one = median(results.filter((r) => r.ok && r.workers === 1).map((r) => r.msg_per_s));
const two = median(results.filter((r) => r.ok && r.workers === 2).map((r) => r.msg_per_s));
console.log(
  "\n" +
    table([
      ["workers", "median msg/s", "CPU per worker (last run)"],
      ["1", fmtInt(one), results.filter((r) => r.workers === 1).at(-1)?.cpu_pct.map((c) => `${c}%`).join(" / ") ?? ""],
      ["2", fmtInt(two), results.filter((r) => r.workers === 2).at(-1)?.cpu_pct.map((c) => `${c}%`).join(" / ") ?? ""],
      ["2 / 1", (two / one).toFixed(2), "target ≥ 1.7"],
    ]),
);
const failed = results.filter((r) => !r.ok).length;
console.log(`RESULT: ${failed === 0 ? "PASS" : `FAIL (${failed} runs failed)`}`);
const lastCpu = (w: number) => results.filter((r) => r.ok && r.workers === w).at(-1)?.cpu_pct ?? [];
console.log(JSON.stringify({ bench: "scaleout", ...environment(), keys: KEYS, messages: N, pairs: PAIRS, one_msg_per_s: one, two_msg_per_s: two, ratio: two / one, cpu_pct_1w: lastCpu(1), cpu_pct_2w: lastCpu(2), runs: results, pass: failed === 0 }));
process.exit(failed === 0 ? 0 : 1);
