// Recovery after a crash (docs/resilience.md). A member that died is down: the sources pause and
// the coordinator waits for it to come back, started again with its command line and its
// resilience files; meanwhile it installs its own slots of the last committed checkpoint aside
// (`prepare`), since the rollback that follows will want them. Once every down member is back,
// the coordinator rolls the whole cluster back to that checkpoint: each member drops what was in
// flight (frames of an older epoch are discarded on arrival), connects to members it has no links
// to and says so (`rollbackLinked`), then restores its slots from its store and says so
// (`rolledBack`). The initializer replays its input log from the checkpoint's position as soon as
// every member is linked and its own slots are back: what reaches a slot of a member still
// restoring waits, in order, until that slot is installed. The sources resume once the replay is
// over and every member has restored. A restarted initializer recovers the membership, the table
// and the input log from its own files and waits for every member to reconnect the same way.
// A one-hop pipeline that loses one member rolls back that member alone (`downNow`, `keep`).
import { assert } from "../assert.ts";
import type { Clock } from "../clock.ts";
import type { ControlBody, ControlName, Member } from "../codec/control.ts";
import { log } from "../log.ts";
import type { Link } from "../net/transport.ts";
import type { Dataflow } from "../runtime/dataflow.ts";
import type { KeyedState } from "../runtime/keyed-state.ts";
import { SLOT_STATUS } from "../runtime/router.ts";
import type { Coordinator } from "./coordinator.ts";
import type { Failures } from "./failures.ts";
import type { InboundData } from "./inbound-data.ts";
import type { Membership } from "./membership.ts";
import type { Migration } from "./migration.ts";
import type { Peer } from "./peer.ts";
import type { Peers } from "./peers.ts";
import { CHECKPOINT_YIELD_BYTES, CHECKPOINT_YIELD_MS, type CommitBody, type Resilience } from "./resilience.ts";
import type { RoutingTable } from "./routing-table.ts";

/** Slots restored between two looks at the clock in a rollback (a few hundred keys each at a million keys). */
const RESTORE_PART_SLOTS = 8;

export const RECOVERY_LIMITS = {
  /** Frames replayed per turn of the event loop. */
  replayBatch: 1024,
  /** A rollback whose members have not all answered after this long is started again. */
  rollbackDeadlineMs: 60_000,
  /** A replay waiting for congested downstream says so this often. */
  congestedLogMs: 5000,
} as const;

export interface RecoveryHost {
  readonly clock: Clock;
  readonly name: string;
  readonly resilience: Resilience;
  readonly membership: Membership;
  readonly table: RoutingTable;
  readonly migration: Migration;
  readonly dataflow: Dataflow;
  readonly peers: Peers;
  readonly failures: Failures;
  coordinator(): Coordinator | undefined;
  inbound(): Iterable<InboundData>;
  /** Frames of an epoch below this are discarded on arrival: they were in flight before a rollback. */
  setFloor(epoch: number): void;
  floor(): number;
  /** The member adopted the rollback's membership (first time, for a restarted member). */
  adopted(members: readonly Member[]): void;
  send<N extends ControlName>(id: number, type: N, body: ControlBody<N>): boolean;
  /** The control link to member `id` that already exists (the one it rejoined on), if any. */
  controlLinkFor(id: number): Link | undefined;
  /** Coordinator: tells workers the rolled-back cluster does not name to stop, and forgets them. */
  dismiss(names: readonly string[]): void;
  /** Coordinator: pauses (true) or releases the sources for the recovery. */
  holdSources(on: boolean): void;
  /** Coordinator: held-queue marks reported before the rollback are moot (its held queues are gone). */
  resetPressure(): void;
  /** Member: after a rollback its held queue is empty; the pressure it reported must follow. */
  pressureCheck(): void;
  /** Coordinator: the recovery is over; the sources may resume. */
  recovered(ids: readonly number[]): void;
  /** The sources' downstream is congested: replay waits. */
  congested(): boolean;
  stopping(): boolean;
}

