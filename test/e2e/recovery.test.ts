// Crash recovery (issue 10): a worker killed with SIGKILL and started again with its command line
// comes back from its checkpoint, the cluster rolls back and the initializer replays its input
// log; the same for the initializer itself. Outputs are at-least-once with deterministic replay
// (ReplayingAlphabetValidator). Also: who may join a resilient cluster, what its files look like
// after a clean shutdown and after a crash, and a directory that is not this application's.
import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Cluster, type Member } from "../support/cluster.ts";
import { AlphabetWorkload, SequenceWorkload } from "../support/load.ts";
import { HOST, wallaroo, type Child } from "../support/process.ts";
import { CountLines, type Receiver } from "../support/receiver.ts";
import { AlphabetValidator, ReplayingAlphabetValidator } from "../support/validate.ts";
import { poll } from "../support/wait.ts";
import { cleanUpAfterEach, closedPort, receiver, removeAfterTest, sender, tempDir } from "./fixtures.ts";

cleanUpAfterEach();

/** A fresh --resilience-dir, removed when the test ends. */
const resilienceDir = () => tempDir("wallaroo-recovery-");

/** `n` distinct ports the OS had free a moment ago (all held at once, then released). */
function freePorts(n: number): number[] {
  const listeners = Array.from({ length: n }, () => Bun.listen({ hostname: HOST, port: 0, socket: { data() {} } }));
  const ports = listeners.map((l) => l.port);
  for (const l of listeners) l.stop(true);
  return ports;
}

const workerDir = (dir: string, name: string, app = "alphabet") => join(dir, `wallaroo-${app}-${name}`);

/** Flags for every member of a resilient cluster; debug shows the initializer's commits. */
const resilient = (dir: string, interval = "1s") => ["--resilience-dir", dir, "--time-between-checkpoints", interval, "--log-level", "debug"];

const COMMITTED = /Checkpoint (\d+) committed: \d+ slots, \d+ bytes written in [\d.]+ ms/;
const ROLLING = /Rolling the cluster back to checkpoint (\d+) \(epoch (\d+)\); its input from position (\d+) will be replayed/;
const ROLLING_ONE = /Rolling (\w+) back to checkpoint (\d+) \(epoch (\d+)\); the input from position (\d+) will be replayed for its slots; the other members keep their state/;
const ROLLED_BACK = /Rolled back to checkpoint (\d+) at epoch (\d+): (\d+) keys in (\d+) slots/;
const KEPT = /Kept this worker's state through (\w+)'s rollback to checkpoint (\d+), at epoch (\d+)/;
const REPLAYED = /Replayed (\d+) messages from the input log \(positions (\d+) to (\d+)\)(?:, (\d+) of them to (\w+), the rest skipped,)? in \d+ ms/;
const RESUMED = "No member is down: the sources resume.";

/** The last checkpoint `child` logged as committed among its lines before `before`; 0 when none. */
function lastCommitLogged(child: Child, before = child.lines.length): number {
  let k = 0;
  for (const line of child.lines.slice(0, before)) {
    const m = line.match(COMMITTED);
    if (m) k = Number(m[1]);
  }
  return k;
}

/**
 * Waits for the initializer's next commit and then for `outputs` more outputs, then kills
 * `victim` with SIGKILL: outputs produced after the last committed checkpoint have reached the
 * receiver, so the recovery must produce them again.
 */
async function killAfterCommit(c: Cluster, rx: Receiver, victim: Member, outputs = 300): Promise<void> {
  const init = c.initializer.child;
  await init.waitForLog(COMMITTED, 15_000, init.lines.length);
  await rx.waitLines(rx.lines + outputs, 15_000, `${outputs} outputs after checkpoint`);
  victim.child.kill("SIGKILL");
  await victim.child.waitExit(5000);
}

interface Recovered {
  k: number;
  epoch: number;
  /** Input-log positions replayed: [from, to). */
  from: number;
  to: number;
}

/**
 * The recovery lines, from line `from[name]` of each member on (a restarted member: from its
 * first line): the initializer's rollback to checkpoint K at epoch E from position P, every
 * member's own rollback to the same K and E (their slots adding up to all 1024), the replay of
 * exactly the input from P on, and the sources resuming after it.
 */
