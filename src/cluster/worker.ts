// One worker process: its listeners, its peers, its dataflow, and its part in formation, join,
// shrink and shutdown. The initializer additionally runs the Coordinator and the sources.
import type { HostPort, SourceAddress } from "../address.ts";
import { formatHostPort } from "../address.ts";
import type { AppSpec } from "../app/types.ts";
import { assert } from "../assert.ts";
import { systemClock, type Clock, type Timer } from "../clock.ts";
import { CONTROL_MAX_FRAME, decodeControl, encodeControl, type ControlBody, type ControlMessage, type ControlName, type Member } from "../codec/control.ts";
import { EXTERNAL_MSG, encodeShrinkQueryResponse } from "../codec/external.ts";
import { FrameReader } from "../codec/frame.ts";
import { RefusedError, UnreachableError, WallarooError } from "../errors.ts";
import { log } from "../log.ts";
import type { Link, LinkHandlers, Server, Transport } from "../net/transport.ts";
import { Dataflow, SLOT_STATUS, type Router } from "../runtime/dataflow.ts";
import { startExternalServer } from "../runtime/external-server.ts";
import { Sink } from "../runtime/sink.ts";
import { Source } from "../runtime/source.ts";
import { Coordinator } from "./coordinator.ts";
import { answerExternal, ClusterKeyCounts, slotKeyCounts, type ExternalHost } from "./external-requests.ts";
import { InboundData, type InboundHost } from "./inbound-data.ts";
import { Migration } from "./migration.ts";
import { Peer } from "./peer.ts";
import { SLOT_COUNT, initialOwners } from "./slots.ts";

export const INITIALIZER_NAME = "initializer";

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
  transport: Transport;
  /** Defaults to the system clock; the simulation passes a virtual one. */
  clock?: Clock;
  /** Overrides HELD_LIMITS (the simulation uses tiny ones to exercise the pause). */
  heldLimits?: { high: number; low: number };
}

/**
 * Messages for a slot whose state is still in transit wait at its new owner. Above `high` of
 * them the cluster's sources pause until they fall below `low`: the queue is then bounded by
 * `high` plus what was already on its way (itself bounded by the links' high-water marks). The
 * state that releases them travels on data connections, which this never pauses.
 */
export const HELD_LIMITS = { high: 65_536, low: 16_384 } as const;

const DIAL_TIMEOUT_MS = 2000;
const STARTUP_DEADLINE_MS = 60_000;
const JOIN_REACH_ATTEMPTS = 3;
const JOIN_ANSWER_DEADLINE_MS = 120_000;
const RELAY_DEADLINE_MS = 15_000;
const LEAVER_LINGER_MS = 10_000;

export class Worker implements Router {
  readonly isInitializer: boolean;
  private readonly clock: Clock;
  private readonly keyCounts: ClusterKeyCounts;
  selfId = -1;
  initializerId = 0;
  readonly owners = new Int32Array(SLOT_COUNT).fill(-1);
  readonly dataflow: Dataflow;
  readonly migration: Migration;
  readonly sink: Sink;
  private readonly sources: Source[] = [];
  private readonly servers: Server[] = [];
  private readonly peers = new Map<number, Peer>();
  /** Every known member in cluster order, joiners included once announced. */
  private members: Member[] = [];
  /** The membership the cluster has committed to (what status reports). */
  private committed: Member[] = [];
  private self!: Member;
  private coordinator: Coordinator | undefined;
  private ready = false;
  private stopping = false;
  private readonly inbound = new Set<InboundData>();
  private readonly inboundHost: InboundHost;
  private inboundPausedForSink = false;
  private readonly heldLimits: { high: number; low: number };
  /** This worker's held queue is above its high mark (and has not yet fallen below low). */
  private heldHigh = false;
  /** Initializer: members whose held queue is high; the sources stay paused while any is. */
  private readonly heldHighAt = new Set<number>();
  /** Times the sources paused for a held queue (initializer), for tests and counters. */
  heldPauses = 0;
  private nextReqId = 1;
  private readonly relays = new Map<number, { resolve: (b: any) => void; timer: Timer }>();
  private myControlServer: Server | undefined;
  private myDataServer: Server | undefined;
  private exitResolve!: (code: number) => void;
  readonly exited = new Promise<number>((r) => (this.exitResolve = r));

