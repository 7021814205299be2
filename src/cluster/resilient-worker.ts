// A resilient worker around crashes (docs/resilience.md): its durable side and recovery wired to
// the rest of the worker; on the initializer, the checkpointer's wiring, the commit record and
// the recovery of a restarted initializer, and members taken back after a crash; on a member,
// rejoining after its own crash or the initializer's, and applying a rollback. The worker
// (src/cluster/worker.ts) builds one when `--resilience-dir` is given and delegates to it.
import type { HostPort } from "../address.ts";
import type { AppSpec } from "../app/types.ts";
import type { Clock } from "../clock.ts";
import { encodeControl, type ControlBody, type Topology } from "../codec/control.ts";
import { UnreachableError, WallarooError } from "../errors.ts";
import { log } from "../log.ts";
import type { Link } from "../net/transport.ts";
import type { Dataflow } from "../runtime/dataflow.ts";
import type { Sink } from "../runtime/sink.ts";
import { reachableHost, refuseLink } from "./autoscale-requests.ts";
import { Checkpointer } from "./checkpointer.ts";
import type { ControlLinks } from "./control-dispatch.ts";
import type { Coordinator } from "./coordinator.ts";
import { ENTRY_LIMITS, type Entry } from "./entry.ts";
import type { Failures } from "./failures.ts";
import type { Heartbeats } from "./heartbeats.ts";
import type { InboundData } from "./inbound-data.ts";
import { INITIALIZER_NAME, type Membership } from "./membership.ts";
import type { Migration } from "./migration.ts";
import type { Peers } from "./peers.ts";
import type { Pressure } from "./pressure.ts";
import { Recovery } from "./recovery.ts";
import { Resilience, type CommitBody, type ResilienceConfig } from "./resilience.ts";
import type { RoutingTable } from "./routing-table.ts";

/** What of the worker this needs: its parts, and the few facts it owns. */
export interface ResilientWorkerHost {
  readonly cfg: {
    readonly name: string;
    readonly role: "initializer" | "worker" | "joiner";
    readonly control?: HostPort;
    readonly app: AppSpec;
    readonly out?: HostPort;
    readonly resilience: ResilienceConfig;
    readonly clusterId?: string;
  };
  readonly clock: Clock;
  readonly isInitializer: boolean;
  readonly membership: Membership;
  readonly table: RoutingTable;
  readonly peers: Peers;
  readonly pressure: Pressure;
  readonly failures: Failures;
  readonly control: ControlLinks;
  readonly entry: Entry;
  readonly heartbeats: Heartbeats;
  readonly dataflow: Dataflow;
  readonly migration: Migration;
  readonly sink: Sink;
  /** Resolves once the initializer has read its files and taken its role. */
  readonly started: Promise<void>;
  inbound(): Iterable<InboundData>;
  coordinator(): Coordinator | undefined;
  initializerId(): number;
  setInitializerId(id: number): void;
  stopping(): boolean;
  isReady(): boolean;
  /** The member is ready (a restarted member, once rolled back). */
  becomeReady(): void;
  /** What status says is down, as seen here. */
  setDown(names: string[]): void;
  unmuteSources(): void;
  fatal(err: WallarooError): void;
}

export class ResilientWorker {
  readonly resilience: Resilience;
  readonly recovery: Recovery;
  /** Data frames of an epoch below this were sent before a rollback: discarded on arrival. */
  floor = 0;
  /** A member whose initializer died (or that restarted): it waits for a rollback. */
  private awaitingInitializer = false;
  /** member id → the link it rejoined on (coordinator), or the initializer's (member): their control links after a rollback. */
  private readonly rejoinLinks = new Map<number, Link>();
  /** The cluster's id (initializer): sent with the topology so members record it. */
  private clusterId: string | undefined;

