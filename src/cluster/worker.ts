// One worker process, composed: its listeners, its routing table, membership and peers, its
// dataflow, and the control table that connects them. The initializer additionally forms the
// cluster, runs the Coordinator and hosts the sources. What each part decides lives in its own
// file; this one wires them together and owns the worker's lifecycle (start, leave, shutdown,
// fatal). What happens when another member fails is src/cluster/failures.ts.
import type { HostPort, SourceAddress } from "../address.ts";
import { formatHostPort } from "../address.ts";
import type { AppSpec } from "../app/types.ts";
import { assert } from "../assert.ts";
import { systemClock, type Clock, type Timer } from "../clock.ts";
import { encodeControl, type ControlBody, type ControlName, type Member, type Topology } from "../codec/control.ts";
import { RefusedError, UnreachableError, WallarooError } from "../errors.ts";
import { log } from "../log.ts";
import type { Channels } from "../net/channels.ts";
import type { Link, LinkHandlers, Server, Transport } from "../net/transport.ts";
import { Dataflow } from "../runtime/dataflow.ts";
import { startExternalServer, type ExternalStats } from "../runtime/external-server.ts";
import type { Router } from "../runtime/router.ts";
import { Sink } from "../runtime/sink.ts";
import { Source } from "../runtime/source.ts";
import { AutoscaleRequests, isWildcard, reachableHost, refuseLink } from "./autoscale-requests.ts";
import type { SenderRole } from "./control-roles.ts";
import { ControlLinks, type ControlTable } from "./control-dispatch.ts";
import { Coordinator } from "./coordinator.ts";
import { Entry } from "./entry.ts";
import { answerExternal, ClusterKeyCounts, rotateHere, type ExternalHost, type ShrinkAsk, type WorkerStatus as ReportedStatus } from "./external-requests.ts";
import { Failures } from "./failures.ts";
import { Formation } from "./formation.ts";
import { DEFAULT_FAILURE_TIMEOUT_MS, Heartbeats } from "./heartbeats.ts";
import { InboundData, newInboundStats, type InboundStats } from "./inbound-data.ts";
import { INITIALIZER_NAME, Membership } from "./membership.ts";
import { Migration } from "./migration.ts";
import { Peers } from "./peers.ts";
import { HELD_LIMITS, Pressure } from "./pressure.ts";
import { Relays } from "./relays.ts";
import { ResilientWorker, type ResilientWorkerHost } from "./resilient-worker.ts";
import type { ResilienceConfig } from "./resilience.ts";
import { RoutingTable } from "./routing-table.ts";
import { Gathering } from "./gathering.ts";
import { workerMetrics } from "./worker-metrics.ts";
import { readiness, workerStatus, type ObservedWorker } from "./worker-status.ts";
import type { Registry } from "../metrics/registry.ts";
import type { WorkerStatus } from "../metrics/status.ts";

export { HELD_LIMITS, INITIALIZER_NAME };

export interface WorkerConfig {
  name: string;
  role: "initializer" | "worker" | "joiner";
  /** initializer: total cluster size; joiner: joiners arriving together */
  workerCount: number;
  /** initializer: where it listens; worker: the initializer's control address */
  control?: HostPort;
  /** initializer only */
  data?: HostPort;
  myControl: HostPort;
  myData: HostPort;
  join?: HostPort;
  external?: HostPort;
  sources: SourceAddress[];
  out?: HostPort;
  app: AppSpec;
  /** The network: every channel over it, unless `channels` says otherwise. */
  transport: Transport;
  /** Per channel (src/net/channels.ts): the handshake on control and data, TLS. */
  channels?: Partial<Channels>;
  /** The cluster secret: the external channel's requests that change the cluster must be signed with it. */
  secret?: Uint8Array;
  /** `--advertise-host`: the address other members reach this worker at (default: its listen host). */
  advertiseHost?: string;
  /** Defaults to the system clock; the simulation passes a virtual one. */
  clock?: Clock;
  /** Overrides HELD_LIMITS (the simulation uses tiny ones to exercise the pause). */
  heldLimits?: { high: number; low: number };
  /** Overrides SHIP_KEYS_PER_TURN (the simulation uses a tiny one so that shipping spans turns). */
  shipKeysPerTurn?: number;
  /** `--failure-timeout`: a member silent this long is lost (DEFAULT_FAILURE_TIMEOUT_MS). */
  failureTimeoutMs?: number;
  /** `--resilience-dir` and friends: checkpoints, the input log, recovery after a crash. */
  resilience?: ResilienceConfig;
  /** The simulation's: a deterministic cluster id for a resilient initializer (default: random). */
  clusterId?: string;
}

export const WORKER_LIMITS = {
  /** Links to a leaver close this long after the shrink completes, so it finishes first. */
  leaverLingerMs: 10_000,
  /** A stopping worker gives its sink this long to flush. */
  sinkFlushMs: 5000,
  /**
   * The initializer stopping the cluster closes its links once every member closed theirs (each
   * after its own sink's flush), or after this long.
   */
  shutdownPeersMs: 10_000,
  /** A member asked to stop the cluster waits this long for the initializer's word, then stops alone. */
  shutdownRelayMs: 10_000,
  /** An accepted control or data connection must send its first frame within this. */
  firstFrameMs: 10_000,
} as const;

