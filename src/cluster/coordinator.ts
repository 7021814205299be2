// The initializer's decisions: who is in the cluster, which autoscale event runs, and the
// rounds of slot moves that carry it out. One autoscale event at a time; refusals happen before
// anything changes. Sends go through the host, so this file never touches a connection.
import { assert } from "../assert.ts";
import type { Clock, Timer } from "../clock.ts";
import type { ControlBody, ControlName, Member } from "../codec/control.ts";
import { log } from "../log.ts";
import { Histogram } from "../metrics/histogram.ts";
import type { Autoscale } from "../metrics/status.ts";
import { ROUND_KEYS_MAX, ROUND_SLOTS, planMoves, type Move } from "./slots.ts";

export interface CoordinatorHost {
  readonly self: Member;
  /** A resilient cluster's id, sent with every topology (undefined: no resilience). */
  readonly cluster?: string;
  readonly owners: Int32Array;
  epoch(): number;
  /** Members in cluster order, including joiners once announced. */
  members(): readonly Member[];
  /** Adds members (and dials them); the host reports its own `connected` when done. */
  addMembers(ms: readonly Member[]): void;
  send<N extends ControlName>(id: number, type: N, body: ControlBody<N>): boolean;
  applyPlan(plan: ControlBody<"plan">): void;
  /** Broadcasts the committed membership to everyone (including leavers) and applies it here. */
  complete(members: readonly Member[], leaving: readonly string[]): void;
  /** Tells joiners that will never join to exit, and forgets them. */
  dropJoiners(names: readonly string[], reason: string): void;
  /** Tells every live member that `id` died mid-migration, and applies it here. */
  lost(id: number): void;
  /** Closes every link to member `id`, so that it stops if it is still running. */
  fence(id: number): void;
  /** The members that are down changed (dead, and still members until an event removes them). */
  downChanged(ids: readonly number[]): void;
  /** Keys member `id` held when last heard from, if known. */
  keysOf(id: number): number | undefined;
  /** A grow or shrink starts moving slots: no checkpoint may straddle it. */
  migrationStarts(): void;
  /** With resilience: take a checkpoint of the event's outcome now; `onCheckpointCommitted` follows. */
  checkpointNow(): void;
  /** With resilience: the event in flight is undone; every member ignores its frames until the rollback. */
  undone(): void;
  /** With resilience: roll back to the last commit now (the event undone lost no member). */
  rollBackNow(): void;
  /** With resilience: a recovery (rollback or replay) is under way. */
  recovering(): boolean;
  /** With resilience: these down members are given up (removed; the rollback leaves them out). */
  giveUp(ids: readonly number[]): void;
}

export type JoinReply = (ok: boolean, reason: string | undefined, topology: ControlBody<"topology"> | undefined) => void;

interface PendingJoin {
  name: string;
  host: string;
  controlPort: number;
  dataPort: number;
  reply: JoinReply;
}

type Phase =
  | { kind: "idle" }
  | { kind: "waitingForJoiners"; count: number; pending: PendingJoin[]; timer: Timer }
  | { kind: "connecting"; joiners: Member[]; waiting: Set<string>; timer: Timer }
  /** With resilience: every slot moved; the event completes once a checkpoint of its outcome commits. */
  | { kind: "committing"; what: "grow" | "shrink"; members: Member[]; leaving: string[]; joiners: Member[] }
  | {
      kind: "migrating";
      what: "grow" | "shrink";
      joiners: Member[];
      leaving: Member[];
      /**
       * slot → the worker that was shipping it to a worker that died in that round: it kept the
       * state (src/cluster/migration.ts `onLost`), so the repair round gives the slot back to it.
       */
      returnTo: Map<number, number>;
      dead: Set<number>;
      /** slot → [from, to] of the round in flight */
      inFlight: Map<number, readonly [number, number]>;
      round: number;
      /** slots the next round may move (adapts between ROUND_SLOTS.min and .max) */
      roundSlots: number;
      roundStarted: number;
      /** slots this event moves in all (as planned at its start; repairs may add some) */
      total: number;
      lastProgress: number;
      slots: number;
      started: number;
      keys: number;
      bytes: number;
      /** The round in flight gives a dead worker's slots away (its keys say nothing of a slot's size). */
      repairing: boolean;
      /** Slots and keys installed by rounds that were no repair: the keys per slot that size the next round. */
      sizedSlots: number;
      sizedKeys: number;
      timer: Timer | undefined;
    };

