// The load sender, inside the test, bench or demo process, and the workloads it sends: the
// generators of src/tools/generators.ts (the same bytes `wallaroo send` sends) cut into 64 KiB
// batches. A workload is one deterministic stream, so what the sink must show is arithmetic on
// the number of messages taken from it — nothing is recorded per message.
import type { Socket } from "bun";
import { readU32 } from "../../src/codec/frame.ts";
import { alphabetGenerator, createUnitRng, sequenceWindowFrameBytes, sequenceWindowKey, writeSequenceWindowFrame } from "../../src/tools/generators.ts";
import { HOST } from "./process.ts";
import { now, poll } from "./wait.ts";

/** Size of one write: 64 KiB, the size at which loopback TCP stops being syscall-bound. */
export const BATCH_BYTES = 64 * 1024;

/** One endless, deterministic stream of frames; several senders may take from one workload in turn. */
export interface Workload {
  readonly name: string;
  /** Messages taken so far: the index of the next one. */
  readonly taken: number;
  /** Frames of the next `count` messages (1 ≤ count ≤ max), the first being `first`; valid until the next call. */
  take(max: number): { bytes: Uint8Array; count: number; first: number };
}

/**
 * Alphabet frames (9 bytes: u32 BE 5, letter, u32 BE votes) from `alphabetGenerator`, pre-built
 * into a pool of batches and cycled. The pool is known, so expected totals and "which message
 * was the j-th of letter L" are arithmetic.
 */
export class AlphabetWorkload implements Workload {
  static readonly FRAME = 9;
  static readonly PER_BATCH = Math.floor(BATCH_BYTES / AlphabetWorkload.FRAME);
  readonly name = "alphabet";
  readonly size: number;
  readonly pool: Uint8Array;
  /** Positions (message offsets in the pool) of each letter code, ascending. */
  readonly positions: Int32Array[] = [];
  taken = 0;

  /** `letters`: the keys to draw from (default a–z). */
  constructor(seed = 1, batches = 16, letters?: string) {
    this.size = AlphabetWorkload.PER_BATCH * batches;
    this.pool = new Uint8Array(this.size * AlphabetWorkload.FRAME);
    const gen = alphabetGenerator({ seed, keys: letters });
    const pos: number[][] = Array.from({ length: 256 }, () => []);
    for (let i = 0; i < this.size; i++) {
      const f = gen.next();
      this.pool.set(f, i * AlphabetWorkload.FRAME);
      pos[f[4]!]!.push(i);
    }
    for (let c = 0; c < 256; c++) this.positions[c] = Int32Array.from(pos[c]!);
  }

  take(max: number): { bytes: Uint8Array; count: number; first: number } {
    const first = this.taken;
    const off = first % this.size;
    const count = Math.min(max, this.size - off, AlphabetWorkload.PER_BATCH);
    this.taken += count;
    return { bytes: this.pool.subarray(off * AlphabetWorkload.FRAME, (off + count) * AlphabetWorkload.FRAME), count, first };
  }

  /** Letter and votes of message `idx`. */
  message(idx: number): { letter: string; votes: number } {
    const b = (idx % this.size) * AlphabetWorkload.FRAME;
    return { letter: String.fromCharCode(this.pool[b + 4]!), votes: readU32(this.pool, b + 5) };
  }

  /** Letter → total votes over messages 0 … total−1 (whole pool cycles by multiplication). */
  expectedTotals(total: number): Map<string, number> {
    const cycle = new Map<string, number>();
    const partial = new Map<string, number>();
    const rest = total % this.size;
    for (let i = 0; i < this.size; i++) {
      const { letter, votes } = this.message(i);
      cycle.set(letter, (cycle.get(letter) ?? 0) + votes);
      if (i < rest) partial.set(letter, (partial.get(letter) ?? 0) + votes);
    }
    const full = Math.floor(total / this.size);
    const out = new Map<string, number>();
    for (const [l, v] of cycle) out.set(l, v * full + (partial.get(l) ?? 0));
    for (const l of [...out.keys()]) if (out.get(l) === 0) out.delete(l);
    return out;
  }

  /** Letter → the votes of each of its messages among the first `total`, in order. */
  votesByLetter(total: number): Map<string, number[]> {
    const out = new Map<string, number[]>();
    for (let i = 0; i < total; i++) {
      const { letter, votes } = this.message(i);
      let l = out.get(letter);
      if (!l) out.set(letter, (l = []));
      l.push(votes);
    }
    return out;
  }

  /** The global message index of the j-th (0-based) message carrying letter `code`. */
  indexOfOccurrence(code: number, j: number): number {
    const pos = this.positions[code]!;
    const c = Math.floor(j / pos.length);
    return c * this.size + pos[j - c * pos.length]!;
  }
}

