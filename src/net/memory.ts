// An in-memory Transport: a whole cluster in one process, for the simulator (test/sim). Bytes
// are delivered asynchronously (as TCP would), in order per link, split into chunks of random
// size from the network's seeded PRNG, so framing is exercised; `pause` really stops delivery.
// A node can be killed: all its links close and it can neither listen nor connect again.
import { GrowBuffer } from "./out-buffer.ts";
import { LINK_LIMITS, type Link, type LinkHandlers, type Server, type Transport } from "./transport.ts";

let nextId = 1;

class MemLink implements Link {
  readonly id = nextId++;
  readonly out = new GrowBuffer(4096);
  peer!: MemLink;
  handlers: LinkHandlers = { data() {}, close() {} };
  closed = false;
  private paused = false;
  private inbox: Uint8Array[] = [];
  private inboxBytes = 0;
  private scheduled = false;
  private delivering = false;

  constructor(
    readonly remote: string,
    readonly node: string,
    private readonly net: MemoryNetwork,
  ) {}

  get queuedBytes(): number {
    return this.out.len + this.peer.inboxBytes;
  }
  get congested(): boolean {
    return this.queuedBytes > LINK_LIMITS.highWaterBytes;
  }

  write(bytes: Uint8Array): void {
    if (this.closed) return;
    this.out.append(bytes);
    this.flushSoon();
  }

  flushSoon(): void {
    if (this.scheduled || this.closed) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      if (this.closed || this.out.len === 0) return;
      const bytes = this.out.buf.slice(0, this.out.len);
      this.out.len = 0;
      // Split into chunks the way a socket might hand them over.
      let off = 0;
      while (off < bytes.length) {
        const n = Math.max(1, Math.floor(this.net.random() * 3 * 1024));
        this.peer.receive(bytes.subarray(off, Math.min(bytes.length, off + n)));
        off += n;
      }
    });
  }

  private receive(chunk: Uint8Array): void {
    if (this.closed) return;
    this.inbox.push(chunk);
    this.inboxBytes += chunk.length;
    this.scheduleDelivery();
  }

  private scheduleDelivery(): void {
    if (this.delivering || this.paused) return;
    this.delivering = true;
    setTimeout(() => {
      this.delivering = false;
      const wasCongested = this.peer.congested;
      while (!this.paused && !this.closed && this.inbox.length > 0) {
        const c = this.inbox.shift()!;
        this.inboxBytes -= c.length;
        this.net.guard(this.node, () => this.handlers.data(this, c));
      }
      if (wasCongested && !this.peer.congested && !this.peer.closed) this.net.guard(this.peer.node, () => this.peer.handlers.drain?.(this.peer));
    }, 0);
  }

  pause(): void {
    this.paused = true;
  }
  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.scheduleDelivery();
  }
  end(): void {
    // Deliver what is queued first, then close both ends.
    setTimeout(() => this.destroy(), 1);
  }
  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    this.net.forget(this);
    this.net.guard(this.node, () => this.handlers.close(this));
    if (!this.peer.closed) setTimeout(() => this.peer.destroy(), 0);
  }
}

export class MemoryNetwork {
  private readonly listeners = new Map<string, { node: string; accept: (l: Link) => LinkHandlers }>();
  private readonly links = new Set<MemLink>();
  private readonly dead = new Set<string>();
  private nextPort = 30000;
  /** Exceptions thrown by a node's handlers: each one is a broken invariant. */
  readonly failures: Array<{ node: string; error: unknown }> = [];

  constructor(readonly random: () => number) {}

  transport(node: string): Transport {
    return {
      listen: async (host, port, accept) => {
        if (this.dead.has(node)) throw new Error(`${node} is dead`);
        const p = port === 0 ? this.nextPort++ : port;
        const key = `${host}:${p}`;
        if (this.listeners.has(key)) throw Object.assign(new Error(`address ${key} in use`), { code: "EADDRINUSE" });
        this.listeners.set(key, { node, accept });
        const server: Server = { host, port: p, stop: () => void this.listeners.delete(key) };
        return server;
      },
      connect: async (host, port, handlers) => {
        await Bun.sleep(0);
        const l = this.listeners.get(`${host}:${port}`);
        if (!l || this.dead.has(node) || this.dead.has(l.node)) throw Object.assign(new Error(`connect ECONNREFUSED ${host}:${port}`), { code: "ECONNREFUSED" });
        const a = new MemLink(`${host}:${port}`, node, this);
        const b = new MemLink(`${node}:0`, l.node, this);
        a.peer = b;
        b.peer = a;
        a.handlers = handlers;
        this.links.add(a);
        this.links.add(b);
        b.handlers = l.accept(b);
        return a;
      },
    };
  }

  guard(node: string, f: () => void): void {
    if (this.dead.has(node)) return;
    try {
      f();
    } catch (error) {
      this.failures.push({ node, error });
    }
  }

  forget(l: MemLink): void {
    this.links.delete(l);
  }

  /** The node's process is gone: every connection of it closes, nothing reaches it again. */
  kill(node: string): void {
    this.dead.add(node);
    for (const [k, l] of this.listeners) if (l.node === node) this.listeners.delete(k);
    for (const l of [...this.links]) if (l.node === node) l.destroy();
  }

  isDead(node: string): boolean {
    return this.dead.has(node);
  }
}
