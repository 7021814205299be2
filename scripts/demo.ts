// `npm run demo`: a whole wallaroo cluster on this machine, grown and shrunk while votes flow,
// one of its workers killed with kill -9 and recovered, then checked to the last vote. The
// workers and the load are the compiled binary (dist/wallaroo worker, dist/wallaroo send), driven
// by the harness the e2e tests use (test/support), so what it proves is what an operator would see.
//
//   1. forms a 2-worker alphabet cluster (initializer + w1), every worker with --resilience-dir
//      (a directory in the demo's temporary directory), and an in-process receiver;
//   2. starts `wallaroo send` (alphabet generator, fixed seed) at a steady rate;
//   3. while votes flow: grows by 1 (w2), by 2 at once (w3, w4), prints the status, lists the
//      workers eligible for shrink, shrinks by name (w2,w3) through a non-initializer, then by
//      count (1: the oldest, w1);
//   4. still while votes flow, crash and recover: kills w4 with SIGKILL, prints the status
//      (not processing, w4 down), starts w4 again with its exact command line, waits until every
//      member reports it back and processing, and prints the initializer's rollback and replay
//      log lines (w4 rolls back to the last committed checkpoint, alone when nothing else was
//      under way, and the initializer replays its input log from there for w4's slots, so w4's
//      outputs since that checkpoint come again);
//   5. waits for every output, shuts the cluster down with `wallaroo shutdown` and waits for EOF
//      on every sink connection, so nothing can still be on its way;
//   6. checks, against the votes regenerated from the same generator and seed, that every
//      running total of every letter was output and nothing else, each letter's highest is its
//      exact total, on each sink connection its totals went back at most once (the rollback) and
//      only to repeat totals output before, and every vote produced one output plus at most one
//      replay, only if the initializer replayed it: the extra outputs are the replays, counted.
//
// Tunables (environment): DEMO_MESSAGES (default 400000), DEMO_RATE (default 40000 msg/s),
// DEMO_SEED (default 42), DEMO_KEEP_LOGS=1 keeps the workers' logs even when the demo passes.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import type { ClusterStatus } from "../src/codec/external.ts";
import { Cluster, sameNames, type Member } from "../test/support/cluster.ts";
import { AlphabetWorkload } from "../test/support/load.ts";
import { assertRunning, BIN, HOST, killAll, wallaroo, type Child } from "../test/support/process.ts";
import { Receiver } from "../test/support/receiver.ts";
import { ReplayingAlphabetValidator, type Replayed } from "../test/support/validate.ts";
import { poll } from "../test/support/wait.ts";

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
  /** From the kill to every member reporting the restarted worker back and processing. */
  recovery: 30_000,
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
  // Outputs are at-least-once after a crash: the recovery replays what came after the checkpoint.
  const check = new ReplayingAlphabetValidator();
  const receiver = new Receiver(check);
  receiver.listen();

  step("starting the initializer and w1 (a 2-worker cluster, with resilience)");
  // Port 0 everywhere: the OS picks, and the harness reads the ports from the workers' logs (only
  // a restarted initializer needs fixed ones; the demo restarts a member). Every worker keeps its
  // checkpoints and the initializer its input log in a directory of its own under this one.
  const resilienceDir = join(logDir, "resilience");
  mkdirSync(resilienceDir);
  const c = new Cluster("alphabet", receiver.port, { logDir, extraArgs: ["--resilience-dir", resilienceDir] });
  await c.start(2, DEADLINE.formation);
  const init = c.initializer;
  const w1 = c.members.get("w1")!;
  say(`source ${HOST}:${c.sourcePort}, control ${HOST}:${init.control}, external ${HOST}:${init.external}, sink receiver ${HOST}:${receiver.port}`);
  say(`every worker runs with --resilience-dir ${resilienceDir} (a checkpoint every second)`);
  const order = async () => (await c.status(init))!.worker_names.join(", ");
  say(`cluster formed: ${await order()}  (receiver has ${receiver.connections} sink connections)`);

  step(`sending ${MESSAGES} votes at ${RATE}/s`);
  const sender = wallaroo(
    "sender",
    ["send", "--to", `${HOST}:${c.sourcePort}`, "--generator", "alphabet", "--messages", String(MESSAGES), "--rate", String(RATE), "--seed", String(SEED), "--json"],
    { logPath: join(logDir, "sender.log") },
  );
  /** Outputs of a new total, about (cheap enough to look at on every chunk): all but the replays. */
  const fresh = () => receiver.lines - check.repeats;
  const flowing = () => {
    const replays = check.replays();
    return `${receiver.lines} outputs so far${replays > 0 ? ` (${replays} of them replays)` : ""}${sender.exitCode === null ? ", votes still flowing" : ", sender finished"}`;
  };
  /** The next event waits until this many more votes came out: it happens with load on both sides. */
  const underLoad = () => {
    const target = Math.min(MESSAGES, fresh() + OUTPUTS_BETWEEN_EVENTS);
    return receiver.until(() => fresh() >= target, DEADLINE.outputs, "outputs between events");
  };
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

  await underLoad();
  step("crash and recover: kill -9 w4 (not the initializer), then start it again with its command line");
  const flowedThroughCrash = sender.exitCode === null;
  const recovered = await crashAndRecover(c, "w4", flowing);
  await underLoad();
  say(`past the replay: ${flowing()}`);
  if (!flowedThroughCrash || sender.exitCode !== null) say("note: the sender finished before the crash step was over; raise DEMO_MESSAGES to keep votes flowing throughout");

  step("waiting for the sender and every output");
  const sendCode = await sender.waitExit(Math.ceil((MESSAGES / RATE) * 1000) + DEADLINE.outputs);
  if (sendCode !== 0) throw new DemoFailure(`wallaroo send exited with code ${sendCode}: ${sender.stderr.trim()}`);
  say(`sender: ${/\{"sent":.*\}/.exec(sender.stdout)?.[0] ?? "(no summary)"}`);
  // Per letter in order: once its final total is out, every vote of it is.
  const expected = votes.expectedTotals(MESSAGES);
  await receiver.until(() => [...expected].every(([l, t]) => check.maxTotals().get(l) === t), DEADLINE.outputs, "every letter's final total");

  step("shutting the cluster down (wallaroo shutdown through the initializer)");
  const failures: string[] = [];
  const live = [...c.members.keys()];
  // Every worker flushes its sink and closes it: after EOF on every sink connection nothing is
  // still on its way, so a duplicate would be counted below.
  await c.shutdown(DEADLINE.exit, receiver).catch((e: Error) => failures.push(e.message));
  say(`exit codes: ${live.map((n) => `${n}=${c.members.get(n)!.child.exitCode ?? "running"}`).join(", ")}, sender=${sender.exitCode}`);
  receiver.stop();
  // A clean shutdown (and a clean leave) removes a worker's resilience files; only a crash leaves them.
  const left = readdirSync(resilienceDir);
  if (left.length > 0) failures.push(`resilience files left after the clean shutdown: ${left.join(", ")} in ${resilienceDir}`);
  else say(`resilience files: none left in ${resilienceDir}`);

  step("verifying");
  // Every running total of every letter, nothing else, the highest its exact total; on each sink
  // connection a letter's totals go back at most once (the one recovery), and only to repeat totals
  // output before; a total comes at most twice, and only if the initializer replayed its message.
  failures.push(...check.verify(votes, MESSAGES, 1, [recovered.replayed]));
  // At least one output per vote, and the extra ones only replays.
  const replayed = check.replays();
  const replayedMessages = recovered.replayed.to - recovered.replayed.from;
  if (receiver.lines !== MESSAGES + replayed) failures.push(`received ${receiver.lines} output lines for ${MESSAGES} votes and ${replayed} replays`);
  if (replayed > replayedMessages) failures.push(`${replayed} outputs came again, more than the ${replayedMessages} messages replayed`);
  const letters = [...new Set([...expected.keys(), ...check.arrivals.keys()])].sort();
  const final = check.maxTotals();
  say(`${"letter".padEnd(6)}  ${"final total".padStart(12)}  ${"expected".padStart(12)}  ${"outputs".padStart(8)}  ${"replayed".padStart(8)}`);
  for (const letter of letters) {
    const ok = final.get(letter) === expected.get(letter);
    const outputs = check.arrivals.get(letter)?.length ?? 0;
    say(
      `${letter.padEnd(6)}  ${String(final.get(letter) ?? "-").padStart(12)}  ${String(expected.get(letter) ?? "-").padStart(12)}  ${String(outputs).padStart(8)}  ${String(check.replays(letter)).padStart(8)}  ${ok ? "ok" : "MISMATCH"}`,
    );
  }
  say(`${receiver.connections} sink connections; outputs per connection: ${receiver.conns.map((conn) => conn.lines).join(", ")}`);

  if (failures.length > 0) {
    say("");
    for (const f of failures) say(`FAIL: ${f}`);
    throw new DemoFailure(`${failures.length} check(s) failed`);
  }
  say(`\nOK: ${MESSAGES} votes, totals exact, ${replayed} replayed after a crash`);
  say(
    `(${letters.length} letters; at least one output per vote, none lost, the ${replayed} extra ones replays of the ${replayedMessages} messages replayed after the rollback to checkpoint ${recovered.k}; ` +
      `grew 2→3→5, shrank 5→3→2, w4 killed and recovered, in ${elapsed()})`,
  );
}

