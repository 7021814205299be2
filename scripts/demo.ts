// `npm run demo`: a whole wallaroo cluster on this machine, grown and shrunk while votes flow,
// then checked to the last vote. The workers and the load are the compiled binary (dist/wallaroo
// worker, dist/wallaroo send), driven by the harness the e2e tests use (test/support), so what
// it proves is what an operator would see.
//
//   1. forms a 2-worker alphabet cluster (initializer + w1) and an in-process receiver;
//   2. starts `wallaroo send` (alphabet generator, fixed seed) at a steady rate;
//   3. while votes flow: grows by 1 (w2), by 2 at once (w3, w4), prints the status, lists the
//      workers eligible for shrink, shrinks by name (w2,w3) through a non-initializer, then by
//      count (1: the oldest, w1);
//   4. waits for every output, shuts the cluster down with `wallaroo shutdown` and waits for EOF
//      on every sink connection, so nothing can still be on its way;
//   5. checks every vote produced exactly one output line, per-letter totals only ever increase
//      on each sink connection, and every output is a running total of the votes regenerated
//      from the same generator and seed.
//
// Tunables (environment): DEMO_MESSAGES (default 400000), DEMO_RATE (default 40000 msg/s),
// DEMO_SEED (default 42), DEMO_KEEP_LOGS=1 keeps the workers' logs even when the demo passes.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Cluster, type Member } from "../test/support/cluster.ts";
import { AlphabetWorkload } from "../test/support/load.ts";
import { BIN, HOST, killAll, wallaroo } from "../test/support/process.ts";
import { Receiver } from "../test/support/receiver.ts";
import { AlphabetValidator } from "../test/support/validate.ts";

const MESSAGES = envInt("DEMO_MESSAGES", 400_000);
const RATE = envInt("DEMO_RATE", 40_000);
const SEED = envInt("DEMO_SEED", 42);
const KEEP_LOGS = process.env.DEMO_KEEP_LOGS === "1";
/** About a second of votes comes out between autoscale events, so each one happens under load. */
const OUTPUTS_BETWEEN_EVENTS = RATE;

/** Deadlines, in milliseconds. Every wait in this script has one. */
const DEADLINE = {
  formation: 30_000,
  grow: 30_000,
  shrink: 30_000,
  outputs: 30_000,
  exit: 15_000,
  command: 15_000,
  whole: 120_000,
} as const;

function envInt(name: string, dflt: number): number {
  const v = process.env[name];
  if (v === undefined || v === "") return dflt;
  if (!/^\d+$/.test(v) || Number(v) < 1) {
    console.error(`${name} must be a positive whole number, not "${v}"`);
    process.exit(2);
  }
  return Number(v);
}

class DemoFailure extends Error {}

let interrupted = false;

const t0 = performance.now();
const elapsed = () => `${((performance.now() - t0) / 1000).toFixed(1)}s`;
/** Quiet once interrupted: the only thing left to report is that children are being stopped. */
const say = (line: string) => {
  if (!interrupted) console.log(line);
};
const step = (title: string) => say(`\n== ${title} ==  [${elapsed()}]`);

const logDir = mkdtempSync(join(tmpdir(), "wallaroo-demo-"));

function showLogsOnFailure(): void {
  say(`\nWorker and tool logs are in ${logDir}`);
  for (const f of readdirSync(logDir).filter((f) => f.endsWith(".log")).sort()) {
    const path = join(logDir, f);
    const lines = readFileSync(path, "utf8").trimEnd().split("\n");
    const tail = lines.slice(-15);
    say(`\n--- ${f}, last ${tail.length} of ${lines.length} log lines: ${path}`);
    for (const l of tail) say(`  ${l}`);
  }
}

/** Runs a wallaroo command to completion and fails the demo if it does not exit 0. */
async function command(c: Cluster, args: string[]): Promise<string> {
  const r = await c.run(args, DEADLINE.command);
  if (r.code !== 0) throw new DemoFailure(`wallaroo ${args.join(" ")} exited ${r.code}: ${r.stdout.trim()} ${r.stderr.trim()}`);
  return r.stdout.trimEnd();
}

