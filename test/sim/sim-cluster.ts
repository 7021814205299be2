// A whole cluster in one process on the deterministic scheduler: real Worker objects, real
// codecs, real migration, over the in-memory network. Everything that runs worker code is an
// event of that worker's process; the test's own code only decides what to do next between
// events (which is as deterministic as the events themselves).
import { buildSequenceWindow } from "./app.ts";
import { Worker } from "../../src/cluster/worker.ts";
import { MemoryCheckpointStore } from "../../src/resilience/checkpoint-store.ts";
import { MemoryInputLog } from "../../src/resilience/input-log.ts";
import { WallarooError } from "../../src/errors.ts";
import { tapLog } from "../../src/log.ts";
import { MemoryNetwork, type NetOptions } from "../../src/net/memory.ts";
import type { Link } from "../../src/net/transport.ts";
import { Casualties, INIT } from "./casualties.ts";
import { checkStep } from "./checks.ts";
import { OutputCheck } from "./outputs.ts";
import { Scheduler, type Proc } from "./scheduler.ts";

/** The one host name every simulated process listens on. */
export const H = "sim";
/** Fixed ports: the initializer's (its configuration, like a command line) and the receiver's. */
export const PORTS = { source: 40000, control: 41000, data: 41001, receiver: 7000 } as const;
export { INIT };

export interface SpawnHow {
  role: "initializer" | "worker" | "joiner";
  workerCount?: number;
  control?: { host: string; port: number };
  data?: { host: string; port: number };
  join?: { host: string; port: number };
}

export interface SimOptions {
  keys: number;
  heldLimits?: { high: number; low: number };
  /** Keep every trace line (for --trace and the determinism test). */
  fullTrace?: boolean;
  /** Put debug log lines in the trace too. */
  debugLog?: boolean;
  net?: Partial<NetOptions>;
  /**
   * Every worker runs with resilience (in-memory stores that survive a kill, as files would); a
   * killed worker is started again and recovers; the load client resends what the initializer
   * had not accepted when it died, as a producer with acknowledgements would.
   */
  resilient?: boolean;
}

/** The checkpoint interval of a resilient simulated cluster. */
export const SIM_CHECKPOINT_MS = 300;

/** A failed run: carries the seed, so every report can say how to replay it. */
export class SimError extends Error {
  constructor(
    readonly seed: number,
    message: string,
  ) {
    super(`seed ${seed}: ${message}`);
    this.name = "SimError";
  }
}


export const SIM_FAILURE_TIMEOUT_MS = 4000;

export class SimCluster {
  readonly sched: Scheduler;
  readonly net: MemoryNetwork;
  /** The latest process of each name. */
  readonly workers = new Map<string, Worker>();
  /** What each name was first started with: a restart uses it again. */
  readonly config = new Map<string, SpawnHow>();
  readonly procs = new Map<Worker, Proc>();
  readonly exits: Array<{ name: string; code: number }> = [];
  readonly outputs: OutputCheck;
  readonly sentPerKey: number[];
  sent = 0;
  /** Who died, and which keys may have lost messages with them. */
  readonly lost: Casualties = new Casualties(this);
  private source: Link | undefined;
  private nextConn = 1;
  private liveCache: Worker[] | undefined;
  private readonly keyBytes: Uint8Array[];
  /** Resilient runs: each name's stores, kept across its restarts (its "disk"). */
  readonly disks = new Map<string, { store: MemoryCheckpointStore; inputLog: MemoryInputLog }>();
  /** Resilient runs: frames written on the current source connection, and the input log's end when it opened. */
  private onConnection: Uint8Array[] = [];
  private connectionStart = 0;

  constructor(
    readonly seed: number,
    readonly opts: SimOptions,
  ) {
    this.sched = new Scheduler(seed, { fullTrace: opts.fullTrace });
    this.net = new MemoryNetwork(this.sched, this.sched.random.network, opts.net);
    this.outputs = new OutputCheck(opts.keys, opts.resilient ?? false);
    this.sentPerKey = new Array(opts.keys).fill(0);
    const enc = new TextEncoder();
    this.keyBytes = Array.from({ length: opts.keys }, (_, k) => enc.encode(`key-${k}`));
    // One process hosts every worker: their log lines go to the trace, attributed to the
    // process whose event is running.
    tapLog((level, event, msg) => {
      this.lost.onLog(this.sched.current?.name, event, msg);
      if (level === "debug" && !opts.debugLog) return;
      this.sched.note(this.sched.current, level, `${event}: ${msg}`);
    });
  }

