// `npm run demo`: a whole wallaroo cluster on this machine, grown and shrunk while votes flow,
// then checked to the last vote. Uses only the compiled binary (dist/wallaroo) and the
// generators the binary itself uses, so what it proves is what an operator would see.
//
//   1. forms a 2-worker alphabet cluster (initializer + w1) and an in-process receiver;
//   2. starts `wallaroo send` (alphabet generator, fixed seed) at a steady rate;
//   3. while votes flow: grows by 1 (w2), by 2 at once (w3, w4), prints the status, lists the
//      workers eligible for shrink, shrinks by name (w2,w3) through a non-initializer, then by
//      count (1: the oldest, w1);
//   4. waits for every output, checks every vote produced exactly one output line, per-letter
//      totals only ever increase on each sink connection, and the last total per letter equals
//      the total regenerated from the same generator and seed;
//   5. shuts the cluster down with `wallaroo shutdown` and reports every worker's exit code.
//
// Tunables (environment): DEMO_MESSAGES (default 400000), DEMO_RATE (default 40000 msg/s),
// DEMO_SEED (default 42), DEMO_KEEP_LOGS=1 keeps the workers' logs even when the demo passes.
import { mkdtempSync, openSync, closeSync, readFileSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";
import { GENERATORS, expectedAlphabetTotals } from "../src/tools/generators.ts";

const ROOT = resolve(import.meta.dir, "..");
const BIN = join(ROOT, "dist", "wallaroo");
const HOST = "127.0.0.1";

const MESSAGES = envInt("DEMO_MESSAGES", 400_000);
const RATE = envInt("DEMO_RATE", 40_000);
const SEED = envInt("DEMO_SEED", 42);
const KEEP_LOGS = process.env.DEMO_KEEP_LOGS === "1";
/** Votes keep flowing this long between autoscale events, so each one happens under load. */
const PAUSE_MS = 1000;

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

// ------------------------------------------------------------------------------ processes

interface Child {
  name: string;
  proc: Subprocess;
  logPath: string;
  exitCode: number | null;
  exited: Promise<number>;
  /** true when the demo expects this process to end (a leaver, the sender, shutdown) */
  expectedExit: boolean;
}

const logDir = mkdtempSync(join(tmpdir(), "wallaroo-demo-"));
const children: Child[] = [];

function spawnChild(name: string, args: string[]): Child {
  const logPath = join(logDir, `${name}.log`);
  const fd = openSync(logPath, "w");
  const proc = Bun.spawn([BIN, ...args], { stdin: "ignore", stdout: fd, stderr: fd, env: { ...process.env, NO_COLOR: "1" } });
  closeSync(fd);
  const child: Child = { name, proc, logPath, exitCode: null, exited: undefined as unknown as Promise<number>, expectedExit: false };
  child.exited = proc.exited.then((code) => {
    child.exitCode = code;
    if (!child.expectedExit && !stopping) say(`!! ${name} exited unexpectedly with code ${code}`);
    return code;
  });
  children.push(child);
  return child;
}

let stopping = false;

async function killAll(): Promise<void> {
  stopping = true;
  const live = children.filter((c) => c.exitCode === null);
  for (const c of live) c.proc.kill("SIGTERM");
  const until = Date.now() + 3000;
  while (live.some((c) => c.exitCode === null) && Date.now() < until) await Bun.sleep(50);
  for (const c of live) if (c.exitCode === null) c.proc.kill("SIGKILL");
  await Promise.race([Promise.all(live.map((c) => c.exited)), Bun.sleep(2000)]);
}

/** Runs a short wallaroo command to completion (with a deadline) and returns its output. */
async function run(args: string[], deadlineMs: number = DEADLINE.command): Promise<{ code: number; stdout: string; stderr: string }> {
  const proc = Bun.spawn([BIN, ...args], { stdin: "ignore", stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1" } });
  const timer = setTimeout(() => proc.kill("SIGKILL"), deadlineMs);
  try {
    const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    return { code, stdout, stderr };
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `check` every `everyMs` until it returns a value other than undefined, or fails at the deadline. */
async function waitFor<T>(what: string, deadlineMs: number, check: () => Promise<T | undefined> | T | undefined, everyMs = 100): Promise<T> {
  const until = Date.now() + deadlineMs;
  let last: unknown;
  for (;;) {
    // A worker that died on its own makes every later wait pointless: fail now, not at the deadline.
    const dead = children.find((c) => c.exitCode !== null && !c.expectedExit);
    if (dead) throw new DemoFailure(`${dead.name} exited unexpectedly with code ${dead.exitCode} while waiting for ${what}`);
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      if (err instanceof DemoFailure) throw err;
      last = err;
    }
    if (Date.now() > until) throw new DemoFailure(`timed out after ${deadlineMs / 1000} s waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ""}`);
    await Bun.sleep(everyMs);
  }
}

// ---------------------------------------------------------------------------------- ports

/**
 * The address a worker logged for `what`. Every worker listens on port 0 and the demo reads the
 * port the OS gave from its log: a port picked in advance could be taken by another process
 * (an outgoing connection's ephemeral port) before the worker binds it.
 */
const LOGGED = {
  control: /control: listening on (\S+);/,
  external: /external: listening on (\S+)/,
  source: /source is listening on (\S+)/,
} as const;

async function loggedAddr(child: Child, what: keyof typeof LOGGED): Promise<string> {
  return waitFor(`${child.name} to log its ${what} address`, DEADLINE.formation, () => {
    const m = LOGGED[what].exec(readFileSync(child.logPath, "utf8"));
    return m ? m[1]! : undefined;
  }, 20);
}

/** Spawns a worker and returns once it logged the addresses it listens on. */
async function startWorker(name: string, args: string[], control: boolean): Promise<WorkerInfo> {
  const child = spawnChild(name, ["worker", ...args]);
  const info: WorkerInfo = { name, child, external: await loggedAddr(child, "external") };
  if (control) info.control = await loggedAddr(child, "control");
  return info;
}

// ------------------------------------------------------------------------------- receiver

interface ConnStats {
  lines: number;
  /** letter → last total seen on this connection */
  last: Map<string, number>;
}

/** The sink side: every worker connects once; each line is `<letter> => <total>`. */
class AlphabetReceiver {
  lines = 0;
  connections = 0;
  readonly perConn: ConnStats[] = [];
  /** letter → every total received (a duplicate line is an error) */
  readonly seen = new Map<string, Set<number>>();
  readonly problems: string[] = [];
  private server: import("bun").TCPSocketListener<{ id: number; rest: string; dec: TextDecoder }> | undefined;

  get port(): number {
    return this.server!.port;
  }

  start(port: number): void {
    this.server = Bun.listen<{ id: number; rest: string; dec: TextDecoder }>({
      hostname: HOST,
      port,
      socket: {
        open: (s) => {
          s.data = { id: this.perConn.length, rest: "", dec: new TextDecoder() };
          this.perConn.push({ lines: 0, last: new Map() });
          this.connections++;
        },
        data: (s, chunk) => {
          const text = s.data.rest + s.data.dec.decode(chunk, { stream: true });
          const parts = text.split("\n");
          s.data.rest = parts.pop()!;
          for (const line of parts) this.line(s.data.id, line);
        },
        close: (s) => {
          if (s.data?.rest) this.problem(`connection ${s.data.id} closed inside a line: "${s.data.rest}"`);
        },
      },
    });
  }

  private problem(p: string): void {
    if (this.problems.length < 20) this.problems.push(p);
    else if (this.problems.length === 20) this.problems.push("… (more problems not shown)");
  }

  private line(conn: number, line: string): void {
    this.lines++;
    const m = /^(.) => (\d+)$/.exec(line);
    if (!m) return this.problem(`connection ${conn}: unparsable line "${line}"`);
    const letter = m[1]!;
    const total = Number(m[2]);
    const c = this.perConn[conn]!;
    c.lines++;
    const prev = c.last.get(letter);
    if (prev !== undefined && total <= prev) this.problem(`connection ${conn}: letter ${letter} went from ${prev} to ${total} (totals must only increase)`);
    c.last.set(letter, total);
    let s = this.seen.get(letter);
    if (!s) this.seen.set(letter, (s = new Set()));
    if (s.has(total)) this.problem(`letter ${letter}: total ${total} received twice (a duplicated output)`);
    s.add(total);
  }

  stop(): void {
    this.server?.stop(true);
  }
}

// ----------------------------------------------------------------------------- the cluster

interface Status {
  processing_messages: boolean;
  worker_count?: number;
  worker_names?: string[];
}

interface WorkerInfo {
  name: string;
  external: string;
  control?: string;
  child: Child;
}

async function status(external: string): Promise<Status> {
  const r = await run(["query", "--external", external, "--json", "--timeout", "2"], 5000);
  if (r.code !== 0) throw new Error(`query --external ${external} exited ${r.code}: ${r.stderr.trim()}`);
  return JSON.parse(r.stdout) as Status;
}

const sameNames = (a: readonly string[] | undefined, b: readonly string[]) => !!a && a.length === b.length && a.every((n) => b.includes(n));

/**
 * Waits until every given worker reports exactly `names` (in any order) and is processing
 * messages; returns the membership in cluster order as the first worker reports it.
 */
async function waitMembership(workers: readonly WorkerInfo[], names: readonly string[], deadlineMs: number): Promise<string> {
  return await waitFor(`${workers.map((w) => w.name).join(", ")} to report members ${names.join(",")}`, deadlineMs, async () => {
    let order: string[] | undefined;
    for (const w of workers) {
      if (w.child.exitCode !== null) throw new DemoFailure(`${w.name} exited with code ${w.child.exitCode} while the cluster should include it`);
      const s = await status(w.external);
      if (!s.processing_messages || s.worker_count !== names.length || !sameNames(s.worker_names, names)) return undefined;
      order ??= s.worker_names;
    }
    return order!.join(", ");
  });
}

async function waitExit(child: Child, deadlineMs: number): Promise<number> {
  child.expectedExit = true;
  const code = await Promise.race([child.exited, Bun.sleep(deadlineMs).then(() => null)]);
  if (code === null) throw new DemoFailure(`${child.name} did not exit within ${deadlineMs / 1000} s`);
  return code;
}

function showLogsOnFailure(): void {
  say(`\nWorker and tool logs are in ${logDir}`);
  for (const c of children) {
    if (!existsSync(c.logPath)) continue;
    const lines = readFileSync(c.logPath, "utf8").trimEnd().split("\n");
    const tail = lines.slice(-15);
    say(`\n--- ${c.name} (exit ${c.exitCode ?? "still running"}), last ${tail.length} of ${lines.length} log lines: ${c.logPath}`);
    for (const l of tail) say(`  ${l}`);
  }
}

async function main(): Promise<void> {
  if (!existsSync(BIN)) throw new DemoFailure(`${BIN} is missing: run \`npm run build\` first (npm run demo does it for you)`);

  step("planning");
  say(`sending ${MESSAGES} alphabet votes at ${RATE}/s (seed ${SEED}); logs in ${logDir}`);

  // Expected per-letter totals come from the same generator `wallaroo send` uses.
  const gen = GENERATORS.alphabet({ seed: SEED });
  const frames: Uint8Array[] = new Array(MESSAGES);
  for (let i = 0; i < MESSAGES; i++) frames[i] = gen.next();
  const expected = expectedAlphabetTotals(frames);
  // Every running total a letter must show, once each: a received line outside this set is wrong.
  const running = new Map<string, Set<number>>();
  {
    const acc = new Map<string, number>();
    for (const f of frames) {
      const letter = String.fromCharCode(f[4]!);
      const votes = ((f[5]! << 24) >>> 0) + ((f[6]! << 16) | (f[7]! << 8) | f[8]!);
      const t = (acc.get(letter) ?? 0) + votes;
      acc.set(letter, t);
      let s = running.get(letter);
      if (!s) running.set(letter, (s = new Set()));
      s.add(t);
    }
  }
  frames.length = 0;

  const receiver = new AlphabetReceiver();
  receiver.start(0);
  const out = `${HOST}:${receiver.port}`;

  step("starting the initializer and w1 (a 2-worker cluster)");
  const common = ["--application-module", "alphabet", "--out", out];
  // Port 0 everywhere: the OS picks, and the demo reads the ports from the workers' logs.
  const any = `${HOST}:0`;
  const init = await startWorker("initializer", [
    ...common,
    "--in", `alphabet@${any}`,
    "--control", any, "--data", any, "--external", any,
    "--cluster-initializer", "--worker-count", "2",
  ], true);
  const source = await loggedAddr(init.child, "source");
  say(`source ${source}, control ${init.control}, external ${init.external}, sink receiver ${out}`);
  const w1 = await startWorker("w1", [...common, "--control", init.control!, "--my-control", any, "--external", any, "--name", "w1"], true);
  const formed = await waitMembership([init, w1], ["initializer", "w1"], DEADLINE.formation);
  say(`cluster formed: ${formed}  (receiver has ${receiver.connections} sink connections)`);

  step(`sending ${MESSAGES} votes at ${RATE}/s`);
  const sender = spawnChild("sender", [
    "send", "--to", source, "--generator", "alphabet", "--messages", String(MESSAGES), "--rate", String(RATE), "--seed", String(SEED), "--json",
  ]);
  sender.expectedExit = true;
  await waitFor("the first outputs", DEADLINE.outputs, () => (receiver.lines > 0 ? true : undefined), 20);
  await Bun.sleep(PAUSE_MS);
  const flowing = () => `${receiver.lines} outputs so far${sender.exitCode === null ? ", votes still flowing" : ", sender finished"}`;
  say(flowing());

  step("growing by 1 (w2 joins through w1)");
  const w2 = await startWorker("w2", [...common, "--join", w1.control!, "--name", "w2", "--external", any], false);
  let members = ["initializer", "w1", "w2"];
  let order = await waitMembership([init, w1, w2], members, DEADLINE.grow);
  say(`every worker reports ${order}; ${flowing()}`);

  await Bun.sleep(PAUSE_MS);
  step("growing by 2 at once (w3 through the initializer, w4 through w1, both --worker-count 2)");
  const [w3, w4] = await Promise.all([
    startWorker("w3", [...common, "--join", init.control!, "--name", "w3", "--worker-count", "2", "--external", any], false),
    startWorker("w4", [...common, "--join", w1.control!, "--name", "w4", "--worker-count", "2", "--external", any], false),
  ]);
  members = ["initializer", "w1", "w2", "w3", "w4"];
  let live = [init, w1, w2, w3, w4];
  order = await waitMembership(live, members, DEADLINE.grow);
  say(`every worker reports ${order}; ${flowing()}`);

  step("cluster status");
  {
    const r = await run(["query", "--external", init.external]);
    if (r.code !== 0) throw new DemoFailure(`query status exited ${r.code}: ${r.stderr.trim()}`);
    say(r.stdout.trimEnd());
    const k = await run(["query", "slot-counts", "--external", w3.external, "--json"]);
    if (k.code === 0) say(`w3 owns: ${k.stdout.trim()}`);
  }

  step("workers eligible for shrink");
  {
    const r = await run(["shrink", "--external", w1.external, "--query"]);
    if (r.code !== 0) throw new DemoFailure(`shrink --query exited ${r.code}: ${r.stderr.trim()}`);
    say(r.stdout.trimEnd());
  }

  await Bun.sleep(PAUSE_MS);
  step("shrinking by name: w2,w3 (asking w1, a non-initializer)");
  {
    w2.child.expectedExit = w3.child.expectedExit = true;
    const r = await run(["shrink", "--external", w1.external, "--workers", "w2,w3"]);
    say(r.stdout.trimEnd());
    if (r.code !== 0) throw new DemoFailure(`shrink --workers w2,w3 exited ${r.code}: ${r.stdout.trim()} ${r.stderr.trim()}`);
    members = ["initializer", "w1", "w4"];
    live = [init, w1, w4];
    order = await waitMembership(live, members, DEADLINE.shrink);
    for (const l of [w2, w3]) {
      const code = await waitExit(l.child, DEADLINE.exit);
      if (code !== 0) throw new DemoFailure(`leaver ${l.name} exited with code ${code}, not 0`);
    }
    say(`every worker reports ${order}; w2 and w3 exited 0; ${flowing()}`);
  }

  await Bun.sleep(PAUSE_MS);
  step("shrinking by count: 1 (the oldest eligible worker leaves; asking w4)");
  {
    w1.child.expectedExit = true;
    const r = await run(["shrink", "--external", w4.external, "--count", "1"]);
    say(r.stdout.trimEnd());
    if (r.code !== 0) throw new DemoFailure(`shrink --count 1 exited ${r.code}: ${r.stdout.trim()} ${r.stderr.trim()}`);
    members = ["initializer", "w4"];
    live = [init, w4];
    order = await waitMembership(live, members, DEADLINE.shrink);
    const code = await waitExit(w1.child, DEADLINE.exit);
    if (code !== 0) throw new DemoFailure(`leaver w1 exited with code ${code}, not 0`);
    say(`every worker reports ${order}; w1 exited 0; ${flowing()}`);
  }
  if (sender.exitCode !== null) say("note: the sender finished before the last autoscale event; raise DEMO_MESSAGES to keep votes flowing throughout");

  step("waiting for the sender and every output");
  const sendDeadline = Math.ceil((MESSAGES / RATE) * 1000) + DEADLINE.outputs;
  const sendCode = await waitExit(sender, sendDeadline);
  const sendOut = readFileSync(sender.logPath, "utf8");
  if (sendCode !== 0) throw new DemoFailure(`wallaroo send exited with code ${sendCode}: ${sendOut.trim()}`);
  const summary = /\{"sent":.*\}/.exec(sendOut)?.[0];
  say(`sender: ${summary ?? "(no summary)"}`);
  let lastLines = -1;
  let lastChange = Date.now();
  await waitFor(`${MESSAGES} output lines (have ${receiver.lines})`, DEADLINE.outputs, () => {
    if (receiver.lines >= MESSAGES) return true;
    if (receiver.lines !== lastLines) {
      lastLines = receiver.lines;
      lastChange = Date.now();
    } else if (Date.now() - lastChange > 10_000) {
      throw new DemoFailure(`outputs stalled at ${receiver.lines} of ${MESSAGES} for 10 s`);
    }
    return undefined;
  }, 50);
  // Anything beyond the expected count would be a duplicate: give it a moment to show up.
  await Bun.sleep(300);

  step("verifying");
  const failures: string[] = [...receiver.problems];
  if (receiver.lines !== MESSAGES) failures.push(`received ${receiver.lines} output lines for ${MESSAGES} votes`);
  const letters = [...new Set([...expected.keys(), ...receiver.seen.keys()])].sort();
  const rows: string[] = [];
  for (const letter of letters) {
    const want = expected.get(letter);
    const got = receiver.seen.get(letter);
    const last = got ? Math.max(...got) : undefined;
    const outputs = got?.size ?? 0;
    const inputs = running.get(letter)?.size ?? 0;
    const ok = want !== undefined && last === want && outputs === inputs;
    if (want === undefined) failures.push(`letter ${letter}: outputs for a letter that was never sent`);
    else if (last !== want) failures.push(`letter ${letter}: last total ${last ?? "none"}, expected ${want}`);
    if (outputs !== inputs) failures.push(`letter ${letter}: ${outputs} distinct outputs for ${inputs} votes`);
    if (got && want !== undefined) {
      const exp = running.get(letter)!;
      let bad = 0;
      for (const t of got) if (!exp.has(t)) bad++;
      if (bad > 0) failures.push(`letter ${letter}: ${bad} outputs are not running totals of its votes`);
    }
    rows.push(`${letter.padEnd(6)}  ${String(last ?? "-").padStart(12)}  ${String(want ?? "-").padStart(12)}  ${String(outputs).padStart(8)}  ${ok ? "ok" : "MISMATCH"}`);
  }
  say(`${"letter".padEnd(6)}  ${"last total".padStart(12)}  ${"expected".padStart(12)}  ${"outputs".padStart(8)}`);
  for (let i = 0; i < rows.length; i++) say(rows[i]!);
  say(`${receiver.connections} sink connections; outputs per connection: ${receiver.perConn.map((c) => c.lines).join(", ")}`);

  step("shutting the cluster down (wallaroo shutdown through the initializer)");
  for (const w of live) w.child.expectedExit = true;
  const sd = await run(["shutdown", "--external", init.external]);
  if (sd.code !== 0) failures.push(`wallaroo shutdown exited ${sd.code}: ${sd.stderr.trim()}`);
  for (const w of live) {
    const code = await Promise.race([w.child.exited, Bun.sleep(DEADLINE.exit).then(() => null)]);
    if (code !== 0) failures.push(`${w.name} ${code === null ? `did not exit within ${DEADLINE.exit / 1000} s` : `exited with code ${code}`} after shutdown`);
  }
  say(`exit codes: ${children.filter((c) => c.name !== "sender").map((c) => `${c.name}=${c.exitCode ?? "running"}`).join(", ")}, sender=${sender.exitCode}`);
  receiver.stop();

  if (failures.length > 0) {
    say("");
    for (const f of failures) say(`FAIL: ${f}`);
    throw new DemoFailure(`${failures.length} check(s) failed`);
  }
  say(`\nOK: ${MESSAGES} votes, totals exact`);
  say(`(${letters.length} letters; one output per vote, none lost or duplicated; totals only increased on every sink connection; grew 2→3→5 and shrank 5→3→2 in ${elapsed()})`);
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