async function main(): Promise<void> {
  if (!existsSync(BIN)) throw new DemoFailure(`${BIN} is missing: run \`npm run build\` first (npm run demo does it for you)`);

  step("planning");
  say(`sending ${MESSAGES} alphabet votes at ${RATE}/s (seed ${SEED}); logs in ${logDir}`);
  // The votes `wallaroo send` will send, from the same generator and seed, all in one pool.
  const votes = new AlphabetWorkload(SEED, Math.ceil(MESSAGES / AlphabetWorkload.PER_BATCH));
  const check = new AlphabetValidator();
  const receiver = new Receiver(check);
  receiver.listen();

  step("starting the initializer and w1 (a 2-worker cluster)");
  // Port 0 everywhere: the OS picks, and the harness reads the ports from the workers' logs.
  const c = new Cluster("alphabet", receiver.port, { logDir });
  await c.start(2, DEADLINE.formation);
  const init = c.initializer;
  const w1 = c.members.get("w1")!;
  say(`source ${HOST}:${c.sourcePort}, control ${HOST}:${init.control}, external ${HOST}:${init.external}, sink receiver ${HOST}:${receiver.port}`);
  const order = async () => (await c.status(init))!.worker_names.join(", ");
  say(`cluster formed: ${await order()}  (receiver has ${receiver.connections} sink connections)`);

  step(`sending ${MESSAGES} votes at ${RATE}/s`);
  const sender = wallaroo(
    "sender",
    ["send", "--to", `${HOST}:${c.sourcePort}`, "--generator", "alphabet", "--messages", String(MESSAGES), "--rate", String(RATE), "--seed", String(SEED), "--json"],
    { logPath: join(logDir, "sender.log") },
  );
  const flowing = () => `${receiver.lines} outputs so far${sender.exitCode === null ? ", votes still flowing" : ", sender finished"}`;
  /** The next event waits until this many more votes came out: it happens with load on both sides. */
  const underLoad = () => receiver.waitLines(Math.min(MESSAGES, receiver.lines + OUTPUTS_BETWEEN_EVENTS), DEADLINE.outputs, "outputs between events");
  await receiver.waitLines(1, DEADLINE.outputs, "the first outputs");
  await underLoad();
  say(flowing());

  step("growing by 1 (w2 joins through w1)");
  await c.grow(["w2"], w1, DEADLINE.grow);
  say(`every worker reports ${await order()}; ${flowing()}`);

  await underLoad();
  step("growing by 2 at once (w3 through the initializer, w4 through w1, both --worker-count 2)");
  const joiners = (await Promise.all([c.spawnJoiners(["w3"], init, 2), c.spawnJoiners(["w4"], w1, 2)])).flat();
  for (const j of joiners) c.members.set(j.name, j);
  await c.waitMembership(["initializer", "w1", "w2", "w3", "w4"], DEADLINE.grow);
  say(`every worker reports ${await order()}; ${flowing()}`);

  step("cluster status");
  say(await command(c, ["query", "--external", `${HOST}:${init.external}`]));
  say(`w3 owns: ${await command(c, ["query", "slot-counts", "--external", `${HOST}:${c.members.get("w3")!.external}`, "--json"])}`);

  step("workers eligible for shrink");
  say(await command(c, ["shrink", "--external", `${HOST}:${w1.external}`, "--query"]));

  await underLoad();
  step("shrinking by name: w2,w3 (asking w1, a non-initializer)");
  await shrink(c, ["--workers", "w2,w3"], w1);
  say(`every worker reports ${await order()}; w2 and w3 exited 0; ${flowing()}`);

  await underLoad();
  step("shrinking by count: 1 (the oldest eligible worker leaves; asking w4)");
  await shrink(c, ["--count", "1"], c.members.get("w4")!);
  say(`every worker reports ${await order()}; w1 exited 0; ${flowing()}`);
  if (sender.exitCode !== null) say("note: the sender finished before the last autoscale event; raise DEMO_MESSAGES to keep votes flowing throughout");

  step("waiting for the sender and every output");
  const sendCode = await sender.waitExit(Math.ceil((MESSAGES / RATE) * 1000) + DEADLINE.outputs);
  if (sendCode !== 0) throw new DemoFailure(`wallaroo send exited with code ${sendCode}: ${sender.stderr.trim()}`);
  say(`sender: ${/\{"sent":.*\}/.exec(sender.stdout)?.[0] ?? "(no summary)"}`);
  await receiver.waitLines(MESSAGES, DEADLINE.outputs, `${MESSAGES} output lines`);

  step("shutting the cluster down (wallaroo shutdown through the initializer)");
  const failures: string[] = [];
  const live = [...c.members.keys()];
  // Every worker flushes its sink and closes it: after EOF on every sink connection nothing is
  // still on its way, so a duplicate would be counted below.
  await c.shutdown(DEADLINE.exit, receiver).catch((e: Error) => failures.push(e.message));
  say(`exit codes: ${live.map((n) => `${n}=${c.members.get(n)!.child.exitCode ?? "running"}`).join(", ")}, sender=${sender.exitCode}`);
  receiver.stop();

  step("verifying");
  failures.push(...check.verify(votes, MESSAGES));
  if (receiver.lines !== MESSAGES) failures.push(`received ${receiver.lines} output lines for ${MESSAGES} votes`);
  const expected = votes.expectedTotals(MESSAGES);
  const last = check.lastTotals();
  const letters = [...new Set([...expected.keys(), ...last.keys()])].sort();
  say(`${"letter".padEnd(6)}  ${"last total".padStart(12)}  ${"expected".padStart(12)}  ${"outputs".padStart(8)}`);
  for (const letter of letters) {
    const ok = last.get(letter) === expected.get(letter);
    say(`${letter.padEnd(6)}  ${String(last.get(letter) ?? "-").padStart(12)}  ${String(expected.get(letter) ?? "-").padStart(12)}  ${String(check.outputs(letter)).padStart(8)}  ${ok ? "ok" : "MISMATCH"}`);
  }
  say(`${receiver.connections} sink connections; outputs per connection: ${receiver.conns.map((conn) => conn.lines).join(", ")}`);

  if (failures.length > 0) {
    say("");
    for (const f of failures) say(`FAIL: ${f}`);
    throw new DemoFailure(`${failures.length} check(s) failed`);
  }
  say(`\nOK: ${MESSAGES} votes, totals exact`);
  say(`(${letters.length} letters; one output per vote, none lost or duplicated; totals only increased on every sink connection; grew 2→3→5 and shrank 5→3→2 in ${elapsed()})`);
}

