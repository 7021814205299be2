// The replayable input log: every frame the initializer accepts from a source connection is
// appended here before it is processed, so after a crash everything after a committed
// checkpoint's position can be fed through again. Positions count frames from 0 over the whole
// life of the log; a checkpoint rotates to a fresh segment so that whole segments can be deleted.
//
// On disk, one directory of segments, each named by the position of its first frame:
//
//   dir/input-<first:20 decimal digits>.log
//   segment = header frame*
//   header  = magic:"WLIL" version:u16be=1 reserved:u16be=0 first:u64be        (16 bytes)
//   frame   = length:u32be payload:byte[length]                               (length ≤ 16 MiB)
//
// Frames are the exact bytes the source received. The header's `first` repeats the name so a
// renamed or copied file is caught. Segment n+1 starts where segment n ends (first + frames), and
// only the last segment may end in a partial frame: a crash in the middle of an append. Frames
// carry no checksum, so a write the OS lost (a machine crash without fsync) is not detectable
// beyond a torn frame or a gap; with fsync on, every append returns only once it is on disk.
import { closeSync, fdatasyncSync, fstatSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readdirSync, readSync, rmdirSync, unlinkSync, writeSync } from "node:fs";
import { dirname, join } from "node:path";
import { assert } from "../assert.ts";
import { FRAME_HEADER_BYTES, readU32, writeU32 } from "../codec/frame.ts";
import { ResilienceError } from "./checkpoint-store.ts";

/** The largest payload a source frame may carry; a longer length on disk is corruption. */
export const INPUT_LOG_MAX_FRAME = 16 * 1024 * 1024;
export const DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024;
export const SEGMENT_HEADER_BYTES = 16;
const SEGMENT_MAGIC = 0x574c494c; // "WLIL"
const SEGMENT_VERSION = 1;
/** read() and the open scan hold at most this much of a file, unless one frame is larger. */
const READ_CHUNK_BYTES = 1024 * 1024;
/** A file segment remembers where a frame starts about every this many bytes, so a read from
 * the middle of a segment walks at most this far instead of from the segment's start. */
const INDEX_EVERY_BYTES = 1024 * 1024;
const NAME_RE = /^input-(\d{20})\.log$/;

export interface InputLog {
  /** Position of the next frame appended (= frames logged so far, including those truncated away). */
  readonly end: number;
  /** First position still held (frames before it were truncated). */
  readonly start: number;
  /** Appends `count` frames given as their exact wire bytes (concatenated `len:u32be payload`), with ONE write; on return they survive a process crash (in the OS); with fsync, a machine crash too. */
  append(framed: Uint8Array, count: number): void;
  /** Calls onFrame(buf, start, end) for up to `max` frames from position `from` (>= start) on, in order, with the payload's bounds; returns the position after the last frame delivered. The view is valid only during the call. */
  read(from: number, max: number, onFrame: (buf: Uint8Array, start: number, end: number) => void): number;
  /** Starts a new segment at the current end (called at each committed checkpoint so whole segments can go). */
  rotate(): void;
  /** Deletes every segment whose frames are all before `pos`. Disk use is then bounded by what came after pos. */
  truncateBefore(pos: number): void;
  /** Bytes on disk (or in memory) now. */
  readonly bytes: number;
  close(): void;
  /** Clean shutdown: close and delete all segments (and the directory if empty). */
  destroy(): void;
}

export type OnLoggedFrame = (buf: Uint8Array, start: number, end: number) => void;

interface Segment {
  readonly first: number;
  count: number;
  bytes: number;
}

// ---------------------------------------------------------------- what both implementations share

/** Positions, segment choice, rollover and truncation; the storage of a segment is the subclass's. */
abstract class SegmentedLog<S extends Segment> implements InputLog {
  /** Never empty while open: the last segment is the one appended to, and holds `end` even when empty. */
  protected readonly segments: S[] = [];
  private totalBytes = 0;
  protected closed = false;

  constructor(private readonly segmentBytes: number) {
    assert(Number.isInteger(segmentBytes) && segmentBytes > 0, `segmentBytes ${segmentBytes} must be a positive integer`);
  }

  get start(): number {
    return this.segments[0]!.first;
  }

  get end(): number {
    const tail = this.tail();
    return tail.first + tail.count;
  }

  get bytes(): number {
    return this.totalBytes;
  }

