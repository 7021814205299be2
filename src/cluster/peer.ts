// One other worker as seen from here: the control and data connections this worker dialed to
// it (each direction of a pair is its own connection, written only by its dialer, so the order
// of what we send is the order it is received). Data records are staged per event-loop turn and
// written as one DATA batch frame; any other frame first closes the open batch, which keeps
// records and markers in the order they were produced.
import { writeU32 } from "../codec/frame.ts";
import {
  DATA_HEADER_BYTES,
  DATA_KIND,
  RECORD_FLAG,
  beginFrame,
  encodeBarrier,
  encodeHello,
  encodeMarker,
  encodeStatePacked,
  encodeStateEnd,
  entryEnd,
  packEntry,
  recordBytes,
  utf8Length,
  writeRecordHead,
  writeTime,
  TIME_FRAME_BYTES,
  type StateEntry,
} from "../codec/data.ts";
import { encodeControl, type ControlBody, type ControlName, type Member } from "../codec/control.ts";
import type { Link } from "../net/transport.ts";
import { ByteBuilder } from "../codec/bytes.ts";
import type { PackedSlot } from "../runtime/keyed-state.ts";

/**
 * A batch open this long (in processing time) goes out at once instead of at the end of the
 * turn. A turn can be long: the initializer runs a whole source chunk through its own steps
 * before the turn ends, and with a compute-bound step (bench/scaleout.ts, ≈ 24 µs a message) the
 * records it routed to another worker waited tens of milliseconds while that worker idled.
 * Checked every BATCH_CLOCK_EVERY records, so a fast job pays one clock read per 64 records.
 */
export const BATCH_MAX_OPEN_MS = 1;
const BATCH_CLOCK_EVERY = 64;

/** Upper bound of one STATE frame's entries, so a large slot streams in pieces. */
const STATE_FRAME_BYTES = 1024 * 1024;

export class Peer {
  control: Link | undefined;
  data: Link | undefined;
  alive = true;
  private seq = 0;
  private stage = new Uint8Array(64 * 1024);
  private stageLen = 0;
  private stageCount = 0;
  private stageEpoch = 0;
  /** When the input of the batch's first record was ingested (negative: unknown). */
  private stageIngest = -1;
  /** When the batch got its first record (`now()`). */
  private stageOpened = 0;
  private scheduled = false;
  dropped = 0;
  /** DATA frames and records written to the data link. */
  batches = 0;
  records = 0;

  constructor(
    public member: Member,
    private readonly epochNow: () => number,
    /** When the input being processed now was ingested (ms since the epoch; negative: unknown). */
    private readonly ingestNow: () => number = () => -1,
    /** Monotonic milliseconds (the worker's clock). */
    private readonly now: () => number = () => 0,
  ) {}

  get id(): number {
    return this.member.id;
  }
  get name(): string {
    return this.member.name;
  }

  get congested(): boolean {
    return (this.data?.congested ?? false) || this.stageLen > 4 * 1024 * 1024;
  }

  sendControl<N extends ControlName>(type: N, body: ControlBody<N>): boolean {
    if (!this.control || this.control.closed) return false;
    this.control.write(encodeControl(type, body));
    return true;
  }

  helloData(selfName: string, selfId: number): void {
    this.data?.write(encodeHello(this.seq++, this.epochNow(), selfName, selfId));
  }

  /** Appends one record; the payload is written by `fill` at the returned offset. */
  record(stage: number, raw: boolean, slot: number, key: string, payload: Uint8Array, start: number, end: number): void {
    if (!this.data || this.data.closed) {
      this.dropped++;
      return;
    }
    const kb = utf8Length(key);
    const pl = end - start;
    const need = recordBytes(kb, pl);
    if (this.stageLen + need > this.stage.length) this.growStage(need);
    const p = writeRecordHead(this.stage, this.stageLen, stage, raw ? RECORD_FLAG.raw : 0, slot, key, kb, pl);
    // A short payload is copied byte by byte: `subarray` would allocate a view per record.
    if (pl < 64) for (let i = 0; i < pl; i++) this.stage[p + i] = payload[start + i]!;
    else this.stage.set(payload.subarray(start, end), p);
    this.stageLen = p + pl;
    if (this.stageCount === 0) {
      this.stageEpoch = this.epochNow();
      this.stageIngest = this.ingestNow();
      this.stageOpened = this.now();
    }
    this.stageCount++;
    if ((this.stageCount & (BATCH_CLOCK_EVERY - 1)) === 0 && this.now() - this.stageOpened >= BATCH_MAX_OPEN_MS) {
      this.flushBatch();
      this.data.flush();
      return;
    }
    if (!this.scheduled) {
      this.scheduled = true;
      queueMicrotask(this.flushTask);
    }
  }