export class Recovery {
  /** Coordinator: down members that are back, at their new addresses. */
  private readonly back = new Map<number, Member>();
  /**
   * Coordinator: members given up while down. Every rollback leaves them out (their slots empty)
   * until a commit no longer names them; kept in the store, so a restarted initializer knows.
   */
  private readonly givenUp = new Set<number>();
  /** Highest epoch a returning member reported: the rollback's epoch goes past it. */
  private maxEpoch = 0;
  /**
   * Coordinator: the rollback under way, from its start until every member restored and the
   * replay is over. `linking`: members yet to say `rollbackLinked` (the replay waits for them);
   * `restoring`: members yet to say `rolledBack` (the end of the recovery waits for them).
   */
  private rolling: Rolling | undefined;
  private replaying = false;
  /**
   * Each rollback's number: a replay stops as soon as another death makes its rollback moot, and
   * only the latest rollback's replay may end the recovery.
   */
  private generation = 0;
  /** The sources are held from the first member back until the recovery is over. */
  private holding = false;
  /** Rollbacks started here (`apply`): an older one still restoring stops when it sees a newer. */
  private applying = 0;
  /**
   * Coordinator: its own slots of checkpoint `k` (under the owners of that commit), installed
   * aside while a member is down, for the rollback its return brings. Twice the state's memory
   * until then; dropped by a commit, taken by a rollback to `k` under the same owners.
   */
  private prepared: Prepared | undefined;
  private preparing = 0;
  /**
   * Coordinator: the member whose crash a local recovery undoes (`downNow`): only it rolls back
   * and only its slots are replayed; every other member keeps its state and goes on with what
   * reaches it meanwhile.
   */
  private local: number | undefined;
  /** Coordinator: a member was down when `downNow` last heard. */
  private anyDown = false;
  /** Coordinator: false from an initializer's restart (its state is gone) until its first recovery is over. */
  private intact = true;
  /** Rollbacks completed here, and messages replayed (initializer). */
  rollbacks = 0;
  replayed = 0;

  constructor(private readonly host: RecoveryHost) {
    const kept = host.resilience.store.getMeta("givenUp");
    if (kept) for (const id of JSON.parse(kept) as number[]) this.givenUp.add(id);
  }

  /** Members given up whose give-up no commit has recorded yet. */
  isGivenUp(id: number): boolean {
    return this.givenUp.has(id);
  }

  /** A give-up not yet made durable by a commit: no grow or shrink may run before that commit. */
  get settling(): boolean {
    return this.givenUp.size > 0;
  }

  /** Coordinator: a commit names `members`: members given up that it leaves out are settled. */
  committed(members: readonly Member[]): void {
    this.dropPrepared();
    let changed = false;
    for (const id of [...this.givenUp]) {
      if (members.some((m) => m.id === id)) continue;
      this.givenUp.delete(id);
      changed = true;
    }
    if (changed) this.keepGivenUp();
  }

  private keepGivenUp(): void {
    this.host.resilience.store.setMeta({ givenUp: JSON.stringify([...this.givenUp]) });
  }

  /** A recovery is under way (members are back, or a rollback or replay runs). */
  get active(): boolean {
    return this.back.size > 0 || this.rolling !== undefined || this.replaying;
  }

  // ---------------------------------------------------------------------------- coordinator

  /**
   * Coordinator: a member is back. Returns why it is refused (or, `stop`, told to stop: it is no
   * member any more), or undefined when accepted (the rollback starts once every down member is
   * back).
   */
  onRejoin(b: ControlBody<"rejoin">): { reason: string; stop?: boolean } | undefined {
    const h = this.host;
    const c = h.coordinator();
    assert(c !== undefined, "only the coordinator takes rejoins");
    const cluster = h.resilience.clusterId;
    // The id is not said back: whoever asks with a wrong one must not learn the right one.
    if (b.cluster !== cluster) return { reason: `This worker's resilience files belong to cluster ${b.cluster}, not to this one.` };
    const m = h.membership.byName(b.name);
    // It left (a shrink whose outcome was committed before it heard) or was given up: nothing of
    // it is needed, its files included.
    if (!m) return { reason: `Worker ${b.name} is no longer a member of this cluster (it left or was removed).`, stop: true };
    if (!c.down.includes(m.id)) return { reason: `Worker ${b.name} is a live member of this cluster; a second process cannot take its place.` };
    this.back.set(m.id, { ...m, host: b.host, controlPort: b.controlPort, dataPort: b.dataPort });
    this.maxEpoch = Math.max(this.maxEpoch, b.epoch);
    log.info("member_back", `Worker ${b.name} is back (${this.back.size} of ${c.down.length} down members)`);
    this.hold(true);
    this.maybeRollBack();
    return undefined;
  }