  constructor(private readonly cfg: WorkerConfig) {
    this.isInitializer = cfg.role === "initializer";
    this.clock = cfg.clock ?? systemClock;
    this.keyCounts = new ClusterKeyCounts(this.clock, (id, reqId) => this.sendTo(id, "keyCountReq", { reqId }));
    this.heldLimits = cfg.heldLimits ?? HELD_LIMITS;
    assert(this.heldLimits.low < this.heldLimits.high, "held low mark must be below the high mark");
    const outAddr = cfg.out;
    this.sink = new Sink(outAddr ?? { host: "127.0.0.1", port: 0 }, cfg.transport, this.clock);
    this.sink.onWritable = () => this.checkPressure();
    this.dataflow = new Dataflow(cfg.app, this, this.sink);
    this.migration = new Migration({
      selfId: 0,
      owners: this.owners,
      dataflow: this.dataflow,
      peer: (id) => this.peers.get(id),
      flushAllPeers: () => this.flushAllPeers(),
      reportInstalled: (epoch, slots, keys, bytes) => this.reportInstalled(epoch, slots, keys, bytes),
      epochAdvanced: (epoch) => this.epochAdvanced(epoch),
    });
    this.inboundHost = {
      dataflow: this.dataflow,
      migration: this.migration,
      memberId: (name) => this.members.find((x) => x.name === name)?.id ?? -1,
      pausedForSink: () => this.inboundPausedForSink,
      afterChunk: () => this.checkPressure(),
      lost: (id) => this.peerLost(id, "data connection closed"),
    };
  }

  get name(): string {
    return this.cfg.name;
  }

  /** The committed membership in cluster order (what status reports). */
  get membership(): string[] {
    return this.committed.map((m) => m.name);
  }

  get isReady(): boolean {
    return this.ready;
  }

  /** True while the coordinator runs an autoscale event (initializer only). */
  get autoscaling(): boolean {
    return this.coordinator?.busy ?? false;
  }

  /** The epoch of the routing table this worker has applied. */
  get epoch(): number {
    return this.migration.epoch;
  }

  /** The coordinator's phase (initializer only): idle, waitingForJoiners, connecting, migrating. */
  get coordinatorPhase(): string | undefined {
    return this.coordinator?.phaseKind;
  }

  /** The port this worker's control channel listens on (joiners may contact it). */
  get controlPort(): number {
    return this.myControlServer?.port ?? 0;
  }

  /** A shrink request as the external channel would make it, answered here (initializer only). */
  shrink(req: { query: boolean; names: readonly string[]; count: number }): { type: number; payload: string } {
    assert(this.coordinator !== undefined, "shrink requests are answered by the initializer");
    return this.shrinkHere(req);
  }

  // ------------------------------------------------------------------------------- start-up

  async start(): Promise<void> {
    log.info("phase_1", "|~~ INIT PHASE I: Application is created! ~~|");
    const t = this.cfg.transport;
    const controlAddr = this.isInitializer ? this.cfg.control! : this.cfg.myControl;
    const dataAddr = this.isInitializer ? this.cfg.data! : this.cfg.myData;
    this.myControlServer = await t.listen(controlAddr.host, controlAddr.port, (link) => this.acceptControl(link));
    this.myDataServer = await t.listen(dataAddr.host, dataAddr.port, (link) => this.acceptData(link));
    this.servers.push(this.myControlServer, this.myDataServer);
    if (this.cfg.external) {
      const ext = this.externalHost();
      this.servers.push(await startExternalServer(this.name, this.cfg.external, t, (ty, p, r) => answerExternal(ext, ty, p, r)));
    }
    if (this.isInitializer) {
      for (const s of this.cfg.sources) {
        const src = new Source(s.name ?? this.cfg.app.source.name, s, t, (b, st, e) => this.dataflow.ingest(b, st, e), () => this.checkPressure());
        await src.listen();
        this.sources.push(src);
      }
    }
    if (this.cfg.out) this.sink.start();
    this.self = {
      id: 0,
      name: this.name,
      host: controlAddr.host,
      controlPort: this.myControlServer.port,
      dataPort: this.myDataServer.port,
    };
    const ctl = formatHostPort({ host: controlAddr.host, port: this.myControlServer.port });
    const dat = formatHostPort({ host: dataAddr.host, port: this.myDataServer.port });
    log.info("listening", `${this.name} control: listening on ${ctl}; data: listening on ${dat}`, { control: ctl, data: dat });
    if (this.isInitializer) this.startAsInitializer();
    else if (this.cfg.role === "worker") await this.register();
    else await this.joinCluster();
  }

