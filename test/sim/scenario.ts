// One random scenario per seed, drawn from the scenario stream: start 1-3 workers under load,
// then a few steps among grow, shrink and faults (a kill at any point, a restart with the
// original configuration, a short partition, a paused worker; with `faults: "all"` also dropped
// connections, long partitions and kills during formation). After every step the cluster must
// come to rest and pass the thorough checks; at the end every output must be accounted for.
import { UNDERWAY_SHRINK } from "../../src/cluster/coordinator.ts";
import { checkOutputs, checkQuiescent, quiescent } from "./checks.ts";
import { deriveRandom } from "./scheduler.ts";
import { INIT, SimCluster, SimError } from "./sim-cluster.ts";

/** Operations a scenario can perform (the runner counts them). */

/**
 * "default": faults the cluster survives today (delay, reordering, pauses, short partitions,
 * kills at any point after formation, restarts). "all": also what needs failure detection the
 * worker does not have yet: dropped connections, partitions past ~20 s, kills during formation.
 * A seed draws the same choices in every mode; the mode decides which apply.
 */
export const FAULT_MODES = ["default", "all", "crash"] as const;
export type FaultMode = (typeof FAULT_MODES)[number];

const ALLOWED = {
  formationKill: ["all"],
  drop: ["all"],
  longPartition: ["all"],
  longPause: ["all"],
} as const satisfies Record<string, readonly FaultMode[]>;

/**
 * "crash": every worker runs with resilience; every worker killed (the initializer too, at any
 * point: idle, mid-checkpoint, mid-grow or mid-shrink) is started again with its configuration
 * after 0-1.5 s, and nothing may be lost: every key's every value comes out, windows consecutive,
 * values repeated only as replays after a rollback.
 */
const crash = (mode: FaultMode) => mode === "crash";

function allows(mode: FaultMode, fault: keyof typeof ALLOWED): boolean {
  return (ALLOWED[fault] as readonly FaultMode[]).includes(mode);
}

export interface ScenarioOptions {
  faults: FaultMode;
  /** Keep the full trace (--trace, the determinism test). */
  fullTrace?: boolean;
  debugLog?: boolean;
}

export interface RunResult {
  seed: number;
  ops: Partial<Record<string, number>>;
  story: string[];
  digest: string;
  trace: string;
  virtualMs: number;
  steps: number;
  sent: number;
}

/** Virtual deadlines: longer than any of the worker's own (joiners wait 60 s, connects 30 s). */
const SETTLE_MS = 240_000;

/** Runs the seed's scenario; throws a SimError (with the story and the last trace lines) on a failure. */
export async function runSeed(seed: number, opts: ScenarioOptions): Promise<RunResult> {
  return await new Scenario(seed, opts).run();
}

/** A failed run's context, for the report. */
export interface SimFailure extends SimError {
  story?: string[];
  /** The last lines of the trace. */
  trace?: string[];
  /** The whole trace up to the failure (when it was kept). */
  fullTrace?: string;
}

class Scenario {
  private readonly r: () => number;
  private readonly ops: Partial<Record<string, number>> = {};
  private readonly story: string[] = [];
  private next = 1;
  private readonly killed: string[] = [];
  /** Partitions not yet healed and pauses not yet over. */
  private faultsPending = 0;
  private readonly c: SimCluster;
  private readonly heavy: boolean;

  constructor(
    private readonly seed: number,
    private readonly opts: ScenarioOptions,
  ) {
    this.r = deriveRandom(seed).scenario;
    const keys = 20 + Math.floor(this.r() * 180);
    // Now and then tiny held-queue limits, so the sources pause for slots in transit.
    const heldLimits = this.r() < 0.2 ? { high: 4, low: 1 } : undefined;
    this.c = new SimCluster(seed, { keys, heldLimits, fullTrace: opts.fullTrace, debugLog: opts.debugLog, resilient: crash(opts.faults) });
    this.heavy = this.r() < 0.2;
  }