  /**
   * Coordinator: the members down are now `ids`. Returns true when their recovery will be local,
   * so that the survivors keep applying what reaches them (they must: nothing replays it for
   * their slots). It is when one member is down and nothing else is under way: the pipeline's
   * one stateful step is its only crossing (every message makes one hop, from the initializer
   * to its key's owner: the input log holds all that reached the dead member), no grow or
   * shrink runs or was undone, nothing is given up, and the table and members are the last
   * commit's. Anything else rolls the whole cluster back; it then does not matter that the
   * survivors went on applying until they heard: with no event in flight each applied its
   * keys' messages in order, and the rollback restores their state before the replay.
   */
  downNow(ids: readonly number[]): boolean {
    // Decided when the first member goes down, and kept until the recovery is over (or another
    // member goes down, or one is given up): a rollback decided global stays global.
    const first = !this.anyDown;
    this.anyDown = ids.length > 0;
    if (ids.length === 1 && this.local === ids[0]) return true;
    this.local = first && ids.length === 1 && this.qualifies(ids[0]!) ? ids[0] : undefined;
    if (this.local !== undefined) log.info("local_recovery", `Only ${this.host.membership.byId(this.local)?.name ?? this.local} will roll back once it is started again: the other members keep their state`);
    return this.local !== undefined;
  }

  private qualifies(id: number): boolean {
    const h = this.host;
    const c = h.coordinator();
    const commit = h.resilience.lastCommit();
    if (!c || !commit || !this.intact || this.active || this.givenUp.size > 0 || id === h.membership.selfId) return false;
    if (h.resilience.checkpointer?.rounds !== 0 || !c.quiet || h.table.epoch !== commit.epoch) return false;
    for (let s = 0; s < commit.owners.length; s++) if (h.table.owners[s] !== commit.owners[s]) return false;
    const now = h.membership.members.map((m) => m.id).sort((a, b) => a - b);
    const then = commit.members.map((m) => m.id).sort((a, b) => a - b);
    return now.join() === then.join();
  }

  /** Coordinator: a restarted initializer lost its state; its first recovery rolls everyone back. */
  restarted(): void {
    this.intact = false;
    this.local = undefined;
  }

  /**
   * Coordinator: a member died (again, perhaps, or while others were rolling back or replaying):
   * whatever rollback or replay is under way is moot; a new one starts once every down member is
   * back.
   */
  onDown(id: number): void {
    this.back.delete(id);
    if (this.rolling || this.replaying) {
      this.generation++;
      this.rolling = undefined;
    }
    // Not inside the failure handling that called this: the image read and the first installs
    // would run before the members hear that a member is down.
    if (this.host.coordinator()) this.host.clock.setTimeout(() => this.prepare(), 0);
  }

  /**
   * Coordinator: installs its own slots of the last committed checkpoint aside, yielding as a
   * restore does (its sources are paused while a member is down, so this is idle time). A
   * rollback to that checkpoint under the same owners then takes them in one step.
   */
  private prepare(): void {
    const h = this.host;
    const commit = h.resilience.lastCommit();
    // A local recovery keeps this member's state (decided after `onDown` scheduled this).
    if (!commit || this.prepared?.k === commit.k || this.local !== undefined || h.stopping()) return;
    const gen = ++this.preparing;
    const self = h.membership.selfId;
    const owners = [...commit.owners];
    const state = h.dataflow.state.emptyLike();
    const images = [...h.resilience.store.slotsAt(commit.k)];
    const done = this.installInParts(state, images, (s) => owners[s] === self, () => this.preparing === gen).then((keys) => keys !== undefined);
    this.prepared = { k: commit.k, owners, state, done };
  }

  private dropPrepared(): void {
    this.preparing++;
    this.prepared = undefined;
  }

  private hold(on: boolean): void {
    if (this.holding === on) return;
    this.holding = on;
    this.host.holdSources(on);
  }