async function recoveryLines(c: Cluster, from: Record<string, number>): Promise<Recovered> {
  return whileAllRun(c, async () => {
    const init = c.initializer.child;
    const start = from.initializer ?? 0;
    const r = await init.waitForLog(ROLLING, 30_000, start);
    const [k, epoch, position] = [Number(r[1]), Number(r[2]), Number(r[3])];
    let slots = 0;
    for (const m of c.members.values()) {
      const rb = await m.child.waitForLog(ROLLED_BACK, 30_000, from[m.name] ?? 0);
      expect({ member: m.name, k: Number(rb[1]), epoch: Number(rb[2]) }).toEqual({ member: m.name, k, epoch });
      slots += Number(rb[4]);
    }
    expect(slots).toBe(1024);
    const rp = await init.waitForLog(REPLAYED, 30_000, start);
    const [n, a, b] = [Number(rp[1]), Number(rp[2]), Number(rp[3])];
    expect({ from: a, messages: n }).toEqual({ from: position, messages: b - a });
    await init.waitForLog(RESUMED, 30_000, init.lines.findIndex((l, i) => i >= start && REPLAYED.test(l)));
    return { k, epoch, from: a, to: b };
  });
}

/**
 * The lines of a local recovery of `victim`, from line `from[name]` of each member on (the
 * restarted victim: from its first line): the initializer's rollback of the victim alone to
 * checkpoint K at epoch E from position P, the victim's own rollback to the same K and E, every
 * other member keeping its state through it, the replay of exactly the input from P on (under
 * load, some but not all of it forwarded to the victim), and the sources resuming after it.
 */
async function localRecoveryLines(c: Cluster, victim: string, from: Record<string, number>, underLoad = true): Promise<Recovered> {
  return whileAllRun(c, async () => {
    const init = c.initializer.child;
    const start = from.initializer ?? 0;
    const r = await init.waitForLog(ROLLING_ONE, 30_000, start);
    const [k, epoch, position] = [Number(r[2]), Number(r[3]), Number(r[4])];
    expect(r[1]).toBe(victim);
    for (const m of c.members.values()) {
      const line = m.name === victim ? await m.child.waitForLog(ROLLED_BACK, 30_000, from[m.name] ?? 0) : await m.child.waitForLog(KEPT, 30_000, from[m.name] ?? 0);
      const [lk, le] = m.name === victim ? [line[1], line[2]] : [line[2], line[3]];
      expect({ member: m.name, k: Number(lk), epoch: Number(le) }).toEqual({ member: m.name, k, epoch });
      if (m.name !== victim) expect(line[1]).toBe(victim);
    }
    const rp = await init.waitForLog(REPLAYED, 30_000, start);
    const [n, a, b, forwarded] = [Number(rp[1]), Number(rp[2]), Number(rp[3]), Number(rp[4])];
    expect({ from: a, messages: n, to: rp[5] }).toEqual({ from: position, messages: b - a, to: victim });
    // Under load some of the input since the checkpoint was the victim's, some not.
    if (underLoad) expect({ forwarded: forwarded > 0, skipped: forwarded < n }).toEqual({ forwarded: true, skipped: true });
    else expect(forwarded).toBeLessThanOrEqual(n);
    await init.waitForLog(RESUMED, 30_000, init.lines.findIndex((l, i) => i >= start && REPLAYED.test(l)));
    return { k, epoch, from: a, to: b };
  });
}

/** What `wait` resolves to; fails at once, with every member's recovery lines, if a member exits first. */
async function whileAllRun<T>(c: Cluster, wait: () => Promise<T>): Promise<T> {
  const members = [...c.members.values()];
  const exits = members.map((m) =>
    m.child.exited.then((code) => {
      throw new Error(`${m.name} exited with ${code} during the recovery\n${members.map((x) => recoveryTail(x.child)).join("\n")}`);
    }),
  );
  return Promise.race([wait(), ...exits]);
}

/** A worker's lines about crashes and recoveries, for a failure report. */
function recoveryTail(child: Child): string {
  const about = /down|back|Rolling|Rolled back|Kept|Replayed|Recovering|Lost|resume|rejoin|Reconnecting|abandoned/;
  return `--- ${child.name} (pid ${child.pid}) ---\n${child.lines.filter((l) => about.test(l)).join("\n")}`;
}