  constructor(private readonly h: ResilientWorkerHost) {
    const selfId = () => h.membership.selfId;
    // Every known member takes part in a checkpoint: after a grow or shrink, joiners and leavers
    // too (the checkpoint of its outcome is taken before they are told).
    const others = () => h.membership.members.filter((m) => m.id !== selfId());
    this.resilience = new Resilience(
      {
        clock: h.clock,
        name: h.cfg.name,
        app: h.cfg.app.name,
        dataflow: h.dataflow,
        selfId,
        initializerId: () => h.initializerId(),
        others: () => others().map((m) => m.id),
        owns: (slot) => h.table.owners[slot] === selfId(),
        relayBarrier: (k, round) => {
          for (const m of others()) {
            // Its loss is being handled elsewhere; the checkpoint waits for its deadline or an abandon.
            if (!h.peers.get(m.id)?.barrier(k, round)) log.warn("barrier_unsent", `Checkpoint ${k}: no data connection to ${m.name} for barrier round ${round}`);
          }
        },
        roundDone: (k, round) => {
          if (h.isInitializer) this.resilience.checkpointer?.onRoundDone(selfId(), k, round);
          else h.peers.sendTo(h.initializerId(), "barrierDone", { k, round });
        },
        captured: (k) => {
          if (h.isInitializer) this.resilience.checkpointer?.onCaptured(selfId(), k);
          else h.peers.sendTo(h.initializerId(), "snapshotCaptured", { k });
        },
        written: (k, slots, bytes, failed) => {
          if (h.isInitializer) this.resilience.checkpointer?.onWritten(selfId(), k, slots, bytes, failed);
          else h.peers.sendTo(h.initializerId(), "snapshotWritten", { k, slots, bytes, ...(failed !== undefined ? { failed } : {}) });
        },
        sinkMark: () => (h.cfg.out ? h.sink.mark() : undefined),
        sinkHandedOver: (mark) => !h.cfg.out || h.sink.handedOver(mark as ReturnType<Sink["mark"]>),
      },
      h.cfg.resilience,
      h.isInitializer,
    );
    this.recovery = new Recovery({
      clock: h.clock,
      name: h.cfg.name,
      resilience: this.resilience,
      membership: h.membership,
      table: h.table,
      migration: h.migration,
      dataflow: h.dataflow,
      peers: h.peers,
      failures: h.failures,
      coordinator: () => h.coordinator(),
      inbound: () => h.inbound(),
      setFloor: (epoch) => (this.floor = epoch),
      floor: () => this.floor,
      adopted: (members) => {
        h.membership.adopt(members);
        h.membership.commit(members);
        h.setInitializerId(h.membership.initializerId);
      },
      send: (id, type, body) => h.peers.sendTo(id, type, body),
      controlLinkFor: (id) => this.rejoinLinks.get(id),
      holdSources: (on) => h.pressure.hold("recovery", on),
      resetPressure: () => h.pressure.forgetHeld(),
      pressureCheck: () => h.pressure.check(),
      dismiss: (names) => h.failures.dropJoiners(names, "Join abandoned: the cluster rolled back to a checkpoint taken before this worker joined; start it again to join."),
      recovered: (ids) => {
        this.rejoinLinks.clear();
        for (const id of ids) h.heartbeats.reset(id);
        h.coordinator()!.recovered(ids);
        // Make the recovered cluster (without members given up) the one a later crash returns to.
        this.resilience.checkpointer?.now();
      },
      congested: () => h.sink.congested || h.peers.anyCongested() || h.pressure.heldHigh,
      stopping: () => h.stopping(),
    });
  }

  /**
   * A member is down: nothing sent under tables up to `epoch` is applied any more. The rollback
   * that follows replays it all; applying some of it now could produce outputs the replay does
   * not produce again (in a pipeline with more than one keyed step, a survivor could apply a
   * message whose predecessor died with the member).
   */
  discardUntilRollback(epoch: number): void {
    this.floor = Math.max(this.floor, epoch + 1);
    // Records waiting for a slot (one being migrated, or restored by a rollback still running)
    // arrived under those tables too.
    this.h.dataflow.discardHeld();
    this.h.pressure.check();
  }

  /**
   * The initializer is lost: every data frame until the rollback, of any epoch, is discarded. The
   * frames of an event it had started (a later epoch than this member's table) are as stale as
   * the rest, and no coordinator is left to start a newer one. The rollback sets the floor to
   * its own epoch.
   */
  private discardAllUntilRollback(): void {
    this.floor = Number.MAX_SAFE_INTEGER;
    this.h.dataflow.discardHeld();
    this.h.pressure.check();
  }