  /** Gives the log back to consola. */
  dispose(): void {
    tapLog(undefined);
  }

  get now(): number {
    return this.sched.now();
  }

  get resilient(): boolean {
    return this.opts.resilient ?? false;
  }

  get initializer(): Worker | undefined {
    return this.workers.get(INIT);
  }

  /** Starts the receiver, then `n` workers, waits for them to form and connects the load client. */
  async start(n: number, deadlineMs = 30_000): Promise<void> {
    this.launch(n);
    await this.connectSource();
    await this.runUntil(`formation of ${n}`, () => this.formed(n), deadlineMs);
  }

  /** Starts the receiver and `n` workers (events at the current time; nothing has run yet). */
  launch(n: number): void {
    const rx = this.sched.process("receiver");
    this.sched.schedule(rx, 0, "start", () => {
      void this.net.transport("receiver").listen(H, PORTS.receiver, () => {
        const feed = this.outputs.connection(this.nextConn++);
        return { data: (_l, chunk) => feed(chunk), close: () => {} };
      });
    });
    this.spawn(INIT, { role: "initializer", workerCount: n, control: { host: H, port: PORTS.control }, data: { host: H, port: PORTS.data } });
    for (let i = 1; i < n; i++) this.spawn(`w${i}`, { role: "worker", control: { host: H, port: PORTS.control } });
  }

  /** The load client's connection to the initializer's source (muted until formation). */
  async connectSource(): Promise<void> {
    const client = this.sched.process("client");
    let tries = 0;
    const dial = () => {
      this.net
        .transport("client")
        .connect(H, PORTS.source, { data() {}, close: () => (this.source = undefined) }, 2000)
        .then((l) => {
          this.source = l;
          if (this.opts.resilient) this.resend(l);
        })
        .catch(() => {
          if (++tries < 100) this.sched.schedule(client, 50, "dial", dial);
        });
    };
    this.sched.schedule(client, 1, "dial", dial);
    await this.runUntil("the load client's connection", () => this.source !== undefined, 10_000);
  }

  /**
   * Resilient runs, a new source connection: frames of the last one the initializer never logged
   * (they were on the wire when it died) are sent again first, in order.
   */
  private resend(l: Link): void {
    const log = this.disk(INIT).inputLog;
    const accepted = log.end - this.connectionStart;
    const unaccepted = this.onConnection.slice(Math.max(0, accepted));
    this.connectionStart = log.end;
    this.onConnection = unaccepted;
    for (const f of unaccepted) l.write(f);
    if (unaccepted.length > 0) this.sched.note(this.sched.current, "resend", `${unaccepted.length} messages the initializer had not accepted`);
  }

  formed(n: number): boolean {
    const ws = this.live();
    return ws.length >= n && ws.every((w) => w.isReady && w.membership.length === n);
  }

  spawn(name: string, how: SpawnHow): Worker {
    if (!this.config.has(name)) this.config.set(name, how);
    const proc = this.sched.process(name);
    const w = new Worker({
      name,
      role: how.role,
      workerCount: how.workerCount ?? 1,
      control: how.control,
      data: how.data,
      myControl: { host: H, port: 0 },
      myData: { host: H, port: 0 },
      join: how.join,
      external: undefined,
      sources: how.role === "initializer" ? [{ name: "seq", host: H, port: PORTS.source, maxFrame: 16384 }] : [],
      out: { host: H, port: PORTS.receiver },
      app: buildSequenceWindow(),
      transport: this.net.transport(name),
      heldLimits: this.opts.heldLimits,
      // A few keys per turn: a migration's shipping spans turns, interleaved with everything else.
      shipKeysPerTurn: 3,
      // Longer than the default faults' pauses and partitions (at most 3 s), which the cluster
      // must ride out; the long ones of --faults all get a member declared lost, as they should.
      failureTimeoutMs: SIM_FAILURE_TIMEOUT_MS,
      clock: this.sched.clockFor(proc),
      // Restores take a millisecond every few hundred bytes: records reach slots still being restored.
      ...(this.opts.resilient ? { resilience: { ...this.disk(name), intervalMs: SIM_CHECKPOINT_MS, fsync: false, restoreYield: { bytes: 256, ms: 1 } }, clusterId: `sim-${this.seed}` } : {}),
    });
    this.workers.set(name, w);
    this.procs.set(w, proc);
    this.liveCache = undefined;
    // A worker that exits (or fails to start) is a process that ended: gone from the network.
    const exit = (code: number, why: string) => {
      if (!proc.alive) return;
      this.exits.push({ name, code });
      this.sched.note(proc, "exit", `code ${code}${why ? ` (${why})` : ""}`);
      this.lost.ended(w, code);
      this.endProcess(name);
    };
    void w.exited.then((code) => exit(code, ""));
    this.sched.schedule(proc, 0, "start", () => {
      this.sched.note(proc, "start", `${how.role}${how.workerCount ? ` count ${how.workerCount}` : ""}${how.join ? ` via :${how.join.port}` : ""} (incarnation ${proc.incarnation})`);
      w.start().catch((err: unknown) => exit(err instanceof WallarooError ? err.exitCode : 1, err instanceof Error ? err.message : String(err)));
    });
    return w;
  }