export class Worker implements Router {
  readonly isInitializer: boolean;
  readonly dataflow: Dataflow;
  readonly migration: Migration;
  readonly sink: Sink;
  private readonly clock: Clock;
  private readonly net: Channels;
  private readonly table = new RoutingTable();
  private readonly membershipState: Membership;
  private readonly peers: Peers;
  private readonly pressure: Pressure;
  private readonly relays: Relays;
  private readonly requests: AutoscaleRequests;
  private readonly failures: Failures;
  private readonly control: ControlLinks;
  private readonly keyCounts: ClusterKeyCounts;
  private readonly heartbeats: Heartbeats;
  /** member id → keys it held at its last heartbeat (initializer). */
  private readonly keysAt = new Map<number, number>();
  /** Members the coordinator says are down (every member hears it). */
  private downNames: string[] = [];
  /** "No member is down" was said since the last member went down. */
  private upSaid = true;
  private downIds = new Set<number>();
  /** With `--resilience-dir`: checkpoints, and recovery after a crash. */
  private readonly res: ResilientWorker | undefined;
  private readonly sources: Source[] = [];
  private readonly servers: Server[] = [];
  private readonly inbound = new Set<InboundData>();
  /** What each member's data links brought in, by name, for the metrics. */
  private readonly inboundStats = new Map<string, InboundStats>();
  /** Records received from members whose stats were dropped: the messages-in counter never goes down. */
  private recordsFromGone = 0;
  /** A shrink's plan named this worker: it is leaving (unready) until it exits or the event is undone. */
  private leaving = false;
  private readonly statuses: Gathering<WorkerStatus>;
  private metricsRegistry: Registry | undefined;
  private readonly externalStats: ExternalStats = { undecodable: 0, oversized: 0 };
  private coordinator: Coordinator | undefined;
  private formation: Formation | undefined;
  private readonly entry: Entry;
  private myControlServer: Server | undefined;
  private ready = false;
  private stopping = false;
  /** A member asked the initializer to stop the cluster (`shutdown`). */
  private shutdownAsked = false;
  /** Cached: the dataflow reads it per message. */
  initializerId = 0;
  private exitResolve!: (code: number) => void;
  private startedResolve!: () => void;
  /** The initializer has read its files and taken its role. */
  private readonly started = new Promise<void>((r) => (this.startedResolve = r));
  readonly exited = new Promise<number>((r) => (this.exitResolve = r));

  constructor(private readonly cfg: WorkerConfig) {
    this.isInitializer = cfg.role === "initializer";
    this.clock = cfg.clock ?? systemClock;
    this.membershipState = new Membership({ id: -1, name: cfg.name, host: "", controlPort: 0, dataPort: 0 });
    this.keyCounts = new ClusterKeyCounts(this.clock, (id, reqId) => this.peers.sendTo(id, "keyCountReq", { reqId }));
    this.net = { control: cfg.transport, data: cfg.transport, external: cfg.transport, io: cfg.transport, ...cfg.channels };
    this.sink = new Sink(cfg.out ?? { host: "127.0.0.1", port: 0 }, this.net.io, this.clock);
    this.dataflow = new Dataflow(cfg.app, this, this.sink, this.clock);
    this.statuses = new Gathering(this.clock, (id, reqId) => this.peers.sendTo(id, "statusReq", { reqId }), "Worker status", "status_partial");
    this.peers = new Peers({
      name: cfg.name,
      selfId: () => this.membershipState.selfId,
      controlTransport: this.net.control,
      dataTransport: this.net.data,
      clock: this.clock,
      epoch: () => this.table.epoch,
      ingestAt: () => this.dataflow.latency.at,
      controlHandlers: (id, current) =>
        this.control.handlers(() => {
          if (current()) this.failures.linkLost(id, "control connection closed");
        }),
      dialedControl: (link, name) => this.control.dialed(link, name),
      drained: () => this.pressure.check(),
      lost: (id, why) => this.failures.linkLost(id, why),
    });
    this.migration = new Migration({
      table: this.table,
      dataflow: this.dataflow,
      peer: (id) => this.peers.get(id),
      flushAllPeers: () => this.peers.flushAll(),
      reportInstalled: (epoch, slots, keys, bytes) => this.reportInstalled(epoch, slots, keys, bytes),
      epochAdvanced: (epoch) => {
        for (const inb of this.inbound) inb.release(epoch);
        // Slots installed at once (orphans) may have emptied the held queue.
        this.pressure.check();
      },
      defer: (fn) => void this.clock.setTimeout(fn, 0),
      ...(cfg.shipKeysPerTurn !== undefined ? { shipKeysPerTurn: cfg.shipKeysPerTurn } : {}),
    });
    this.pressure = new Pressure(
      {
        sinkCongested: () => this.sink.congested,
        peersCongested: () => this.peers.anyCongested(),
        heldCount: () => this.dataflow.heldCount,
        sources: () => this.sources,
        pauseInbound: (paused) => {
          for (const inb of this.inbound) {
            if (paused) inb.link.pause();
            else inb.resume();
          }
        },
        reportHeld: (high) => {
          if (!this.isInitializer) this.peers.sendTo(this.initializerId, "pressure", { high });
        },
      },
      cfg.heldLimits ?? HELD_LIMITS,
    );
    this.sink.onWritable = () => this.pressure.check();
    this.relays = new Relays(this.clock);
    this.requests = new AutoscaleRequests({
      peers: this.peers,
      relays: this.relays,
      coordinator: () => this.coordinator,
      initializerId: () => this.initializerId,
      isReady: () => this.ready,
      committed: () => this.membershipState.committed,
    });
    this.control = new ControlLinks(
      this.controlTable(),
      () => this.clock.now(),
      (link) => this.roleOf(link),
    );
    this.heartbeats = new Heartbeats(
      {
        clock: this.clock,
        pinged: () => {
          // The initializer stopping the cluster waits for the members to close: it stays audible.
          if (this.stopping && !this.isInitializer) return [];
          if (this.isInitializer) return [...this.peers.live()].map((p) => p.id);
          return this.initializerId >= 0 && this.peers.get(this.initializerId)?.alive ? [this.initializerId] : [];
        },
        watched: () => {
          if (this.stopping) return [];
          // The initializer watches the committed members; the others watch the initializer.
          if (this.isInitializer) return this.membershipState.committed.filter((m) => m.id !== this.selfId && this.peers.get(m.id)?.alive).map((m) => m.id);
          return this.initializerId >= 0 && this.peers.get(this.initializerId)?.alive ? [this.initializerId] : [];
        },
        lastHeard: (id) => {
          const m = this.membershipState.byId(id);
          return m ? this.control.lastHeard(id === this.initializerId ? INITIALIZER_NAME : m.name) : undefined;
        },
        send: (id) => this.peers.sendTo(id, "heartbeat", { keys: this.dataflow.state.totalKeys() }),
        silent: (id, ms) => this.failures.linkLost(id, `nothing heard from it for ${ms} ms`),
      },
      cfg.failureTimeoutMs ?? DEFAULT_FAILURE_TIMEOUT_MS,
    );
    this.failures = new Failures({
      clock: this.clock,
      membership: this.membershipState,
      peers: this.peers,
      pressure: this.pressure,
      control: this.control,
      migration: this.migration,
      inbound: this.inbound,
      coordinator: () => this.coordinator,
      formation: () => this.formation,
      initializerId: () => this.initializerId,
      stopping: () => this.stopping,
      fatal: (err) => this.fatal(err),
      initializerLost: (why) => {
        // A request relayed to it will not be answered: say so now rather than at its deadline.
        this.relays.failAll("The initializer is not reachable from this worker.");
        return this.res?.initializerLost(why) ?? false;
      },
      memberLost: (id) => this.res?.recovery.onDown(id),
      epoch: () => this.table.epoch,
    });
    this.entry = new Entry({
      name: cfg.name,
      transport: this.net.control,
      clock: this.clock,
      self: () => this.membershipState.self,
      handlers: (closed) => this.control.handlers(closed),
      fatal: (err) => this.fatal(err),
      lostAfterAnswer: () => this.failures.linkLost(this.initializerId, "control connection closed"),
      stopping: () => this.stopping,
      resilient: cfg.resilience !== undefined,
    });
    if (cfg.resilience) this.res = new ResilientWorker(this.resilientHost(cfg.resilience));
  }

