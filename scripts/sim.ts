// The simulation runner (docs/simulation.md).
//
//   npm run sim -- --seeds N [--first S] [--faults default|all|crash]   N seeds; one summary line at the end
//   npm run sim -- --seed S --trace [--faults default|all|crash]        that seed's full trace on stdout
//
// Exits 1 when a seed fails; each failure is reported on stderr with the command that replays it.
// The summary line goes to stdout (it is the runner's result); progress and failures to stderr.
import { parseArgs } from "node:util";
import { FAULT_MODES, runSeed, type FaultMode, type SimFailure } from "../test/sim/scenario.ts";

const { values: a } = parseArgs({
  options: {
    seeds: { type: "string" },
    first: { type: "string" },
    seed: { type: "string" },
    trace: { type: "boolean", default: false },
    faults: { type: "string", default: "default" },
    debug: { type: "boolean", default: false },
    help: { type: "boolean", default: false },
  },
  strict: true,
});

const usage = "usage: npm run sim -- --seeds N [--first S] [--faults default|all|crash]\n       npm run sim -- --seed S [--trace] [--debug] [--faults default|all|crash]\n";

/**
 * Writes to stdout and resolves once it has taken the bytes: to a pipe Bun writes
 * asynchronously, and `process.exit` right after a large write cut the trace at 64 KiB.
 */
function out(text: string): Promise<void> {
  return new Promise((resolve) => process.stdout.write(text, () => resolve()));
}

function int(v: string | undefined, name: string, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) {
    process.stderr.write(`--${name} must be a non-negative integer, not ${v}\n${usage}`);
    process.exit(2);
  }
  return n;
}

if (a.help) {
  process.stdout.write(usage);
  process.exit(0);
}
if (!(FAULT_MODES as readonly string[]).includes(a.faults!)) {
  process.stderr.write(`--faults is one of ${FAULT_MODES.join(", ")}, not ${a.faults}\n${usage}`);
  process.exit(2);
}
const faults = a.faults as FaultMode;
const faultFlag = faults === "default" ? "" : ` --faults ${faults}`;
const replayCommand = (seed: number) => `npm run sim -- --seed ${seed}${faultFlag} --trace`;

function report(err: unknown): void {
  const e = err as SimFailure;
  process.stderr.write(`FAIL ${e.message}\n`);
  if (e.story) process.stderr.write(`  scenario: ${e.story.join("; ")}\n`);
  if (e.trace) process.stderr.write(`  last trace lines:\n${e.trace.map((l) => `    ${l}\n`).join("")}`);
  process.stderr.write(`  replay: ${replayCommand(e.seed)}\n`);
}

if (a.seed !== undefined) {
  const seed = int(a.seed, "seed", 0);
  try {
    const r = await runSeed(seed, { faults, fullTrace: a.trace, debugLog: a.debug });
    if (a.trace) await out(r.trace);
    process.stderr.write(`seed ${seed} ok: ${r.story.join("; ")} (${r.steps} events, ${r.virtualMs.toFixed(0)} ms virtual, trace ${r.digest})\n`);
    process.exit(0);
  } catch (err) {
    // The trace up to the failure is still the seed's trace: print it for comparison.
    if (a.trace) await out((err as SimFailure).fullTrace ?? "");
    report(err);
    process.exit(1);
  }
}

const n = int(a.seeds, "seeds", 100);
const first = int(a.first, "first", 1);
const ops: Record<string, number> = {};
const failed: number[] = [];
const t0 = performance.now();
for (let seed = first; seed < first + n; seed++) {
  try {
    const r = await runSeed(seed, { faults });
    for (const [k, v] of Object.entries(r.ops)) ops[k] = (ops[k] ?? 0) + v!;
  } catch (err) {
    failed.push(seed);
    report(err);
  }
}
const secs = (performance.now() - t0) / 1000;
const covered = Object.entries(ops)
  .sort(([x], [y]) => (x < y ? -1 : 1))
  .map(([k, v]) => `${k} ${v}`)
  .join(", ");
await out(
  `sim: ${n} seeds (${first}..${first + n - 1}, faults ${faults}): ${covered}; ${(n / secs).toFixed(1)} seeds/s; ${failed.length} failed${failed.length ? ` (${failed.join(",")})` : ""}\n`,
);
process.exit(failed.length > 0 ? 1 : 0);
