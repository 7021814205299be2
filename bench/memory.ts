// Memory at steady load: is it flat? sequence_window over --keys keys (every key has state after
// the first pass) offered at --rate msg/s for --minutes, with each worker's resident memory
// (VmRSS) sampled every --sample-seconds. A leak per message or per chunk shows as growth that
// keeps going once every key exists; a fixed key set means the state itself stops growing.
//
//   npm run build && bun bench/memory.ts [--minutes 10] [--workers 3] [--keys 100000]
//        [--rate 200000] [--sample-seconds 10] [--binary dist/wallaroo]
//
// Reported per worker: RSS at the start (the first sample after --warmup-seconds, when every key
// has state) and at the end, the difference, and the slope of a least-squares line through the
// samples after the warm-up (MiB per minute). Checked: every message sent produced its output.
import { loadavg } from "node:os";
import { readFileSync } from "node:fs";
import { Cluster } from "../test/support/cluster.ts";
import { LoadSender, SequenceWorkload } from "../test/support/load.ts";
import { assertRunning, stopAll } from "../test/support/process.ts";
import { CountLines, Receiver } from "../test/support/receiver.ts";
import { now } from "../test/support/wait.ts";
import { DEFAULT_BINARY, environment, fmtInt, killChildrenOnSignal, machineMeter, numFlag, parseFlags, runDir, stableBinary, table } from "./lib.ts";

const flags = parseFlags(process.argv.slice(2), {
  minutes: "minutes of steady load (default 10)",
  workers: "cluster size (default 3)",
  keys: "distinct keys (default 100000)",
  rate: "offered msg/s (default 200000)",
  "sample-seconds": "seconds between RSS samples (default 10)",
  "warmup-seconds": "seconds before the start figure (default 30)",
  binary: `the wallaroo executable (default ${DEFAULT_BINARY})`,
});
const MINUTES = numFlag(flags, "minutes", 10);
const WORKERS = numFlag(flags, "workers", 3);
const KEYS = numFlag(flags, "keys", 100_000);
const RATE = numFlag(flags, "rate", 200_000);
const SAMPLE_S = numFlag(flags, "sample-seconds", 10);
const WARMUP_S = numFlag(flags, "warmup-seconds", 30);
const STALL_MS = 15_000;

killChildrenOnSignal();
const env = environment();
const dir = runDir("memory");
const binary = stableBinary(flags.binary ?? DEFAULT_BINARY, dir);
console.log(`wallaroo memory bench — ${env.date}, Bun ${env.bun}, ${env.cpus} CPUs, load average ${loadavg()[0]!.toFixed(2)}`);
console.log(`${WORKERS} workers, sequence_window, ${fmtInt(KEYS)} keys, ${fmtInt(RATE)} msg/s for ${MINUTES} min; logs: ${dir}\n`);

function rssMiB(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** Least-squares slope of y over x. */
function slope(xs: number[], ys: number[]): number {
  const n = xs.length;
  if (n < 2) return NaN;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return num / den;
}

const whole = machineMeter();
const rx = new Receiver(new CountLines());
rx.listen();
let cluster: Cluster | undefined;
let pass = false;
const rows: (string | number)[][] = [["worker", "RSS start MiB", "RSS end MiB", "end − start MiB", "slope MiB/min", "peak MiB"]];
const result: { worker: string; start_mib: number; end_mib: number; slope_mib_per_min: number; peak_mib: number }[] = [];
let sent = 0;
try {
  cluster = await new Cluster("sequence_window", rx.port, { binary, logDir: dir }).start(WORKERS);
  await rx.waitConnections(WORKERS, 10_000);
  const members = [...cluster.members.values()];
  const wl = new SequenceWorkload(KEYS);
  const tx = await new LoadSender(wl).connect(cluster.sourcePort);
  const t0 = now();
  const load = tx.atRate(RATE);
  const samples = members.map(() => ({ t: [] as number[], mib: [] as number[] }));
  const peak = members.map(() => 0);
  const endAt = t0 + MINUTES * 60_000;
  let nextSample = t0;
  // One sample per tick; the loop's way out is the deadline (and a dead worker or a stall throws).
  while (now() < endAt) {
    assertRunning(members.map((m) => m.child));
    if (tx.sent - rx.lines > RATE * (STALL_MS / 1000)) throw new Error(`outputs fell ${fmtInt(tx.sent - rx.lines)} messages behind: the cluster does not keep up with ${fmtInt(RATE)} msg/s`);
    const t = now();
    if (t >= nextSample) {
      members.forEach((m, i) => {
        const v = rssMiB(m.child.proc.pid);
        peak[i] = Math.max(peak[i]!, v);
        samples[i]!.t.push((t - t0) / 60_000);
        samples[i]!.mib.push(v);
      });
      const line = members.map((m, i) => `${m.name} ${samples[i]!.mib.at(-1)!.toFixed(0)}`).join("  ");
      console.log(`  ${((t - t0) / 1000).toFixed(0).padStart(4)} s  sent ${fmtInt(tx.sent).padStart(12)}  RSS MiB: ${line}`);
      nextSample += SAMPLE_S * 1000;
    }
    await Bun.sleep(Math.max(1, Math.min(1000, nextSample - now())));
  }
  await tx.stop();
  sent = tx.sent;
  void load;
  await rx.waitLinesFlowing(sent, STALL_MS, "memory run", () => assertRunning(members.map((m) => m.child)));
  tx.close();
  const warm = WARMUP_S / 60;
  members.forEach((m, i) => {
    const s = samples[i]!;
    const k = s.t.findIndex((x) => x >= warm);
    const from = k < 0 ? 0 : k;
    const start = s.mib[from]!;
    const end = s.mib.at(-1)!;
    const sl = slope(s.t.slice(from), s.mib.slice(from));
    result.push({ worker: m.name, start_mib: start, end_mib: end, slope_mib_per_min: sl, peak_mib: peak[i]! });
    rows.push([m.name, start.toFixed(0), end.toFixed(0), (end - start).toFixed(0), sl.toFixed(2), peak[i]!.toFixed(0)]);
  });
  pass = rx.lines === sent;
  console.log(`\n${fmtInt(sent)} messages sent, ${fmtInt(rx.lines)} outputs received\n`);
  console.log(table(rows));
} catch (e) {
  console.log(`FAILED: ${(e as Error).message}`);
} finally {
  await cluster?.shutdown().catch(() => {});
  rx.stop();
  await stopAll();
}
const share = whole.stop();
console.log(`\nmachine: this bench used ${share.ours_pct}% and other processes ${share.others_pct}% of all ${env.cpus} CPUs`);
console.log(`RESULT: ${pass ? "PASS" : "FAIL"}`);
console.log(JSON.stringify({ bench: "memory", ...env, minutes: MINUTES, workers: WORKERS, keys: KEYS, rate: RATE, sent, received: rx.lines, rss: result, machine_share: share, pass }));
process.exit(pass ? 0 : 1);