export const COORDINATOR_LIMITS = {
  /** How long a multi-join waits for the rest of its joiners. */
  joinersWaitMs: 60_000,
  /** How long joiners and members get to connect to each other. */
  connectWaitMs: 30_000,
  /**
   * A migration round not complete after this long has a silent participant: the members that
   * still owe an install (or, for a slot coming to the initializer, the one that owes its state)
   * are removed and fenced, and the event goes on without them.
   */
  roundStallMs: 30_000,
} as const;

/** A long migration logs its progress at info level this often. */
const PROGRESS_EVERY_MS = 1000;

export const UNDERWAY_JOIN = "Autoscale event currently underway, cannot join at this time";
export const UNDERWAY_SHRINK = "Autoscale event currently underway, cannot shrink at this time";
export const RECOVERING_JOIN = "The cluster is recovering from a crash, cannot join at this time";
export const RECOVERING_SHRINK = "The cluster is recovering from a crash, cannot shrink at this time";

/** What the coordinator has done, for the metrics (read at scrape time). */
export interface CoordinatorStats {
  grows: number;
  shrinks: number;
  /** Join and shrink requests answered no. */
  joinRefusals: number;
  shrinkRefusals: number;
  rounds: number;
  /** From the first round to the last slot installed, per grow or shrink. */
  readonly migrationSeconds: Histogram;
}

export class Coordinator {
  private phase: Phase = { kind: "idle" };
  readonly stats: CoordinatorStats = { grows: 0, shrinks: 0, joinRefusals: 0, shrinkRefusals: 0, rounds: 0, migrationSeconds: new Histogram() };
  private nextId: number;
  /** Members whose connections died outside a migration; the next event completes without them. */
  private readonly deadMembers = new Set<number>();
  /** Set once formation is complete. */
  formed = false;
  /**
   * With resilience: a grow or shrink was undone by this member's death and its frames are
   * ignored everywhere until a rollback: no other event can run before that one.
   */
  private undoneBy: string | undefined;

  constructor(
    private readonly host: CoordinatorHost,
    private readonly clock: Clock,
  ) {
    this.nextId = Math.max(...host.members().map((m) => m.id)) + 1;
  }

  get phaseKind(): Phase["kind"] {
    return this.phase.kind;
  }

  get busy(): boolean {
    return this.phase.kind !== "idle";
  }

  /** No grow or shrink runs, and none was undone by a death that a rollback has not settled yet. */
  get quiet(): boolean {
    return this.phase.kind === "idle" && this.undoneBy === undefined;
  }

  /** The event in flight and how far it is, for /status and `wallaroo top`. */
  get progress(): Autoscale {
    const p = this.phase;
    const nameOf = (ms: readonly Member[]) => ms.map((m) => m.name);
    switch (p.kind) {
      case "idle":
        return { phase: "idle" };
      case "waitingForJoiners":
        return { phase: p.kind, what: "grow", joiners: p.pending.map((j) => j.name), joiners_arrived: p.pending.length, joiners_expected: p.count };
      case "connecting":
        return { phase: p.kind, what: "grow", joiners: nameOf(p.joiners), waiting_for: [...p.waiting] };
      case "committing":
        return { phase: p.kind, what: p.what, joiners: nameOf(p.joiners), leaving: p.leaving };
      case "migrating":
        return {
          phase: p.kind,
          what: p.what,
          joiners: nameOf(p.joiners),
          leaving: nameOf(p.leaving),
          slots_moved: p.slots,
          slots_total: p.total,
          keys_moved: p.keys,
          bytes_moved: p.bytes,
          rounds: p.round,
          elapsed_seconds: (this.clock.now() - p.started) / 1000,
        };
    }
  }

  private downRefusal(): string {
    const down = this.host.members().filter((m) => this.deadMembers.has(m.id)).map((m) => m.name);
    return `Worker ${down.join(",")} is down: start it again (it recovers from its checkpoint) or shrink it away by name (its state is lost) first.`;
  }

  /** A restarted initializer: every other member is down until it reconnects. */
  markDown(ids: readonly number[]): void {
    for (const id of ids) this.deadMembers.add(id);
    this.host.downChanged(this.down);
  }

  /** A recovery brought these members back. */
  recovered(ids: readonly number[]): void {
    this.undoneBy = undefined;
    for (const id of ids) this.deadMembers.delete(id);
    this.host.downChanged(this.down);
  }

  /** While an event's outcome is checkpointed: the membership it commits (the checkpoint records it). */
  get target(): readonly Member[] | undefined {
    return this.phase.kind === "committing" ? this.phase.members : undefined;
  }