  /**
   * Coordinator: down members the operator gave up. The rollback that follows (once every other
   * down member is back) leaves them out; their slots start empty at live members.
   */
  giveUp(ids: readonly number[]): void {
    for (const id of ids) {
      this.givenUp.add(id);
      this.back.delete(id);
    }
    this.keepGivenUp();
    this.local = undefined;
    if (this.rolling || this.replaying) {
      this.generation++;
      this.rolling = undefined;
    }
    this.hold(true);
    this.maybeRollBack(true);
  }

  /** Coordinator: a restarted initializer alone in its cluster rolls back and replays at once. */
  rollBackAlone(): void {
    this.hold(true);
    this.maybeRollBack(true);
  }

  private maybeRollBack(alone = false): void {
    const h = this.host;
    const c = h.coordinator()!;
    const down = c.down;
    if ((!alone && down.length === 0) || !down.every((id) => this.back.has(id)) || this.rolling || this.replaying) return;
    const gen = ++this.generation;
    const commit = h.resilience.lastCommit();
    assert(commit !== undefined, "a resilient cluster commits a checkpoint when it forms");
    const members = commit.members.filter((m) => !this.givenUp.has(m.id)).map((m) => this.back.get(m.id) ?? h.membership.byId(m.id) ?? m);
    const { owners, empty } = this.withoutGivenUp(commit.owners, members);
    // Known workers the checkpoint does not name (joiners of an event it predates) are not members.
    const strangers = h.membership.members.filter((m) => !members.some((x) => x.id === m.id)).map((m) => m.name);
    if (strangers.length > 0) h.dismiss(strangers);
    const epoch = Math.max(h.table.epoch, this.maxEpoch, commit.epoch) + 1;
    const ids = [...new Set([...down, ...this.back.keys()])];
    const local = ids.length === 1 && ids[0] === this.local ? this.local : undefined;
    const body: ControlBody<"rollback"> = {
      k: commit.k,
      epoch,
      members,
      owners,
      ...(empty.length > 0 ? { empty } : {}),
      ...(local !== undefined ? { restore: [local] } : {}),
    };
    if (empty.length > 0) log.warn("state_lost", `Slots of given-up workers start empty: ${empty.length} slots (slot ${empty.join(", slot ")})`);
    // Every member answers, this one too (its own rollback dials the members that came back).
    const all = members.map((m) => m.id);
    const r: Rolling = { k: commit.k, epoch, gen, linking: new Set(all), restoring: new Set(all), replay: "waiting", ids, local };
    this.rolling = r;
    if (local !== undefined) {
      const name = members.find((m) => m.id === local)!.name;
      log.warn("rollback", `Rolling ${name} back to checkpoint ${commit.k} (epoch ${epoch}); the input from position ${commit.position} will be replayed for its slots; the other members keep their state`);
    } else {
      // Survivors' held-queue marks are moot only if their held queues go.
      h.resetPressure();
      log.warn("rollback", `Rolling the cluster back to checkpoint ${commit.k} (epoch ${epoch}); its input from position ${commit.position} will be replayed`);
    }
    // A member that came back is reached on the link it rejoined on; what its earlier self's
    // links (and reports about them) say is settled.
    for (const m of members) {
      if (!this.back.has(m.id)) continue;
      this.linkTo(m);
      h.failures.readmit(m.name, epoch, h.controlLinkFor(m.id));
    }
    for (const m of members) if (m.id !== h.membership.selfId) h.send(m.id, "rollback", body);
    // Out now, not when this member's own restore first yields: the members restore meanwhile.
    for (const m of members) if (m.id !== h.membership.selfId) h.peers.get(m.id)?.control?.flush();
    // This member's own slots must be back before the replay feeds them: it says both at once.
    const self = h.membership.selfId;
    void this.apply(body).then((done) => {
      if (!done) return;
      this.onLinked(self, commit.k, epoch);
      this.onRolledBack(self, commit.k, epoch);
    });
    h.clock.setTimeout(() => {
      // Every member linked and restored: what is left is the replay, which has no deadline.
      if (this.generation !== gen || this.rolling !== r || (r.linking.size === 0 && r.restoring.size === 0)) return;
      log.error("rollback_stalled", `Rollback to checkpoint ${commit.k} not acknowledged by every member within ${RECOVERY_LIMITS.rollbackDeadlineMs} ms; rolling back again`);
      this.generation++;
      this.rolling = undefined;
      this.maybeRollBack(alone);
    }, RECOVERY_LIMITS.rollbackDeadlineMs);
  }