  private startAsInitializer(): void {
    this.selfId = 0;
    this.initializerId = 0;
    (this.migration as any).host.selfId = 0;
    this.members = [this.self];
    this.coordinator = new Coordinator({
      self: this.self,
      owners: this.owners,
      epoch: () => this.migration.epoch,
      members: () => this.members,
      addMembers: (ms) => void this.addMembers(ms),
      send: (id, type, body) => this.sendTo(id, type, body),
      applyPlan: (plan) => this.migration.apply(plan),
      complete: (members, leaving) => this.broadcastComplete(members, leaving),
      dropJoiners: (names, reason) => this.dropJoiners(names, reason),
      lost: (id) => {
        for (const m of this.members) if (m.id !== this.selfId && m.id !== id) this.sendTo(m.id, "lost", { id });
        this.onLost(id);
      },
    }, this.clock);
    if (this.cfg.workerCount === 1) this.formCluster([]);
    else log.info("waiting_workers", `Waiting for ${this.cfg.workerCount - 1} workers to register`);
  }

  // Initializer: collects registrations, then sends everyone the topology.
  private readonly registrations: Array<{ member: Member; link: Link }> = [];

  private onRegister(link: Link, body: ControlBody<"register">): void {
    const refuse = (reason: string) => {
      log.warn("register_refused", `Refused worker ${body.name}: ${reason}`);
      link.write(encodeControl("refused", { reason }));
      link.end();
    };
    if (this.coordinator!.formed || this.registrations.length >= this.cfg.workerCount - 1)
      return refuse("The cluster is already formed; start the worker with --join to add it to a running cluster.");
    if (body.name === INITIALIZER_NAME || this.registrations.some((r) => r.member.name === body.name))
      return refuse(`Worker name ${body.name} is already registered with the cluster.`);
    const host = body.host === "0.0.0.0" || body.host === "::" ? link.remote.replace(/:\d+$/, "") : body.host;
    const member: Member = { id: this.coordinator!.allocateId(), name: body.name, host, controlPort: body.controlPort, dataPort: body.dataPort };
    (link as any).peerName = body.name;
    this.registrations.push({ member, link });
    log.info("worker_registered", `Worker ${body.name} registered (${this.registrations.length}/${this.cfg.workerCount - 1})`);
    if (this.registrations.length === this.cfg.workerCount - 1) {
      log.info("control_identified", "All worker control channels identified");
      this.formCluster(this.registrations);
    }
  }

  private formCluster(regs: Array<{ member: Member; link: Link }>): void {
    this.members = [this.self, ...regs.map((r) => r.member)];
    const owners = initialOwners(this.members.map((m) => m.id));
    this.owners.set(owners);
    this.migration.epoch = 1;
    this.markOwned();
    const topology = { members: this.members, epoch: 1, owners };
    for (const r of regs) {
      const p = new Peer(r.member, () => this.migration.epoch);
      p.control = r.link;
      this.peers.set(r.member.id, p);
      r.link.write(encodeControl("topology", topology));
    }
    this.pendingConnected = new Set(this.members.map((m) => m.name));
    void this.dialAll(this.members).then(() => this.onConnectedMsg(this.name));
  }

  private pendingConnected: Set<string> | undefined;

  private onConnectedMsg(name: string): void {
    if (this.pendingConnected) {
      this.pendingConnected.delete(name);
      if (this.pendingConnected.size === 0) {
        this.pendingConnected = undefined;
        log.info("topology_ready", `All ${this.members.length} workers reporting Topology ready!`);
        this.coordinator!.formed = true;
        for (const m of this.members) if (m.id !== this.selfId) this.sendTo(m.id, "start", { members: this.members });
        this.onStart(this.members);
        log.info("initialized", "Application has successfully initialized.");
        log.info("autoscale_idle", "AUTOSCALE: Waiting for new autoscale event.");
      }
      return;
    }
    this.coordinator?.onConnected(name);
  }

  /** Worker: dials the initializer until it answers, registers, waits for the topology. */
  private async register(): Promise<void> {
    const init = this.cfg.control!;
    const deadline = this.clock.now() + STARTUP_DEADLINE_MS;
    let delay = 100;
    for (;;) {
      try {
        const link = await this.cfg.transport.connect(init.host, init.port, this.controlHandlers(), DIAL_TIMEOUT_MS);
        link.write(encodeControl("register", { name: this.name, host: this.self.host, controlPort: this.self.controlPort, dataPort: this.self.dataPort }));
        this.registrationLink = link;
        log.info("registering", `Registering with the initializer at ${formatHostPort(init)}`);
        return;
      } catch (err) {
        if (this.clock.now() + delay > deadline) throw new UnreachableError(`Could not reach the initializer at ${formatHostPort(init)} within ${STARTUP_DEADLINE_MS / 1000} s: ${(err as Error).message}`);
        log.debug("register_retry", `initializer at ${formatHostPort(init)} not up yet (${(err as Error).message}); retrying in ${delay} ms`);
        await this.clock.sleep(delay);
        delay = Math.min(delay * 2, 1000);
      }
    }
  }

