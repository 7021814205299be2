// An in-memory Transport for the deterministic simulator (test/sim): a whole cluster in one
// process, every byte moved by events of a seeded scheduler, never by a real timer.
//
// - A flush cuts the outbound bytes into chunks of random size (framing stays exercised) and
//   puts them on the link's wire; each arrives after a random latency, but never before the
//   chunk sent ahead of it on the same link: FIFO per link, reordering only across links.
// - `pause` really stops delivery: arrived chunks wait in the link's inbox.
// - Faults: a dropped connection (both ends see close), a partition between two groups of nodes
//   (deliveries and closes across it wait until `heal`; a connect across it times out), a killed
//   process (its links close at the other end after what it already sent; it can no longer
//   listen or connect). A killed node's name can run again as a new process.
// Link ids and ports belong to one network, so two networks in one process do not interfere.
import { GrowBuffer } from "./out-buffer.ts";
import { LINK_LIMITS, type Link, type LinkHandlers, type Server, type Transport } from "./transport.ts";

/** One incarnation of a node, as the scheduler knows it. */
export interface SimProcess {
  readonly name: string;
  readonly alive: boolean;
}

/** What the network needs from the simulator's scheduler. */
export interface NetScheduler {
  now(): number;
  /** The current incarnation of the node `name`. */
  process(name: string): SimProcess;
  /** Runs `fn` as an event of `proc` after `delayMs` of virtual time (dropped if it dies). */
  schedule(proc: SimProcess, delayMs: number, kind: string, fn: () => void): unknown;
  /** One line of the run's trace. */
  note(proc: SimProcess, kind: string, detail: string): void;
}

export interface NetOptions {
  /** Each connection gets a base latency up to this… */
  maxBaseLatencyMs: number;
  /** …plus this much jitter per chunk… */
  jitterMs: number;
  /** …and now and then a spike (a delayed chunk holds back the rest of its link). */
  spikeChance: number;
  spikeMs: number;
  maxChunkBytes: number;
}

export const NET_DEFAULTS: NetOptions = { maxBaseLatencyMs: 2, jitterMs: 1, spikeChance: 0.005, spikeMs: 40, maxChunkBytes: 4096 };

/** Something on the wire: bytes, the connection's opening (to the dialler), or its close. */
type Entry = { at: number; bytes: Uint8Array | undefined; kind: "data" | "open" | "close" };

class MemLink implements Link {
  readonly out = new GrowBuffer(4096);
  peer!: MemLink;
  handlers: LinkHandlers | undefined;
  /** No more input or output; the close handler runs (or ran) as an event. */
  closed = false;
  sentBytes = 0;
  private reported = false;
  private ending = false;
  private paused = false;
  private scheduled = false;
  private needDrain = false;
  /** Sent by this end, not yet arrived at the peer. */
  wire: Entry[] = [];
  wireBytes = 0;
  private lastAt = 0;
  /** Arrived from the peer, not yet handed to the handlers. */
  private inbox: Entry[] = [];
  private inboxBytes = 0;
  /** The dialler's end until its opening arrives: how to settle its `connect`. */
  opening: { resolve: () => void; reject: (err: Error) => void } | undefined;
  readonly baseLatency: number;

  constructor(
    readonly id: number,
    readonly remote: string,
    readonly proc: SimProcess,
    private readonly net: MemoryNetwork,
    readonly local: string = proc.name,
  ) {
    this.baseLatency = net.random() * net.opts.maxBaseLatencyMs;
  }

  get queuedBytes(): number {
    return this.out.len + this.wireBytes + this.peer.inboxBytes;
  }
  get congested(): boolean {
    return this.queuedBytes > LINK_LIMITS.highWaterBytes;
  }

  write(bytes: Uint8Array): void {
    if (this.closed || this.ending) return;
    this.out.append(bytes);
    this.flushSoon();
  }

  flushSoon(): void {
    if (this.scheduled || this.closed) return;
    this.scheduled = true;
    queueMicrotask(() => this.flush());
  }

  flush(): void {
    this.scheduled = false;
    if (this.closed) return;
    if (this.out.len > 0) {
      const bytes = this.out.buf.slice(0, this.out.len);
      this.out.len = 0;
      this.sentBytes += bytes.length;
      const r = this.net.random;
      for (let off = 0; off < bytes.length; ) {
        // Mostly large chunks, sometimes tiny ones that cut a frame header.
        const n = r() < 0.2 ? 1 + Math.floor(r() * 16) : 1 + Math.floor(r() * this.net.opts.maxChunkBytes);
        this.send("data", bytes.subarray(off, Math.min(bytes.length, off + n)));
        off += n;
      }
      if (this.congested) this.needDrain = true;
    }
    if (this.ending) {
      this.send("close", undefined);
      this.closed = true;
      this.net.schedule(this.proc, 0, "close", () => this.report());
    }
  }

  /** Puts one entry on the wire; it arrives after a latency, never before the one ahead of it. */
  send(kind: Entry["kind"], bytes: Uint8Array | undefined): void {
    const net = this.net;
    const now = net.sched.now();
    const at = Math.max(now + net.latency(this.baseLatency), this.lastAt);
    this.lastAt = at;
    this.wire.push({ at, bytes, kind });
    this.wireBytes += bytes?.length ?? 0;
    const to = this.peer;
    net.schedule(to.proc, at - now, "deliver", () => to.arrive());
  }