  /** Coordinator: member `from` took the rollback and is linked; once all are, the replay starts. */
  onLinked(from: number, k: number, epoch: number): void {
    const r = this.rolling;
    if (!r || r.k !== k || r.epoch !== epoch) return;
    r.linking.delete(from);
    this.maybeReplay(r);
  }

  private maybeReplay(r: Rolling): void {
    if (r.linking.size > 0 || r.replay !== "waiting") return;
    r.replay = "running";
    void this.replay(this.host.resilience.lastCommit()!, r.gen, r.local).then((done) => {
      if (this.host.stopping()) return;
      // Moot (a member died, one was given up, or the rollback stalled and was dropped, perhaps
      // during the last batch): roll back again, once every down member is back.
      if (!done || this.generation !== r.gen) return this.maybeRollBack(true);
      r.replay = "done";
      this.maybeRecovered(r);
    });
  }

  /** Coordinator: member `from` rolled back (its state restored; it is linked, too). */
  onRolledBack(from: number, k: number, epoch: number): void {
    const r = this.rolling;
    if (!r || r.k !== k || r.epoch !== epoch) return;
    r.restoring.delete(from);
    // Its `rollbackLinked` came first on the same link; should it not have, this stands for it.
    r.linking.delete(from);
    this.maybeReplay(r);
    this.maybeRecovered(r);
  }

  /** The recovery is over once the replay is and every member restored: the sources resume. */
  private maybeRecovered(r: Rolling): void {
    if (this.rolling !== r || r.replay !== "done" || r.restoring.size > 0) return;
    this.rolling = undefined;
    this.local = undefined;
    this.intact = true;
    this.rollbacks++;
    for (const id of r.ids) this.back.delete(id);
    this.host.recovered(r.ids);
    this.hold(false);
  }

  /**
   * Coordinator: feeds the input log from the checkpoint's position back into the dataflow, or,
   * in a local recovery, to member `only` the frames of its slots. Resolves false when it
   * stopped because its rollback became moot (generation `gen` is over).
   */
  private async replay(commit: CommitBody, gen: number, only?: number): Promise<boolean> {
    const h = this.host;
    const input = h.resilience.inputLog!;
    const end = input.end;
    let pos = Math.max(commit.position, input.start);
    assert(pos === commit.position, `the input log starts at ${input.start}, after checkpoint ${commit.k}'s position ${commit.position}`);
    this.replaying = true;
    const t0 = h.clock.now();
    const live = () => this.generation === gen && !h.stopping();
    let waitedSince = -1;
    /** Time spent waiting for congested downstream, and the waits: what bounds a slow replay. */
    let waitedMs = 0;
    let waits = 0;
    const forwardedBefore = h.dataflow.replayForwarded;
    const feed = only === undefined ? (buf: Uint8Array, s: number, e: number) => h.dataflow.ingest(buf, s, e) : (buf: Uint8Array, s: number, e: number) => h.dataflow.replayFor(only, buf, s, e);
    try {
      while (pos < end && live()) {
        // Downstream congested: wait, saying so every few seconds (the sources are paused meanwhile).
        if (h.congested()) {
          if (waitedSince < 0) waitedSince = h.clock.now();
          else if (h.clock.now() - waitedSince > RECOVERY_LIMITS.congestedLogMs) {
            log.warn("replay_waiting", `Replay waits for congested downstream (a sink or a peer) at position ${pos} of ${end}`);
            waitedSince = h.clock.now();
          }
          const t = h.clock.now();
          await h.clock.sleep(1);
          waitedMs += h.clock.now() - t;
          waits++;
          continue;
        }
        waitedSince = -1;
        // The original ingest time is not logged: replayed outputs count from their replay.
        h.dataflow.chunkStart(h.clock.epochMs());
        pos = input.read(pos, Math.min(RECOVERY_LIMITS.replayBatch, end - pos), feed);
        h.dataflow.chunkEnd();
        await h.clock.sleep(0);
      }
    } finally {
      this.replaying = false;
    }
    const n = pos - commit.position;
    this.replayed += n;
    if (pos < end) {
      log.warn("replay_stopped", `Replay stopped after ${n} of ${end - commit.position} messages: a member died; the recovery starts again once it is back`);
      return false;
    }
    const forwarded = h.dataflow.replayForwarded - forwardedBefore;
    const whose = only === undefined ? "" : `, ${forwarded} of them to ${h.membership.byId(only)?.name ?? only}, the rest skipped,`;
    log.info(
      "replayed",
      `Replayed ${n} messages from the input log (positions ${commit.position} to ${end})${whose} in ${Math.round(h.clock.now() - t0)} ms` +
        ` (${Math.round(waitedMs)} ms of it waiting for congested downstream, ${waits} waits)`,
      { messages: n, waited_ms: Math.round(waitedMs), ...(only === undefined ? {} : { forwarded }) },
    );
    return true;
  }