  private registrationLink: Link | undefined;

  /** Joiner: contacts any member, waits for acceptance (or refusal), then connects to everyone. */
  private async joinCluster(): Promise<void> {
    const addr = this.cfg.join!;
    log.info("join_preparing", "New worker preparing to join cluster");
    let link: Link | undefined;
    let lastErr = "";
    for (let i = 0; i < JOIN_REACH_ATTEMPTS && !link; i++) {
      try {
        link = await this.cfg.transport.connect(addr.host, addr.port, this.controlHandlers(), DIAL_TIMEOUT_MS);
      } catch (err) {
        lastErr = (err as Error).message;
        await this.clock.sleep(500 * (i + 1));
      }
    }
    if (!link) throw new UnreachableError(`Join Error: could not reach a cluster member at ${formatHostPort(addr)} (${lastErr}).`);
    this.registrationLink = link;
    link.write(encodeControl("join", { name: this.name, count: this.cfg.workerCount, host: this.self.host, controlPort: this.self.controlPort, dataPort: this.self.dataPort }));
    this.joinTimer = this.clock.setTimeout(() => this.fatal(new UnreachableError(`Join Error: no answer from ${formatHostPort(addr)} within ${JOIN_ANSWER_DEADLINE_MS / 1000} s.`)), JOIN_ANSWER_DEADLINE_MS);
  }

  private joinTimer: Timer | undefined;

  private adoptTopology(t: ControlBody<"topology">): void {
    if (this.joinTimer) this.clock.clearTimeout(this.joinTimer);
    const me = t.members.find((m) => m.name === this.name);
    assert(me, "the topology must name this worker");
    this.selfId = me.id;
    (this.migration as any).host.selfId = me.id;
    this.self = { ...this.self, id: me.id };
    this.initializerId = t.members.find((m) => m.name === INITIALIZER_NAME)?.id ?? 0;
    this.members = t.members;
    this.owners.set(t.owners);
    this.migration.epoch = t.epoch;
    this.markOwned();
    if (this.cfg.role === "joiner") {
      log.info("join_received", "***Received cluster information!***");
      log.info("join_joining", "AUTOSCALE: Joining Worker");
      // Forget it before ending it: Bun may report the close synchronously.
      const reg = this.registrationLink;
      this.registrationLink = undefined;
      reg?.end();
    } else {
      const p = new Peer(t.members.find((m) => m.id === this.initializerId)!, () => this.migration.epoch);
      p.control = this.registrationLink;
      this.peers.set(this.initializerId, p);
    }
    log.info("phase_2", "|~~ INIT PHASE II: Application is initialized! ~~|");
    void this.dialAll(this.members).then(() => {
      this.sendTo(this.initializerId, "connected", { name: this.name });
      if (this.cfg.role === "worker") log.info("phase_3", "|~~ INIT PHASE III: Application is ready to work! ~~|");
    });
  }

  private markOwned(): void {
    for (let s = 0; s < SLOT_COUNT; s++) this.dataflow.status[s] = this.owners[s] === this.selfId ? SLOT_STATUS.owned : SLOT_STATUS.none;
  }

  private onStart(members: Member[]): void {
    this.committed = members;
    this.ready = true;
    log.info("phase_4", "|~~ INIT PHASE IV: Cluster is ready to work! ~~|");
    for (const s of this.sources) s.unmute();
  }

  // ---------------------------------------------------------------------------------- peers

  /** Dials control and data to every member not yet connected. */
  private async dialAll(members: readonly Member[]): Promise<void> {
    await Promise.all(members.filter((m) => m.id !== this.selfId).map((m) => this.dial(m)));
  }

