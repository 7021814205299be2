// A whole cluster in one process over the in-memory network: real Worker objects, real codecs,
// real migration, with a seeded PRNG deciding chunking and the sequence of events.
import { buildSequenceWindow } from "./app.ts";
import { Worker } from "../../src/cluster/worker.ts";
import { FrameReader } from "../../src/codec/frame.ts";
import { MemoryNetwork } from "../../src/net/memory.ts";
import type { Link } from "../../src/net/transport.ts";
import { ManualClock } from "./manual-clock.ts";

export const H = "sim";

export class SimCluster {
  readonly net: MemoryNetwork;
  /** Every worker's time. A ticker moves it 1 ms per real millisecond; tests may jump it. */
  readonly clock = new ManualClock();
  private ticker: ReturnType<typeof setInterval> | undefined;
  readonly workers = new Map<string, Worker>();
  readonly outputs = new Map<number, string[]>();
  private nextConn = 1;
  private source: Link | undefined;
  readonly sentPerKey: number[];
  sent = 0;
  private control = 0;
  private outPort = 0;
  private inPort = 0;

  constructor(
    readonly random: () => number,
    readonly keys: number,
    readonly heldLimits?: { high: number; low: number },
  ) {
    this.net = new MemoryNetwork(random);
    this.sentPerKey = new Array(keys).fill(0);
  }

  async start(n: number): Promise<void> {
    // Unref: a test that fails before stop() must not keep the process alive.
    this.ticker = setInterval(() => this.clock.advance(1), 1);
    this.ticker.unref();
    const rx = await this.net.transport("receiver").listen(H, 0, () => {
      const id = this.nextConn++;
      const lines: string[] = [];
      this.outputs.set(id, lines);
      let rest = "";
      const dec = new TextDecoder();
      return {
        data: (_l, chunk) => {
          const parts = (rest + dec.decode(chunk)).split("\n");
          rest = parts.pop()!;
          lines.push(...parts);
        },
        close: () => {},
      };
    });
    this.outPort = rx.port;
    this.inPort = 40000;
    this.control = 41000;
    await this.spawn("initializer", { role: "initializer", workerCount: n, control: { host: H, port: this.control }, data: { host: H, port: 41001 } });
    for (let i = 1; i < n; i++) await this.spawn(`w${i}`, { role: "worker", control: { host: H, port: this.control } });
    await this.until("formation", () => [...this.workers.values()].every((w) => w.isReady && w.membership.length === n));
    const src = await this.net.transport("client").connect(H, this.inPort, { data() {}, close() {} }, 1000);
    this.source = src;
  }

  async spawn(name: string, how: { role: "initializer" | "worker" | "joiner"; workerCount?: number; control?: { host: string; port: number }; data?: { host: string; port: number }; join?: { host: string; port: number } }): Promise<Worker> {
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
      sources: how.role === "initializer" ? [{ name: "seq", host: H, port: this.inPort, maxFrame: 16384 }] : [],
      out: { host: H, port: this.outPort },
      app: buildSequenceWindow(),
      transport: this.net.transport(name),
      heldLimits: this.heldLimits,
      clock: this.clock,
    });
    this.workers.set(name, w);
    // A worker that exits is gone from the network, as its process would be.
    void w.exited.then(() => this.net.kill(name));
    await w.start();
    return w;
  }

  /** A member's control address, for joiners to contact. */
  controlOf(name: string): { host: string; port: number } {
    return { host: H, port: this.workers.get(name)!.controlPort };
  }

  /** Sends `n` messages round-robin over the keys. */
  send(n: number): void {
    const enc = new TextEncoder();
    for (let i = 0; i < n; i++) {
      const k = this.sent % this.keys;
      const v = ++this.sentPerKey[k]!;
      this.sent++;
      const key = enc.encode(`key-${k}`);
      const f = new Uint8Array(12 + key.length);
      const dv = new DataView(f.buffer);
      dv.setUint32(0, 8 + key.length);
      dv.setBigUint64(4, BigInt(v));
      f.set(key, 12);
      this.source!.write(f);
    }
  }

  get received(): number {
    let n = 0;
    for (const l of this.outputs.values()) n += l.length;
    return n;
  }

  live(): Worker[] {
    return [...this.workers.entries()].filter(([n]) => !this.net.isDead(n)).map(([, w]) => w);
  }

  async until(what: string, cond: () => boolean, deadlineMs = 20_000): Promise<void> {
    const until = Date.now() + deadlineMs;
    while (!cond()) {
      if (this.net.failures.length > 0) throw new Error(`invariant broken while waiting for ${what}: ${String((this.net.failures[0]!.error as Error).stack ?? this.net.failures[0]!.error)}`);
      if (Date.now() > until) throw new Error(`simulation timed out waiting for ${what}`);
      await Bun.sleep(1);
    }
  }

  /** Every live member agrees on the table, every slot's owner is live, one holder per key. */
  checkOwnership(): string[] {
    const problems: string[] = [];
    const live = this.live().filter((w) => w.isReady);
    const ids = new Map<number, string>();
    for (const w of live) ids.set(w.selfId, w.name);
    const ref = live[0]!.owners;
    for (const w of live) {
      for (let s = 0; s < ref.length; s++) {
        if (w.owners[s] !== ref[s]) {
          problems.push(`${w.name} has slot ${s} at ${w.owners[s]}, ${live[0]!.name} at ${ref[s]}`);
          break;
        }
      }
    }
    for (let s = 0; s < ref.length; s++) if (!ids.has(ref[s]!)) problems.push(`slot ${s} is owned by ${ref[s]}, which is not a live member`);
    const holder = new Map<string, string>();
    for (const w of live) {
      for (const k of Object.values(w.dataflow.state.keys()).flat()) {
        if (holder.has(k)) problems.push(`key ${k} held by ${holder.get(k)} and ${w.name}`);
        holder.set(k, w.name);
      }
    }
    return problems.slice(0, 10);
  }

  /**
   * No output twice; per connection each key's values increase. With `exact`, every input has
   * its output and every window is consistent (state carried across every move).
   */
  checkOutputs(exact: boolean): string[] {
    const problems: string[] = [];
    const seen: Array<Set<number>> = this.sentPerKey.map(() => new Set());
    for (const [conn, lines] of this.outputs) {
      const last = new Map<number, number>();
      for (const line of lines) {
        const m = /^key-(\d+) \[(\d+),(\d+),(\d+),(\d+)\]$/.exec(line);
        if (!m) {
          problems.push(`malformed ${line}`);
          continue;
        }
        const k = Number(m[1]);
        const d = Number(m[5]);
        if (exact) {
          const want = [d - 3, d - 2, d - 1, d].map((x) => Math.max(0, x)).join(",");
          if ([m[2], m[3], m[4], m[5]].join(",") !== want) problems.push(`key-${k}: window [${m.slice(2, 6)}] where [${want}] was expected`);
        }
        if (d <= (last.get(k) ?? 0)) problems.push(`conn ${conn}: key-${k} went from ${last.get(k)} to ${d}`);
        last.set(k, d);
        if (seen[k]!.has(d)) problems.push(`key-${k}: value ${d} output twice`);
        seen[k]!.add(d);
      }
    }
    if (exact) this.sentPerKey.forEach((n, k) => seen[k]!.size !== n && problems.push(`key-${k}: ${n - seen[k]!.size} of ${n} outputs missing`));
    return problems.slice(0, 10);
  }

  async stop(): Promise<void> {
    for (const w of this.live()) void w.shutdown(false);
    await Bun.sleep(20);
    clearInterval(this.ticker);
  }
}

export { FrameReader };