  append(framed: Uint8Array, count: number): void {
    assert(!this.closed, "append on a closed input log");
    checkFrames(framed, count);
    let tail = this.tail();
    if (tail.count > 0 && tail.bytes >= this.segmentBytes) tail = this.addSegment();
    this.writeFrames(tail, framed, count);
    tail.count += count;
    tail.bytes += framed.length;
    this.totalBytes += framed.length;
  }

  read(from: number, max: number, onFrame: OnLoggedFrame): number {
    assert(!this.closed, "read on a closed input log");
    assert(Number.isInteger(from) && from >= this.start && from <= this.end, `read from ${from} outside [${this.start}, ${this.end}]`);
    assert(Number.isInteger(max) && max >= 0, `read max ${max} must be a non-negative integer`);
    let pos = from;
    for (let i = this.segmentOf(from); i < this.segments.length && pos - from < max; i++) {
      const seg = this.segments[i]!;
      if (pos < seg.first + seg.count) pos += this.readFrames(seg, pos, max - (pos - from), onFrame);
    }
    assert(pos - from <= max && pos <= this.end, `read delivered ${pos - from} frames for max ${max}`);
    return pos;
  }

  rotate(): void {
    assert(!this.closed, "rotate on a closed input log");
    // An empty tail already starts at end; a second file with the same name cannot exist.
    if (this.tail().count > 0) this.addSegment();
  }

  truncateBefore(pos: number): void {
    assert(!this.closed, "truncateBefore on a closed input log");
    assert(Number.isInteger(pos) && pos >= 0 && pos <= this.end, `truncateBefore ${pos} beyond end ${this.end}`);
    // The tail holds `end` across a restart, so a tail wholly before pos is replaced, not just dropped.
    const tail = this.tail();
    if (tail.count > 0 && tail.first + tail.count <= pos) this.addSegment();
    // Oldest first, one at a time: a crash or a failed delete part-way leaves a contiguous suffix,
    // here and on disk. Bounded by the number of segments, never the tail.
    while (this.segments.length > 1 && this.segments[0]!.first + this.segments[0]!.count <= pos) {
      const seg = this.segments[0]!;
      this.deleteSegment(seg);
      this.segments.shift();
      this.totalBytes -= seg.bytes;
    }
  }

  abstract close(): void;
  abstract destroy(): void;

  /** A new empty segment starting at `first`, already durable as far as the log's mode promises. */
  protected abstract createSegment(first: number): S;
  /** Stores a checked batch after the segment's current bytes, in one write. */
  protected abstract writeFrames(seg: S, framed: Uint8Array, count: number): void;
  /** Delivers up to `max` frames of `seg` from `from` on; returns how many. */
  protected abstract readFrames(seg: S, from: number, max: number, onFrame: OnLoggedFrame): number;
  protected abstract deleteSegment(seg: S): void;

  protected tail(): S {
    return this.segments[this.segments.length - 1]!;
  }

  /** For subclasses loading existing segments, and for the first one. */
  protected adopt(seg: S): void {
    const prev = this.segments[this.segments.length - 1];
    assert(prev === undefined || prev.first + prev.count === seg.first, `segment at ${seg.first} does not follow the previous one`);
    this.segments.push(seg);
    this.totalBytes += seg.bytes;
  }

  private addSegment(): S {
    this.adopt(this.createSegment(this.end));
    return this.tail();
  }

  /** The last segment starting at or before pos: the one holding it, or the tail when pos = end. */
  private segmentOf(pos: number): number {
    return lastAtOrBefore(this.segments.length, (i) => this.segments[i]!.first, pos);
  }
}

/** Asserts that `framed` is exactly `count` whole frames within the size limit. */
function checkFrames(framed: Uint8Array, count: number): void {
  assert(Number.isInteger(count) && count > 0, `append of ${count} frames`);
  // The messages are built only on failure: per frame, building them would cost more than the write.
  let off = 0;
  let i = 0;
  while (i < count && off + FRAME_HEADER_BYTES <= framed.length) {
    const len = readU32(framed, off);
    if (len > INPUT_LOG_MAX_FRAME) assert(false, `append: frame ${i} claims ${len} bytes, above ${INPUT_LOG_MAX_FRAME}`);
    off += FRAME_HEADER_BYTES + len;
    i++;
  }
  assert(i === count && off === framed.length, `append: ${count} frames announced, ${framed.length} bytes given, ${i} frames fit in ${off} bytes`);
}