  private async dial(m: Member): Promise<void> {
    let p = this.peers.get(m.id);
    if (!p) {
      p = new Peer(m, () => this.migration.epoch);
      this.peers.set(m.id, p);
    }
    const t = this.cfg.transport;
    const attempt = async (port: number, handlers: LinkHandlers) => {
      let last: unknown;
      for (let i = 0; i < 5; i++) {
        try {
          return await t.connect(m.host, port, handlers, DIAL_TIMEOUT_MS);
        } catch (err) {
          last = err;
          await this.clock.sleep(100 * (i + 1));
        }
      }
      throw last;
    };
    try {
      if (!p.control) {
        p.control = await attempt(m.controlPort, this.controlHandlers(m.id));
        p.control.write(encodeControl("hello", { name: this.name }));
      }
      if (!p.data) {
        p.data = await attempt(m.dataPort, {
          data() {},
          drain: () => this.checkPressure(),
          close: () => this.peerLost(m.id, "data connection closed"),
        });
        p.helloData(this.name);
      }
    } catch (err) {
      log.error("dial_failed", `Could not connect to worker ${m.name} at ${m.host}: ${(err as Error).message}`);
      this.peerLost(m.id, "unreachable");
    }
  }

  private async addMembers(ms: readonly Member[]): Promise<void> {
    for (const m of ms) {
      this.leavingNames.delete(m.name);
      if (!this.members.some((x) => x.id === m.id)) this.members = [...this.members, m];
    }
    await this.dialAll(ms);
    if (this.isInitializer) this.onConnectedMsg(this.name);
    else this.sendTo(this.initializerId, "connected", { name: this.name });
  }

  private sendTo<N extends ControlName>(id: number, type: N, body: ControlBody<N>): boolean {
    const p = this.peers.get(id);
    if (!p || !p.alive) return false;
    return p.sendControl(type, body);
  }

  private flushAllPeers(): void {
    for (const p of this.peers.values()) p.flushBatch();
  }

  forward(peerId: number, stage: number, raw: boolean, slot: number, key: string, payload: Uint8Array, start: number, end: number): void {
    const p = this.peers.get(peerId);
    if (!p || !p.alive) {
      this.droppedToDead++;
      if (this.droppedToDead === 1 || this.droppedToDead % 10000 === 0)
        log.error("peer_gone", `messages for slot ${slot} route to worker ${peerId}, which is gone: ${this.droppedToDead} dropped so far`);
      return;
    }
    p.record(stage, raw, slot, key, payload, start, end);
  }
  private droppedToDead = 0;

  private peerLost(id: number, why: string): void {
    const p = this.peers.get(id);
    if (!p || !p.alive) return;
    p.alive = false;
    // A dead or departed worker holds nothing back any more.
    if (this.heldHighAt.delete(id)) this.checkPressure();
    if (this.stopping || this.leavingNames.has(p.name)) return;
    log.warn("worker_lost", `Lost connection to worker ${p.name} (${why})`);
    this.coordinator?.onWorkerLost(id);
  }

  private readonly leavingNames = new Set<string>();

  // ------------------------------------------------------------------------------- control

  private controlHandlers(peerId?: number): LinkHandlers {
    const reader = new FrameReader(CONTROL_MAX_FRAME);
    let link: Link;
    const onFrame = (buf: Uint8Array, start: number, end: number) => {
      const d = decodeControl(buf, start, end);
      if (!d.ok) {
        log.error("control_malformed", `Malformed control message from ${link.remote}: ${d.reason}. Closed connection.`);
        link.destroy();
        return;
      }
      this.onControl(link, d.msg);
    };
    return {
      data: (l, chunk) => {
        link = l;
        const err = reader.feed(chunk, onFrame);
        if (err) {
          log.error("control_oversized", `Control frame of ${err.claimed} bytes from ${l.remote} exceeds ${err.max}. Closed connection.`);
          l.destroy();
        }
      },
      close: (l) => {
        if (peerId !== undefined) this.peerLost(peerId, "control connection closed");
        else if (l === this.registrationLink && !this.ready && !this.stopping) {
          this.fatal(new UnreachableError(`The cluster closed the connection at ${formatHostPort(this.cfg.join ?? this.cfg.control!)} before answering.`));
        }
      },
    };
  }

  private acceptControl(link: Link): LinkHandlers {
    const h = this.controlHandlers();
    return {
      ...h,
      close: (l) => {
        const name = (l as any).peerName as string | undefined;
        const m = name ? this.members.find((x) => x.name === name) : undefined;
        if (m) this.peerLost(m.id, "control connection closed");
      },
    };
  }