/** A shrink through `via`; the harness waits for the leavers to exit 0 and the rest to agree. */
async function shrink(c: Cluster, args: string[], via: Member): Promise<void> {
  const r = await c.shrink(args, via, DEADLINE.shrink);
  say(r.stdout.trimEnd());
  if (r.code !== 0) throw new DemoFailure(`shrink ${args.join(" ")} exited ${r.code}: ${r.stdout.trim()} ${r.stderr.trim()}`);
}

// ------------------------------------------------------------------------------- top level

const onSignal = (sig: string) => {
  if (interrupted) return;
  interrupted = true;
  console.log(`\n${sig}: stopping every child process (logs in ${logDir})`);
  void killAll().finally(() => process.exit(130));
};
process.on("SIGINT", () => onSignal("SIGINT"));
process.on("SIGTERM", () => onSignal("SIGTERM"));

const watchdog = setTimeout(() => {
  say(`\nFAIL: the demo did not finish within ${DEADLINE.whole / 1000} s`);
  showLogsOnFailure();
  void killAll().finally(() => process.exit(1));
}, DEADLINE.whole);

let code = 0;
try {
  await main();
} catch (err) {
  code = 1;
  say(`\nFAIL: ${err instanceof DemoFailure ? err.message : err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  showLogsOnFailure();
} finally {
  clearTimeout(watchdog);
  await killAll();
}
if (code === 0 && !KEEP_LOGS) rmSync(logDir, { recursive: true, force: true });
else if (code === 0) say(`logs kept in ${logDir}`);
process.exit(code);
