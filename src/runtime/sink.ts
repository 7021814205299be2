// This worker's own connection to the user's receiver (`--out`). While the receiver is down or
// slow the sink holds back: outputs stay in one bounded buffer and `congested` tells the
// dataflow to stop reading its inputs, so nothing is dropped and memory does not grow.
import type { HostPort } from "../address.ts";
import type { Clock, Timer } from "../clock.ts";
import { formatHostPort } from "../address.ts";
import { log } from "../log.ts";
import { LINK_LIMITS, type Link, type Transport } from "../net/transport.ts";
import { writeUtf8, utf8Length } from "../codec/data.ts";

export const SINK_RECONNECT_MS = 250;

export class Sink {
  private link: Link | undefined;
  /** Outputs produced while disconnected; bounded by the dataflow pausing at high water. */
  private pending = new Uint8Array(64 * 1024);
  private pendingLen = 0;
  private closing = false;
  private connecting = false;
  private timer: Timer | undefined;
  private warnedDown = false;
  written = 0;
  onWritable: () => void = () => {};

  constructor(
    private readonly addr: HostPort,
    private readonly transport: Transport,
    private readonly clock: Clock,
  ) {}

  start(): void {
    void this.connect();
  }

  get connected(): boolean {
    return this.link !== undefined && !this.link.closed;
  }

  /** True while the dataflow must not produce more output. */
  get congested(): boolean {
    if (this.link) return this.link.congested;
    return this.pendingLen > LINK_LIMITS.highWaterBytes;
  }

  get queuedBytes(): number {
    return this.link ? this.link.queuedBytes : this.pendingLen;
  }

  writeString(s: string): void {
    const n = s.length <= 64 ? utf8Length(s) : Buffer.byteLength(s);
    const out = this.link?.out;
    if (out) {
      out.ensure(n);
      out.len = writeUtf8(out.buf, out.len, s);
      this.link!.flushSoon();
    } else {
      this.ensurePending(n);
      this.pendingLen = writeUtf8(this.pending, this.pendingLen, s);
    }
    this.written++;
  }

  writeBytes(b: Uint8Array): void {
    if (this.link) this.link.write(b);
    else {
      this.ensurePending(b.length);
      this.pending.set(b, this.pendingLen);
      this.pendingLen += b.length;
    }
    this.written++;
  }

  private ensurePending(n: number): void {
    if (this.pendingLen + n <= this.pending.length) return;
    let size = this.pending.length * 2;
    while (size < this.pendingLen + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.pending.subarray(0, this.pendingLen));
    this.pending = next;
  }

  private async connect(): Promise<void> {
    if (this.closing || this.connecting) return;
    this.connecting = true;
    try {
      const link = await this.transport.connect(
        this.addr.host,
        this.addr.port,
        {
          data() {},
          drain: () => this.onWritable(),
          close: (l, err) => this.lost(l, err),
        },
        2000,
      );
      this.connecting = false;
      if (this.closing) {
        link.destroy();
        return;
      }
      this.link = link;
      if (this.warnedDown) log.info("sink_connected", `Sink connected to ${formatHostPort(this.addr)}`);
      this.warnedDown = false;
      if (this.pendingLen > 0) {
        link.write(this.pending.subarray(0, this.pendingLen));
        this.pendingLen = 0;
        this.pending = new Uint8Array(64 * 1024);
      }
      this.onWritable();
    } catch (err) {
      this.connecting = false;
      if (!this.warnedDown) {
        log.warn("sink_unreachable", `Sink ${formatHostPort(this.addr)} is not reachable (${(err as Error).message}); retrying every ${SINK_RECONNECT_MS} ms and holding output back`);
        this.warnedDown = true;
      }
      this.retry();
    }
  }

  private lost(l: Link, err?: Error): void {
    if (this.link !== l) return;
    this.link = undefined;
    // Bytes the kernel had not taken are kept and re-sent on the next connection.
    if (l.queuedBytes > 0) {
      this.ensurePending(l.queuedBytes);
      this.pending.set(l.out.buf.subarray(0, l.out.len), this.pendingLen);
      this.pendingLen += l.out.len;
    }
    if (this.closing) return;
    log.warn("sink_lost", `Sink connection to ${formatHostPort(this.addr)} closed${err ? ` (${err.message})` : ""}; reconnecting`);
    this.warnedDown = true;
    this.retry();
  }

  private retry(): void {
    if (this.closing || this.timer) return;
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      void this.connect();
    }, SINK_RECONNECT_MS);
  }

  /** Flushes what is queued (waiting at most `deadlineMs` for the receiver), then closes. */
  async close(deadlineMs: number): Promise<void> {
    const until = this.clock.now() + deadlineMs;
    while ((this.pendingLen > 0 || (this.link?.queuedBytes ?? 0) > 0) && this.clock.now() < until) {
      if (!this.link && !this.connecting && !this.timer) void this.connect();
      await this.clock.sleep(10);
    }
    this.closing = true;
    if (this.timer) this.clock.clearTimeout(this.timer);
    const link = this.link;
    this.link = undefined;
    if (link) {
      link.end();
      const endBy = this.clock.now() + 1000;
      while (!link.closed && this.clock.now() < endBy) await this.clock.sleep(5);
      if (!link.closed) link.destroy();
    }
  }
}