/** Every member reports every member, processing, with nobody down. */
async function allUp(c: Cluster): Promise<void> {
  await c.waitMembership([...c.members.keys()], 30_000);
  for (const m of c.members.values()) expect({ member: m.name, down: (await c.status(m))?.down_workers ?? [] }).toEqual({ member: m.name, down: [] });
}

/** The members `names` report `down` as down, and not processing. */
async function downAt(c: Cluster, names: string[], down: string[]): Promise<void> {
  for (const name of names) {
    const st = await poll(`${name} to report ${down} down`, 10_000, async () => {
      const s = await c.status(name);
      return s?.down_workers?.length ? s : undefined;
    });
    expect({ member: name, processing: st.processing_messages, down: st.down_workers, count: st.worker_count }).toEqual({
      member: name,
      processing: false,
      down,
      count: c.members.size,
    });
  }
}

/**
 * Three alphabet workers with resilience whose initializer listens on fixed ports (so a restart
 * of it is found again), a replay-aware validator, and a sender of workload `seed` connected.
 */
async function restartableCluster(seed: number) {
  const dir = resilienceDir();
  const [control, data, source] = freePorts(3) as [number, number, number];
  const rx = receiver(new ReplayingAlphabetValidator());
  const c = await new Cluster("alphabet", rx.port, { extraArgs: resilient(dir, "250ms"), initializerPorts: { control, data, source } }).start(3);
  const wl = new AlphabetWorkload(seed);
  const s1 = await sender(c.sourcePort, wl);
  return { dir, source, rx, c, wl, s1 };
}