  /**
   * The checkpoint's table with every slot of a given-up member given to the least-loaded live
   * member (ties to the lowest id): those slots start empty.
   */
  private withoutGivenUp(owners: readonly number[], members: readonly Member[]): { owners: number[]; empty: number[] } {
    if (this.givenUp.size === 0) return { owners: [...owners], empty: [] };
    const load = new Map<number, number>(members.map((m) => [m.id, 0]));
    for (const o of owners) if (load.has(o)) load.set(o, load.get(o)! + 1);
    const out = [...owners];
    const empty: number[] = [];
    for (let s = 0; s < out.length; s++) {
      if (!this.givenUp.has(out[s]!)) continue;
      const to = [...load].sort((a, b) => a[1] - b[1] || a[0] - b[0])[0]![0];
      load.set(to, load.get(to)! + 1);
      out[s] = to;
      empty.push(s);
    }
    return { owners: out, empty };
  }

  /**
   * The peer for member `m`: kept while it is alive at the same addresses, otherwise a fresh one
   * (whose control link is the one `m` rejoined on, if any). A fresh one has no data link yet.
   */
  private linkTo(m: Member): Peer {
    const h = this.host;
    const p = h.peers.get(m.id);
    const same = p && p.alive && p.member.host === m.host && p.member.controlPort === m.controlPort && p.member.dataPort === m.dataPort;
    if (same) return p;
    const fresh = h.peers.replace(m);
    fresh.control = h.controlLinkFor(m.id);
    return fresh;
  }

  // --------------------------------------------------------------------------------- member