  private resilientHost(resilience: ResilienceConfig): ResilientWorkerHost {
    const w = this;
    return {
      cfg: { ...this.cfg, resilience },
      clock: this.clock,
      isInitializer: this.isInitializer,
      membership: this.membershipState,
      table: this.table,
      peers: this.peers,
      pressure: this.pressure,
      failures: this.failures,
      control: this.control,
      entry: this.entry,
      heartbeats: this.heartbeats,
      dataflow: this.dataflow,
      migration: this.migration,
      sink: this.sink,
      started: this.started,
      inbound: () => this.inbound,
      coordinator: () => this.coordinator,
      initializerId: () => this.initializerId,
      setInitializerId: (id) => (this.initializerId = id),
      stopping: () => this.stopping,
      isReady: () => this.ready,
      becomeReady() {
        if (w.ready) return;
        w.ready = true;
        log.info("phase_4", "|~~ INIT PHASE IV: Cluster is ready to work! ~~|");
      },
      setDown: (names) => (this.downNames = names),
      unmuteSources: () => {
        for (const s of this.sources) s.unmute();
      },
      fatal: (err) => this.fatal(err),
    };
  }

  // ------------------------------------------------------------------------ what others see

  get name(): string {
    return this.cfg.name;
  }

  get selfId(): number {
    return this.table.selfId;
  }

  /** The table's arrays themselves (it fills them in place), as fields: the dataflow reads them per message. */
  readonly owners: Int32Array = this.table.owners;
  readonly status: Uint8Array = this.table.status;

  /** The epoch of the routing table this worker has applied. */
  get epoch(): number {
    return this.table.epoch;
  }

  /** A recovery (rollback or replay) is under way (initializer with resilience). */
  get recovering(): boolean {
    return this.res?.recovery.active ?? false;
  }

  /** A checkpoint is in flight (initializer with resilience). */
  get checkpointing(): boolean {
    return this.res?.checkpointer?.busy ?? false;
  }

  /** The epoch of the last rollback here (0 if none): frames and tables older than it are discarded. */
  get floor(): number {
    return this.res?.floor ?? 0;
  }

  /** Every member this worker knows of, joiners of an event in flight included. */
  get knownMembers(): string[] {
    return this.membershipState.members.map((m) => m.name);
  }

  /** The committed membership in cluster order (what status reports). */
  get membership(): string[] {
    return this.membershipState.committed.map((m) => m.name);
  }

  get isReady(): boolean {
    return this.ready;
  }

  /** True while the coordinator runs an autoscale event (initializer only). */
  get autoscaling(): boolean {
    return this.coordinator?.busy ?? false;
  }

  /** The coordinator's phase (initializer only): idle, waitingForJoiners, connecting, migrating. */
  get coordinatorPhase(): string | undefined {
    return this.coordinator?.phaseKind;
  }

  /** The port this worker's control channel listens on (joiners may contact it). */
  get controlPort(): number {
    return this.myControlServer?.port ?? 0;
  }

  /** Times the sources paused for a held queue (initializer). */
  get heldPauses(): number {
    return this.pressure.heldPauses;
  }

  /** Stopping: leaving, shutting down, or stopped by an error; it processes nothing more. */
  get isStopping(): boolean {
    return this.stopping;
  }

  forward(peerId: number, stage: number, raw: boolean, slot: number, key: string, payload: Uint8Array, start: number, end: number): void {
    this.peers.forward(peerId, stage, raw, slot, key, payload, start, end);
  }

  /** A shrink request as the external channel would make it, answered here (initializer only). */
  shrink(req: ShrinkAsk): { type: number; payload: string } {
    assert(this.coordinator !== undefined, "shrink requests are answered by the initializer");
    return this.requests.shrink(req);
  }

  // ------------------------------------------------------------------------------- start-up

  async start(): Promise<void> {
    log.info("phase_1", "|~~ INIT PHASE I: Application is created! ~~|");
    const net = this.net;
    const controlAddr = this.isInitializer ? this.cfg.control! : this.cfg.myControl;
    const dataAddr = this.isInitializer ? this.cfg.data! : this.cfg.myData;
    const controlServer = await net.control.listen(controlAddr.host, controlAddr.port, (link) => this.acceptControl(link));
    this.myControlServer = controlServer;
    const dataServer = await net.data.listen(dataAddr.host, dataAddr.port, (link) => this.acceptData(link));
    this.servers.push(controlServer, dataServer);
    if (this.cfg.external) {
      const ext = this.externalHost();
      const secret = this.cfg.secret;
      this.servers.push(
        await startExternalServer(this.name, this.cfg.external, net.external, (ty, p, r, c, proof) => answerExternal(ext, ty, p, r, c, proof), { secret, stats: this.externalStats }),
      );
    }
    if (this.isInitializer) {
      for (const s of this.cfg.sources) {
        const input = this.res?.resilience.inputLog;
        const src = new Source(
          s.name ?? this.cfg.app.source.name,
          s,
          net.io,
          (b, st, e) => this.dataflow.ingest(b, st, e),
          () => this.pressure.check(),
          input ? (framed, n) => input.append(framed, n) : undefined,
          this.clock,
          this.dataflow,
        );
        await src.listen();
        this.sources.push(src);
      }
    }
    if (this.cfg.out) this.sink.start();
    const host = this.cfg.advertiseHost ?? controlAddr.host;
    this.membershipState.adopt([{ id: this.isInitializer ? 0 : -1, name: this.name, host, controlPort: controlServer.port, dataPort: dataServer.port }]);
    const ctl = formatHostPort({ host: controlAddr.host, port: controlServer.port });
    const dat = formatHostPort({ host: dataAddr.host, port: dataServer.port });
    log.info("listening", `${this.name} control: listening on ${ctl}; data: listening on ${dat}`, { control: ctl, data: dat });
    if (this.isInitializer) {
      this.startAsInitializer();
      this.startedResolve();
    } else if (this.res?.resilience.memberId !== undefined) await this.res.rejoinAfterCrash();
    else if (this.cfg.role === "worker") await this.entry.register(this.cfg.control!);
    else await this.entry.join(this.cfg.join!, this.cfg.workerCount);
  }