  get checkpointer(): Checkpointer | undefined {
    return this.resilience.checkpointer;
  }

  // ---------------------------------------------------------------------------- initializer

  /** The initializer starts: its cluster id (new, or from its files) and the commit it recovers from, if any. */
  initializerStarts(): { cluster: string; commit: CommitBody | undefined } {
    const r = this.resilience;
    const cluster = r.clusterId ?? this.h.cfg.clusterId ?? crypto.randomUUID();
    r.rememberCluster(cluster, this.h.membership.self);
    r.rememberMember(0);
    this.clusterId = cluster;
    const commit = r.lastCommit();
    r.checkpointer = this.makeCheckpointer(cluster, commit?.k ?? 0);
    return { cluster, commit };
  }

  /**
   * A barrier on a data link: of a round, or (round 0) the initializer's mark of a checkpoint in
   * a one-hop pipeline: what it sent before is before the checkpoint, so this member takes its
   * images before reading on from that link.
   */
  onBarrier(from: number, k: number, round: number, on: InboundData): void {
    if (round > 0) return this.resilience.barriers.onBarrier(from, k, round);
    if (from !== this.h.initializerId() || this.h.isInitializer) return;
    on.hold();
    void this.resilience.snapshot(k, () => on.unhold()).finally(() => on.unhold());
  }

  /** The topology the initializer sends at formation, with the cluster's id. */
  withCluster(t: Topology): Topology {
    return this.clusterId ? { ...t, cluster: this.clusterId } : t;
  }

  /** Formation is complete: checkpoint 0 (nothing processed yet) and the periodic checkpoints. */
  formed(): void {
    this.resilience.recordFormation(this.commitBody(0, this.resilience.inputLog!.end, this.clusterId!));
    this.resilience.checkpointer?.start();
  }

  /** The initializer's checkpoints: barrier rounds over the data links, commits in its store. */
  private makeCheckpointer(cluster: string, lastCommitted: number): Checkpointer {
    const h = this.h;
    const r = this.resilience;
    // A message can cross to another worker at each stateful step and each step that must run on
    // the initializer: one barrier round per such crossing moves everything in flight home. With
    // one crossing at most, every message goes from the initializer to its owner in one hop: no
    // rounds, a barrier per link marks the point instead (and the sources pause only while the
    // initializer takes its own images).
    const crossings = h.cfg.app.stages.filter((st) => st.kind === "stateful" || (st.kind === "map" && !st.parallel)).length;
    const rounds = crossings <= 1 ? 0 : crossings;
    const input = r.inputLog!;
    const others = () => h.membership.members.filter((m) => m.id !== h.membership.selfId);
    return new Checkpointer(
      {
        clock: h.clock,
        selfId: 0,
        participants: () => h.membership.members.map((m) => m.id),
        canStart: () => {
          const c = h.coordinator()!;
          return h.isReady() && !h.stopping() && (!c.busy || c.phaseKind === "committing") && c.down.length === 0 && !this.recovery.active;
        },
        hold: (on) => h.pressure.hold("checkpoint", on),
        position: () => input.end,
        beginRound: (k, round) => r.barriers.begin(k, round),
        snapshot: (k) => {
          if (rounds === 0) {
            void r.snapshot(k, () => {
              for (const m of others()) if (!h.peers.get(m.id)?.barrier(k, 0)) log.warn("barrier_unsent", `Checkpoint ${k}: no data connection to ${m.name}`);
            });
            return;
          }
          for (const m of others()) h.peers.sendTo(m.id, "snapshot", { k });
          void r.snapshot(k);
        },
        commit: (k, position) => {
          const body = this.commitBody(k, position, cluster);
          r.store.commit(k, JSON.stringify(body));
          this.recovery.committed(body.members);
          for (const m of others()) h.peers.sendTo(m.id, "committed", { k });
          r.committed(k, position);
          h.coordinator()!.onCheckpointCommitted();
        },
      },
      r.cfg.intervalMs,
      rounds,
      lastCommitted,
    );
  }