  /**
   * Rolls this member back to checkpoint `b.k`: the table and membership of the rollback, links
   * to every member (then `linked` is called: frames of this epoch may come, and wait until the
   * state is back), every slot it owns restored from its store, nothing held, frames of older
   * epochs discarded. Resolves true once restored, or false as soon as a later rollback started
   * here meanwhile (the restore yields to the event loop): that one finishes the work, and this
   * one must not say it did.
   */
  async apply(b: ControlBody<"rollback">, linked?: () => void): Promise<boolean> {
    const gen = ++this.applying;
    const h = this.host;
    const r = h.resilience;
    const t0 = h.clock.now();
    // By name: a restarted member learns its id from the rollback.
    const named = b.members.find((m) => m.name === h.name);
    if (b.restore && named && !b.restore.includes(named.id)) return this.keep(b, gen, t0, linked);
    r.barriers.rollback(b.k);
    h.migration.reset();
    h.dataflow.discardHeld();
    // Its held-queue mark follows (the coordinator forgot every member's): if the queue was high,
    // the restore's own holds must be able to report high again.
    h.pressureCheck();
    h.adopted(b.members);
    const self = h.membership.selfId;
    // Every slot of this member waits for its state (INCOMING): what reaches one meanwhile is
    // held for that slot alone, and runs as soon as its images are installed.
    h.table.adopt(self, b.epoch, b.owners, true);
    h.setFloor(b.epoch);
    for (const inb of h.inbound()) inb.release(b.epoch);
    r.rollbacks++;
    r.store.discardAfter(b.k);
    // The peers first: heartbeats go out on them while the state is restored (a restarted member
    // has no live peer for the initializer until now, and at a million keys the restore outlasts
    // the failure timeout). Then the data links, so that the replay may start while this member
    // restores.
    if (!(await this.relink(b, gen, linked))) return false;
    const tLinked = h.clock.now();
    // A given-up member's slots start empty: an image of one here is from an earlier owner's time.
    const empty = new Set(b.empty ?? []);
    const mine = (s: number) => b.owners[s] === self && !empty.has(s);
    const ahead = this.takePrepared(b.k, mine);
    let keys: number;
    let how: string;
    if (ahead && (await ahead.done)) {
      if (gen !== this.applying) return false;
      keys = h.dataflow.state.adopt(ahead.state);
      how = `installed ahead, waited ${Math.round(h.clock.now() - tLinked)}`;
    } else {
      if (gen !== this.applying) return false;
      const images = [...r.store.slotsAt(b.k)];
      const tRead = h.clock.now();
      h.dataflow.state.clear();
      // Each part's slots go on as soon as they are in: the first outputs do not wait for the last slot.
      const installed = (part: ReadonlyArray<readonly [number, Uint8Array]>) => {
        for (const [s] of part) if (mine(s)) this.restored(s);
        h.pressureCheck();
      };
      const n = await this.installInParts(h.dataflow.state, images, mine, () => gen === this.applying, installed);
      if (n === undefined) return false;
      keys = n;
      how = `reading ${Math.round(tRead - tLinked)}, installing ${Math.round(h.clock.now() - tRead)}`;
    }
    for (const s of empty) if (b.owners[s] === self) h.dataflow.state.touch(s);
    // The rest: slots without an image (empty at the checkpoint, or given up), or all of them
    // when installed ahead.
    for (let s = 0; s < b.owners.length; s++) if (b.owners[s] === self) this.restored(s);
    h.pressureCheck();
    const tEnd = h.clock.now();
    log.info(
      "rolled_back",
      `Rolled back to checkpoint ${b.k} at epoch ${b.epoch}: ${keys} keys in ${b.owners.filter((o) => o === self).length} slots ` +
        `in ${Math.round(tEnd - t0)} ms (links ${Math.round(tLinked - t0)}, ${how})`,
      { k: b.k, epoch: b.epoch, keys, ms: Math.round(tEnd - t0) },
    );
    return true;
  }

  /**
   * Links to every member of rollback `b` (a fresh peer for one at new addresses, whose earlier
   * self's links then speak for nobody), then says so (`linked`). False once a later rollback
   * started here meanwhile.
   */
  private async relink(b: ControlBody<"rollback">, gen: number, linked?: () => void): Promise<boolean> {
    const h = this.host;
    const self = h.membership.selfId;
    const redial: Member[] = [];
    for (const m of b.members) {
      if (m.id === self) continue;
      const before = h.peers.get(m.id);
      const p = this.linkTo(m);
      h.failures.readmit(m.name, p !== before ? b.epoch : undefined, h.controlLinkFor(m.id));
      if (p.data === undefined) redial.push(m);
    }
    await h.peers.dialAll(redial);
    if (gen !== this.applying) return false;
    if (linked) {
      linked();
      // Out now (writes flush at the end of the turn), not after the restore's first yield.
      await h.clock.sleep(0);
      if (gen !== this.applying) return false;
    }
    return true;
  }