  private disk(name: string): { store: MemoryCheckpointStore; inputLog: MemoryInputLog } {
    let d = this.disks.get(name);
    if (!d) this.disks.set(name, (d = { store: new MemoryCheckpointStore(), inputLog: new MemoryInputLog() }));
    return d;
  }

  /** A member's control address, for joiners to contact. */
  controlOf(name: string): { host: string; port: number } {
    return { host: H, port: this.workers.get(name)!.controlPort };
  }

  isAlive(name: string): boolean {
    const w = this.workers.get(name);
    return w !== undefined && this.procs.get(w)!.alive;
  }

  incarnation(w: Worker): number {
    return this.procs.get(w)!.incarnation;
  }

  /** Workers whose process is running (paused ones included), in start order. */
  live(): Worker[] {
    if (!this.liveCache) this.liveCache = [...this.workers.values()].filter((w) => this.procs.get(w)!.alive);
    return this.liveCache;
  }

  private endProcess(name: string): void {
    this.sched.kill(name);
    this.net.kill(name);
    this.liveCache = undefined;
  }

  // ----------------------------------------------------------------------------- actions

  /** Runs `fn` as an event of `name`'s process, now. */
  act(name: string, kind: string, fn: () => void): void {
    this.sched.schedule(this.sched.process(name), 0, kind, fn);
  }

  /**
   * Asks the initializer to shrink (as the external channel would). The answer, once the
   * initializer has run the request, is in the returned object (with whether an autoscale event
   * was under way then) and in the trace.
   */
  shrink(names: readonly string[], count: number): { answer: string | undefined; busy: boolean } {
    const init = this.initializer!;
    const out = { answer: undefined as string | undefined, busy: false };
    this.act(INIT, "shrink", () => {
      out.busy = init.autoscaling;
      out.answer = init.shrink({ query: false, names, count }).payload;
      this.sched.note(this.sched.current, "shrink", `${names.length > 0 ? names.join(",") : `count ${count}`}: ${out.answer}`);
    });
    return out;
  }

  /** Sends `n` messages round-robin over the keys, from the load client's process. */
  send(n: number): void {
    this.act("client", "load", () => {
      const src = this.source;
      if (!src) return;
      for (let i = 0; i < n; i++) {
        const k = this.sent % this.opts.keys;
        const v = ++this.sentPerKey[k]!;
        this.sent++;
        const key = this.keyBytes[k]!;
        const f = new Uint8Array(12 + key.length);
        const dv = new DataView(f.buffer);
        dv.setUint32(0, 8 + key.length);
        dv.setUint32(4, Math.floor(v / 0x1_0000_0000));
        dv.setUint32(8, v >>> 0);
        f.set(key, 12);
        src.write(f);
        if (this.opts.resilient) this.onConnection.push(f);
      }
      this.sched.note(this.sched.current, "load", `${n} messages (${this.sent} in all)`);
    });
  }