  private startAsInitializer(): void {
    this.initializerId = 0;
    const start = this.res?.initializerStarts();
    const cluster = start?.cluster;
    this.coordinator = new Coordinator(
      {
        self: this.membershipState.self,
        cluster,
        owners: this.table.owners,
        epoch: () => this.table.epoch,
        members: () => this.membershipState.members,
        addMembers: (ms) => void this.addMembers(ms),
        send: (id, type, body) => this.peers.sendTo(id, type, body),
        applyPlan: (plan) => this.migration.apply(plan),
        complete: (members, leaving) => this.broadcastComplete(members, leaving),
        dropJoiners: (names, reason) => this.failures.dropJoiners(names, reason),
        lost: (id) => {
          for (const m of this.membershipState.others()) if (m.id !== id) this.peers.sendTo(m.id, "lost", { id });
          this.failures.lost(id);
        },
        fence: (id) => this.failures.fence(id),
        downChanged: (ids) => this.downChanged(ids),
        keysOf: (id) => this.keysAt.get(id),
        migrationStarts: () => this.res?.checkpointer?.abandon("a grow or shrink starts"),
        checkpointNow: () => this.res?.checkpointer?.now(),
        undone: () => {
          this.migration.suspend();
          for (const m of this.membershipState.others()) this.peers.sendTo(m.id, "undone", { epoch: this.table.epoch });
        },
        rollBackNow: () => this.res?.recovery.rollBackAlone(),
        giveUp: (ids) => {
          for (const id of ids) this.failures.giveUp(id);
          this.res?.recovery.giveUp(ids);
        },
        recovering: () => (this.res ? this.res.recovery.active || this.res.recovery.settling : false),
      },
      this.clock,
    );
    if (start?.commit) return this.res!.recoverAsInitializer(start.commit);
    this.formation = new Formation({
      workerCount: this.cfg.workerCount,
      clock: this.clock,
      self: () => this.membershipState.self,
      allocateId: () => this.coordinator!.allocateId(),
      refuse: refuseLink,
      form: (topology, links) => this.formAsInitializer(topology, links),
      start: (members) => {
        this.coordinator!.formed = true;
        for (const m of this.membershipState.others()) this.peers.sendTo(m.id, "start", { members: [...members] });
        this.onStart(members);
        // Checkpoint 0 is the cluster as formed, before any input (the sources were muted until
        // now, and read nothing before this turn ends): nothing to write anywhere.
        this.res?.formed();
        this.heartbeats.start();
        log.info("initialized", "Application has successfully initialized.");
        log.info("autoscale_idle", "AUTOSCALE: Waiting for new autoscale event.");
      },
      abort: (reason) => this.fatal(new UnreachableError(reason)),
    });
    this.formation.begin();
  }

  private formAsInitializer(formed: Topology, links: ReadonlyMap<number, Link>): void {
    const topology = this.res ? this.res.withCluster(formed) : formed;
    this.membershipState.adopt(topology.members);
    this.table.adopt(0, topology.epoch, topology.owners);
    for (const m of this.membershipState.others()) {
      const p = this.peers.ensure(m);
      p.control = links.get(m.id);
      p.control?.write(encodeControl("topology", topology));
    }
    void this.peers.dialAll(this.membershipState.others()).then(() => this.formation!.onConnected(this.name));
  }

  private adoptTopology(t: Topology): void {
    if (this.membershipState.selfId >= 0) return log.warn("topology_again", "Ignoring a second topology: this worker already has one");
    this.membershipState.adopt(t.members);
    this.initializerId = this.membershipState.initializerId;
    this.table.adopt(this.membershipState.selfId, t.epoch, t.owners);
    this.res?.onTopology(t);
    if (this.cfg.role === "joiner") {
      log.info("join_received", "***Received cluster information!***");
      log.info("join_joining", "AUTOSCALE: Joining Worker");
      this.entry.accepted(false);
    } else {
      // The registration link is the initializer's control link to this worker from now on.
      const link = this.entry.accepted(true);
      this.peers.ensure(this.membershipState.byId(this.initializerId)!).control = link;
      if (link && !this.control.identify(link, INITIALIZER_NAME)) log.warn("control_duplicate", "Another control connection already claims to be the initializer");
    }
    log.info("phase_2", "|~~ INIT PHASE II: Application is initialized! ~~|");
    this.heartbeats.start();
    void this.peers.dialAll(this.membershipState.others()).then(() => {
      this.peers.sendTo(this.initializerId, "connected", { name: this.name });
      if (this.cfg.role === "worker") log.info("phase_3", "|~~ INIT PHASE III: Application is ready to work! ~~|");
    });
  }

  private onStart(members: readonly Member[]): void {
    this.membershipState.commit(members);
    this.ready = true;
    log.info("phase_4", "|~~ INIT PHASE IV: Cluster is ready to work! ~~|");
    for (const s of this.sources) s.unmute();
  }

  // ------------------------------------------------------------------------------- control

  private acceptControl(link: Link): LinkHandlers {
    // Cleared on close: a closed connection must not stay reachable (with its buffers) for 10 s.
    const silent = this.closeUnlessSpoken(link, "control", () => this.control.hasSpoken(link));
    return this.control.handlers((l) => {
      this.clock.clearTimeout(silent);
      this.formation?.linkClosed(l);
      // Only the link bound to a member speaks for it: a second one claiming its name does not.
      const m = this.control.isBound(l) ? this.memberOf(l) : undefined;
      if (m) this.failures.linkLost(m.id, "control connection closed");
    });
  }