  private onControl(link: Link, msg: ControlMessage): void {
    switch (msg.type) {
      case "hello":
        (link as any).peerName = msg.body.name;
        return;
      case "register":
        if (!this.isInitializer) return this.refuseLink(link, "Only the initializer accepts registrations.");
        return this.onRegister(link, msg.body);
      case "refused":
        return this.fatal(new RefusedError(this.cfg.role === "joiner" ? `Join Error: ${msg.body.reason}` : `Registration refused: ${msg.body.reason}`));
      case "topology":
        return this.adoptTopology(msg.body);
      case "connected":
        return this.onConnectedMsg(msg.body.name);
      case "start":
        return this.onStart(msg.body.members);
      case "join":
        return this.onJoinRequest(link, msg.body);
      case "tryJoin": {
        const from = this.memberByLink(link);
        const { reqId, ...req } = msg.body;
        return this.coordinator?.onJoin(req, (ok, reason, topology) => {
          if (from) this.sendTo(from.id, "joinReply", { reqId, ok, reason, topology });
        });
      }
      case "joinReply":
        return this.settleRelay(msg.body.reqId, msg.body);
      case "addWorkers":
        return void this.addMembers(msg.body.members);
      case "plan":
        return this.migration.apply(msg.body);
      case "slotsInstalled":
        return this.coordinator?.onInstalled(msg.body);
      case "commit":
        return;
      case "complete":
        return this.onComplete(msg.body.members, msg.body.leaving);
      case "leave":
        return void this.leave();
      case "tryShrink": {
        const from = this.memberByLink(link);
        const { reqId } = msg.body;
        const r = this.shrinkHere(msg.body);
        if (from) this.sendTo(from.id, "shrinkReply", { reqId, type: r.type, payload: r.payload });
        return;
      }
      case "shrinkReply":
        return this.settleRelay(msg.body.reqId, msg.body);
      case "keyCountReq": {
        const from = this.memberByLink(link);
        if (from) this.sendTo(from.id, "keyCountReply", { reqId: msg.body.reqId, name: this.name, counts: slotKeyCounts(this.dataflow, this.ownedSlots()) });
        return;
      }
      case "keyCountReply":
        return this.keyCounts.collect(msg.body);
      case "shutdown":
        return void this.shutdown(false, msg.body.reason);
      case "abortJoin":
        return this.forgetMembers(msg.body.names);
      case "lost":
        return this.onLost(msg.body.id);
      case "pressure": {
        const from = this.memberByLink(link);
        if (!from || !this.isInitializer) return;
        if (msg.body.high) this.heldHighAt.add(from.id);
        else this.heldHighAt.delete(from.id);
        return this.checkPressure();
      }
    }
  }

  private memberByLink(link: Link): Member | undefined {
    const name = (link as any).peerName as string | undefined;
    return name ? this.members.find((m) => m.name === name) : undefined;
  }

  private refuseLink(link: Link, reason: string): void {
    link.write(encodeControl("refused", { reason }));
    link.end();
  }

  // ---------------------------------------------------------------------------------- join

  private onJoinRequest(link: Link, body: ControlBody<"join">): void {
    const host = body.host === "0.0.0.0" || body.host === "::" ? link.remote.replace(/:\d+$/, "") : body.host;
    const req = { ...body, host };
    const answer = (ok: boolean, reason: string | undefined, topology: ControlBody<"topology"> | undefined) => {
      if (link.closed) return;
      if (ok && topology) link.write(encodeControl("topology", topology));
      else this.refuseLink(link, reason ?? "Join refused.");
    };
    if (!this.ready) return answer(false, "Contacted worker has not yet joined the cluster, cannot autoscale.", undefined);
    if (this.coordinator) return this.coordinator.onJoin(req, answer);
    void this.relay("tryJoin", { ...req }).then(
      (r: ControlBody<"joinReply">) => answer(r.ok, r.reason, r.topology),
      (err: Error) => answer(false, err.message, undefined),
    );
  }

  /** Forwards a request to the coordinator and resolves with its answer (or rejects at the deadline). */
  private relay<N extends "tryJoin" | "tryShrink">(type: N, body: Omit<ControlBody<N>, "reqId">): Promise<any> {
    const reqId = this.nextReqId++;
    return new Promise((resolve, reject) => {
      const timer = this.clock.setTimeout(() => {
        this.relays.delete(reqId);
        reject(new Error(`The initializer did not answer within ${RELAY_DEADLINE_MS / 1000} s.`));
      }, RELAY_DEADLINE_MS);
      this.relays.set(reqId, { resolve, timer });
      if (!this.sendTo(this.initializerId, type, { ...body, reqId } as ControlBody<N>)) {
        this.clock.clearTimeout(timer);
        this.relays.delete(reqId);
        reject(new Error("The initializer is not reachable from this worker."));
      }
    });
  }