  /**
   * Load from the load stream: every few ms of virtual time a small batch, until `total`
   * messages were sent or `stop()` is called.
   */
  startLoad(total: number, opts: { batch?: number; everyMs?: number } = {}): { stop(): void } {
    const r = this.sched.random.load;
    const batch = opts.batch ?? 8;
    const every = opts.everyMs ?? 10;
    let stopped = false;
    const client = this.sched.process("client");
    const tick = () => {
      if (stopped || this.sent >= total || this.initializerDied) return;
      this.send(Math.min(total - this.sent, 1 + Math.floor(r() * batch)));
      this.sched.schedule(client, 1 + r() * every, "tick", tick);
    };
    this.sched.schedule(client, r() * every, "tick", tick);
    return { stop: () => void (stopped = true) };
  }

  // ------------------------------------------------------------------------------ faults

  /** The process dies now: nothing of it runs again; its links close at the other ends. */
  kill(name: string): void {
    const w = this.workers.get(name);
    if (!w || !this.procs.get(w)!.alive) return;
    this.sched.note(undefined, "kill", name);
    this.lost.ended(w, "killed");
    this.endProcess(name);
  }

  /** Starts a killed (or exited) worker again with the configuration it was first given. */
  restart(name: string): Worker {
    this.sched.revive(name);
    this.liveCache = undefined;
    return this.spawn(name, this.config.get(name)!);
  }

  pause(name: string): void {
    this.sched.note(undefined, "pause", name);
    this.sched.pause(name);
  }

  resume(name: string): void {
    this.sched.note(undefined, "resume", name);
    this.sched.resume(name);
  }

  partition(a: readonly string[], b: readonly string[]): void {
    this.sched.note(undefined, "partition", `${a.join(",")} | ${b.join(",")}`);
    this.net.partition(a, b);
  }

  heal(): void {
    this.sched.note(undefined, "heal", "");
    this.net.heal();
  }

  drop(linkId: number): void {
    const l = this.net.openLinks().find((x) => x.id === linkId);
    this.sched.note(undefined, "drop", l ? `#${l.id} ${l.from}-${l.to}` : `#${linkId}`);
    this.net.drop(linkId);
  }

  // ------------------------------------------------------------------------------- running

  /**
   * Steps the scheduler until `cond` holds; fails when `deadlineMs` of virtual time pass first,
   * when nothing is left to run, or when a check fails after a step.
   */
  async runUntil(what: string, cond: () => boolean, deadlineMs: number): Promise<void> {
    const until = this.now + deadlineMs;
    const state = () => `at ${this.now.toFixed(3)} ms; ${this.sent} messages sent, ${this.received} outputs`;
    for (;;) {
      if (cond()) return;
      const next = this.sched.peekTime();
      if (next === undefined) throw new SimError(this.seed, `nothing left to run while waiting for ${what} (${state()})`);
      if (next > until) throw new SimError(this.seed, `timed out after ${deadlineMs} ms of virtual time waiting for ${what} (${state()})`);
      await this.sched.step();
      this.afterStep();
    }
  }

  /** Lets virtual time pass (every event due meanwhile runs). */
  async runFor(ms: number): Promise<void> {
    const until = this.now + ms;
    await this.runUntil(`${ms} ms to pass`, () => (this.sched.peekTime() ?? Infinity) > until, ms + 1);
  }

  /** The cheap checks, after every step. */
  afterStep(): void {
    this.lost.afterStep();
    const f = this.sched.failures[0];
    if (f) throw new SimError(this.seed, `${f.node} failed at ${f.at.toFixed(3)} ms: ${f.error instanceof Error ? (f.error.stack ?? f.error.message) : String(f.error)}`);
    const p = checkStep(this);
    if (p) throw new SimError(this.seed, p);
    if (this.outputs.problems.length > 0) throw new SimError(this.seed, this.outputs.problems.join("; "));
  }

  get received(): number {
    return this.outputs.received;
  }

  /** Sink outputs still expected: every message of a key that may not have lost any. */
  get expected(): number {
    let n = 0;
    for (let k = 0; k < this.sentPerKey.length; k++) if (!this.keyTainted(k)) n += this.sentPerKey[k]!;
    return n;
  }

  /** Outputs received of keys that may not lose any. */
  get receivedExact(): number {
    let n = 0;
    for (let k = 0; k < this.sentPerKey.length; k++) if (!this.keyTainted(k)) n += this.outputs.count(k);
    return n;
  }

  keyTainted(k: number): boolean {
    return this.lost.keyTainted(`key-${k}`);
  }

  get initializerDied(): boolean {
    return this.lost.initializerDied;
  }
}