describe("crash recovery", () => {
  test("under load: a member killed with SIGKILL and then the initializer recover from their checkpoints; every total arrives, replayed ones repeat exactly", async () => {
    const RATE = 5000;
    const { source, rx, c, wl, s1 } = await restartableCluster(21);
    void s1.atRate(RATE);
    // A few checkpoints first: older images pruned, the input log truncated before the last one.
    await c.initializer.child.waitForLog(/Checkpoint [3-9]\d* committed/, 20_000);

    // ---- a member: the sources pause until it is back, then it alone rolls back, and the input
    // since the checkpoint is replayed for its slots; the others keep their state.
    const before1 = { initializer: c.initializer.child.lines.length, w2: c.members.get("w2")!.child.lines.length };
    const oldW1 = c.members.get("w1")!;
    await killAfterCommit(c, rx, oldW1);
    const init = c.initializer.child;
    await init.waitForLog(
      "Worker w1 is down: the sources are paused until it is started again with its command line (it recovers from its checkpoint), or removed",
      10_000,
      before1.initializer,
    );
    await downAt(c, ["initializer", "w2"], ["w1"]);
    await c.restart("w1");
    await init.waitForLog("Worker w1 is back (1 of 1 down members)", 20_000, before1.initializer);
    const r1 = await localRecoveryLines(c, "w1", before1);
    // The last checkpoint committed before the crash, not an older one.
    expect(r1.k).toBe(lastCommitLogged(init, init.lines.findIndex((l, i) => i >= before1.initializer && ROLLING_ONE.test(l))));
    expect(r1.to).toBeLessThanOrEqual(wl.taken);
    // The restarted w1 restored from its store.
    const rolledBackLine = (lines: readonly string[]) => lines.find((l) => ROLLED_BACK.test(l)) ?? "";
    expect(rolledBackLine(c.members.get("w1")!.child.lines)).toMatch(/\(links \d+, reading \d+, installing \d+\)$/);
    await allUp(c);
    // Past the replay: every letter beyond what it had before the crash.
    const max1 = rx.handler.maxTotals();
    await rx.until(() => [...max1].every(([l, t]) => rx.handler.maxTotals().get(l)! > t), 30_000, "every letter past its total before the first crash");
    const repeats1 = rx.handler.repeats;
    expect(repeats1).toBeGreaterThan(0);

    // ---- the initializer: members wait for it; it recovers from its files, they reconnect.
    const before2: Record<string, number> = { w1: c.members.get("w1")!.child.lines.length, w2: c.members.get("w2")!.child.lines.length };
    const oldInit = c.initializer;
    await killAfterCommit(c, rx, oldInit);
    s1.close();
    const takenBeforeCrash = wl.taken;
    for (const name of ["w1", "w2"]) {
      await c.members.get(name)!.child.waitForLog(/Lost the initializer \(.*\): waiting for it to be started again \(up to 600 s\)/, 10_000, before2[name]);
    }
    const init2 = (await c.restart("initializer")).child;
    expect(c.sourcePort).toBe(source);
    const rec = await init2.waitForLog(/Recovering from checkpoint (\d+): waiting for w1,w2 to reconnect; the sources stay paused until then/, 15_000);
    expect(Number(rec[1])).toBe(lastCommitLogged(oldInit.child));
    const r2 = await recoveryLines(c, before2);
    expect(r2.k).toBe(Number(rec[1]));
    expect(r2.epoch).toBeGreaterThan(r1.epoch);
    expect(r2.from).toBeGreaterThanOrEqual(r1.to);
    // Frames the dead initializer had not logged were never taken: they must be sent again. The
    // replay's end is where its input log stopped, so the producer resumes from there.
    expect(r2.to).toBeLessThanOrEqual(takenBeforeCrash);
    await allUp(c);
    wl.taken = r2.to;
    const s2 = await sender(source, wl);
    void s2.atRate(RATE);
    const max2 = rx.handler.maxTotals();
    await rx.until(() => [...max2].every(([l, t]) => rx.handler.maxTotals().get(l)! > t), 30_000, "every letter past its total before the second crash");
    expect(rx.handler.repeats).toBeGreaterThan(repeats1);

    // ---- the end: every letter's final total arrives; the rule holds over everything received.
    await s2.stop();
    const total = wl.taken;
    const expected = wl.expectedTotals(total);
    await rx.until(() => [...expected].every(([l, t]) => rx.handler.maxTotals().get(l) === t), 30_000, "every letter's final total");
    await c.shutdown(20_000, rx);
    // One rollback per recovery, on every process that lived through it (w1's alone, then the
    // whole cluster's); outputs by the rule.
    const processes = [oldInit, c.initializer, oldW1, c.members.get("w1")!, c.members.get("w2")!];
    const count = (m: Member, re: RegExp) => m.child.lines.filter((l) => re.test(l)).length;
    const rollbacks = {
      rolling: [count(oldInit, ROLLING), count(c.initializer, ROLLING)],
      rollingOne: [count(oldInit, ROLLING_ONE), count(c.initializer, ROLLING_ONE)],
      rolledBack: processes.map((m) => count(m, ROLLED_BACK)),
      kept: processes.map((m) => count(m, KEPT)),
    };
    const problems = rx.handler.verify(wl, total, 2);
    const explain = `\n${processes.map((m) => recoveryTail(m.child)).join("\n")}`;
    expect({ rollbacks, problems }, explain).toEqual({ rollbacks: { rolling: [0, 1], rollingOne: [1, 0], rolledBack: [0, 1, 0, 2, 1], kept: [1, 0, 0, 0, 1] }, problems: [] });
  }, 120_000);
});

describe("giving a member up", () => {
  test("a member whose machine is gone is given up by name: the cluster rolls back without it, its slots start empty elsewhere, and the rest goes on", async () => {
    const dir = resilienceDir();
    const rx = receiver(new ReplayingAlphabetValidator());
    const c = await new Cluster("alphabet", rx.port, { extraArgs: resilient(dir, "250ms") }).start(3);
    const init = c.initializer.child;
    await init.waitForLog(COMMITTED, 10_000);
    const s = await sender(c.sourcePort, new AlphabetWorkload(31));
    void s.atRate(10_000);
    await rx.waitLines(2000, 15_000, "outputs before the kill");
    const w1 = c.members.get("w1")!;
    w1.child.kill("SIGKILL");
    await w1.child.waitExit(5000);
    await init.waitForLog("Worker w1 is down", 10_000);
    // A shrink naming it gives it up.
    const r = await c.run(["shrink", "--external", `${HOST}:${c.initializer.external}`, "--workers", "w1"]);
    expect({ code: r.code, out: r.stdout.trim() }).toEqual({ code: 0, out: expect.stringContaining("Shrinking by 1 workers!") });
    await init.waitForLog(/AUTOSCALE: giving up w1: the cluster rolls back to its last checkpoint without them/, 10_000);
    await init.waitForLog(/Slots of given-up workers start empty: \d+ slots/, 10_000);
    // The sources resume once the rollback's replay is over, not when nobody is down any more.
    await init.waitForLog(RESUMED, 20_000);
    const at = (re: RegExp | string) => init.lines.findIndex((l) => (typeof re === "string" ? l.includes(re) : re.test(l)));
    expect(at(RESUMED)).toBeGreaterThan(at(REPLAYED));
    expect(init.lines.filter((l) => l.includes(RESUMED)).length).toBe(1);
    c.members.delete("w1");
    await c.waitMembership(["initializer", "w2"], 20_000);
    // A commit without it follows at once: a later crash does not bring it back.
    const from = init.lines.length;
    await init.waitForLog(COMMITTED, 10_000, from);
    // Every letter keeps producing outputs (w1's letters from their new owners).
    const before = rx.lines;
    await rx.waitLines(before + 5000, 20_000, "outputs after the give-up");
    await s.stop();
    s.close();
  }, 90_000);
});