  /** The checkpoint of an event's outcome committed: the event completes. */
  onCheckpointCommitted(): void {
    const p = this.phase;
    if (p.kind !== "committing") return;
    this.host.complete(p.members, p.leaving);
    this.completed(p.what);
    this.toIdle();
  }

  /**
   * Members that are dead but still members (down): without resilience the next grow or shrink
   * removes them; with it they come back, or a shrink naming them gives them up.
   */
  get down(): number[] {
    const p = this.phase;
    return [...this.deadMembers, ...(p.kind === "migrating" ? p.dead : [])];
  }

  /** The next member id (recorded with each checkpoint, so ids are never reused after a restart). */
  get nextIdValue(): number {
    return this.nextId;
  }

  /** A restarted initializer: ids below `next` were given out before. */
  reserveIds(next: number): void {
    this.nextId = Math.max(this.nextId, next);
  }

  allocateId(): number {
    assert(this.nextId < 0xfffe, "worker ids exhausted");
    return this.nextId++;
  }

  // ---------------------------------------------------------------------------------- grow

  onJoin(req: { name: string; count: number; host: string; controlPort: number; dataPort: number; resilient?: boolean }, reply: JoinReply): void {
    const refuse = (reason: string) => {
      this.stats.joinRefusals++;
      log.warn("join_refused", `Join of ${req.name} refused: ${reason}`);
      reply(false, reason, undefined);
    };
    if (!this.formed) return refuse("Contacted worker has not yet joined the cluster, cannot autoscale.");
    if (req.count < 1) return refuse("Joining worker must supply a worker count greater than 0.");
    const resilient = this.host.cluster !== undefined;
    if (resilient && !req.resilient) return refuse("This cluster runs with resilience: start the joining worker with --resilience-dir (or --run-with-resilience) too.");
    if (!resilient && req.resilient) return refuse("This cluster runs without resilience: start the joining worker without --resilience-dir.");
    if (resilient && this.deadMembers.size > 0) return refuse(this.downRefusal());
    if (resilient && this.host.recovering()) return refuse(RECOVERING_JOIN);
    const p = this.phase;
    if (p.kind !== "idle" && p.kind !== "waitingForJoiners") return refuse(UNDERWAY_JOIN);
    if (p.kind === "waitingForJoiners" && p.count !== req.count)
      return refuse(`All joining workers must supply the same worker count. Current pending count is ${p.count}. You supplied ${req.count}.`);
    const taken = this.host.members().some((m) => m.name === req.name) || (p.kind === "waitingForJoiners" && p.pending.some((j) => j.name === req.name));
    if (taken) return refuse("Proposed worker name is already reserved by the cluster.");
    let phase = p;
    if (phase.kind === "idle") {
      log.info("autoscale_waiting_joiners", `AUTOSCALE: Waiting for ${req.count} joining workers. Current cluster size: ${this.host.members().length}`);
      const timer = this.clock.setTimeout(() => this.joinersTimedOut(), COORDINATOR_LIMITS.joinersWaitMs);
      phase = { kind: "waitingForJoiners", count: req.count, pending: [], timer };
      this.phase = phase;
    }
    phase.pending.push({ ...req, reply });
    if (phase.pending.length === phase.count) {
      this.clock.clearTimeout(phase.timer);
      this.admit(phase.pending);
    }
  }

  private joinersTimedOut(): void {
    const p = this.phase;
    if (p.kind !== "waitingForJoiners") return;
    const reason = `Timed out waiting for ${p.count} joining workers; only ${p.pending.length} arrived.`;
    for (const j of p.pending) j.reply(false, reason, undefined);
    log.warn("join_timeout", `AUTOSCALE: ${reason}`);
    this.toIdle();
  }

  private admit(pending: PendingJoin[]): void {
    const joiners: Member[] = pending.map((j) => ({ id: this.allocateId(), name: j.name, host: j.host, controlPort: j.controlPort, dataPort: j.dataPort }));
    const all = [...this.host.members(), ...joiners];
    const topology = { members: all, epoch: this.host.epoch(), owners: Array.from(this.host.owners), ...(this.host.cluster ? { cluster: this.host.cluster } : {}) };
    joiners.forEach((j, i) => {
      pending[i]!.reply(true, undefined, topology);
      log.info("worker_informed", `***Worker ${j.name} attempting to join the cluster. Sent necessary information.***`);
    });
    const timer = this.clock.setTimeout(() => this.connectTimedOut(), COORDINATOR_LIMITS.connectWaitMs);
    // A member that died while the cluster was idle will never connect; the grow removes it.
    const waiting = new Set(all.filter((m) => !this.deadMembers.has(m.id)).map((m) => m.name));
    this.phase = { kind: "connecting", joiners, waiting, timer };
    for (const m of this.host.members()) if (m.id !== this.host.self.id) this.host.send(m.id, "addWorkers", { members: joiners });
    this.host.addMembers(joiners);
  }