  /** Moves what is due from the peer's wire to our inbox (unless a partition is in the way). */
  arrive(): void {
    const from = this.peer;
    if (this.reported) {
      from.wire = [];
      from.wireBytes = 0;
      return;
    }
    if (this.net.cut(from.proc.name, this.proc.name)) {
      this.net.stalled.add(from);
      return;
    }
    const now = this.net.sched.now();
    while (from.wire.length > 0 && from.wire[0]!.at <= now) {
      const e = from.wire.shift()!;
      from.wireBytes -= e.bytes?.length ?? 0;
      this.inbox.push(e);
      this.inboxBytes += e.bytes?.length ?? 0;
    }
    this.pump();
  }

  /** Hands the inbox to the handlers while we read; runs in this end's process. */
  pump(): void {
    while (this.inbox.length > 0 && !this.reported) {
      const e = this.inbox[0]!;
      if (e.kind === "open") {
        this.inbox.shift();
        const o = this.opening;
        this.opening = undefined;
        o?.resolve();
        continue;
      }
      if (e.kind === "close") {
        this.inbox.shift();
        this.closed = true;
        this.report();
        break;
      }
      if (this.paused || !this.handlers || this.closed) break;
      this.inbox.shift();
      this.inboxBytes -= e.bytes!.length;
      this.net.sched.note(this.proc, "deliver", `#${this.id} ${e.bytes!.length} B`);
      this.handlers.data(this, e.bytes!);
    }
    const from = this.peer;
    if (from.needDrain && !from.congested && !from.closed) {
      from.needDrain = false;
      this.net.schedule(from.proc, 0, "drain", () => from.handlers?.drain?.(from));
    }
  }

  pause(): void {
    this.paused = true;
  }
  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.net.schedule(this.proc, 0, "resume", () => this.pump());
  }
  end(): void {
    if (this.closed || this.ending) return;
    this.ending = true;
    this.scheduled = false;
    this.flush();
  }
  destroy(): void {
    if (this.closed) return;
    this.out.len = 0;
    this.send("close", undefined);
    this.closed = true;
    this.net.schedule(this.proc, 0, "close", () => this.report());
  }

  /** Runs the close handler once (or, if the connection never opened here, fails the connect). */
  report(): void {
    if (this.reported) return;
    this.reported = true;
    const o = this.opening;
    if (o) {
      this.opening = undefined;
      this.handlers = undefined;
      o.reject(Object.assign(new Error(`connect ECONNRESET ${this.remote}`), { code: "ECONNRESET" }));
    }
    this.closed = true;
    this.inbox = [];
    this.inboxBytes = 0;
    this.net.forget(this);
    this.net.sched.note(this.proc, "close", `#${this.id} ${this.remote}`);
    this.handlers?.close(this);
  }

  /** The process is gone: no handler of ours runs again; the peer sees a close after our wire. */
  vanish(): void {
    if (this.reported) return;
    this.reported = true;
    if (!this.closed) this.send("close", undefined);
    this.closed = true;
    this.inbox = [];
    this.inboxBytes = 0;
    this.net.forget(this);
  }

  /** A reset: nothing more arrives either way; this end sees a close now. */
  reset(): void {
    this.wire = [];
    this.wireBytes = 0;
    this.closed = true;
    this.net.schedule(this.proc, 0, "close", () => this.report());
  }

  /** After a partition heals: what waited is timed again from now, still in order. */
  retime(): void {
    const now = this.net.sched.now();
    let prev = now;
    for (const e of this.wire) {
      e.at = Math.max(now + this.net.latency(this.baseLatency), prev);
      prev = e.at;
      const to = this.peer;
      this.net.schedule(to.proc, e.at - now, "deliver", () => to.arrive());
    }
    this.lastAt = Math.max(this.lastAt, prev);
  }
}

interface Listener {
  proc: SimProcess;
  accept: (l: Link) => LinkHandlers;
}

export class MemoryNetwork {
  private readonly listeners = new Map<string, Listener>();
  private readonly links = new Set<MemLink>();
  /** Pairs of node names that cannot reach each other ("a\tb" and "b\ta"). */
  private readonly cuts = new Set<string>();
  /** Links whose deliveries wait for a partition to heal. */
  readonly stalled = new Set<MemLink>();
  private nextPort = 30000;
  private nextLinkId = 1;
  readonly opts: NetOptions;

  constructor(
    readonly sched: NetScheduler,
    readonly random: () => number,
    opts: Partial<NetOptions> = {},
  ) {
    this.opts = { ...NET_DEFAULTS, ...opts };
  }

  /** One chunk's latency on a connection whose base latency is `base`, rounded to the µs. */
  latency(base: number): number {
    const r = this.random;
    let ms = base + r() * this.opts.jitterMs;
    if (r() < this.opts.spikeChance) ms += r() * this.opts.spikeMs;
    return Math.round(ms * 1000) / 1000;
  }