// ---------------------------------------------------------------- in memory, for the simulation

interface MemorySegment extends Segment {
  /** Copies of the appended batches, in order; `firsts[i]` is the position of batch i's first frame. */
  readonly batches: Uint8Array[];
  readonly firsts: number[];
}

/**
 * The same log held in memory, for the deterministic simulation. The object stands for the disk:
 * a simulated crash or a close() keeps it, and a restarted worker goes on using it. Appends are
 * atomic here, so there is never a torn tail.
 */
export class MemoryInputLog extends SegmentedLog<MemorySegment> {
  readonly tornBytes = 0;

  constructor(opts: { segmentBytes?: number } = {}) {
    super(opts.segmentBytes ?? DEFAULT_SEGMENT_BYTES);
    this.adopt(this.createSegment(0));
  }

  close(): void {}

  destroy(): void {
    this.closed = true;
    this.segments.length = 0;
  }

  protected createSegment(first: number): MemorySegment {
    return { first, count: 0, bytes: 0, batches: [], firsts: [] };
  }

  protected writeFrames(seg: MemorySegment, framed: Uint8Array): void {
    // The caller reuses its buffer once append returns.
    seg.batches.push(framed.slice());
    seg.firsts.push(seg.first + seg.count);
  }

  protected readFrames(seg: MemorySegment, from: number, max: number, onFrame: OnLoggedFrame): number {
    let b = lastAtOrBefore(seg.firsts.length, (i) => seg.firsts[i]!, from);
    let pos = seg.firsts[b]!;
    let off = 0;
    let delivered = 0;
    const end = seg.first + seg.count;
    while (delivered < max && pos < end) {
      const batch = seg.batches[b]!;
      if (off === batch.length) {
        b++;
        off = 0;
        continue;
      }
      const len = readU32(batch, off);
      const payload = off + FRAME_HEADER_BYTES;
      if (pos >= from) {
        onFrame(batch, payload, payload + len);
        delivered++;
      }
      off = payload + len;
      pos++;
    }
    return delivered;
  }

  protected deleteSegment(): void {}
}