  private connectTimedOut(): void {
    const p = this.phase;
    if (p.kind !== "connecting") return;
    const missing = [...p.waiting].join(", ");
    log.error("join_connect_timeout", `AUTOSCALE: workers ${missing} did not connect to every member in time; the join is abandoned`);
    this.host.dropJoiners(
      p.joiners.map((j) => j.name),
      `Join abandoned: ${missing} did not connect to every member in time.`,
    );
    this.toIdle();
  }

  /**
   * Joiner `id` cannot complete its join (it died, or cannot reach the cluster): the whole join
   * is abandoned before anything moved; the joiners are told `Join abandoned: <told>.`
   */
  abandonJoin(id: number, why: string, told: string): void {
    const p = this.phase;
    if (p.kind !== "connecting" || !p.joiners.some((j) => j.id === id)) return;
    const names = p.joiners.map((j) => j.name);
    this.clock.clearTimeout(p.timer);
    log.error("joiner_lost", `AUTOSCALE: ${why}; join of ${names.join(",")} abandoned, nothing moved`);
    this.host.dropJoiners(names, `Join abandoned: ${told}.`);
    this.toIdle();
  }

  /** True while `id` is a joiner of a grow that has not started moving slots. */
  isJoining(id: number): boolean {
    const p = this.phase;
    return p.kind === "connecting" && p.joiners.some((j) => j.id === id);
  }

  /** A worker (member or joiner) has dialed every peer it knows. */
  onConnected(name: string): void {
    const p = this.phase;
    if (p.kind !== "connecting") return;
    p.waiting.delete(name);
    if (p.waiting.size > 0) return;
    this.clock.clearTimeout(p.timer);
    for (const j of p.joiners) log.info("worker_added", `***New worker ${j.name} added to cluster!***`);
    const total = this.startMigration("grow", p.joiners, []);
    log.info("migrating_partitions", `Migrating partitions to ${p.joiners.map((j) => j.name).join(",")}: ${total} slots in rounds of ${ROUND_SLOTS.min} to ${ROUND_SLOTS.max}`);
    this.nextRound();
  }

  // -------------------------------------------------------------------------------- shrink

  /** Eligible for shrink: every member but the initializer, in cluster order. */
  eligible(committed: readonly Member[]): string[] {
    return committed.filter((m) => m.id !== this.host.self.id).map((m) => m.name);
  }

  /** Validates and starts a shrink; returns the reply text and whether it was accepted. */
  onShrink(req: { names: readonly string[]; count: number }, committed: readonly Member[]): { ok: boolean; text: string } {
    const r = this.shrink(req, committed);
    if (!r.ok) this.stats.shrinkRefusals++;
    return r;
  }

