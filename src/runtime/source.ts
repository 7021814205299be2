// A TCP source (`--in`): accepts client connections, cuts u32-length frames and hands each
// payload to the dataflow. It stays muted (connections accepted, nothing read) until the cluster
// is ready, and pauses every connection while downstream is congested — backpressure reaches the
// client's TCP window instead of our memory.
import type { SourceAddress } from "../address.ts";
import { formatHostPort } from "../address.ts";
import { FrameReader } from "../codec/frame.ts";
import { log } from "../log.ts";
import type { Link, Server, Transport } from "../net/transport.ts";
import { systemClock, type Clock } from "../clock.ts";
import { Histogram } from "../metrics/histogram.ts";
import { ChunkMeter } from "./chunk-meter.ts";
import { LoggedChunk, type LogFrames } from "./logged-chunk.ts";

export type Ingest = (buf: Uint8Array, start: number, end: number, conn: number) => void;

/** Told when a chunk's frames were read (ingested now) and when they are all handled. */
export interface ChunkObserver {
  chunkStart(ingestMs: number): void;
  chunkEnd(): void;
}

export class Source {
  private server: Server | undefined;
  private readonly conns = new Set<Link>();
  private muted = true;
  private paused = false;
  frames = 0;
  rejectedConnections = 0;
  connections = 0;
  closedConnections = 0;
  /** Times the source paused (backpressure, a checkpoint, a member down); their time is `pausedMs`. */
  pauses = 0;
  private pausedTotalMs = 0;
  private pausedSince = 0;
  private readonly meter: ChunkMeter;
  /** Time spent on each chunk, per frame. */
  readonly seconds = new Histogram();

  constructor(
    readonly name: string,
    private readonly addr: SourceAddress,
    private readonly transport: Transport,
    private readonly ingest: Ingest,
    /** Called after each chunk, so the dataflow can check for congestion once per chunk. */
    private readonly afterChunk: () => void,
    /** With resilience: the input log, written before the frames are processed. */
    private readonly record?: LogFrames,
    private readonly clock: Clock = systemClock,
    private readonly observer?: ChunkObserver,
  ) {
    this.meter = new ChunkMeter(clock);
  }

  get port(): number {
    return this.server?.port ?? this.addr.port;
  }

  async listen(): Promise<void> {
    log.info("source_will_listen", `${this.name} source will listen (but not yet) on ${formatHostPort(this.addr)}`);
    this.server = await this.transport.listen(this.addr.host, this.addr.port, (link) => {
      this.conns.add(link);
      this.connections++;
      if (this.muted || this.paused) link.pause();
      const reader = new FrameReader(this.addr.maxFrame);
      const logged = this.record ? new LoggedChunk(this.record, this.ingest, link.id) : undefined;
      const onFrame = (buf: Uint8Array, start: number, end: number) => {
        this.frames++;
        this.ingest(buf, start, end, link.id);
      };
      return {
        data: (l, chunk) => {
          const before = this.frames;
          this.meter.begin();
          this.observer?.chunkStart(this.clock.epochMs());
          let err;
          if (logged) {
            logged.begin(chunk);
            err = reader.feed(chunk, logged.collect);
            this.frames += logged.end();
          } else err = reader.feed(chunk, onFrame);
          if (err) {
            log.error(
              "source_frame_oversized",
              `${this.name} source: frame of ${err.claimed} bytes from ${l.remote} exceeds max ${err.max}. Closed connection.`,
            );
            this.rejectedConnections++;
            l.destroy();
          }
          this.meter.end(this.frames - before, this.seconds);
          this.observer?.chunkEnd();
          this.afterChunk();
        },
        close: (l) => {
          this.conns.delete(l);
          this.closedConnections++;
          if (reader.pending > 0) log.warn("source_truncated", `${this.name} source: connection from ${l.remote} closed inside a frame (${reader.pending} bytes dropped)`);
        },
      };
    });
    log.info("source_listening", `${this.name} source is listening on ${formatHostPort(this.server)}`);
  }

  unmute(): void {
    this.muted = false;
    if (!this.paused) for (const c of this.conns) c.resume();
  }

  mute(): void {
    this.muted = true;
    for (const c of this.conns) c.pause();
  }

  /** Backpressure: stop reading every client connection. */
  pause(): void {
    if (this.paused) return;
    this.paused = true;
    this.pauses++;
    this.pausedSince = this.clock.now();
    for (const c of this.conns) c.pause();
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.pausedTotalMs += this.clock.now() - this.pausedSince;
    if (!this.muted) for (const c of this.conns) c.resume();
  }

  /** Time paused so far, the pause under way included. */
  get pausedMs(): number {
    return this.pausedTotalMs + (this.paused ? this.clock.now() - this.pausedSince : 0);
  }

  get isPaused(): boolean {
    return this.paused;
  }

  stop(): void {
    this.server?.stop();
    for (const c of this.conns) c.destroy();
    this.conns.clear();
  }
}