/**
 * sequence_window frames as `sequenceWindowGenerator` makes them: message idx carries key
 * `key-(idx mod K)` and value ⌊idx / K⌋ + 1, so each key counts 1, 2, 3, … and an output's
 * (key, value) gives back idx exactly (with `shuffleFirstRound`, the first K messages carry the
 * keys in another order, each with value 1: the same set of (key, value)). `firstKey` shifts the
 * key names (key-(firstKey + …)), for a second load whose outputs must be told apart from the
 * first's.
 */
export class SequenceWorkload implements Workload {
  readonly name = "sequence_window";
  private readonly keyBytes: Uint8Array[];
  private readonly buf = new Uint8Array(BATCH_BYTES);
  /** The first round's order of keys (message i < K carries key firstRound[i]), if not 0, 1, 2, … */
  private readonly firstRound: Uint32Array | undefined;
  taken = 0;

  constructor(
    readonly keys: number,
    firstKey = 0,
    /**
     * Send the first round (each key's value 1) in a shuffled order, seeded: the workers then
     * create each key's state in an order unrelated to the round-robin order of the rounds after
     * it, as keys that appear over time would. Created in key order, consecutive keys' states lie
     * next to each other in memory and a round-robin load reads them as a sequential scan, which
     * no real load does and a restored checkpoint (installed slot by slot) does not give either.
     */
    opts: { shuffleFirstRound?: number } = {},
  ) {
    const enc = new TextEncoder();
    this.keyBytes = Array.from({ length: keys }, (_, i) => enc.encode(sequenceWindowKey(firstKey + i)));
    if (opts.shuffleFirstRound !== undefined) {
      const rnd = createUnitRng(opts.shuffleFirstRound);
      const p = Uint32Array.from({ length: keys }, (_, i) => i);
      for (let i = keys - 1; i > 0; i--) {
        const j = Math.floor(rnd() * (i + 1));
        const t = p[i]!;
        p[i] = p[j]!;
        p[j] = t;
      }
      this.firstRound = p;
    }
  }

  take(max: number): { bytes: Uint8Array; count: number; first: number } {
    const first = this.taken;
    let pos = 0;
    let count = 0;
    while (count < max) {
      const i = first + count;
      const key = this.keyBytes[this.firstRound !== undefined && i < this.keys ? this.firstRound[i]! : i % this.keys]!;
      if (pos + sequenceWindowFrameBytes(key) > this.buf.length) break;
      pos += writeSequenceWindowFrame(this.buf, pos, key, Math.floor(i / this.keys) + 1);
      count++;
    }
    this.taken += count;
    return { bytes: this.buf.subarray(0, pos), count, first };
  }

  /** Messages of key k among the first `total`. */
  sentForKey(k: number, total: number): number {
    return Math.floor(total / this.keys) + (k < total % this.keys ? 1 : 0);
  }
}

/**
 * One source connection: pre-built batches, every partial write honoured (the rest is kept and
 * resumed on `drain`). Either as fast as the socket takes it or at a fixed rate (a 1 ms tick
 * sends what the schedule owes). While the kernel refuses more (`blocked`) nothing new is
 * generated, so a worker's backpressure shows here as `bytes` that stop growing.
 */
export class LoadSender {
  /** Messages this sender took from the workload. */
  sent = 0;
  /** Bytes the kernel accepted. */
  bytes = 0;
  shortWrites = 0;
  private sock: Socket<undefined> | undefined;
  private pending: Uint8Array | null = null;
  private limit = 0;
  private rate = 0;
  private rateT0 = 0;
  private rateBase = 0;
  private timer: ReturnType<typeof setInterval> | undefined;
  private idle: (() => void)[] = [];
  private failed: Error | null = null;
  private closed = false;
  private scheduled = false;
  /** When the kernel last took bytes. */
  private acceptedAt = now();

  constructor(
    readonly workload: Workload,
    /** Called when a chunk's first message is handed to the socket (a bench's send log). */
    private readonly onChunk?: (first: number, t: number) => void,
  ) {}

  /** Connects to a source at `host`, retrying until it accepts or `deadline_ms` passes. */
  async connect(port: number, deadline_ms = 10_000, host = HOST): Promise<this> {
    const end = now() + deadline_ms;
    for (;;) {
      try {
        this.sock = await Bun.connect<undefined>({
          hostname: host,
          port,
          socket: {
            data() {},
            drain: () => this.pump(),
            close: () => this.fail(new Error("source connection closed")),
            error: (_s, e) => this.fail(e),
          },
        });
        return this;
      } catch (e) {
        if (now() > end) throw new Error(`could not connect to source port ${port}: ${(e as Error).message}`);
        // The backoff between connection attempts (the source may not listen yet), bounded by the deadline.
        await Bun.sleep(50);
      }
    }
  }