  private shrink(req: { names: readonly string[]; count: number }, committed: readonly Member[]): { ok: boolean; text: string } {
    if (!this.formed) return { ok: false, text: "Cluster is not yet initialized, cannot shrink at this time" };
    if (this.phase.kind !== "idle") return { ok: false, text: UNDERWAY_SHRINK };
    if (this.host.cluster !== undefined && this.host.recovering() && this.deadMembers.size === 0) return { ok: false, text: RECOVERING_SHRINK };
    // With resilience a down member comes back with its state. A shrink naming down members gives
    // them up instead: the cluster rolls back to its last checkpoint without them, their slots
    // starting empty elsewhere (their state is lost), once every other down member is back.
    if (this.host.cluster !== undefined && this.deadMembers.size > 0) {
      const down = this.host.members().filter((m) => this.deadMembers.has(m.id));
      const named = down.filter((m) => req.names.includes(m.name));
      if (named.length === 0) return { ok: false, text: this.downRefusal() };
      if (named.length !== req.names.length) return { ok: false, text: "A shrink that gives up down workers names only them; shrink the others once the cluster has recovered." };
      const ids = named.map((m) => m.id);
      for (const id of ids) this.deadMembers.delete(id);
      if (this.deadMembers.size === 0) this.undoneBy = undefined;
      log.warn("give_up", `AUTOSCALE: giving up ${named.map((m) => m.name).join(",")}: the cluster rolls back to its last checkpoint without them; their state is lost`);
      this.host.giveUp(ids);
      this.host.downChanged(this.down);
      return { ok: true, text: `Shrinking by ${named.length} workers!` };
    }
    if (this.undoneBy !== undefined)
      return { ok: false, text: `Worker ${this.undoneBy} died during a grow or shrink, which is undone: start it again (the cluster rolls back) before the next shrink.` };
    const eligible = this.eligible(committed);
    let leaving: string[];
    if (req.names.length > 0) {
      const unique = new Set(req.names);
      const valid = unique.size === req.names.length && req.names.every((n) => eligible.includes(n));
      if (!valid) {
        log.warn("shrink_invalid", `**Invalid shrink targets!** (${req.names.join(",")})`);
        return { ok: false, text: "Invalid shrink targets!" };
      }
      leaving = [...req.names];
    } else {
      leaving = eligible.slice(0, req.count);
      if (req.count > 0) {
        log.info(
          "shrink_candidates",
          leaving.length < req.count ? `**Only ${leaving.length} candidates are eligible for removal` : `**${leaving.length} candidates are eligible for removal`,
        );
      }
    }
    if (leaving.length === 0) {
      log.warn("shrink_zero", "**Cannot shrink 0 workers!**");
      return { ok: false, text: "Cannot shrink 0 workers!" };
    }
    const leavers = committed.filter((m) => leaving.includes(m.name));
    const remaining = this.host.members().filter((m) => !leaving.includes(m.name));
    log.info("shrink_initiating", "AUTOSCALE: Initiating shrink.");
    log.info("shrink_lists", `~~~Initiating shrink~~~ -- Remaining workers: ${remaining.map((m) => m.name).join(",")} -- Leaving workers: ${leaving.join(",")}`);
    log.info("migrating_partitions", `Migrating all partitions of ${leaving.join(",")} to ${remaining.length} remaining workers`);
    this.startMigration("shrink", [], leavers);
    // Start on the next turn so the reply leaves first (the original answers before acting).
    const p = this.phase as Phase; // startMigration changed it; TS still sees the idle check above
    this.clock.setTimeout(() => {
      if (this.phase === p && p.kind === "migrating" && p.round === 0) this.nextRound();
    }, 0);
    return { ok: true, text: `Shrinking by ${leaving.length} workers!` };
  }

  // ----------------------------------------------------------------------------- migration

  /** Sets up the event (the caller starts its first round); returns the slots it will move. */
  private startMigration(what: "grow" | "shrink", joiners: Member[], leaving: Member[]): number {
    this.host.migrationStarts();
    this.phase = {
      kind: "migrating",
      what,
      joiners,
      leaving,
      returnTo: new Map(),
      dead: new Set(),
      inFlight: new Map(),
      round: 0,
      roundSlots: ROUND_SLOTS.min,
      roundStarted: this.clock.now(),
      total: 0,
      lastProgress: this.clock.now(),
      slots: 0,
      started: this.clock.now(),
      keys: 0,
      bytes: 0,
      repairing: false,
      sizedSlots: 0,
      sizedKeys: 0,
      timer: undefined,
    };
    // A member that died while the cluster was idle takes part in nothing: its slots go to live
    // members in the first round (their state died with it), and it leaves the membership.
    const p = this.phase;
    for (const m of this.host.members()) {
      if (!this.deadMembers.has(m.id)) continue;
      const keys = this.host.keysOf(m.id);
      const lost = keys === undefined ? "its keys" : `its ${keys} keys (as of its last heartbeat)`;
      log.warn("dead_member", `AUTOSCALE: worker ${m.name} is dead; this ${what} removes it and gives its slots to live workers, starting empty: ${lost} are lost`);
      p.dead.add(m.id);
      this.host.lost(m.id);
    }
    this.deadMembers.clear();
    p.total = planMoves(Array.from(this.host.owners), this.targetIds()).length;
    return p.total;
  }

  /** Live members that will own slots when the event completes. */
  private targetIds(): number[] {
    const p = this.phase;
    assert(p.kind === "migrating", "a target needs a migration");
    const leaving = new Set(p.leaving.map((m) => m.id));
    return this.host.members().filter((m) => !leaving.has(m.id) && !p.dead.has(m.id)).map((m) => m.id);
  }