  /** What a commit of checkpoint `k` records: the membership it names and the table as it is now. */
  private commitBody(k: number, position: number, cluster: string): CommitBody {
    const c = this.h.coordinator()!;
    return {
      k,
      position,
      epoch: this.h.table.epoch,
      owners: Array.from(this.h.table.owners),
      members: [...(c.target ?? this.h.membership.committed)],
      nextId: c.nextIdValue,
      cluster,
    };
  }

  /**
   * The initializer started again with its files: the membership, the table and the input log
   * come from its last committed checkpoint, every other member is down until it reconnects, and
   * the recovery rolls everyone back to that checkpoint.
   */
  recoverAsInitializer(commit: CommitBody): void {
    const h = this.h;
    const self = h.membership.self;
    // Members given up before the crash, whose give-up no commit recorded, stay given up.
    const members = commit.members
      .filter((m) => !this.recovery.isGivenUp(m.id))
      .map((m) => (m.id === 0 ? { ...m, host: self.host, controlPort: self.controlPort, dataPort: self.dataPort } : m));
    h.membership.adopt(members);
    h.membership.commit(members);
    h.table.adopt(0, commit.epoch, commit.owners);
    const c = h.coordinator()!;
    c.formed = true;
    c.reserveIds(commit.nextId);
    const others = members.filter((m) => m.id !== 0);
    log.warn(
      "recovering",
      `Recovering from checkpoint ${commit.k}: waiting for ${others.map((m) => m.name).join(",") || "no other worker"} to reconnect; the sources stay paused until then`,
      { k: commit.k },
    );
    h.becomeReady();
    h.unmuteSources();
    h.heartbeats.start();
    this.resilience.checkpointer!.start();
    this.recovery.restarted();
    if (others.length > 0) c.markDown(others.map((m) => m.id));
    else this.recovery.rollBackAlone();
  }

  /** Coordinator: a member is back after a crash. */
  onRejoin(link: Link, b: ControlBody<"rejoin">): void {
    const h = this.h;
    // A restarted initializer listens before it has read its files: a member may be quicker.
    if (h.isInitializer && !h.coordinator()) return void h.started.then(() => this.onRejoin(link, b));
    const c = h.coordinator();
    if (!c) return refuseLink(link, "Only a resilient cluster's initializer takes members back after a crash.");
    const m = h.membership.byName(b.name);
    log.debug("rejoin_received", `rejoin from ${b.name} on link ${link.id} (${link.remote}); bound: ${h.control.linkOf(b.name)?.id}`);
    // Back before its old connections were seen to close (or it only thought the initializer
    // dead): its earlier self is out all the same, and its old control link, closing, speaks for
    // nobody (a destroyed link may report its close only later).
    // Only a process of this cluster (its files name it) may take a live member's place.
    if (m && h.peers.get(m.id)?.alive && !c.down.includes(m.id) && b.cluster === this.resilience.clusterId) {
      h.failures.linkLost(m.id, "it started again");
      h.control.release(b.name);
    }
    if (m) {
      // Its control link from now on: the rollback goes out on it.
      if (!h.control.identify(link, b.name)) return refuseLink(link, `Another connection speaks for ${b.name}.`);
      this.rejoinLinks.set(m.id, link);
    }
    const refusal = this.recovery.onRejoin({ ...b, host: reachableHost(link, b.host) });
    if (!refusal) return;
    if (m) this.rejoinLinks.delete(m.id);
    if (!refusal.stop) return refuseLink(link, refusal.reason);
    log.warn("not_a_member", `${refusal.reason} Telling it to stop.`);
    link.write(encodeControl("shutdown", { reason: refusal.reason }));
    link.end();
  }

  // --------------------------------------------------------------------------------- member

  /** A member got its topology: it records the cluster (and, for a worker of the formation, its place). */
  onTopology(t: Topology): void {
    const r = this.resilience;
    if (!t.cluster) return;
    // Files of an earlier life (a join undone before any checkpoint named it) count for nothing.
    r.store.discardAfter(0);
    r.rememberCluster(t.cluster, this.h.membership.byId(this.h.initializerId())!);
    // A worker of the formation is in checkpoint 0; a joiner only once a checkpoint names it.
    if (this.h.cfg.role === "worker") r.rememberMember(this.h.membership.selfId);
  }

