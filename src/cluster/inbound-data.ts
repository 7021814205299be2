// One data connection from a peer, read side: cuts frames, checks their sequence numbers, holds
// back frames routed under a table this worker has not applied yet, and hands records, markers
// and state to the dataflow and the migration. A frame that breaks the protocol closes the
// connection (the peer is then lost); nothing here throws on bad input.
import { DATA_KIND, DATA_MAX_FRAME, readHead, visitBody, type DataVisitor, type FrameHead } from "../codec/data.ts";
import { FrameReader, readU32 } from "../codec/frame.ts";
import type { Clock } from "../clock.ts";
import { Histogram } from "../metrics/histogram.ts";
import { ChunkMeter } from "../runtime/chunk-meter.ts";
import { log } from "../log.ts";
import type { Link } from "../net/transport.ts";
import type { Dataflow } from "../runtime/dataflow.ts";
import type { Migration } from "./migration.ts";

/** What came in on the data links from one member (by name, across its connections). */
export interface InboundStats {
  bytes: number;
  frames: number;
  /** DATA frames, and the records in them. */
  batches: number;
  records: number;
  /** Connections closed for a malformed or oversized frame. */
  malformed: number;
  /** Time spent per record, measured per chunk. */
  readonly seconds: Histogram;
}

export function newInboundStats(): InboundStats {
  return { bytes: 0, frames: 0, batches: 0, records: 0, malformed: 0, seconds: new Histogram() };
}

export interface InboundHost {
  readonly clock: Clock;
  /** The stats of the member of this name (kept while this worker runs). */
  statsOf(name: string): InboundStats;
  readonly dataflow: Dataflow;
  readonly migration: Migration;
  /** This worker's sink is congested, so its inputs stay paused. */
  pausedForSink(): boolean;
  /** After each chunk: output it produced may have filled the sink. */
  afterChunk(): void;
  /** The connection closed: the peer that dialed it is lost. */
  lost(peerId: number): void;
  /** The member `id` of this name was cut off: nothing it sent may be applied any more. */
  refused(name: string, id: number): boolean;
  /** A checkpoint's barrier from member `from`, on this connection. */
  barrier(from: number, checkpoint: number, round: number, on: InboundData): void;
  /** Frames of an epoch below this were in flight before a rollback: discarded. */
  floor(): number;
  /** The epoch of the rollback that took member `name` back after a crash (0 if none). */
  admittedAt(name: string): number;
  /**
   * Whether `inb`, which just said hello, may speak for its sender: not while another open
   * connection of the same incarnation does, nor under a name another member id holds.
   */
  mayClaim(inb: InboundData): boolean;
  /** Member `id` of this name is (or was, while it leaves) a member here. */
  isMember(id: number, name: string): boolean;
}

/** Scratch for peeking at a frame's head without disturbing the connection's own. */
const peek: FrameHead = { kind: 0, seq: 0, epoch: 0 };

export class InboundData {
  private readonly reader = new FrameReader(DATA_MAX_FRAME);
  private readonly head: FrameHead = { kind: 0, seq: 0, epoch: 0 };
  private readonly visitor: DataVisitor;
  /**
   * Frames that arrived ahead of this worker's table, in order. Reading stops while any wait,
   * so this holds at most the rest of one chunk.
   */
  private readonly blocked: Uint8Array[] = [];
  private peerId = -1;
  /** Its sender was cut off: the rest of what it sent is dropped unread. */
  private cutOff = false;
  private name = "";
  private seq = 0;
  /** Its sender was found a member here (checked at its first frame after the hello). */
  private verified = false;
  /** Held at a checkpoint's barrier: what follows it waits until this worker took its images. */
  private held = false;
  /** The epoch its hello carried: a link from before a rollback belongs to an earlier incarnation. */
  private helloEpoch = 0;
  /** Counted here until the hello says whose the connection is. */
  private stats: InboundStats = newInboundStats();
  /** Records handled on this connection (the stats may change hands at the hello). */
  private handled = 0;
  private readonly meter: ChunkMeter;

  constructor(
    readonly link: Link,
    private readonly host: InboundHost,
  ) {
    const df = host.dataflow;
    const mig = host.migration;
    this.meter = new ChunkMeter(host.clock);
    this.visitor = {
      record: (stage, flags, slot, key, buf, s, e) => df.receive(stage, flags, slot, key, buf, s, e),
      marker: (slots) => mig.onMarker(this.sender(), this.head.epoch, slots),
      state: (slot, stage, key, buf, s, e) => mig.onState(slot, stage, key, buf, s, e),
      stateEnd: (slot, keys) => mig.onStateEnd(slot, keys),
      barrier: (k, round) => host.barrier(this.sender(), k, round, this),
      time: (ms) => df.latency.from(ms),
      hello: (name, id) => {
        this.name = name;
        this.stats = host.statsOf(name);
        this.helloEpoch = this.head.epoch;
        // The sender's id: a new incarnation of a name is not its predecessor (the id is always
        // known to the sender; a joiner's may not be known here yet).
        this.peerId = id;
        if (!host.mayClaim(this)) {
          this.cutOff = true;
          log.warn("data_impostor", `A data connection from ${this.link.remote} claims to be worker ${name} (id ${id}), which has one already; closed it unread`);
          this.link.destroy();
          return;
        }
        if (host.refused(name, id)) {
          // Its hello came late (a slow or partitioned link) from a member already declared
          // dead: what follows was sent before it died and the cluster has moved on without it.
          this.cutOff = true;
          log.warn("data_from_removed", `Data connection from worker ${name}, which was removed, closed unread`);
          this.link.destroy();
          return;
        }
        this.sender();
      },
    };
    if (host.pausedForSink()) link.pause();
  }