  /**
   * The next round: first, slots a dead worker holds go back to the live worker that was shipping
   * them to it when it died (that worker kept their state, even if it is leaving: a later round
   * moves them on with it), or else, their state being lost, to the least-loaded live target;
   * then the next batch of the fewest moves to the balanced target table.
   */
  private nextMoves(): { moves: Move[]; repair: boolean } {
    const p = this.phase;
    assert(p.kind === "migrating", "moves need a migration");
    const owners = this.host.owners;
    const target = this.targetIds();
    const orphaned: number[] = [];
    for (let s = 0; s < owners.length; s++) if (p.dead.has(owners[s]!)) orphaned.push(s);
    if (orphaned.length > 0) {
      const load = new Map<number, number>(target.map((id) => [id, 0]));
      for (const o of owners) if (load.has(o)) load.set(o, load.get(o)! + 1);
      const live = new Set(this.host.members().filter((m) => !p.dead.has(m.id)).map((m) => m.id));
      const moves: Move[] = orphaned.map((s) => {
        const back = p.returnTo.get(s);
        if (back !== undefined && live.has(back)) return [s, owners[s]!, back];
        const to = [...load].sort((a, b) => a[1] - b[1] || a[0] - b[0])[0]![0];
        load.set(to, load.get(to)! + 1);
        return [s, owners[s]!, to];
      });
      p.returnTo.clear();
      return { moves, repair: true };
    }
    return { moves: planMoves(Array.from(owners), target).slice(0, p.roundSlots), repair: false };
  }

  private nextRound(): void {
    const p = this.phase;
    assert(p.kind === "migrating", "a migration round needs a migration");
    if (p.timer) this.clock.clearTimeout(p.timer);
    const { moves, repair } = this.nextMoves();
    if (moves.length === 0) return this.finish();
    p.round++;
    p.roundStarted = this.clock.now();
    const epoch = this.host.epoch() + 1;
    const participants = this.host.members().filter((m) => !p.dead.has(m.id)).map((m) => m.id);
    p.inFlight = new Map(moves.map((m) => [m[0], [m[1], m[2]] as const]));
    p.repairing = repair;
    if (!repair) p.slots += moves.length;
    p.timer = this.clock.setTimeout(() => this.roundStalled(epoch), COORDINATOR_LIMITS.roundStallMs);
    if (repair) log.warn("migration_repair", `AUTOSCALE: round ${p.round} gives ${moves.length} slots of dead workers to live ones`);
    const leaving = p.leaving.filter((m) => !p.dead.has(m.id)).map((m) => m.id);
    const plan = { epoch, moves, participants, ...(p.dead.size > 0 ? { dead: [...p.dead] } : {}), ...(leaving.length > 0 ? { leaving } : {}) };
    for (const id of participants) if (id !== this.host.self.id) this.host.send(id, "plan", plan);
    this.host.applyPlan(plan);
  }

  onInstalled(body: ControlBody<"slotsInstalled">): void {
    const p = this.phase;
    if (p.kind !== "migrating" || body.epoch !== this.host.epoch()) {
      log.warn("stale_install", `ignoring slots installed for epoch ${body.epoch} (now ${this.host.epoch()})`);
      return;
    }
    for (const s of body.slots) p.inFlight.delete(s);
    p.keys += body.keys;
    if (!p.repairing) {
      p.sizedSlots += body.slots.length;
      p.sizedKeys += body.keys;
    }
    p.bytes += body.bytes;
    this.maybeAdvance();
  }

  /** The round of `epoch` is still not installed at its deadline: remove whoever is silent. */
  private roundStalled(epoch: number): void {
    const p = this.phase;
    if (p.kind !== "migrating" || this.host.epoch() !== epoch || p.inFlight.size === 0) return;
    const self = this.host.self.id;
    const blamed = new Set<number>();
    for (const [from, to] of p.inFlight.values()) blamed.add(to !== self ? to : from);
    const names = [...blamed].map((id) => this.host.members().find((m) => m.id === id)?.name ?? String(id));
    log.error(
      "migration_stalled",
      `AUTOSCALE: migration round ${p.round} (epoch ${epoch}) has ${p.inFlight.size} slots not installed after ${COORDINATOR_LIMITS.roundStallMs} ms; removing ${names.join(",")}`,
    );
    for (const id of blamed) {
      this.onWorkerLost(id);
      this.host.fence(id);
    }
  }

