// This worker's own connection to the user's receiver (`--out`). While the receiver is down or
// slow the sink holds back: outputs stay in one bounded buffer and `congested` tells the
// dataflow to stop reading its inputs, so nothing is dropped and memory does not grow.
import type { HostPort } from "../address.ts";
import type { Clock, Timer } from "../clock.ts";
import { formatHostPort } from "../address.ts";
import { log } from "../log.ts";
import { LINK_LIMITS, type Link, type Transport } from "../net/transport.ts";
import type { Encoder } from "../app/types.ts";
import { GrowBuffer } from "../net/out-buffer.ts";
import { BufferWriter, encodeInto } from "./output-writer.ts";

export const SINK_RECONNECT_MS = 250;

export class Sink {
  private link: Link | undefined;
  /** Outputs produced while disconnected; bounded by the dataflow pausing at high water. */
  private pending = new GrowBuffer();
  private closing = false;
  private connecting = false;
  private timer: Timer | undefined;
  private warnedDown = false;
  written = 0;
  /** Bytes the kernel took on connections closed since; connections made after the first. */
  private bytesOfClosedLinks = 0;
  reconnects = 0;
  private everConnected = false;
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
    return this.pending.len > LINK_LIMITS.highWaterBytes;
  }

  /** Output bytes handed to the kernel so far, over every connection. */
  get sentBytes(): number {
    return this.bytesOfClosedLinks + (this.link?.sentBytes ?? 0);
  }

  get queuedBytes(): number {
    return this.link ? this.link.queuedBytes : this.pending.len;
  }

  /**
   * A mark of every output so far: `handedOver(mark)` says when all of it has left this process
   * (the kernel took it), outputs written after the mark aside.
   */
  mark(): { link: Link | undefined; bytes: number } {
    const l = this.link;
    return { link: l, bytes: l ? l.sentBytes + l.queuedBytes : this.pending.len };
  }

  handedOver(mark: { link: Link | undefined; bytes: number }): boolean {
    const l = this.link;
    // Reconnected since (or never connected): what was queued then went, or goes, first on this link.
    if (!l || l !== mark.link) return l !== undefined && l.queuedBytes === 0 && this.pending.len === 0;
    return l.sentBytes >= mark.bytes;
  }

  /**
   * Handed to encoders: writes straight into where output goes now, the connection's buffer or
   * the pending one while disconnected. Pointed again whenever either changes (`retarget`), which
   * is never while an output is encoded.
   */
  private readonly writer = new BufferWriter(this.pending);

  private retarget(): void {
    this.writer.o = this.link ? this.link.out : this.pending;
  }

  /** One output; returns why it was dropped (the encoder threw or returned a wrong type), or null. */
  output(encode: Encoder<unknown>, msg: unknown): string | null {
    const failure = encodeInto(encode, msg, this.writer);
    if (failure) return failure;
    this.written++;
    this.link?.flushSoon();
    return null;
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
      if (this.everConnected) this.reconnects++;
      this.everConnected = true;
      if (this.warnedDown) log.info("sink_connected", `Sink connected to ${formatHostPort(this.addr)}`);
      this.warnedDown = false;
      if (this.pending.len > 0) {
        link.write(this.pending.buf.subarray(0, this.pending.len));
        this.pending = new GrowBuffer();
      }
      this.retarget();
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
    this.bytesOfClosedLinks += l.sentBytes;
    // Bytes the kernel had not taken are kept and re-sent on the next connection.
    if (l.queuedBytes > 0) this.pending.append(l.out.buf.subarray(0, l.out.len));
    this.retarget();
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
    while ((this.pending.len > 0 || (this.link?.queuedBytes ?? 0) > 0) && this.clock.now() < until) {
      if (!this.link && !this.connecting && !this.timer) void this.connect();
      await this.clock.sleep(10);
    }
    this.closing = true;
    if (this.timer) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    // Output given up on is said, with its size: nothing is dropped without a line.
    const undelivered = this.pending.len + (this.link?.queuedBytes ?? 0);
    if (undelivered > 0)
      log.warn(
        "sink_undelivered",
        `Sink ${formatHostPort(this.addr)}: ${undelivered} bytes of output still undelivered after ${deadlineMs} ms; closing anyway`,
        { bytes: undelivered },
      );
    const link = this.link;
    this.link = undefined;
    this.retarget();
    if (link) {
      link.end();
      const endBy = this.clock.now() + 1000;
      while (!link.closed && this.clock.now() < endBy) await this.clock.sleep(5);
      if (!link.closed) link.destroy();
      this.bytesOfClosedLinks += link.sentBytes;
    }
  }
}