  /** A write the kernel did not take whole is waiting for `drain`. */
  get blocked(): boolean {
    return this.pending !== null;
  }

  /** Sends `count` more messages as fast as the socket accepts them. */
  fast(count: number): Promise<void> {
    this.stopTimer();
    this.rate = 0;
    this.limit = this.sent + count;
    const p = this.whenIdle();
    this.pump();
    return p;
  }

  /** Offers `rate` msg/s until `stop()` (or until `count` more messages, if given). */
  atRate(rate: number, count = Infinity): Promise<void> {
    this.stopTimer();
    this.rate = rate;
    this.rateT0 = now();
    this.rateBase = this.sent;
    this.limit = this.sent + count;
    const p = this.whenIdle();
    this.timer = setInterval(() => this.pump(), 1);
    this.pump();
    return p;
  }

  /** Stops generating; resolves once what was generated is in the kernel. */
  stop(): Promise<void> {
    this.stopTimer();
    this.limit = this.sent;
    const p = this.whenIdle();
    this.finishIfIdle();
    return p;
  }

  /** Closes the connection; whoever waits on this sender is released, not failed. */
  close(): void {
    this.stopTimer();
    this.closed = true;
    this.sock?.end();
    this.finishIfIdle();
  }

  /**
   * Resolves once the kernel has taken no byte for `hold_ms` while a write waits: the other end
   * stopped reading. A source that is still read, however slowly, never gets there.
   */
  async waitStalled(hold_ms: number, deadline_ms: number): Promise<void> {
    await poll(`the source to stop being read for ${hold_ms} ms`, deadline_ms, () => this.blocked && now() - this.acceptedAt >= hold_ms, {
      every_ms: 20,
    }).catch((err: Error) => {
      throw new Error(`${err.message}; ${this.bytes} bytes accepted, ${this.blocked ? "blocked" : "not blocked"}, last accepted ${Math.round(now() - this.acceptedAt)} ms ago`);
    });
  }

  private stopTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private whenIdle(): Promise<void> {
    const p = new Promise<void>((resolve, reject) => {
      this.idle.push(() => (this.failed && !this.closed ? reject(this.failed) : resolve()));
    });
    // A caller that never awaits (the test ended, the workers were killed) must not turn the
    // closed connection into an unhandled rejection; one that awaits still sees it.
    p.catch(() => {});
    return p;
  }

  private fail(e: Error): void {
    if (!this.failed && this.limit > this.sent) this.failed = e;
    this.finishIfIdle();
  }

  private finishIfIdle(): void {
    if (this.closed || this.failed || (this.pending === null && this.sent >= this.limit)) {
      this.stopTimer();
      const waiting = this.idle;
      this.idle = [];
      for (const f of waiting) f();
    }
  }

  private target(): number {
    if (this.rate === 0) return this.limit;
    const owed = this.rateBase + Math.floor((this.rate * (now() - this.rateT0)) / 1000);
    return Math.min(this.limit, owed);
  }

  private pump(): void {
    if (this.failed || this.closed || !this.sock) return this.finishIfIdle();
    let written = 0;
    // One snapshot of the schedule per call: re-reading the clock inside the loop would keep
    // owing a message or two per write and never return to the event loop.
    const target = this.target();
    try {
      for (;;) {
        if (this.pending === null) {
          const want = target - this.sent;
          if (want <= 0) break;
          const c = this.workload.take(want);
          this.onChunk?.(c.first, now());
          this.sent += c.count;
          this.pending = c.bytes;
        }
        const n = this.sock.write(this.pending);
        if (n < 0) return this.fail(new Error("source connection closed"));
        this.bytes += n;
        written += n;
        if (n < this.pending.length) {
          // Bun keeps nothing of a short write, and the workload reuses its buffer on the next
          // take(): hold a private copy of the rest; `drain` calls pump again.
          this.pending = this.pending.slice(n);
          this.shortWrites++;
          return;
        }
        this.pending = null;
        if (written >= 4 * 1024 * 1024) {
          // Let a receiver in this same process run; come back on the next turn.
          if (!this.scheduled) {
            this.scheduled = true;
            setImmediate(() => {
              this.scheduled = false;
              this.pump();
            });
          }
          return;
        }
      }
      this.finishIfIdle();
    } finally {
      if (written > 0) this.acceptedAt = now();
    }
  }
}