  /**
   * Who a control link speaks as (control-roles.ts). A name this cluster never admitted is a
   * stranger's, however it introduced itself; a member that left keeps its role while its
   * links linger, so its last words are judged by the handlers, not cut off.
   */
  private roleOf(link: Link): SenderRole {
    if (link === this.entry.pending) return "entry";
    const name = this.control.nameOf(link);
    if (name === undefined) return "stranger";
    if (name === INITIALIZER_NAME) return this.isInitializer ? "stranger" : "initializer";
    return this.membershipState.byName(name) || this.membershipState.hasDeparted(name) ? "member" : "stranger";
  }

  /**
   * An accepted connection must say who it is (or what it asks) within the deadline: one that
   * connects and stays silent, or trickles a frame byte by byte, holds a slot of the port's cap.
   */
  private closeUnlessSpoken(link: Link, channel: string, spoken: () => boolean): Timer {
    return this.clock.setTimeout(() => {
      if (link.closed || spoken()) return;
      log.warn("silent_connection", `Closed a ${channel} connection from ${link.remote}: nothing said within ${WORKER_LIMITS.firstFrameMs / 1000} s`);
      link.destroy();
    }, WORKER_LIMITS.firstFrameMs);
  }

  /**
   * The initializer listening on a wildcard address (without --advertise-host) tells the others
   * the address the first worker reached it at: a wildcard is nobody's address elsewhere. Only
   * before anyone has its entry in a topology; its members reached it the same way after.
   */
  private learnSelfHost(link: Link | undefined): void {
    const self = this.membershipState.self;
    if (!this.isInitializer || !link || !isWildcard(self.host) || this.membershipState.members.length > 1) return;
    const local = link.local.replace(/^::ffff:/, "");
    // A worker on this machine came over loopback: no other machine can use that address, and a
    // wildcard works for this one, so wait for a connection from elsewhere.
    if (!local || isWildcard(local) || local === "::1" || local.startsWith("127.")) return;
    log.info("advertised_host", `The initializer listens on ${self.host}; it tells the cluster it is at ${local}, where ${this.control.nameOf(link) ?? link.remote} reached it (--advertise-host to choose)`);
    this.membershipState.learnSelfHost(local);
  }

  /** A message naming its sender must come on that sender's link: one link, one member. */
  private speaksFor(link: Link, name: string, type: string): boolean {
    const own = this.control.nameOf(link);
    if (own === name) return true;
    log.warn("control_impostor", `Refused ${type} naming worker ${name} on the link of ${own ?? link.remote}`);
    return false;
  }

  /** The member a control link speaks for, if it said who it is. */
  private memberOf(link: Link): Member | undefined {
    const name = this.control.nameOf(link);
    return name ? this.membershipState.byName(name) : undefined;
  }