  schedule(proc: SimProcess, delayMs: number, kind: string, fn: () => void): void {
    this.sched.schedule(proc, delayMs, kind, fn);
  }

  transport(name: string): Transport {
    const proc = this.sched.process(name);
    return {
      listen: async (host, port, accept) => {
        if (!proc.alive) throw new Error(`${name} is dead`);
        const p = port === 0 ? this.nextPort++ : port;
        const key = `${host}:${p}`;
        if (this.listeners.has(key)) throw Object.assign(new Error(`address ${key} in use`), { code: "EADDRINUSE" });
        const entry = { proc, accept };
        this.listeners.set(key, entry);
        this.sched.note(proc, "listen", key);
        const server: Server = {
          host,
          port: p,
          stop: () => {
            if (this.listeners.get(key) === entry) this.listeners.delete(key);
          },
        };
        return server;
      },
      connect: (host, port, handlers, timeoutMs) => this.connect(proc, host, port, handlers, timeoutMs),
    };
  }

  private connect(proc: SimProcess, host: string, port: number, handlers: LinkHandlers, timeoutMs: number): Promise<Link> {
    const key = `${host}:${port}`;
    return new Promise<Link>((resolve, reject) => {
      const refuse = () => reject(Object.assign(new Error(`connect ECONNREFUSED ${key}`), { code: "ECONNREFUSED" }));
      if (!proc.alive) return refuse();
      const started = this.sched.now();
      this.schedule(proc, this.latency(this.random() * this.opts.maxBaseLatencyMs), "connect", () => {
        const l = this.listeners.get(key);
        if (!l || !l.proc.alive) {
          this.sched.note(proc, "connect", `${key} refused`);
          return refuse();
        }
        if (this.cut(proc.name, l.proc.name)) {
          // The handshake is lost in the partition: the dialler gives up at its deadline.
          const left = Math.max(0, timeoutMs - (this.sched.now() - started));
          this.schedule(proc, left, "connect", () => reject(Object.assign(new Error(`connect ETIMEDOUT ${key}`), { code: "ETIMEDOUT" })));
          return;
        }
        const a = new MemLink(this.nextLinkId++, key, proc, this);
        const b = new MemLink(this.nextLinkId++, `${proc.name}:${a.id}`, l.proc, this, host);
        a.peer = b;
        b.peer = a;
        a.handlers = handlers;
        a.opening = { resolve: () => resolve(a), reject };
        // An opening held up (by a partition) past the dialler's deadline: it gives up.
        this.schedule(proc, Math.max(0, timeoutMs - (this.sched.now() - started)), "connect", () => {
          if (!a.opening) return;
          a.opening = undefined;
          a.handlers = undefined;
          a.destroy();
          reject(Object.assign(new Error(`connect ETIMEDOUT ${key}`), { code: "ETIMEDOUT" }));
        });
        this.links.add(a);
        this.links.add(b);
        this.sched.note(proc, "connect", `#${a.id} to ${l.proc.name} #${b.id}`);
        // The kernel accepts at once; the listener's code runs when its process next runs, and
        // bytes that arrive before that wait in the link's inbox.
        this.schedule(l.proc, 0, "accept", () => {
          if (b.closed) return;
          b.handlers = l.accept(b);
          b.pump();
        });
        b.send("open", undefined);
      });
    });
  }

  forget(l: MemLink): void {
    this.links.delete(l);
    this.stalled.delete(l);
  }

  cut(a: string, b: string): boolean {
    return this.cuts.size > 0 && this.cuts.has(`${a}\t${b}`);
  }

  /** The node's process is gone: its listeners go, each of its links closes at the other end. */
  kill(name: string): void {
    for (const [k, l] of this.listeners) if (l.proc.name === name) this.listeners.delete(k);
    for (const l of [...this.links]) if (l.proc.name === name) l.vanish();
  }

  /** Nodes in `a` and nodes in `b` stop hearing each other until `heal`. */
  partition(a: readonly string[], b: readonly string[]): void {
    for (const x of a) for (const y of b) if (x !== y) this.cuts.add(`${x}\t${y}`).add(`${y}\t${x}`);
  }

  heal(): void {
    this.cuts.clear();
    const waiting = [...this.stalled].sort((x, y) => x.id - y.id);
    this.stalled.clear();
    for (const l of waiting) l.retime();
  }

  /** Resets one connection: both ends see it close; what was in flight is lost. */
  drop(linkId: number): boolean {
    const l = [...this.links].find((x) => x.id === linkId);
    if (!l || l.closed || l.peer.closed) return false;
    l.reset();
    l.peer.reset();
    return true;
  }

  /** Open connections between live processes, one id per connection (the dialler's end), in id order. */
  openLinks(): Array<{ id: number; from: string; to: string }> {
    const out: Array<{ id: number; from: string; to: string }> = [];
    for (const l of this.links) {
      if (l.closed || l.peer.closed || l.id > l.peer.id) continue;
      out.push({ id: l.id, from: l.proc.name, to: l.peer.proc.name });
    }
    return out.sort((x, y) => x.id - y.id);
  }
}