  /** Checkpoint `k` committed (a member hears it). */
  onCommitted(k: number): void {
    const r = this.resilience;
    r.committed(k);
    // A joiner is a member to come back as once a checkpoint names it (not before: a grow
    // undone by a crash never made it one).
    const self = this.h.membership.selfId;
    if (r.memberId === undefined && self >= 0) r.rememberMember(self);
  }

  /** A member started again with its files: it asks the initializer to take it back. */
  async rejoinAfterCrash(): Promise<void> {
    const h = this.h;
    const r = this.resilience;
    const init = h.cfg.role === "worker" ? h.cfg.control! : r.initializerAddress;
    if (!init) throw new WallarooError(`The resilience files of ${h.cfg.name} do not say where the initializer is; remove them to start anew.`);
    this.awaitingInitializer = true;
    log.warn("rejoin_after_crash", `${h.cfg.name} has resilience files of cluster ${r.clusterId}: rejoining it as the same member`);
    await h.entry.rejoin(init, { cluster: r.clusterId ?? "", epoch: h.table.epoch });
  }

  /** A member lost the initializer: it waits for it to come back instead of stopping. */
  initializerLost(why: string): boolean {
    const h = this.h;
    const r = this.resilience;
    if (h.isInitializer || h.stopping()) return false;
    if (this.awaitingInitializer) return true;
    const init = h.membership.byId(h.initializerId());
    const addr = h.cfg.role === "worker" ? h.cfg.control! : init ? { host: init.host, port: init.controlPort } : r.initializerAddress;
    if (!addr) return false;
    this.awaitingInitializer = true;
    // What status says meanwhile: nothing is processed until it is back.
    h.setDown([INITIALIZER_NAME]);
    this.discardAllUntilRollback();
    log.warn("initializer_lost", `Lost the initializer (${why}): waiting for it to be started again (up to ${ENTRY_LIMITS.rejoinDeadlineMs / 1000} s)`);
    h.entry.rejoin(addr, { cluster: r.clusterId ?? "", epoch: h.table.epoch }).catch((err: unknown) => h.fatal(err instanceof WallarooError ? err : new UnreachableError(String(err))));
    return true;
  }

  /** A member: the coordinator rolls the cluster back to a checkpoint. */
  onRollback(b: ControlBody<"rollback">): void {
    const h = this.h;
    if (h.isInitializer) return;
    if (this.awaitingInitializer) {
      const rejoined = h.entry.accepted(true);
      if (rejoined) {
        this.rejoinLinks.set(h.membership.initializerId, rejoined);
        // It speaks for the initializer now (its heartbeats count), not its dead predecessor's link.
        h.control.release(INITIALIZER_NAME);
        h.control.identify(rejoined, INITIALIZER_NAME);
      }
      this.awaitingInitializer = false;
    }
    // Heartbeats go out while the state is restored, not only after: at a million keys a
    // restarted worker restores for about a second, and the initializer, hearing nothing,
    // declared it lost again and again (bench/resilience.ts --keys 1000000: 11 rollbacks for 2
    // kills). The restore yields to the event loop often enough for the timer to run.
    h.heartbeats.start();
    // Linked: the coordinator may start the replay while this member restores.
    const linked = () => h.peers.sendTo(h.initializerId(), "rollbackLinked", { k: b.k, epoch: b.epoch });
    void this.recovery.apply(b, linked).then((done) => {
      if (!done) return;
      this.rejoinLinks.clear();
      // Silence counts from now: whoever came back was not heard from while the rollback ran.
      for (const m of b.members) h.heartbeats.reset(m.id);
      this.resilience.rememberCluster(this.resilience.clusterId ?? "", h.membership.byId(h.initializerId())!);
      h.setDown([]);
      h.peers.sendTo(h.initializerId(), "rolledBack", { k: b.k, epoch: b.epoch });
      h.heartbeats.start();
      h.becomeReady();
    });
  }

  /** A clean shutdown or a leave: nothing to recover. */
  destroy(): void {
    this.resilience.destroy();
  }

  /** A crash or a fatal error: the files stay, for a recovery. */
  close(): void {
    this.resilience.close();
  }
}