  /**
   * One handler per control message. Those the coordinator takes from members check that the
   * sender is a live member; which role may send the others is not checked yet (issue 11).
   */
  private controlTable(): ControlTable {
    const coordinatorOnly = <N extends ControlName>(type: N, f: (from: Member, body: ControlBody<N>) => void) => (link: Link, body: ControlBody<N>) => {
      const from = this.memberOf(link);
      if (!this.coordinator || !from) return log.warn("control_unexpected", `Ignoring ${type} from ${from?.name ?? link.remote}: only the initializer takes it from members`);
      // A member already removed (fenced) speaks for nobody, however late its words arrive.
      if (!this.peers.get(from.id)?.alive) return log.debug("control_from_removed", `Ignoring ${type} from ${from.name}, which was removed`);
      f(from, body);
    };
    // Messages of resilience that only the coordinator sends (a rollback may also come on the link
    // this worker rejoined on, before that link is bound). The role checks of the rest: issue 11.
    const fromInitializer = <N extends ControlName>(type: N, f: (body: ControlBody<N>) => void) => (link: Link, body: ControlBody<N>) => {
      const bound = this.control.nameOf(link) === INITIALIZER_NAME || (type === "rollback" && link === this.entry.pending);
      if (this.isInitializer || !bound) return log.warn("control_unexpected", `Ignoring ${type} from ${this.control.nameOf(link) ?? link.remote}: only the initializer sends it`);
      f(body);
    };
    const fromMember = <N extends ControlName>(type: N, f: (from: Member, body: ControlBody<N>) => void) => (link: Link, body: ControlBody<N>) => {
      const from = this.memberOf(link);
      // Not silently: a link nobody bound once dropped every answer to the initializer's key counts.
      if (!from) return log.debug("control_unexpected", `Ignoring ${type} from ${this.control.nameOf(link) ?? link.remote}: the connection does not speak for a member`);
      f(from, body);
    };
    return {
      hello: (link, b) => {
        if (!this.control.identify(link, b.name)) {
          log.warn("control_duplicate", `A second control connection claims to be worker ${b.name} (${link.remote}); closed it`);
          return link.destroy();
        }
        // Only the coordinator knows every member the moment it admits one: a worker it does not
        // know was removed, or its join was abandoned, and must stop rather than wait for ever.
        // (A restarted initializer has no formation: its cluster formed long ago.)
        if (this.coordinator && (this.formation?.formed ?? true) && !this.membershipState.byName(b.name)) {
          log.warn("not_a_member", `Worker ${b.name} connected but is not a member of the cluster; telling it to stop`);
          link.write(encodeControl("shutdown", { reason: "This worker is not a member of the cluster (it was removed, or its join was abandoned)." }));
          link.end();
        }
      },
      register: (link, b) => {
        if (!this.formation)
          return refuseLink(link, this.coordinator ? "The cluster is already formed; start the worker with --join to add it to a running cluster." : "Only the initializer accepts registrations.");
        if ((b.resilient ?? false) !== (this.res !== undefined))
          return refuseLink(
            link,
            this.res ? "This cluster runs with resilience: start every worker with --resilience-dir (or --run-with-resilience) too." : "This cluster runs without resilience: start the worker without --resilience-dir.",
          );
        // Bound only once accepted: a refused duplicate must not speak for the worker it named.
        const other = this.control.linkOf(b.name);
        if (other && other !== link) return refuseLink(link, `Worker name ${b.name} is already registered with the cluster.`);
        // Before onRegister: the last registration forms the cluster, topology and all, at once.
        this.learnSelfHost(link);
        if (this.formation.onRegister(link, b, reachableHost(link, b.host))) this.control.identify(link, b.name);
      },
      refused: (_l, b) => this.fatal(new RefusedError(this.cfg.role === "joiner" ? `Join Error: ${b.reason}` : `Registration refused: ${b.reason}`)),
      topology: (_l, b) => this.adoptTopology(b),
      connected: (l, b) => {
        if (!this.speaksFor(l, b.name, "connected")) return;
        if (this.formation && !this.formation.formed) this.formation.onConnected(b.name);
        else this.coordinator?.onConnected(b.name);
      },
      start: (_l, b) => this.onStart(b.members),
      join: (link, b) => {
        this.learnSelfHost(link);
        this.requests.join(link, b);
      },
      tryJoin: coordinatorOnly("tryJoin", (from, b) => {
        this.learnSelfHost(this.control.linkOf(from.name));
        this.requests.relayedJoin(from, b);
      }),
      joinReply: (_l, b) => this.relays.settle(b.reqId, b),
      addWorkers: (_l, b) => void this.addMembers(b.members),
      plan: (_l, b) => {
        // Unready before anything is handed over: an orchestrator stops sending work here first.
        if (!this.leaving && b.leaving?.includes(this.selfId)) {
          this.leaving = true;
          log.info("leaving_started", "AUTOSCALE: this worker leaves the cluster: handing its slots over (readiness: not ready)");
        }
        this.migration.apply(b);
      },
      slotsInstalled: coordinatorOnly("slotsInstalled", (_f, b) => this.coordinator!.onInstalled(b)),
      complete: (_l, b) => this.onComplete(b.members, b.leaving),
      tryShrink: coordinatorOnly("tryShrink", (from, b) => this.requests.relayedShrink(from, b)),
      shrinkReply: (_l, b) => this.relays.settle(b.reqId, b),
      keyCountReq: fromMember("keyCountReq", (from, b) =>
        this.peers.sendTo(from.id, "keyCountReply", { reqId: b.reqId, name: this.name, counts: this.dataflow.state.slotCounts(this.table.ownedSlots()) }),
      ),
      keyCountReply: (l, b) => this.speaksFor(l, b.name, "keyCountReply") && this.keyCounts.collect(b),
      // On the initializer: a member asks it to stop the cluster (an operator asked that member).
      // On the initializer: a member asks it to stop the cluster (an operator asked that member).
      shutdown: (_l, b) => void this.shutdown(this.isInitializer, b.reason),
      abortJoin: (_l, b) => this.failures.forget(b.names),
      lost: (_l, b) => this.failures.lost(b.id),
      pressure: coordinatorOnly("pressure", (from, b) => this.pressure.memberHeld(from.id, b.high)),
      linkLost: coordinatorOnly("linkLost", (from, b) => {
        // Seen before a rollback the coordinator has since made, or before the one that took the
        // member back (a local recovery leaves the floor): about a member's earlier incarnation.
        const about = this.membershipState.byId(b.id)?.name;
        const since = Math.max(this.floor, about === undefined ? 0 : this.failures.admittedAt(about));
        if (b.epoch !== undefined && b.epoch < since) return log.debug("stale_report", `Ignoring ${from.name}'s report about worker ${b.id} from epoch ${b.epoch}`);
        this.failures.reported(from, b.id);
      }),
      heartbeat: fromMember("heartbeat", (from, b) => {
        if (this.isInitializer) this.keysAt.set(from.id, b.keys);
      }),
      down: fromInitializer("down", (b) => {
        this.downNames = [...b.names];
        if (b.names.length > 0 && b.epoch !== undefined) this.res?.discardUntilRollback(b.epoch);
      }),
      barrierDone: coordinatorOnly("barrierDone", (from, b) => this.res?.checkpointer?.onRoundDone(from.id, b.k, b.round)),
      snapshot: fromInitializer("snapshot", (b) => void this.res?.resilience.snapshot(b.k)),
      snapshotCaptured: coordinatorOnly("snapshotCaptured", (from, b) => this.res?.checkpointer?.onCaptured(from.id, b.k)),
      snapshotWritten: coordinatorOnly("snapshotWritten", (from, b) => this.res?.checkpointer?.onWritten(from.id, b.k, b.slots, b.bytes, b.failed)),
      committed: fromInitializer("committed", (b) => this.res?.onCommitted(b.k)),
      rollback: fromInitializer("rollback", (b) => {
        this.leaving = false;
        this.res?.onRollback(b);
      }),
      rolledBack: coordinatorOnly("rolledBack", (from, b) => this.res?.recovery.onRolledBack(from.id, b.k, b.epoch)),
      rollbackLinked: coordinatorOnly("rollbackLinked", (from, b) => this.res?.recovery.onLinked(from.id, b.k, b.epoch)),
      rejoin: (link, b) => (this.res ? this.res.onRejoin(link, b) : refuseLink(link, "Only a resilient cluster's initializer takes members back after a crash.")),
      undone: fromInitializer("undone", () => {
        // A leaver of an undone shrink stays a member.
        this.leaving = false;
        this.migration.suspend();
      }),
      rotateLog: fromMember("rotateLog", (from, b) => {
        if (b.name === this.name) rotateHere(this.name, this.writableInputLog());
        else log.warn("rotate_unknown", `RotateLog from ${from.name} names ${b.name}, not this worker; nothing rotated`);
      }),
      statusReq: fromMember("statusReq", (from, b) => this.peers.sendTo(from.id, "statusReply", { reqId: b.reqId, name: this.name, status: this.statusReport() })),
      statusReply: (l, b) => this.speaksFor(l, b.name, "statusReply") && this.statuses.collect(b.reqId, b.name, b.status),
    };
  }

  /** Coordinator: the members that are down changed; the sources pause while any is, and everyone is told. */
  private downChanged(ids: readonly number[]): void {
    this.pressure.setDown(ids);
    if (ids.length > 0) this.res?.checkpointer?.abandon("a member is down");
    // A local recovery's survivors keep applying what reaches them: nothing replays it.
    const local = this.res?.recovery.downNow(ids) ?? false;
    if (ids.length > 0 && !local) this.res?.discardUntilRollback(this.table.epoch);
    for (const id of ids) if (!this.downIds.has(id)) this.res?.recovery.onDown(id);
    this.downIds = new Set(ids);
    const names = ids.map((id) => this.membershipState.byId(id)?.name ?? String(id));
    if (names.join() !== this.downNames.join()) {
      this.downNames = names;
      // The epoch tells the members to discard what they receive until the rollback.
      for (const p of this.peers.live()) p.sendControl("down", { names, ...(this.res && names.length > 0 && !local ? { epoch: this.table.epoch } : {}) });
    }
    if (names.length > 0) this.upSaid = false;
    // Said when the sources do resume: a give-up leaves nobody down, but its rollback and replay
    // still hold them (the recovery's end calls this again).
    else if (!this.upSaid && !(this.res?.recovery.active ?? false)) {
      this.upSaid = true;
      log.info("members_up", "No member is down: the sources resume.");
    }
  }