/** The whole cluster's rollback, or (a local recovery) the restarted worker's alone. */
const ROLLING = /Rolling (?:the cluster|\w+) back to checkpoint (\d+) \(epoch \d+\); (?:its|the) input from position \d+ will be replayed/;
const ROLLED_BACK = /Rolled back to checkpoint \d+ at epoch \d+: \d+ keys in \d+ slots/;
const REPLAYED = /Replayed \d+ messages from the input log \(positions (\d+) to (\d+)\)/;
const RESUMED = "No member is down: the sources resume.";

/** The whole line `child` logs matching `pattern` from line `from` on, waited for. */
async function logLine(child: Child, pattern: RegExp | string, from: number): Promise<string> {
  await child.waitForLog(pattern, DEADLINE.recovery, from);
  return child.lines.slice(from).find((l) => (typeof pattern === "string" ? l.includes(pattern) : pattern.test(l)))!;
}

/** Every member's status answer satisfies `ok`; fails at once if one of them exits. */
async function everyMember(c: Cluster, names: string[], what: string, ok: (s: ClusterStatus) => boolean): Promise<void> {
  await poll(what, DEADLINE.recovery, async () => (await Promise.all(names.map((n) => c.status(n)))).every((s) => s !== undefined && ok(s)), {
    abort: () => assertRunning(names.map((n) => c.members.get(n)!.child)),
  });
}