  private maybeAdvance(): void {
    const p = this.phase;
    // Round 0 is no round: a shrink's first one is still to start (on its timer), and a death
    // noticed before it must not start another in its place.
    if (p.kind !== "migrating" || p.inFlight.size > 0 || p.round === 0) return;
    const t = this.clock.now();
    const took = t - p.roundStarted;
    if (took > ROUND_SLOTS.targetMs) p.roundSlots = Math.min(ROUND_SLOTS.max, p.roundSlots * 2);
    else if (took < ROUND_SLOTS.targetMs / 2) p.roundSlots = Math.max(ROUND_SLOTS.min, p.roundSlots >> 1);
    if (p.sizedSlots > 0 && p.sizedKeys > 0) p.roundSlots = Math.max(ROUND_SLOTS.min, Math.min(p.roundSlots, Math.floor(ROUND_KEYS_MAX / (p.sizedKeys / p.sizedSlots))));
    log.debug("migration_round", `AUTOSCALE: round ${p.round} done in ${took.toFixed(1)} ms; next round up to ${p.roundSlots} slots`);
    if (t - p.lastProgress >= PROGRESS_EVERY_MS) {
      p.lastProgress = t;
      const elapsed = Math.round(t - p.started);
      log.info("migration_progress", `AUTOSCALE: migrated ${p.slots} of ${p.total} slots, ${p.keys} keys, ${p.bytes} bytes in ${elapsed} ms`, {
        slots: p.slots,
        total: p.total,
        keys: p.keys,
        bytes: p.bytes,
        elapsed_ms: elapsed,
      });
    }
    this.nextRound();
  }

  private finish(): void {
    const p = this.phase;
    assert(p.kind === "migrating", "finish needs a migration");
    const ms = this.clock.now() - p.started;
    this.stats.migrationSeconds.observe(ms / 1000);
    this.stats.rounds += p.round;
    log.info("migration_done", `Migration complete: ${p.slots} slots, ${p.keys} keys, ${p.bytes} bytes in ${p.round} rounds, ${ms.toFixed(1)} ms`, {
      slots: p.slots,
      keys: p.keys,
      bytes: p.bytes,
      rounds: p.round,
      elapsed_ms: Math.round(ms),
    });
    const leavingNames = p.leaving.filter((m) => !p.dead.has(m.id)).map((m) => m.name);
    const members = this.host.members().filter((m) => !leavingNames.includes(m.name) && !p.dead.has(m.id));
    if (this.host.cluster !== undefined) {
      // The outcome is checkpointed before anyone is told: a crash before the commit rolls the
      // event back whole (leavers still hold their files), one after it keeps it.
      if (p.timer) this.clock.clearTimeout(p.timer);
      for (const id of p.dead) this.deadMembers.delete(id);
      this.phase = { kind: "committing", what: p.what, members, leaving: leavingNames, joiners: p.joiners.filter((j) => !p.dead.has(j.id)) };
      this.host.downChanged(this.down);
      this.host.checkpointNow();
      return;
    }
    this.host.complete(members, leavingNames);
    this.completed(p.what);
    this.toIdle();
  }

  private completed(what: "grow" | "shrink"): void {
    if (what === "grow") this.stats.grows++;
    else this.stats.shrinks++;
  }

  /** A grow that moved nothing yet is called off: its joiners are refused or told to stop. */
  private callOffGrow(why: string): void {
    const p = this.phase;
    if (p.kind === "waitingForJoiners") {
      this.clock.clearTimeout(p.timer);
      for (const j of p.pending) j.reply(false, `Join abandoned: ${why}; try again once the cluster has recovered.`, undefined);
    } else if (p.kind === "connecting") {
      this.clock.clearTimeout(p.timer);
      this.host.dropJoiners(
        p.joiners.map((j) => j.name),
        `Join abandoned: ${why}; start this worker again to join once the cluster has recovered.`,
      );
    } else return;
    log.warn("join_called_off", `AUTOSCALE: the grow is called off: ${why}`);
    this.phase = { kind: "idle" };
  }