  /** Members the coordinator says are down. */
  get down(): readonly string[] {
    return this.downNames;
  }

  // ---------------------------------------------------------------------------------- peers

  private async addMembers(ms: readonly Member[]): Promise<void> {
    this.membershipState.add(ms);
    await this.peers.dialAll(ms.filter((m) => m.id !== this.selfId));
    if (this.isInitializer) this.coordinator!.onConnected(this.name);
    else this.peers.sendTo(this.initializerId, "connected", { name: this.name });
  }

  // -------------------------------------------------------------------------- autoscale end

  private broadcastComplete(members: readonly Member[], leaving: readonly string[]): void {
    for (const m of this.membershipState.others()) this.peers.sendTo(m.id, "complete", { members: [...members], leaving: [...leaving] });
    this.onComplete(members, leaving);
  }

  private onComplete(members: readonly Member[], leaving: readonly string[]): void {
    if (leaving.includes(this.name)) return void this.leave();
    this.membershipState.commit(members);
    // Leavers close their connections once their sink is flushed; ours to them close a little
    // later so a leaver never mistakes our close for a failure while it is still leaving.
    for (const m of this.membershipState.remove((x) => leaving.includes(x.name))) this.failures.letGo(m, WORKER_LIMITS.leaverLingerMs);
    if (this.cfg.role === "joiner" && !this.ready) {
      this.ready = true;
      log.info("phase_4", "|~~ INIT PHASE IV: Cluster is ready to work! ~~|");
    }
    for (const n of leaving) log.info("leaver_done", `Leaving worker ${n} reported migration complete`);
    log.info("autoscale_complete", "AUTOSCALE: Autoscale is complete.", { members: members.map((m) => m.name), epoch: this.table.epoch });
  }

  private async leave(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    assert(this.table.ownedSlots().length === 0, "a leaving worker must own no slot");
    log.info("leaving", "AUTOSCALE: Shutting down.");
    await this.closeEverything();
    // No longer a member: nothing to recover.
    this.res?.destroy();
    this.exitResolve(0);
  }

  // ---------------------------------------------------------------------------------- data

  private acceptData(link: Link): LinkHandlers {
    const inb = new InboundData(link, {
      clock: this.clock,
      statsOf: (name) => {
        let st = this.inboundStats.get(name);
        if (st) return st;
        // Bounded by the members: those gone by now take their series with them.
        for (const [n, gone] of this.inboundStats) {
          if (this.membershipState.byName(n)) continue;
          this.recordsFromGone += gone.records;
          this.inboundStats.delete(n);
        }
        this.inboundStats.set(name, (st = newInboundStats()));
        return st;
      },
      dataflow: this.dataflow,
      migration: this.migration,
      pausedForSink: () => this.pressure.inboundPausedForSink,
      afterChunk: () => this.pressure.check(),
      lost: (id) => this.failures.linkLost(id, "data connection closed"),
      refused: (name, id) => this.failures.refuses(name, id),
      barrier: (from, k, round, on) => this.res?.onBarrier(from, k, round, on),
      floor: () => this.floor,
      admittedAt: (name) => this.failures.admittedAt(name),
      mayClaim: (c) => this.mayClaimData(c),
      isMember: (id, name) => this.membershipState.byId(id)?.name === name || this.membershipState.hasDeparted(name),
    });
    this.inbound.add(inb);
    const silent = this.closeUnlessSpoken(link, "data", () => inb.sender() !== -1);
    return {
      data: (_l, chunk) => inb.onChunk(chunk),
      close: () => {
        this.clock.clearTimeout(silent);
        this.inbound.delete(inb);
        inb.onClose();
      },
    };
  }

  private mayClaimData(c: InboundData): boolean {
    const known = this.membershipState.byId(c.sender());
    // A joiner's id may not be known here yet; a known id under another name is someone else's.
    if (known && known.name !== c.senderName) return false;
    for (const o of this.inbound) {
      if (o === c || o.link.closed || o.sender() !== c.sender()) continue;
      // The earlier link belongs to an incarnation before the rollback that took the sender back:
      // it is on its way out, and the new one speaks for the sender now.
      if (o.helloAt < this.failures.admittedAt(c.senderName) && c.helloAt >= this.failures.admittedAt(c.senderName)) continue;
      return false;
    }
    return true;
  }

  private reportInstalled(epoch: number, slots: number[], keys: number, bytes: number): void {
    const body = { epoch, slots, keys, bytes };
    if (this.isInitializer) this.coordinator!.onInstalled(body);
    else this.peers.sendTo(this.initializerId, "slotsInstalled", body);
  }

  // ------------------------------------------------------------------------------ external

  private externalHost(): ExternalHost {
    return {
      name: this.name,
      dataflow: this.dataflow,
      stageNames: this.dataflow.state.statefulStages.map((i) => this.cfg.app.stages[i]!.name),
      parallelStages: this.cfg.app.stages.flatMap((st, i) => (st.kind === "map" && st.parallel ? [[st.name, i] as const] : [])),
      selfId: () => this.selfId,
      sourceNames: () => this.sources.map((s) => s.name),
      isReady: () => this.ready,
      isStopping: () => this.stopping,
      down: () => this.downNames,
      committed: () => this.membershipState.committed,
      coordinates: () => this.coordinator !== undefined,
      ownedSlots: () => this.table.ownedSlots(),
      shrinkHere: (r) => this.requests.shrink(r),
      relayShrink: (r) => this.requests.relayShrink(r),
      clusterKeyCounts: (reply) =>
        this.keyCounts.gather(
          this.name,
          this.dataflow.state.slotCounts(this.table.ownedSlots()),
          this.membershipState.committed.filter((m) => m.id !== this.selfId),
          reply,
        ),
      workersStatus: (finish) =>
        this.statuses.gather(
          this.name,
          this.statusReport(),
          this.membershipState.committed.filter((m) => m.id !== this.selfId),
          (answers, missing) => finish([...answers.values()], missing),
        ),
      inputLog: () => this.writableInputLog(),
      forwardRotate: (name) => {
        const m = this.membershipState.byName(name);
        return m !== undefined && this.peers.sendTo(m.id, "rotateLog", { name });
      },
      status: () => this.reportedStatus(),
      shutdown: (reason) => void this.shutdown(true, reason),
      secured: this.cfg.secret !== undefined,
    };
  }