  private settleRelay(reqId: number, body: unknown): void {
    const r = this.relays.get(reqId);
    if (!r) return;
    this.clock.clearTimeout(r.timer);
    this.relays.delete(reqId);
    r.resolve(body);
  }

  private dropJoiners(names: readonly string[], reason: string): void {
    for (const m of this.members) {
      if (!names.includes(m.name)) continue;
      this.sendTo(m.id, "shutdown", { reason });
    }
    for (const m of this.members) if (m.id !== this.selfId && !names.includes(m.name)) this.sendTo(m.id, "abortJoin", { names: [...names] });
    this.forgetMembers(names);
  }

  private forgetMembers(names: readonly string[]): void {
    for (const m of this.members.filter((x) => names.includes(x.name))) {
      this.leavingNames.add(m.name);
      this.peers.get(m.id)?.close();
      this.peers.delete(m.id);
    }
    this.members = this.members.filter((m) => !names.includes(m.name));
  }

  /** A participant died mid-migration (the coordinator says so): forget it, keep what we can. */
  private onLost(id: number): void {
    const m = this.members.find((x) => x.id === id);
    const p = this.peers.get(id);
    if (p) {
      p.alive = false;
      p.close();
      this.peers.delete(id);
    }
    if (m) this.leavingNames.add(m.name);
    this.members = this.members.filter((x) => x.id !== id);
    const { kept, lost } = this.migration.onLost(id);
    log.warn("participant_lost", `Worker ${m?.name ?? id} is gone: ${kept} slots bound for it stay here, ${lost} slots it owed here start from what arrived`);
  }

  // -------------------------------------------------------------------------- autoscale end

  private broadcastComplete(members: readonly Member[], leaving: readonly string[]): void {
    for (const m of this.members) if (m.id !== this.selfId) this.sendTo(m.id, "complete", { members: [...members], leaving: [...leaving] });
    this.onComplete([...members], [...leaving]);
  }

  private onComplete(members: Member[], leaving: string[]): void {
    if (leaving.includes(this.name)) return void this.leave();
    this.committed = members;
    for (const name of leaving) this.leavingNames.add(name);
    const gone = this.members.filter((m) => leaving.includes(m.name));
    this.members = this.members.filter((m) => !leaving.includes(m.name));
    // A member that left holds nothing back any more.
    let freed = false;
    for (const m of gone) if (this.heldHighAt.delete(m.id)) freed = true;
    if (freed) this.checkPressure();
    // Leavers close their connections once their sink is flushed; ours to them are closed a
    // little later so a leaver never mistakes our close for a failure while it is still leaving.
    for (const m of gone) {
      const p = this.peers.get(m.id);
      if (!p) continue;
      p.flushBatch();
      p.alive = false;
      this.peers.delete(m.id);
      this.clock.setTimeout(() => p.close(), LEAVER_LINGER_MS);
    }
    if (this.cfg.role === "joiner" && !this.ready) {
      this.ready = true;
      log.info("phase_4", "|~~ INIT PHASE IV: Cluster is ready to work! ~~|");
    }
    if (leaving.length > 0) for (const n of leaving) log.info("leaver_done", `Leaving worker ${n} reported migration complete`);
    log.info("autoscale_complete", "AUTOSCALE: Autoscale is complete.", { members: members.map((m) => m.name), epoch: this.migration.epoch });
  }

  private async leave(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    assert(this.ownedSlots().length === 0, "a leaving worker must own no slot");
    log.info("leaving", "AUTOSCALE: Shutting down.");
    await this.closeEverything();
    this.exitResolve(0);
  }

  // -------------------------------------------------------------------------------- shrink

  private shrinkHere(req: { query: boolean; names: readonly string[]; count: number }): { type: number; payload: string } {
    if (req.query) {
      const names = this.committed.filter((m) => m.name !== INITIALIZER_NAME).map((m) => m.name);
      return { type: EXTERNAL_MSG.ShrinkQueryResponse, payload: encodeShrinkQueryResponse({ node_names: names, node_count: names.length }) };
    }
    const r = this.coordinator!.onShrink(req, this.committed);
    if (r.ok) {
      log.info("shrink_accepted", `Cluster shrink: ${r.text}`);
    }
    return { type: EXTERNAL_MSG.ShrinkErrorResponse, payload: r.text };
  }