  private growStage(need: number): void {
    let size = this.stage.length * 2;
    while (size < this.stageLen + need) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.stage.subarray(0, this.stageLen));
    this.stage = next;
  }

  private readonly flushTask = () => {
    this.scheduled = false;
    this.flushBatch();
  };

  /** Writes the staged records as one DATA frame. */
  flushBatch(): void {
    if (this.stageCount === 0) return;
    const link = this.data;
    if (!link || link.closed) {
      this.dropped += this.stageCount;
    } else {
      const out = link.out;
      out.ensure(TIME_FRAME_BYTES + DATA_HEADER_BYTES + 4 + this.stageLen);
      // The batch's ingest time goes just before it, so the end-to-end latency of what the peer
      // outputs from it still counts from the source.
      if (this.stageIngest >= 0) out.len = writeTime(out.buf, out.len, this.seq++, this.stageEpoch, this.stageIngest);
      const start = out.len;
      let p = beginFrame(out.buf, start, DATA_KIND.data, this.seq++, this.stageEpoch);
      writeU32(out.buf, p, this.stageCount);
      p += 4;
      out.buf.set(this.stage.subarray(0, this.stageLen), p);
      p += this.stageLen;
      writeU32(out.buf, start, p - start - 4);
      out.len = p;
      this.batches++;
      this.records += this.stageCount;
      link.flushSoon();
    }
    this.stageLen = 0;
    this.stageCount = 0;
    if (this.stage.length > 1024 * 1024) this.stage = new Uint8Array(64 * 1024);
  }

  marker(epoch: number, slots: readonly number[]): void {
    this.flushBatch();
    this.data?.write(encodeMarker(this.seq++, epoch, slots));
  }

  /** A checkpoint's barrier: after every record this worker sent to this peer so far. */
  /** Returns false when there is no data link to send it on (the checkpoint cannot complete). */
  barrier(checkpoint: number, round: number): boolean {
    this.flushBatch();
    if (!this.data || this.data.closed) return false;
    this.data.write(encodeBarrier(this.seq++, this.epochNow(), checkpoint, round));
    return true;
  }

  /** Streams a slot's state in frames of bounded size, then STATE_END. Returns bytes sent. */
  sendState(epoch: number, slot: number, entries: readonly StateEntry[]): number {
    const o = new ByteBuilder(4096);
    for (const e of entries) packEntry(o, e);
    return this.sendStatePacked(epoch, slot, { count: entries.length, bytes: o.buf.subarray(0, o.len) });
  }

  /** A slot's packed entries in STATE frames of about STATE_FRAME_BYTES, cut between entries, then its STATE_END. */
  sendStatePacked(epoch: number, slot: number, packed: PackedSlot): number {
    this.flushBatch();
    const b = packed.bytes;
    let bytes = 0;
    let from = 0;
    let n = 0;
    let p = 0;
    while (p < b.length) {
      p = entryEnd(b, p);
      n++;
      if (p - from >= STATE_FRAME_BYTES || p === b.length) {
        const f = encodeStatePacked(this.seq++, epoch, slot, n, b, from, p);
        bytes += f.length;
        this.data?.write(f);
        from = p;
        n = 0;
      }
    }
    const end = encodeStateEnd(this.seq++, epoch, slot, packed.count);
    bytes += end.length;
    this.data?.write(end);
    return bytes;
  }

  close(): void {
    this.flushBatch();
    this.alive = false;
    this.control?.end();
    this.data?.end();
  }
}