  /** The input log while it is open (a stopping worker has closed or removed it). */
  private writableInputLog() {
    return this.stopping ? undefined : this.res?.resilience.inputLog;
  }

  /** The status line ReportStatus logs (external-requests.ts `statusLine`). */
  private reportedStatus(): ReportedStatus {
    return {
      name: this.name,
      processing: this.ready && !this.stopping && this.downNames.length === 0,
      members: this.membership,
      down: this.downNames,
      slots: this.table.ownedSlots().length,
      keys: this.dataflow.state.totalKeys(),
      epoch: this.table.epoch,
      connected: [...this.peers.live()].length,
      ...(this.coordinator ? { autoscale: this.coordinator.phaseKind } : {}),
      ...(this.res?.checkpointer ? { checkpoint: this.res.checkpointer.lastCommitted } : {}),
    };
  }

  // ------------------------------------------------------------------------------ metrics

  private observed(): ObservedWorker {
    return {
      name: this.name,
      role: this.cfg.role,
      app: this.cfg.app,
      clock: this.clock,
      dataflow: this.dataflow,
      sink: this.sink,
      migration: this.migration,
      table: this.table,
      peers: this.peers,
      pressure: this.pressure,
      sources: () => this.sources,
      inbound: () => this.inboundStats,
      recordsFromGone: () => this.recordsFromGone,
      coordinator: () => this.coordinator,
      committed: () => this.membershipState.committed,
      down: () => this.downNames,
      isReady: () => this.ready,
      isStopping: () => this.stopping,
      isLeaving: () => this.leaving,
      resilience: () => this.res,
      controlMalformed: () => this.control.malformed,
      external: () => (this.cfg.external ? this.externalStats : undefined),
    };
  }

  /** Every series of this worker in the Prometheus text format (`/metrics`). */
  metricsText(): string {
    this.metricsRegistry ??= workerMetrics(this.observed());
    return this.metricsRegistry.text();
  }

  /** What this worker says about itself (`/status`). */
  statusReport(): WorkerStatus {
    return workerStatus(this.observed());
  }

  /** What `/readyz` answers. */
  readiness(): { ready: boolean; why?: string } {
    return readiness(this.observed());
  }

  // ------------------------------------------------------------------------------ shutdown

  /** Cluster-wide clean shutdown: tell every peer (when it started here), flush, exit 0. */
  async shutdown(initiate: boolean, reason?: string, how: { alone?: boolean; keepFiles?: boolean } = {}): Promise<void> {
    if (this.stopping) return;
    // Only the initializer tells every member, and closes its links only once they closed
    // theirs: a member busy writing a checkpoint reads its sockets in no set order, and would
    // take the initializer's closed data link for a crash before it read the shutdown (it then
    // waited for the initializer to come back). A member asks the initializer to do it.
    if (initiate && !this.isInitializer && !how.alone) return this.askShutdown(reason);
    if (initiate && !how.alone) for (const p of this.peers.live()) p.sendControl("shutdown", { reason });
    this.stopping = true;
    if (reason && !initiate) log.info("shutdown", `Shutting down: ${reason}`);
    else log.info("shutdown", "Shutting down cleanly");
    await this.closeEverything(initiate && this.isInitializer);
    // A clean shutdown of the cluster leaves nothing to recover (as the original): only a crash
    // keeps the files. A member that stops without the initializer keeps them too: the cluster
    // is not stopping, and this member is still one of it.
    if (how.keepFiles && this.res) {
      log.warn("files_kept", `${this.name} stops without the initializer: its resilience files stay, and it recovers from them when started again with its command line`);
      this.res.close();
    } else this.res?.destroy();
    this.exitResolve(this.cfg.role === "joiner" && !this.ready && reason ? 1 : 0);
  }

  /**
   * A member asked to stop the cluster asks the initializer. Without the initializer (down, or
   * no answer in time) it stops alone and keeps its files: the cluster is not stopping, and
   * telling the other members from here would take down a cluster that is waiting to recover.
   */
  private askShutdown(reason: string | undefined): void {
    if (this.shutdownAsked) return;
    if (!this.peers.sendTo(this.initializerId, "shutdown", { reason })) return void this.shutdown(true, reason, { alone: true, keepFiles: true });
    this.shutdownAsked = true;
    log.info("shutdown_asked", "Asked the initializer to shut the cluster down");
    this.clock.setTimeout(() => {
      if (this.stopping) return;
      log.warn("shutdown_alone", `The initializer did not shut the cluster down within ${WORKER_LIMITS.shutdownRelayMs} ms: stopping this worker alone`);
      void this.shutdown(true, reason, { alone: true, keepFiles: true });
    }, WORKER_LIMITS.shutdownRelayMs);
  }

  private async closeEverything(waitForPeers = false): Promise<void> {
    this.entry.stop();
    this.relays.failAll("This worker is stopping.");
    for (const s of this.sources) s.stop();
    this.peers.flushAll();
    if (this.cfg.out) await this.sink.close(WORKER_LIMITS.sinkFlushMs);
    if (waitForPeers) {
      const until = this.clock.now() + WORKER_LIMITS.shutdownPeersMs;
      while (!this.peers.live().next().done && this.clock.now() < until) await this.clock.sleep(10);
    }
    // Heartbeats until then: a member that has not read the shutdown yet must not count this one lost.
    this.heartbeats.stop();
    this.peers.closeAll();
    // One more turn for the closes to reach the transport before the listeners go.
    await this.clock.sleep(20);
    for (const s of this.servers) s.stop();
  }

  /** Stops this worker with the error's exit code (a refusal, an unreachable cluster…). */
  private fatal(err: WallarooError): void {
    if (this.stopping) return;
    this.stopping = true;
    log.error("fatal", err.message);
    // A worker that cannot go on applies nothing more: the cluster has moved, or will move, on without it.
    for (const inb of [...this.inbound]) inb.link.destroy();
    void this.closeEverything().finally(() => {
      this.res?.close();
      this.exitResolve(err.exitCode);
    });
  }
}