  /**
   * With resilience, a member that dies during a grow or shrink undoes it: the cluster will roll
   * back to the checkpoint before the event once the member is back. Joiners are told to stop
   * (their join can be started again); leavers stay members.
   */
  private undoEvent(id: number, name: string): void {
    const p = this.phase;
    assert(p.kind === "migrating" || p.kind === "committing", "only a migration is undone");
    // A joiner that dies was never in a checkpoint: nothing waits for it, the rollback goes at once.
    const joiner = p.joiners.some((j) => j.id === id);
    log.error(
      "participant_lost",
      joiner
        ? `AUTOSCALE: joining worker ${name} died during the ${p.what}; the ${p.what} is undone: the cluster rolls back to the checkpoint before it`
        : `AUTOSCALE: worker ${name} died during the ${p.what}; the ${p.what} is undone: the cluster rolls back to the checkpoint before it once ${name} is started again`,
    );
    const joiners = p.joiners.filter((j) => j.id !== id).map((j) => j.name);
    if (p.kind === "migrating" && p.timer) this.clock.clearTimeout(p.timer);
    this.phase = { kind: "idle" };
    // What the event still has in flight is never applied: the rollback replaces it.
    this.host.undone();
    if (joiners.length > 0) this.host.dropJoiners(joiners, `Join abandoned: worker ${name} died during the grow, which is undone; start this worker again to join.`);
    if (joiner) {
      this.host.dropJoiners([name], `Join abandoned: the grow is undone.`);
      log.info("autoscale_idle", "AUTOSCALE: Waiting for new autoscale event.");
      return this.host.rollBackNow();
    }
    this.deadMembers.add(id);
    this.undoneBy = name;
    this.host.downChanged(this.down);
    log.info("autoscale_idle", "AUTOSCALE: Waiting for new autoscale event.");
  }

  /**
   * A worker's connections are gone. With resilience a death during a grow or shrink undoes it
   * (see `undoEvent`) and one before it moves anything calls it off. Otherwise: joiners that die
   * before migrating are dropped; a
   * participant that dies mid-migration is removed and the event completes without it.
   */
  onWorkerLost(id: number): void {
    const p = this.phase;
    const resilient = this.host.cluster !== undefined;
    if (resilient && (p.kind === "migrating" || p.kind === "committing")) {
      if (p.kind === "migrating" && p.dead.has(id)) return;
      const m = this.host.members().find((x) => x.id === id);
      if (!m) return;
      return this.undoEvent(id, m.name);
    }
    // With resilience nothing moves while a member is down: a grow not yet moving slots is
    // called off (its joiners may try again once the member is back).
    if (resilient && (p.kind === "waitingForJoiners" || p.kind === "connecting") && !this.isJoining(id)) {
      const m = this.host.members().find((x) => x.id === id);
      if (m) this.callOffGrow(`worker ${m.name} died`);
    }
    if (p.kind === "migrating") {
      if (p.dead.has(id)) return;
      const name = this.host.members().find((m) => m.id === id)?.name ?? String(id);
      log.error("participant_lost", `AUTOSCALE: worker ${name} died during the ${p.what}; completing it without ${name} (state it held is lost)`);
      p.dead.add(id);
      this.host.downChanged(this.down);
      // Slots of the round in flight that were going to it go back in the repair round.
      for (const [slot, [from, to]] of [...p.inFlight]) {
        if (to !== id) continue;
        p.inFlight.delete(slot);
        p.returnTo.set(slot, from);
      }
      this.host.lost(id);
      this.maybeAdvance();
      return;
    }
    if (p.kind === "connecting" && p.joiners.some((j) => j.id === id)) return this.abandonJoin(id, "a joining worker died before migration started", "a co-joining worker died");

    const m = this.host.members().find((x) => x.id === id);
    if (!m) return;
    this.deadMembers.add(id);
    log.warn(
      "member_down",
      this.host.cluster !== undefined
        ? `Worker ${m.name} is down: the sources are paused until it is started again with its command line (it recovers from its checkpoint), or removed (\`wallaroo shrink --workers ${m.name}\`; its state is lost).`
        : `Worker ${m.name} is down: the sources are paused until it is removed (\`wallaroo shrink --workers ${m.name}\`; its state is lost) or a grow removes it.`,
    );
    this.host.downChanged(this.down);
    // A member that dies while joiners connect will never say it connected: stop waiting for it.
    if (p.kind === "connecting" && p.waiting.has(m.name)) this.onConnected(m.name);
  }

  private toIdle(): void {
    const p = this.phase;
    if (p.kind === "waitingForJoiners" || p.kind === "connecting") this.clock.clearTimeout(p.timer);
    if (p.kind === "migrating" && p.timer) this.clock.clearTimeout(p.timer);
    const wasMigrating = p.kind === "migrating";
    this.phase = { kind: "idle" };
    if (wasMigrating) this.host.downChanged(this.down);
    log.info("autoscale_idle", "AUTOSCALE: Waiting for new autoscale event.");
  }
}