  /**
   * A local recovery, on a member that keeps its state: the rollback's epoch over the same
   * table, links to the member that restores (at its new addresses), and nothing discarded or
   * restored: what reaches this member is applied as before, since nothing replays it for its
   * slots. A checkpoint the crash abandoned goes on being written here (the images of the next
   * one build on it), so this member says it rolled back only once that is done: the next
   * checkpoint follows the recovery.
   */
  private async keep(b: ControlBody<"rollback">, gen: number, t0: number, linked?: () => void): Promise<boolean> {
    const h = this.host;
    const self = h.membership.selfId;
    for (let s = 0; s < b.owners.length; s++)
      assert(h.table.owners[s] === b.owners[s], `a local recovery keeps the table, but it names ${b.owners[s]} for slot ${s} and this member's names ${h.table.owners[s]}`);
    // What it discarded would be lost: only a member that lost the initializer or heard of a
    // global recovery discards, and either is in the rollback's `restore`, or makes it global.
    assert(h.floor() <= h.table.epoch, `a member that keeps its state through a local recovery discarded frames up to epoch ${h.floor()}`);
    h.adopted(b.members);
    h.table.adopt(self, b.epoch, b.owners);
    for (const inb of h.inbound()) inb.release(b.epoch);
    if (!(await this.relink(b, gen, linked))) return false;
    const tLinked = h.clock.now();
    await h.resilience.idle();
    if (gen !== this.applying) return false;
    const names = b.restore!.map((id) => b.members.find((m) => m.id === id)?.name ?? String(id)).join(",");
    log.info(
      "kept_state",
      `Kept this worker's state through ${names}'s rollback to checkpoint ${b.k}, at epoch ${b.epoch}, in ${Math.round(h.clock.now() - t0)} ms ` +
        `(links ${Math.round(tLinked - t0)}, waiting for a checkpoint's writes ${Math.round(h.clock.now() - tLinked)})`,
      { k: b.k, epoch: b.epoch },
    );
    return true;
  }

  /** Slot `s`'s state is back: it is OWNED again, and what waited for it runs, in arrival order. */
  private restored(s: number): void {
    const h = this.host;
    if (h.table.status[s] !== SLOT_STATUS.incoming) return;
    h.table.setStatus(s, SLOT_STATUS.owned);
    h.dataflow.release(s);
  }

  /** The state prepared for checkpoint `k` if it holds exactly the slots `mine` says (it is taken either way). */
  private takePrepared(k: number, mine: (slot: number) => boolean): Prepared | undefined {
    const p = this.prepared;
    this.prepared = undefined;
    if (!p) return undefined;
    const self = this.host.membership.selfId;
    let fits = p.k === k;
    for (let s = 0; fits && s < p.owners.length; s++) if (mine(s) !== (p.owners[s] === self)) fits = false;
    if (fits) return p;
    // Not this rollback's: its install (if still running) stops.
    this.preparing++;
    return undefined;
  }

  /**
   * Installs the images of the slots `mine` says into `state`, a few slots at a time, yielding to
   * the event loop after CHECKPOINT_YIELD_MS or CHECKPOINT_YIELD_BYTES (so heartbeats go out
   * while many keys are restored). Resolves to the keys installed, or undefined once `wanted`
   * says the work is moot.
   */
  private async installInParts(
    state: KeyedState,
    images: ReadonlyArray<readonly [number, Uint8Array]>,
    mine: (slot: number) => boolean,
    wanted: () => boolean,
    installed?: (part: ReadonlyArray<readonly [number, Uint8Array]>) => void,
  ): Promise<number | undefined> {
    const h = this.host;
    const yieldBytes = h.resilience.cfg.restoreYield?.bytes ?? CHECKPOINT_YIELD_BYTES;
    const yieldMs = h.resilience.cfg.restoreYield?.ms ?? 0;
    let keys = 0;
    let sinceYield = 0;
    let yieldedAt = h.clock.now();
    for (let i = 0; i < images.length; i += RESTORE_PART_SLOTS) {
      const part = images.slice(i, i + RESTORE_PART_SLOTS);
      keys += state.installImages(part, mine);
      installed?.(part);
      for (const [, image] of part) sinceYield += image.length;
      if ((sinceYield >= yieldBytes || h.clock.now() - yieldedAt >= CHECKPOINT_YIELD_MS) && i + RESTORE_PART_SLOTS < images.length) {
        sinceYield = 0;
        await h.clock.sleep(yieldMs);
        if (!wanted()) return undefined;
        yieldedAt = h.clock.now();
      }
    }
    return wanted() ? keys : undefined;
  }
}

interface Rolling {
  k: number;
  epoch: number;
  /** The recovery generation it belongs to. */
  gen: number;
  linking: Set<number>;
  restoring: Set<number>;
  replay: "waiting" | "running" | "done";
  /** Members this recovery brings back (down, or back from down). */
  ids: number[];
  /** A local recovery: the one member that rolls back. */
  local: number | undefined;
}

interface Prepared {
  k: number;
  owners: readonly number[];
  state: KeyedState;
  /** True once installed; false if it was dropped first. */
  done: Promise<boolean>;
}