/**
 * kill -9 member `name`; once every other member reports it down, shows the status, starts it
 * again with its exact command line and waits until every member reports it back and processing;
 * then shows the initializer's recovery lines (and the restarted worker's own rollback).
 */
async function crashAndRecover(c: Cluster, name: string, flowing: () => string): Promise<{ k: number; replayed: Replayed }> {
  const init = c.initializer.child;
  const from = init.lines.length;
  const victim = c.members.get(name)!.child;
  const killedAt = performance.now();
  victim.kill("SIGKILL");
  await victim.waitExit(DEADLINE.exit);
  say(`kill -9 ${victim.pid} (${name}); ${flowing()}`);
  const others = [...c.members.keys()].filter((n) => n !== name);
  await everyMember(c, others, `${others.join(", ")} to report ${name} down`, (s) => !s.processing_messages && (s.down_workers ?? []).includes(name));
  const down = await command(c, ["query", "--external", `${HOST}:${c.initializer.external}`]);
  say(down);
  if (!down.includes("Processing messages: false") || !down.includes(`Down: |${name},|`)) throw new DemoFailure(`the status does not show ${name} down and the cluster paused`);

  const back = await c.restart(name);
  say(`$ ${[relative(process.cwd(), back.child.cmd[0]!) || back.child.cmd[0], ...back.child.cmd.slice(1)].join(" ")} &`);
  say(`(${name} started again with the same command line, pid ${back.child.pid}; its log is ${name}.restart1.log)`);
  const names = [...c.members.keys()];
  await everyMember(c, names, `every member to report ${name} back and processing`, (s) => s.processing_messages && (s.down_workers ?? []).length === 0 && sameNames(s.worker_names, names));
  say(`every member reports ${name} back and processing, ${((performance.now() - killedAt) / 1000).toFixed(1)} s after the kill:`);
  say(await command(c, ["query", "--external", `${HOST}:${c.initializer.external}`]));

  const rolling = await logLine(init, ROLLING, from);
  const replayedLine = await logLine(init, REPLAYED, from);
  say(`initializer's log:`);
  for (const l of [await logLine(init, `Worker ${name} is down`, from), await logLine(init, `Worker ${name} is back`, from), rolling, replayedLine, await logLine(init, RESUMED, from)]) say(`  ${l}`);
  say(`${name}'s log:\n  ${await logLine(back.child, ROLLED_BACK, 0)}`);
  const [, first, end] = REPLAYED.exec(replayedLine)!;
  return { k: Number(ROLLING.exec(rolling)![1]), replayed: { from: Number(first), to: Number(end) } };
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