describe("who may join a resilient cluster", () => {
  test("a joiner without --resilience-dir is refused and nothing changes", async () => {
    const dir = resilienceDir();
    const rx = receiver(new AlphabetValidator());
    const c = await new Cluster("alphabet", rx.port, { extraArgs: resilient(dir, "250ms") }).start(2);
    const init = c.initializer.child;
    await init.waitForLog(COMMITTED, 10_000);
    const refusal = "This cluster runs with resilience: start the joining worker with --resilience-dir (or --run-with-resilience) too.";
    // Through the initializer, and through a member that relays the request.
    for (const via of [c.initializer, c.members.get("w1")!]) {
      const joiner = wallaroo("w9", ["worker", "--application-module", "alphabet", "--out", `${HOST}:${rx.port}`, "--name", "w9", "--join", `${HOST}:${via.control}`]);
      const code = await joiner.waitExit(20_000);
      expect({ via: via.name, code, said: joiner.stderr.includes(`Join Error: ${refusal}`) }).toEqual({ via: via.name, code: 4, said: true });
    }
    expect(init.find(`Join of w9 refused: ${refusal}`)).not.toBeNull();
    // Nothing changed: the same members, processing, checkpoints still committed, outputs exact.
    await allUp(c);
    const from = init.lines.length;
    await init.waitForLog(COMMITTED, 10_000, from);
    const wl = new AlphabetWorkload(22);
    const s = await sender(c.sourcePort, wl);
    await s.atRate(20_000, 5000);
    await rx.waitLines(5000, 20_000);
    expect(readdirSync(dir).sort()).toEqual(["wallaroo-alphabet-initializer", "wallaroo-alphabet-w1"]);
    await c.shutdown(20_000, rx);
    expect(rx.handler.verify(wl, 5000)).toEqual([]);
  }, 60_000);

  test("a starting worker without --resilience-dir is refused at registration", async () => {
    const dir = resilienceDir();
    const rx = receiver(new AlphabetValidator());
    const c = new Cluster("alphabet", rx.port, { extraArgs: resilient(dir) });
    const init = await c.startInitializer(2);
    const plain = wallaroo("w1", ["worker", "--application-module", "alphabet", "--out", `${HOST}:${rx.port}`, "--name", "w1", "--control", `${HOST}:${init.control}`]);
    expect(await plain.waitExit(20_000)).toBe(4);
    expect(plain.stderr).toContain("Registration refused: This cluster runs with resilience: start every worker with --resilience-dir (or --run-with-resilience) too.");
    // The initializer still waits for a worker that is resilient like itself.
    const w1 = await c.spawnWorker("w1", ["--control", `${HOST}:${init.control}`]);
    c.members.set("w1", w1);
    await init.child.waitForLog("Application has successfully initialized.", 20_000);
    await allUp(c);
  }, 60_000);
});