  /** The member at the other end (its id from its hello), -1 before the hello, -2 once forgotten. */
  sender(): number {
    return this.peerId;
  }

  /** The epoch its hello carried (an incarnation after a rollback carries a later one). */
  get helloAt(): number {
    return this.helloEpoch;
  }

  /** The name it said hello with (empty before). */
  get senderName(): string {
    return this.name;
  }

  /**
   * Its sender left or was removed: the connection (open while the sender finishes) speaks for
   * nobody any more, so its close is no one's, not a later member's of the same name.
   */
  forgetSender(): void {
    this.peerId = -2;
  }

  /** Frames after the one being handled wait (in order) until `unhold`. */
  hold(): void {
    this.held = true;
  }

  unhold(): void {
    this.held = false;
    if (this.blocked.length > 0) this.release(this.host.migration.epoch);
    else this.resume();
  }

  private readonly onFrame = (buf: Uint8Array, start: number, end: number): void => {
    if (this.cutOff) return;
    if (this.held || this.blocked.length > 0 || this.ahead(buf, start, end)) {
      if (this.blocked.length === 0) this.link.pause();
      this.blocked.push(buf.slice(start, end));
      return;
    }
    this.handle(buf, start, end);
  };

  onChunk(chunk: Uint8Array): void {
    const before = this.handled;
    this.meter.begin();
    this.host.dataflow.chunkStart();
    const err = this.reader.feed(chunk, this.onFrame);
    this.stats.bytes += chunk.length;
    this.meter.end(this.handled - before, this.stats.seconds);
    this.host.dataflow.chunkEnd();
    this.host.afterChunk();
    if (err) {
      this.stats.malformed++;
      log.error("data_oversized", `Data frame of ${err.claimed} bytes from ${this.name || this.link.remote} exceeds ${err.max}. Closed connection.`);
      this.link.destroy();
    }
  }

  onClose(): void {
    if (this.cutOff) return;
    // Opened by its sender's earlier incarnation (before the rollback that took it back): that
    // loss is settled.
    if (this.helloEpoch < this.host.admittedAt(this.name)) return;
    const id = this.sender();
    if (id >= 0) this.host.lost(id);
  }

  /**
   * A frame routed under a table this worker has not applied yet must wait for the plan (or the
   * rollback). While a rollback restores the state, records wait per slot in the dataflow instead
   * (its slots are INCOMING until installed).
   */
  private ahead(buf: Uint8Array, start: number, end: number): boolean {
    if (readHead(buf, start, end, peek) !== null) return false;
    return peek.kind !== DATA_KIND.hello && peek.epoch > this.host.migration.epoch;
  }

  private handle(buf: Uint8Array, start: number, end: number): void {
    const h = this.head;
    const err = readHead(buf, start, end, h) ?? (h.seq !== this.seq ? `sequence ${h.seq} where ${this.seq} was expected` : null);
    if (err) {
      this.stats.malformed++;
      log.error("data_malformed", `Malformed data frame from ${this.name || this.link.remote}: ${err}. Closed connection.`);
      this.link.destroy();
      return;
    }
    // One connection, one sender, said first: nothing is applied from a connection that did not say
    // who it speaks for, and a second hello cannot change it.
    if ((h.kind === DATA_KIND.hello) !== (this.peerId === -1) && this.peerId !== -2) {
      const why = h.kind === DATA_KIND.hello ? "a second hello" : "a frame before its hello";
      log.error("data_malformed", `Malformed data frame from ${this.name || this.link.remote}: ${why}. Closed connection.`);
      this.cutOff = true;
      this.link.destroy();
      return;
    }
    // A joiner's hello may come before this worker heard of it, but nothing it sends is handled
    // before then (it is routed under a table that names it): a frame from a sender nobody
    // admitted is a forgery.
    if (!this.verified && h.kind !== DATA_KIND.hello && this.peerId >= 0) {
      if (!this.host.isMember(this.peerId, this.name)) {
        log.error("data_impostor", `Data frame from ${this.name} (id ${this.peerId}, ${this.link.remote}), which is not a member of this cluster. Closed connection.`);
        this.cutOff = true;
        this.link.destroy();
        return;
      }
      this.verified = true;
    }
    this.seq = (this.seq + 1) >>> 0;
    // Sent before a rollback: the checkpoint it rolled back to does not include it, and the
    // replay produces it again.
    if (h.epoch < this.host.floor() && h.kind !== DATA_KIND.hello) return;
    const verr = visitBody(buf, start, end, h.kind, this.visitor);
    this.stats.frames++;
    if (h.kind === DATA_KIND.data && !verr) {
      const n = readU32(buf, start + 9);
      this.stats.batches++;
      this.stats.records += n;
      this.handled += n;
    }
    if (verr) {
      this.stats.malformed++;
      log.error("data_malformed", `Malformed data frame from ${this.name || this.link.remote}: ${verr}. Closed connection.`);
      this.link.destroy();
    }
  }

  /** The table reached `epoch`: runs the frames that waited for it, and reads on if none wait. */
  release(epoch: number): void {
    if (this.blocked.length === 0) return;
    const before = this.handled;
    this.meter.begin();
    this.host.dataflow.chunkStart();
    while (this.blocked.length > 0 && !this.held) {
      const f = this.blocked[0]!;
      if (readHead(f, 0, f.length, peek) === null && peek.epoch > epoch) break;
      this.blocked.shift();
      this.handle(f, 0, f.length);
    }
    this.meter.end(this.handled - before, this.stats.seconds);
    this.host.dataflow.chunkEnd();
    this.resume();
  }

  /** Reads on unless frames wait for a plan or the sink is congested. */
  resume(): void {
    if (this.blocked.length === 0 && !this.held && !this.host.pausedForSink()) this.link.resume();
  }
}