  // ---------------------------------------------------------------------------------- data

  private acceptData(link: Link): LinkHandlers {
    const inb = new InboundData(link, this.inboundHost);
    this.inbound.add(inb);
    return {
      data: (_l, chunk) => inb.onChunk(chunk),
      close: () => {
        this.inbound.delete(inb);
        inb.onClose();
      },
    };
  }

  private epochAdvanced(epoch: number): void {
    for (const inb of this.inbound) inb.release(epoch);
  }

  private reportInstalled(epoch: number, slots: number[], keys: number, bytes: number): void {
    const body = { epoch, slots, keys, bytes };
    if (this.isInitializer) this.coordinator!.onInstalled(body);
    else this.sendTo(this.initializerId, "slotsInstalled", body);
  }

  /** Backpressure: a congested sink stops our inputs; congested peers stop the sources. */
  private checkPressure(): void {
    const sinkFull = this.sink.congested;
    let peersFull = false;
    for (const p of this.peers.values()) if (p.alive && p.congested) peersFull = true;
    const held = this.dataflow.heldCount;
    if (!this.heldHigh && held > this.heldLimits.high) this.setHeldHigh(true);
    else if (this.heldHigh && held < this.heldLimits.low) this.setHeldHigh(false);
    const heldFull = this.heldHigh || this.heldHighAt.size > 0;
    for (const s of this.sources) {
      if (heldFull && !s.isPaused) this.heldPauses++;
      if (sinkFull || peersFull || heldFull) s.pause();
      else s.resume();
    }
    if (sinkFull !== this.inboundPausedForSink) {
      this.inboundPausedForSink = sinkFull;
      for (const inb of this.inbound) {
        if (sinkFull) inb.link.pause();
        else inb.resume();
      }
    }
  }

  private setHeldHigh(high: boolean): void {
    this.heldHigh = high;
    log.debug("held_pressure", `${this.dataflow.heldCount} messages wait for incoming slots: ${high ? "asking the sources to pause" : "sources may resume"}`);
    if (!this.isInitializer) this.sendTo(this.initializerId, "pressure", { high });
  }

  // ------------------------------------------------------------------------------ external

  private externalHost(): ExternalHost {
    return {
      name: this.name,
      dataflow: this.dataflow,
      stageNames: this.dataflow.state.statefulStages.map((i) => this.cfg.app.stages[i]!.name),
      sourceNames: () => this.sources.map((s) => s.name),
      isReady: () => this.ready,
      isStopping: () => this.stopping,
      committed: () => this.committed,
      coordinates: () => this.coordinator !== undefined,
      ownedSlots: () => this.ownedSlots(),
      shrinkHere: (r) => this.shrinkHere(r),
      relayShrink: (r) => this.relay("tryShrink", { query: r.query, names: [...r.names], count: r.count }),
      clusterKeyCounts: (reply) =>
        this.keyCounts.gather(this.name, slotKeyCounts(this.dataflow, this.ownedSlots()), this.committed.filter((m) => m.id !== this.selfId), reply),
      shutdown: (reason) => void this.shutdown(true, reason),
    };
  }

  private ownedSlots(): number[] {
    const out: number[] = [];
    for (let s = 0; s < SLOT_COUNT; s++) if (this.owners[s] === this.selfId) out.push(s);
    return out;
  }

  // ------------------------------------------------------------------------------ shutdown

  /** Cluster-wide clean shutdown: tell every peer (when it started here), flush, exit 0. */
  async shutdown(initiate: boolean, reason?: string): Promise<void> {
    if (this.stopping) return;
    if (initiate) for (const p of this.peers.values()) if (p.alive) p.sendControl("shutdown", { reason });
    this.stopping = true;
    if (reason && !initiate) log.info("shutdown", `Shutting down: ${reason}`);
    else log.info("shutdown", "Shutting down cleanly");
    await this.closeEverything();
    this.exitResolve(this.cfg.role === "joiner" && !this.ready && reason ? 1 : 0);
  }

  private async closeEverything(): Promise<void> {
    for (const s of this.sources) s.stop();
    this.flushAllPeers();
    if (this.cfg.out) await this.sink.close(5000);
    for (const p of this.peers.values()) p.close();
    await this.clock.sleep(20);
    for (const s of this.servers) s.stop();
  }

  private fatal(err: WallarooError): void {
    if (this.stopping) return;
    this.stopping = true;
    log.error("fatal", err.message);
    void this.closeEverything().finally(() => this.exitResolve(err.exitCode));
  }
}