describe("resilience files", () => {
  test("a kill -9 leaves a worker's files (it recovers from them); a clean shutdown removes every worker's", async () => {
    const dir = resilienceDir();
    const rx = receiver(new ReplayingAlphabetValidator());
    const c = await new Cluster("alphabet", rx.port, { extraArgs: resilient(dir, "250ms") }).start(3);
    const wl = new AlphabetWorkload(23);
    const s = await sender(c.sourcePort, wl);
    await s.atRate(20_000, 4000);
    await rx.waitLines(4000, 20_000);
    const init = c.initializer.child;
    await init.waitForLog(COMMITTED, 10_000, init.lines.length);
    const names = ["initializer", "w1", "w2"];
    expect(readdirSync(dir).sort()).toEqual(names.map((n) => `wallaroo-alphabet-${n}`));
    for (const n of names) expect(existsSync(join(workerDir(dir, n), "checkpoints.sqlite"))).toBe(true);
    expect(existsSync(join(workerDir(dir, "initializer"), "input"))).toBe(true);

    const w2Files = readdirSync(workerDir(dir, "w2")).sort();
    const from = { initializer: init.lines.length, w1: c.members.get("w1")!.child.lines.length };
    const w2 = c.members.get("w2")!;
    w2.child.kill("SIGKILL");
    await w2.child.waitExit(5000);
    await downAt(c, ["initializer", "w1"], ["w2"]);
    // Killed, its files stay as they were: what it recovers from.
    expect(readdirSync(workerDir(dir, "w2")).sort()).toEqual(w2Files);
    expect(statSync(join(workerDir(dir, "w2"), "checkpoints.sqlite")).size).toBeGreaterThan(0);
    await c.restart("w2");
    // The load was over before the last checkpoint: nothing to replay.
    const r = await localRecoveryLines(c, "w2", from, false);
    expect(r.k).toBeGreaterThan(0);
    await allUp(c);

    await c.shutdown(20_000, rx);
    expect(readdirSync(dir)).toEqual([]);
    expect(rx.handler.verify(wl, 4000, 1)).toEqual([]);
  }, 60_000);

  test("a directory holding another application's files is refused at start, and left as it was", async () => {
    const dir = resilienceDir();
    // Application alphabet-eu's worker w1 and application alphabet's worker eu-w1 have the same
    // directory name, wallaroo-alphabet-eu-w1: only what the files say tells them apart.
    const module = `${dir}-alphabet-eu.ts`;
    removeAfterTest(module);
    writeFileSync(
      module,
      `export default (api) => api
  .application("alphabet-eu")
  .source("alphabet", (p) => (p.length === 5 ? { letter: String.fromCharCode(p[0]), votes: ((p[1] << 24) >>> 0) + (p[2] << 16) + (p[3] << 8) + p[4] } : null))
  .keyBy("letter", (v) => v.letter)
  .toStateful("add votes", () => ({ total: 0 }), (v, s) => ({ letter: v.letter, total: (s.total += v.votes) }))
  .toSink((o) => \`\${o.letter} => \${o.total}\\n\`);
`,
    );
    const nowhere = `${HOST}:${closedPort()}`;
    const args = (app: string, name: string) => ["worker", "--application-module", app, "--out", nowhere, "--control", nowhere, "--name", name, "--resilience-dir", dir];
    const shared = workerDir(dir, "eu-w1");
    expect(shared).toBe(workerDir(dir, "w1", "alphabet-eu"));

    // alphabet-eu's w1 makes its files, then waits for an initializer that is not there.
    const eu = wallaroo("alphabet-eu w1", args(module, "w1"));
    await eu.waitForLog("w1 control: listening on", 15_000);
    eu.kill("SIGKILL");
    await eu.waitExit(5000);
    const db = join(shared, "checkpoints.sqlite");
    expect(existsSync(db)).toBe(true);

    const other = wallaroo("alphabet eu-w1", args("alphabet", "eu-w1"));
    expect(await other.waitExit(15_000)).toBe(1);
    expect(other.stderr).toContain(`${shared} holds the checkpoints of application alphabet-eu, not alphabet: remove it or choose another --resilience-dir.`);
    expect(other.find("control: listening on")).toBeNull();
    expect(existsSync(db)).toBe(true);

    // The files still say they are alphabet-eu's w1's (else this start would be refused in turn).
    const again = wallaroo("alphabet-eu w1", args(module, "w1"));
    await again.waitForLog("w1 control: listening on", 15_000);
  }, 60_000);
});