/** The last index i < n with at(i) ≤ v, for ascending at() with at(0) ≤ v. */
function lastAtOrBefore(n: number, at: (i: number) => number, v: number): number {
  let lo = 0;
  let hi = n - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if (at(mid) <= v) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

// ---------------------------------------------------------------- on disk

interface FileSegment extends Segment {
  readonly path: string;
  /** Sparse index: the frame at position idxPos[i] starts at byte idxOff[i] of the file. */
  readonly idxPos: number[];
  readonly idxOff: number[];
  /** The next frame starting at or after this offset goes into the index. */
  nextIdxOff: number;
}

/** A window of one file, re-read from wherever the caller needs: never more than one chunk (or one frame). */
class ChunkReader {
  buf = new Uint8Array(READ_CHUNK_BYTES);
  private fd = -1;
  private off = 0;
  private len = 0;

  /** Where in `buf` the file's bytes [at, at + n) are, reading them if not held; -1 if the file ends first. */
  take(fd: number, at: number, n: number): number {
    if (fd === this.fd && at >= this.off && at + n <= this.off + this.len) return at - this.off;
    if (n > this.buf.length) this.buf = new Uint8Array(Math.min(2 ** Math.ceil(Math.log2(n)), INPUT_LOG_MAX_FRAME + FRAME_HEADER_BYTES));
    this.fd = fd;
    this.off = at;
    this.len = 0;
    // Bounded: each pass either fills more of the buffer or meets the end of the file.
    while (this.len < this.buf.length) {
      const got = readSync(fd, this.buf, this.len, this.buf.length - this.len, at + this.len);
      if (got === 0) break;
      this.len += got;
    }
    return this.len >= n ? 0 : -1;
  }

  /** Called whenever an fd closes (its number may be reused) or bytes it may hold are rewritten. */
  forget(): void {
    this.fd = -1;
    this.len = 0;
  }
}

/** Where the last read() stopped, so a replay reading in steps never walks a segment twice. */
interface ReadCursor {
  seg: FileSegment | null;
  pos: number;
  off: number;
}

export class FileInputLog extends SegmentedLog<FileSegment> {
  /** Bytes of a partial frame (or segment header) cut from the last segment when opened: the crash's torn write. */
  readonly tornBytes: number;
  private tailFd = -1;
  /** One other segment kept open for reading; a replay reads them in order. */
  private readFd = -1;
  private readSeg: FileSegment | null = null;
  private readonly reader = new ChunkReader();
  private readonly cursor: ReadCursor = { seg: null, pos: 0, off: 0 };

  /** Use openInputLog(). */
  constructor(
    readonly dir: string,
    private readonly fsync: boolean,
    segmentBytes: number,
  ) {
    super(segmentBytes);
    try {
      mkdirSync(dir, { recursive: true });
    } catch (e) {
      throw new ResilienceError(`Cannot create the input log directory ${dir}: ${(e as Error).message}. Fix its permissions or choose another --resilience-dir.`);
    }
    // Else a machine crash could lose the directory itself, with every fsynced frame in it.
    if (fsync) syncDir(dirname(dir));
    const found = scanDir(dir, this.reader);
    if (found.length === 0) {
      this.adopt(this.createSegment(0));
      this.tornBytes = 0;
      return;
    }
    // Everything was checked before this first change to the directory: nothing is half-loaded.
    for (const f of found) this.adopt(f.seg);
    const last = found[found.length - 1]!;
    const tornHeader = last.fileBytes < SEGMENT_HEADER_BYTES;
    this.tornBytes = tornHeader ? last.fileBytes : last.fileBytes - last.seg.bytes;
    this.tailFd = openSync(last.seg.path, "r+");
    if (last.fileBytes !== last.seg.bytes) {
      ftruncateSync(this.tailFd, last.seg.bytes);
      if (tornHeader) writeAll(this.tailFd, segmentHeader(last.seg.first), 0);
      if (fsync) fdatasyncSync(this.tailFd);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.closeReadFd();
    closeSync(this.tailFd);
    this.reader.forget();
  }

  destroy(): void {
    this.close();
    for (const seg of this.segments) unlinkSync(seg.path);
    this.segments.length = 0;
    try {
      rmdirSync(this.dir);
    } catch (e) {
      // Someone else's file in the directory is theirs to remove.
      if ((e as NodeJS.ErrnoException).code !== "ENOTEMPTY") throw e;
    }
  }

  protected createSegment(first: number): FileSegment {
    const seg = emptyFileSegment(this.dir, first);
    // Exclusive: a file already holding this position would mean two logs disagree; never overwrite
    // it. Read and write: the new tail's fd also serves reads of it.
    const fd = openSync(seg.path, "wx+");
    try {
      writeAll(fd, segmentHeader(first), 0);
      if (this.fsync) fdatasyncSync(fd);
    } catch (e) {
      // Left behind, the half-made file would block the next attempt at this position.
      closeSync(fd);
      unlinkSync(seg.path);
      throw e;
    }
    if (this.fsync) syncDir(this.dir);
    if (this.tailFd >= 0) {
      closeSync(this.tailFd);
      this.reader.forget();
    }
    this.tailFd = fd;
    return seg;
  }

  protected writeFrames(seg: FileSegment, framed: Uint8Array, count: number): void {
    assert(seg === this.tail(), "append to a segment other than the tail");
    const at = seg.bytes;
    try {
      writeAll(this.tailFd, framed, at);
      if (this.fsync) fdatasyncSync(this.tailFd);
    } catch (e) {
      this.undoWrite(seg, at, e);
    }
    if (at + framed.length > seg.nextIdxOff) indexBatch(seg, framed, count, at);
  }

  protected readFrames(seg: FileSegment, from: number, max: number, onFrame: OnLoggedFrame): number {
    const fd = seg === this.tail() ? this.tailFd : this.openForRead(seg);
    let pos: number;
    let off: number;
    const c = this.cursor;
    const i = lastAtOrBefore(seg.idxPos.length, (k) => seg.idxPos[k]!, from);
    if (c.seg === seg && c.pos <= from && c.pos >= seg.idxPos[i]!) {
      pos = c.pos;
      off = c.off;
    } else {
      pos = seg.idxPos[i]!;
      off = seg.idxOff[i]!;
    }
    const end = seg.first + seg.count;
    let delivered = 0;
    while (delivered < max && pos < end) {
      const h = this.reader.take(fd, off, FRAME_HEADER_BYTES);
      if (h < 0) assert(false, `${seg.path}: frame ${pos} header beyond the end of the file`);
      const len = readU32(this.reader.buf, h);
      if (pos >= from) {
        const f = this.reader.take(fd, off, FRAME_HEADER_BYTES + len);
        if (f < 0) assert(false, `${seg.path}: frame ${pos} beyond the end of the file`);
        onFrame(this.reader.buf, f + FRAME_HEADER_BYTES, f + FRAME_HEADER_BYTES + len);
        delivered++;
      }
      off += FRAME_HEADER_BYTES + len;
      pos++;
    }
    assert(off <= seg.bytes, `${seg.path}: frames run past the segment's ${seg.bytes} bytes`);
    c.seg = seg;
    c.pos = pos;
    c.off = off;
    return delivered;
  }

  protected deleteSegment(seg: FileSegment): void {
    if (seg === this.readSeg) this.closeReadFd();
    if (this.cursor.seg === seg) this.cursor.seg = null;
    unlinkSync(seg.path);
    if (this.fsync) syncDir(this.dir);
  }

  /** A failed write may have left part of the batch: cut it so the file still ends on a frame. */
  private undoWrite(seg: FileSegment, at: number, cause: unknown): never {
    this.reader.forget();
    const why = cause instanceof Error ? cause.message : String(cause);
    try {
      ftruncateSync(this.tailFd, at);
    } catch {
      // The tail may now end in a partial frame; the next open cuts it as a torn tail.
      this.closed = true;
      throw new ResilienceError(`Could not write to the input log ${seg.path} (${why}), nor undo the partial write; the log is closed. Free disk space or fix the device, then restart: the partial frame will be cut.`);
    }
    throw new ResilienceError(`Could not write to the input log ${seg.path} (${why}); the frames were not logged. Free disk space or fix the device.`);
  }

  private openForRead(seg: FileSegment): number {
    if (this.readSeg !== seg) {
      this.closeReadFd();
      this.readFd = openSync(seg.path, "r");
      this.readSeg = seg;
    }
    return this.readFd;
  }

  private closeReadFd(): void {
    if (this.readFd < 0) return;
    closeSync(this.readFd);
    this.reader.forget();
    this.readFd = -1;
    this.readSeg = null;
  }
}

/** Opens (creating if needed) the input log in `dir`; throws ResilienceError if what is there cannot be trusted. */
export function openInputLog(dir: string, opts: { fsync: boolean; segmentBytes?: number }): FileInputLog {
  return new FileInputLog(dir, opts.fsync, opts.segmentBytes ?? DEFAULT_SEGMENT_BYTES);
}

function emptyFileSegment(dir: string, first: number): FileSegment {
  assert(Number.isSafeInteger(first) && first >= 0, `segment position ${first}`);
  return {
    first,
    count: 0,
    bytes: SEGMENT_HEADER_BYTES,
    path: join(dir, `input-${String(first).padStart(20, "0")}.log`),
    idxPos: [first],
    idxOff: [SEGMENT_HEADER_BYTES],
    nextIdxOff: SEGMENT_HEADER_BYTES + INDEX_EVERY_BYTES,
  };
}

/** Records the frame at (pos, off) in the index if it is the first at or past the next mark. */
function noteFrame(seg: FileSegment, pos: number, off: number): void {
  if (off < seg.nextIdxOff) return;
  seg.idxPos.push(pos);
  seg.idxOff.push(off);
  seg.nextIdxOff = off + INDEX_EVERY_BYTES;
}

function indexBatch(seg: FileSegment, framed: Uint8Array, count: number, at: number): void {
  let off = 0;
  for (let i = 0; i < count; i++) {
    noteFrame(seg, seg.first + seg.count + i, at + off);
    off += FRAME_HEADER_BYTES + readU32(framed, off);
  }
}

function segmentHeader(first: number): Uint8Array {
  const h = new Uint8Array(SEGMENT_HEADER_BYTES);
  writeU32(h, 0, SEGMENT_MAGIC);
  h[4] = SEGMENT_VERSION >>> 8;
  h[5] = SEGMENT_VERSION & 0xff;
  writeU32(h, 8, Math.floor(first / 2 ** 32));
  writeU32(h, 12, first % 2 ** 32);
  return h;
}

function writeAll(fd: number, bytes: Uint8Array, at: number): void {
  let done = 0;
  // One write in practice; a regular file accepts less only when interrupted or out of space.
  while (done < bytes.length) {
    const n = writeSync(fd, bytes, done, bytes.length - done, at + done);
    assert(n > 0, `write accepted ${n} bytes`);
    done += n;
  }
}

/** A new or removed file is durable only once its directory is. */
function syncDir(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

// ---------------------------------------------------------------- opening: scan, check, refuse

interface Scanned {
  seg: FileSegment;
  /** The file's size; larger than seg.bytes by the torn tail, smaller only for a torn header. */
  fileBytes: number;
}

function corrupt(dir: string, what: string): ResilienceError {
  return new ResilienceError(
    `${what}. The input log in ${dir} cannot be trusted for replay: restore the directory from a copy, ` +
      `or move it aside to start without replaying it (the input it held after the last checkpoint is then lost).`,
  );
}

/** Every segment in `dir`, checked and indexed, in order; changes nothing on disk. */
function scanDir(dir: string, reader: ChunkReader): Scanned[] {
  const names = readdirSync(dir)
    .filter((n) => NAME_RE.test(n))
    .sort();
  const out: Scanned[] = [];
  for (let i = 0; i < names.length; i++) {
    const first = Number(NAME_RE.exec(names[i]!)![1]);
    if (!Number.isSafeInteger(first)) throw corrupt(dir, `Input log segment ${join(dir, names[i]!)} is named for position ${first}, beyond what this build can count`);
    const s = scanSegment(dir, emptyFileSegment(dir, first), reader, i === names.length - 1);
    const prev = out[out.length - 1]?.seg;
    if (prev && prev.first + prev.count !== first) {
      throw corrupt(dir, `Input log segment ${s.seg.path} starts at position ${first} but ${prev.path} ends at ${prev.first + prev.count} (a segment is missing or damaged)`);
    }
    out.push(s);
  }
  return out;
}

function scanSegment(dir: string, seg: FileSegment, reader: ChunkReader, isLast: boolean): Scanned {
  const fd = openSync(seg.path, "r");
  try {
    const fileBytes = fstatSync(fd).size;
    const expected = segmentHeader(seg.first);
    if (fileBytes < SEGMENT_HEADER_BYTES) {
      // A crash between creating the file and writing its header: only the newest segment, and
      // only if what is there is the start of the right header.
      const h = reader.take(fd, 0, fileBytes);
      const prefix = h >= 0 && expected.subarray(0, fileBytes).every((b, k) => reader.buf[h + k] === b);
      if (!isLast || !prefix) throw corrupt(dir, `Input log segment ${seg.path} is ${fileBytes} bytes, shorter than its header`);
      return { seg, fileBytes };
    }
    const h = reader.take(fd, 0, SEGMENT_HEADER_BYTES);
    assert(h >= 0, `${seg.path}: header vanished while reading`);
    const header = reader.buf.subarray(h, h + SEGMENT_HEADER_BYTES);
    if (readU32(header, 0) !== SEGMENT_MAGIC) throw corrupt(dir, `Input log segment ${seg.path} does not start with the input log's magic bytes`);
    const version = (header[4]! << 8) | header[5]!;
    if (version !== SEGMENT_VERSION) throw corrupt(dir, `Input log segment ${seg.path} has format version ${version}; this build reads version ${SEGMENT_VERSION}`);
    if (!header.every((b, k) => b === expected[k])) throw corrupt(dir, `Input log segment ${seg.path} has a header that does not match its name's position ${seg.first}`);
    let off = SEGMENT_HEADER_BYTES;
    // Bounded by the file size: every pass advances off by at least a frame header.
    while (off < fileBytes) {
      const at = reader.take(fd, off, FRAME_HEADER_BYTES);
      if (at < 0) break;
      const len = readU32(reader.buf, at);
      if (len > INPUT_LOG_MAX_FRAME) {
        throw corrupt(dir, `Input log segment ${seg.path} holds a frame at byte ${off} claiming ${len} bytes, above the ${INPUT_LOG_MAX_FRAME} limit`);
      }
      if (off + FRAME_HEADER_BYTES + len > fileBytes) break;
      noteFrame(seg, seg.first + seg.count, off);
      seg.count++;
      off += FRAME_HEADER_BYTES + len;
    }
    seg.bytes = off;
    if (off < fileBytes && !isLast) {
      throw corrupt(dir, `Input log segment ${seg.path} ends in a partial frame (${fileBytes - off} bytes) but is not the newest segment`);
    }
    return { seg, fileBytes };
  } finally {
    closeSync(fd);
    reader.forget();
  }
}