  private pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.r() * xs.length)]!;
  }

  private count(op: string): void {
    this.ops[op] = (this.ops[op] ?? 0) + 1;
  }

  private say(s: string): void {
    this.story.push(s);
    this.c.sched.note(undefined, "scenario", s);
  }

  async run(): Promise<RunResult> {
    const c = this.c;
    try {
      const n0 = 1 + Math.floor(this.r() * 3);
      this.next = n0;
      const total = (300 + Math.floor(this.r() * 1200)) * (this.heavy ? 4 : 1);
      const held = c.opts.heldLimits ? `, held limit ${c.opts.heldLimits.high}` : "";
      this.say(`start ${n0} workers, ${c.opts.keys} keys, ${total} messages${this.heavy ? " in bursts" : ""}${held}`);
      const formationKill = n0 > 1 && this.r() < 0.15;
      if (formationKill && allows(this.opts.faults, "formationKill")) return await this.killDuringFormation(n0);
      await c.start(n0);
      // Mostly a trickle; sometimes bursts that fill queues and links.
      const load = this.heavy ? c.startLoad(total, { batch: 60, everyMs: 2 }) : c.startLoad(total);
      const steps = 2 + Math.floor(this.r() * 4);
      for (let i = 0; i < steps && !c.initializerDied; i++) {
        await this.step();
        if (c.initializerDied) break;
        await this.settle(`step ${i + 1} (${this.story.at(-1)})`);
      }
      if (c.initializerDied) {
        load.stop();
        await c.runFor(5000);
      } else {
        await c.runUntil(`all ${total} messages sent`, () => c.sent >= total, SETTLE_MS);
        // Every partition healed and every pause over, and time for what they held back.
        await c.runUntil("the last fault to end", () => this.faultsPending === 0, SETTLE_MS);
        await c.runFor(1000);
        await this.settle("the end of the load");
        await c.runUntil(`every expected output (${c.expected})`, () => c.receivedExact >= c.expected, SETTLE_MS);
        const p = checkQuiescent(c);
        if (p) throw new SimError(this.seed, `at the end: ${p}`);
      }
      const p = checkOutputs(c);
      if (p) throw new SimError(this.seed, p);
      return this.result();
    } catch (err) {
      const e: SimFailure = err instanceof SimError ? err : new SimError(this.seed, err instanceof Error ? (err.stack ?? err.message) : String(err));
      e.trace = c.sched.trace.recent();
      e.story = this.story;
      if (c.sched.trace.full) e.fullTrace = c.sched.trace.text();
      throw e;
    } finally {
      c.dispose();
    }
  }

  /**
   * Waits until the cluster is at rest with every live worker a ready member, then checks it.
   * A member that is down keeps the sources paused until an operator removes it: the scenario
   * does what the initializer's log tells the operator to (shrink it away by name).
   */
  private async settle(what: string): Promise<void> {
    const c = this.c;
    for (let i = 0; i < 10; i++) {
      // With resilience a down member comes back by itself (the scenario restarts every kill).
      await c.runUntil(`the cluster to settle after ${what}`, () => this.settled() || (!c.resilient && this.downIdle()), SETTLE_MS);
      if (c.resilient || !this.downIdle()) break;
      const names = [...c.initializer!.down];
      this.say(`operator: shrink ${names.join(",")}, which are down`);
      this.count("shrink-down");
      const req = c.shrink(names, 0);
      await c.runUntil("the initializer to answer the shrink of down members", () => req.answer !== undefined || c.initializerDied, SETTLE_MS);
      if (c.initializerDied) return;
    }
    const p = checkQuiescent(c);
    if (p) throw new SimError(this.seed, `after ${what}: ${p}`);
  }

  /** A member is down and the coordinator idle: only an operator can get the sources going again. */
  private downIdle(): boolean {
    const init = this.c.initializer;
    return init !== undefined && this.c.isAlive(INIT) && init.down.length > 0 && !init.autoscaling;
  }

  /** At rest, and every live worker a ready member (joiners admitted or gone, leavers gone). */
  private settled(): boolean {
    const c = this.c;
    const init = c.initializer;
    return init !== undefined && quiescent(c) && init.down.length === 0 && !init.recovering && c.live().every((w) => w.isReady && !w.isStopping && init.membership.includes(w.name));
  }

  private members(): string[] {
    return this.c.initializer!.membership.filter((m) => this.c.isAlive(m));
  }

  private async step(): Promise<void> {
    const r = this.r();
    const eligible = this.members().filter((m) => m !== INIT);
    if (r < 0.32 || eligible.length === 0) return this.grow();
    if (r < 0.55) return this.shrink(eligible);
    if (r < 0.65) return this.killIdle(eligible);
    if (r < 0.77) return this.killed.length > 0 && !this.c.initializerDied ? this.restart() : this.pause();
    if (r < 0.89) return this.partition();
    return this.pause();
  }

  /**
   * While an event is under way: maybe a second request (a shrink must be refused while the
   * coordinator is busy; a joiner may be refused), and maybe a fault (a kill, a pause, a
   * partition).
   */
  private async during(): Promise<void> {
    const q = this.r();
    if (q < 0.08) await this.concurrentShrink();
    else if (q < 0.12) this.concurrentJoin();
    const r = this.r();
    if (r < 0.5) return;
    await this.c.runFor(this.r() * 300);
    if (r < 0.75) {
      const victims = this.c.live().map((w) => w.name).filter((n) => n !== INIT || this.r() < (this.c.resilient ? 0.25 : 0.1));
      if (victims.length === 0) return;
      const v = this.pick(victims);
      const init = this.c.initializer!;
      const phase = init.coordinatorPhase ?? "?";
      this.say(`kill ${v} (coordinator ${phase})`);
      this.count("kill");
      this.count(`kill@${phase}`);
      await this.kill(v);
    } else if (r < 0.87) await this.pause();
    else await this.partition();
  }

  /** Kills `name`; now and then restarts it soon after, while the cluster may still count it a member. */
  private async kill(name: string): Promise<void> {
    this.c.kill(name);
    if (this.c.resilient) return this.recoverFrom(name);
    if (name === INIT) return;
    if (!this.killed.includes(name)) this.killed.push(name);
    if (this.r() < 0.3) {
      await this.c.runFor(this.r() * 500);
      if (!this.c.initializerDied) await this.restart(name);
    }
  }

  /**
   * Resilience: the killed worker is started again with its configuration and must recover; now
   * and then (never the initializer) the operator gives it up instead, by name.
   */
  private async recoverFrom(name: string): Promise<void> {
    const c = this.c;
    await c.runFor(this.r() * 1500);
    if (name !== INIT && this.r() < 0.15) {
      const init = c.initializer!;
      // Only a member can be given up (a joiner's death undoes its grow by itself).
      await c.runUntil(`the initializer to see ${name} down`, () => init.down.includes(name) || !init.knownMembers.includes(name) || !c.isAlive(INIT), SETTLE_MS);
      if (c.isAlive(INIT) && init.down.includes(name)) {
        this.say(`operator: give ${name} up (shrink it by name while down)`);
        this.count("give-up");
        const req = c.shrink([name], 0);
        await c.runUntil("the initializer to answer the give-up", () => req.answer !== undefined, SETTLE_MS);
        if (req.answer === "Shrinking by 1 workers!") return;
        this.say(`give-up answered "${req.answer}": restart instead`);
      }
    }
    this.say(`restart ${name} with its original configuration (it recovers)`);
    this.count("recover");
    c.restart(name);
    if (name === INIT) await c.connectSource();
  }

  private async concurrentShrink(): Promise<void> {
    const c = this.c;
    const eligible = this.members().filter((m) => m !== INIT);
    if (eligible.length === 0) return;
    this.say("shrink by 1 while busy");
    this.count("concurrent");
    const req = c.shrink([], 1);
    await c.runUntil("the initializer to answer the second request", () => req.answer !== undefined || c.initializerDied, SETTLE_MS);
    if (req.busy && req.answer !== UNDERWAY_SHRINK) throw new SimError(this.seed, `a shrink during an autoscale event was answered "${req.answer}"`);
  }

  private concurrentJoin(): void {
    const name = `w${this.next++}`;
    this.say(`grow ${name} while busy`);
    this.count("concurrent");
    this.c.spawn(name, { role: "joiner", workerCount: 1, join: this.c.controlOf(INIT) });
  }

  private async grow(): Promise<void> {
    const c = this.c;
    const k = 1 + Math.floor(this.r() * 2);
    const via = this.pick(this.members());
    const names = Array.from({ length: k }, () => `w${this.next++}`);
    this.say(`grow ${names.join(",")} via ${via}`);
    this.count("grow");
    const addr = c.controlOf(via);
    for (const nm of names) c.spawn(nm, { role: "joiner", workerCount: k, join: addr });
    await this.during();
  }

  private async shrink(eligible: string[]): Promise<void> {
    const c = this.c;
    let req: { answer: string | undefined };
    if (this.r() < 0.5) {
      const names = eligible.filter(() => this.r() < 0.5);
      if (names.length === 0) names.push(this.pick(eligible));
      this.say(`shrink ${names.join(",")}`);
      req = c.shrink(names, 0);
    } else {
      const count = 1 + Math.floor(this.r() * eligible.length);
      this.say(`shrink by ${count}`);
      req = c.shrink([], count);
    }
    this.count("shrink");
    // The initializer may be paused: the shrink starts when it has read the request.
    await c.runUntil("the initializer to answer the shrink", () => req.answer !== undefined || c.initializerDied, SETTLE_MS);
    await this.during();
  }

  private async killIdle(eligible: string[]): Promise<void> {
    // The initializer now and then: the cluster cannot go on, only safety is checked after.
    const v = this.r() < (this.c.resilient ? 0.25 : 0.1) ? INIT : this.pick(eligible);
    // With resilience, half the time in the middle of a checkpoint (its barrier rounds or writes).
    const init = this.c.initializer!;
    if (this.c.resilient && this.r() < 0.5) {
      await this.c.runUntil("a checkpoint to start", () => init.checkpointing, SETTLE_MS);
      await this.c.runFor(this.r() * 2);
    }
    const when = init.checkpointing ? "checkpoint" : "idle";
    this.say(`kill ${v} (${when})`);
    this.count("kill");
    this.count(`kill@${when}`);
    await this.kill(v);
  }

  /** Starts a killed worker again with its original configuration (the longest dead by default). */
  private async restart(name = this.killed[0]!): Promise<void> {
    const c = this.c;
    const i = this.killed.indexOf(name);
    if (i >= 0) this.killed.splice(i, 1);
    this.say(`restart ${name} with its original configuration`);
    this.count("restart");
    const w = c.restart(name);
    const init = c.initializer!;
    await c.runUntil(`restarted ${name} to be refused or to join`, () => !c.isAlive(name) || (w.isReady && init.membership.includes(name)) || c.initializerDied, SETTLE_MS);
    // A formed cluster takes no registrations: a restarted --control worker must leave with an error.
    const exit = c.exits.at(-1);
    if (c.config.get(name)!.role === "worker" && !c.initializerDied && (c.isAlive(name) || exit?.name !== name || exit.code === 0))
      throw new SimError(this.seed, `restarted worker ${name} was not refused (exit ${exit?.name === name ? exit.code : "none"})`);
  }

  private async partition(): Promise<void> {
    const c = this.c;
    const nodes = c.live().map((w) => w.name);
    if (nodes.length < 2) return;
    const a = nodes.filter(() => this.r() < 0.5);
    if (a.length === 0 || a.length === nodes.length) a.splice(0, a.length, nodes[0]!);
    const b = nodes.filter((n) => !a.includes(n));
    const long = this.r() < 0.3 && allows(this.opts.faults, "longPartition");
    const ms = Math.round(long ? 5000 + this.r() * 35_000 : 50 + this.r() * 2950);
    this.say(`partition ${a.join(",")} | ${b.join(",")} for ${ms} ms`);
    this.count("partition");
    c.partition(a, b);
    this.faultsPending++;
    c.sched.schedule(undefined, ms, "heal", () => {
      c.heal();
      this.faultsPending--;
    });
    if (this.r() < 0.3 && allows(this.opts.faults, "drop")) await this.drop();
  }

  private async pause(): Promise<void> {
    const c = this.c;
    const v = this.pick(c.live().map((w) => w.name));
    // A long stop (past the 30 s round deadline) can get a slow worker declared dead.
    const long = this.r() < 0.3 && allows(this.opts.faults, "longPause");
    const ms = Math.round(long ? 5000 + this.r() * 35_000 : 50 + this.r() * 2950);
    this.say(`pause ${v} for ${ms} ms`);
    this.count("pause");
    c.pause(v);
    this.faultsPending++;
    c.sched.schedule(undefined, ms, "resume", () => {
      c.resume(v);
      this.faultsPending--;
    });
  }

  private async drop(): Promise<void> {
    const links = this.c.net.openLinks().filter((l) => l.from !== "client" && l.to !== "receiver");
    if (links.length === 0) return;
    const l = this.pick(links);
    this.say(`drop connection #${l.id} ${l.from}-${l.to}`);
    this.count("drop");
    this.c.drop(l.id);
  }

  /**
   * faults "all": a starting worker dies before the cluster forms, and the operator starts it
   * again with the same command line. A worker lost while registrations are collected frees its
   * place (the restart registers); one lost after the topology went out aborts formation (every
   * worker stops). Either way formation must end: formed with every worker, or stopped.
   */
  private async killDuringFormation(n0: number): Promise<RunResult> {
    const c = this.c;
    c.launch(n0);
    await c.runFor(this.r() * 15);
    const v = `w${1 + Math.floor(this.r() * (n0 - 1))}`;
    this.say(`kill ${v} (formation)`);
    this.count("kill");
    this.count("kill@formation");
    c.kill(v);
    await c.runFor(this.r() * 500);
    if (!c.initializerDied && c.isAlive(INIT)) {
      this.say(`restart ${v} with its original configuration`);
      this.count("restart");
      c.restart(v);
    }
    // Formed before the kill, formed with the restarted worker, or stopped.
    await c.runUntil("formation to complete or stop", () => c.live().length === 0 || this.settled() || this.downIdle(), SETTLE_MS);
    if (c.live().length > 0) await this.settle("formation");
    return this.result();
  }

  private result(): RunResult {
    const c = this.c;
    return {
      seed: this.seed,
      ops: this.ops,
      story: this.story,
      digest: c.sched.trace.digest,
      trace: c.sched.trace.full ? c.sched.trace.text() : "",
      virtualMs: c.now,
      steps: c.sched.steps,
      sent: c.sent,
    };
  }
}