describe("a clean shutdown of a resilient cluster", () => {
  /**
   * Nobody took the initializer for crashed (each member read the shutdown before the initializer
   * closed anything), and the initializer counted nobody as failed. Members close their links to
   * each other in no set order, so a member may see another's close first: that is not checked.
   */
  const lostLines = (c: Cluster) =>
    [...c.members.values()].flatMap((m) =>
      m.child.lines.filter((l) => /Lost the initializer|Lost connection to worker initializer/.test(l) || (m.name === "initializer" && /Lost connection to worker|counting \S+ as failed/.test(l))).map((l) => `${m.name}: ${l}`),
    );

  test("asked while every member writes a large checkpoint: every member reads it before the initializer closes anything, and all exit 0", async () => {
    const dir = resilienceDir();
    const rx = receiver(new CountLines());
    const c = await new Cluster("sequence_window", rx.port, { extraArgs: resilient(dir, "250ms") }).start(4);
    // 300 000 keys: each checkpoint writes megabytes on every member, in parts.
    const s = await sender(c.sourcePort, new SequenceWorkload(300_000, 0, { shuffleFirstRound: 5 }));
    await s.atRate(60_000, 300_000);
    await rx.waitLines(300_000, 30_000, "every key's first output");
    const init = c.initializer.child;
    await init.waitForLog(/Checkpoint \d+ at input position/, 10_000, init.lines.length);
    await c.shutdown(20_000, rx);
    expect(lostLines(c)).toEqual([]);
    for (const m of c.members.values()) if (m.name !== "initializer") expect(m.child.lines.some((l) => l.includes("Shutting down"))).toBe(true);
    expect(readdirSync(dir)).toEqual([]);
  }, 90_000);

  test("asked of a member, it goes through the initializer: nobody is taken for lost", async () => {
    const dir = resilienceDir();
    const rx = receiver(new CountLines());
    const c = await new Cluster("alphabet", rx.port, { extraArgs: resilient(dir, "250ms") }).start(3);
    await c.initializer.child.waitForLog(COMMITTED, 10_000);
    const w2 = c.members.get("w2")!;
    const r = await c.run(["shutdown", "--external", `${HOST}:${w2.external}`]);
    expect(r.code).toBe(0);
    await w2.child.waitForLog("Asked the initializer to shut the cluster down", 10_000);
    const codes = await Promise.all([...c.members.values()].map((m) => m.child.waitExit(20_000)));
    expect(codes).toEqual([0, 0, 0]);
    expect(lostLines(c)).toEqual([]);
    expect(readdirSync(dir)).toEqual([]);
  }, 60_000);

  test("a member stopped while the initializer is down keeps its files, and recovers from them with the cluster", async () => {
    const { dir, rx, c, wl, s1 } = await restartableCluster(41);
    await s1.atRate(10_000, 3000);
    await rx.waitLines(3000, 15_000, "outputs before the crash");
    const init = c.initializer.child;
    await init.waitForLog(COMMITTED, 10_000, init.lines.length);
    s1.close();
    init.kill("SIGKILL");
    await init.waitExit(5000);
    const w1 = c.members.get("w1")!;
    await w1.child.waitForLog(/Lost the initializer/, 10_000);
    // Stopped by the operator while the initializer is down: the cluster is not stopping.
    w1.child.kill("SIGTERM");
    expect(await w1.child.waitExit(20_000)).toBe(0);
    expect(w1.child.lines.some((l) => l.includes("w1 stops without the initializer: its resilience files stay"))).toBe(true);
    // Closed, not removed (closing folds SQLite's write-ahead log into the file).
    expect(statSync(join(workerDir(dir, "w1"), "checkpoints.sqlite")).size).toBeGreaterThan(0);
    // Both started again with their command lines: the cluster recovers, w1 from its files.
    const from = { w2: c.members.get("w2")!.child.lines.length };
    await c.restart("initializer");
    await c.restart("w1");
    const r = await recoveryLines(c, from);
    expect(r.k).toBeGreaterThan(0);
    await allUp(c);
    await c.shutdown(20_000, rx);
    expect(rx.handler.verify(wl, 3000, 1)).toEqual([]);
    expect(readdirSync(dir)).toEqual([]);
  }, 90_000);
});
