// Data channel: routed application messages, slot markers and migrated state between workers.
// Each direction of a worker pair is its own TCP connection, written only by the sender.
//
//   frame   = length:u32be body                      ; length counts body bytes
//   body    = kind:u8 seq:u32be epoch:u32be rest     ; seq counts frames per connection from 0
//   kind 1  DATA       rest = count:u32be record{count}
//           record     = stage:u8 flags:u8 slot:u16be keyLen:u16be key:utf8 payloadLen:u32be payload
//           flags      bit0 RAW: payload is the source frame's payload (decode with the app's
//                      decoder); otherwise it is the message in the app's message codec
//   kind 2  MARKER     rest = count:u32be slot:u16be{count}
//                      "everything I routed to you for these slots under the old table is before
//                      this marker" (DESIGN §4 step 2); epoch = the plan's epoch
//   kind 3  STATE      rest = slot:u16be count:u32be entry{count}
//           entry      = stage:u8 keyLen:u16be key:utf8 stateLen:u32be state
//   kind 4  STATE_END  rest = slot:u16be keys:u32be   ; the slot's state is complete
//   kind 5  HELLO      rest = nameLen:u16be name:utf8 id:u16be ; first frame on a connection: who
//                      sends (its member id tells an incarnation from an earlier one of the name)
//   kind 6  BARRIER    rest = checkpoint:u32be round:u8 ; "everything I sent you before this
//                      round of checkpoint k is before this frame" (docs/resilience.md)
//   kind 7  TIME       rest = ingestMs:f64be        ; the DATA frame right after it carries
//                      messages whose input the initializer read at this time (ms since the
//                      Unix epoch): the end-to-end latency of their outputs counts from it
//
// DATA frames are batches: the writer opens a frame, appends records in place and patches the
// length and count when the batch closes (at the end of the event-loop turn or before any other
// frame), so a turn's messages to one peer cost one header and one syscall.
import { readU32, writeU32 } from "./frame.ts";
import { ByteBuilder, type ByteSink } from "./bytes.ts";
import { assert } from "../assert.ts";

export const DATA_KIND = {
  data: 1,
  marker: 2,
  state: 3,
  stateEnd: 4,
  hello: 5,
  barrier: 6,
  time: 7,
} as const;
export type DataKind = (typeof DATA_KIND)[keyof typeof DATA_KIND];

export const RECORD_FLAG = { raw: 1 } as const;

export const DATA_HEADER_BYTES = 4 + 1 + 4 + 4; // length, kind, seq, epoch
export const TIME_FRAME_BYTES = DATA_HEADER_BYTES + 8;
export const DATA_MAX_FRAME = 16 * 1024 * 1024;
export const MAX_KEY_BYTES = 0xffff;

const encoder = new TextEncoder();
// ignoreBOM: a leading U+FEFF is part of the text (a key, a string in state), not a mark to drop.
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Byte length of `s` as UTF-8. */
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 4;
      i++;
    } else n += 3; // BMP, or a lone surrogate (written as U+FFFD, 3 bytes)
  }
  return n;
}

/** Writes `s` as UTF-8 at `off` (room for `utf8Length(s)` must exist); returns the end offset. */
export function writeUtf8(buf: Uint8Array, off: number, s: string): number {
  // ASCII fast path: keys are short and mostly ASCII; encodeInto on tiny slices costs ~100 ns.
  let i = 0;
  for (; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x80) break;
    buf[off + i] = c;
  }
  if (i === s.length) return off + i;
  const r = encoder.encodeInto(s.slice(i), buf.subarray(off + i));
  return off + i + r.written;
}

/** Reads UTF-8 bytes as a string; throws on invalid UTF-8. */
export function readUtf8(buf: Uint8Array, start: number, end: number): string {
  const n = end - start;
  if (n <= 24) {
    let ascii = true;
    for (let i = start; i < end; i++) if (buf[i]! >= 0x80) ascii = false;
    if (ascii) {
      let s = "";
      for (let i = start; i < end; i++) s += String.fromCharCode(buf[i]!);
      return s;
    }
  }
  return utf8.decode(buf.subarray(start, end));
}

function tryUtf8(buf: Uint8Array, start: number, end: number): string | null {
  try {
    return readUtf8(buf, start, end);
  } catch {
    return null;
  }
}

export function writeU16(buf: Uint8Array, off: number, v: number): void {
  buf[off] = v >>> 8;
  buf[off + 1] = v & 0xff;
}
export function readU16(buf: Uint8Array, off: number): number {
  return (buf[off]! << 8) | buf[off + 1]!;
}

/** Writes a frame header with length 0 (patched by `endFrame`); returns the offset after it. */
export function beginFrame(buf: Uint8Array, off: number, kind: DataKind, seq: number, epoch: number): number {
  writeU32(buf, off, 0);
  buf[off + 4] = kind;
  writeU32(buf, off + 5, seq >>> 0);
  writeU32(buf, off + 9, epoch >>> 0);
  return off + DATA_HEADER_BYTES;
}

/** Patches the length of the frame that starts at `frameStart` and ends at `end`. */
export function endFrame(buf: Uint8Array, frameStart: number, end: number): void {
  writeU32(buf, frameStart, end - frameStart - 4);
}

export function recordBytes(keyBytes: number, payloadBytes: number): number {
  return 1 + 1 + 2 + 2 + keyBytes + 4 + payloadBytes;
}

/** Writes one DATA record's fixed part and key; returns the offset where the payload goes. */
export function writeRecordHead(
  buf: Uint8Array,
  off: number,
  stage: number,
  flags: number,
  slot: number,
  key: string,
  keyBytes: number,
  payloadBytes: number,
): number {
  buf[off] = stage;
  buf[off + 1] = flags;
  writeU16(buf, off + 2, slot);
  writeU16(buf, off + 4, keyBytes);
  const k = writeUtf8(buf, off + 6, key);
  writeU32(buf, k, payloadBytes);
  return k + 4;
}

/** A whole MARKER frame. */
export function encodeMarker(seq: number, epoch: number, slots: readonly number[]): Uint8Array {
  const out = new Uint8Array(DATA_HEADER_BYTES + 4 + 2 * slots.length);
  let p = beginFrame(out, 0, DATA_KIND.marker, seq, epoch);
  writeU32(out, p, slots.length);
  p += 4;
  for (const s of slots) {
    writeU16(out, p, s);
    p += 2;
  }
  endFrame(out, 0, p);
  return out;
}

export interface StateEntry {
  readonly stage: number;
  readonly key: string;
  readonly state: Uint8Array;
}

export function stateEntryBytes(e: StateEntry): number {
  return 1 + 2 + utf8Length(e.key) + 4 + e.state.length;
}

/**
 * Starts one entry at `o.len` (stage, key) and reserves its stateLen; the caller appends the
 * state, then `endEntry` with what this returned. Entries written this way back to back are the
 * packed form a STATE frame and a slot image carry.
 */
export function beginEntry(o: ByteSink, stage: number, key: string): number {
  o.ensure(3 + key.length * 3 + 4);
  const buf = o.buf;
  const p = o.len;
  buf[p] = stage;
  const ke = writeUtf8(buf, p + 3, key);
  const kb = ke - p - 3;
  // The test comes first so that no message is built for an entry that fits.
  if (!(stage >>> 0 === stage && stage <= 0xff && kb <= MAX_KEY_BYTES)) {
    assert(false, `an entry of stage ${stage} and a ${kb}-byte key fits the grammar`);
  }
  writeU16(buf, p + 1, kb);
  o.len = ke + 4;
  return ke;
}

/** Closes the entry whose stateLen `beginEntry` reserved at `lenAt`: the state is what was appended since. */
export function endEntry(o: ByteSink, lenAt: number): void {
  const n = o.len - lenAt - 4;
  assert(n <= 0xffffffff, `a state of ${n} bytes fits the grammar's u32 length`);
  writeU32(o.buf, lenAt, n);
}

/** Appends one whole entry. */
export function packEntry(o: ByteSink, e: StateEntry): void {
  const at = beginEntry(o, e.stage, e.key);
  o.ensure(e.state.length);
  o.buf.set(e.state, o.len);
  o.len += e.state.length;
  endEntry(o, at);
}

/** Where the packed entry starting at `p` ends (the bytes are ours, already checked). */
export function entryEnd(packed: Uint8Array, p: number): number {
  const ks = p + 3 + readU16(packed, p + 1);
  return ks + 4 + readU32(packed, ks);
}

/** Packed entries (ours, already checked) as entries whose states are views into `packed`. */
export function unpackEntries(packed: Uint8Array, count: number): StateEntry[] {
  const out: StateEntry[] = new Array(count);
  let p = 0;
  for (let i = 0; i < count; i++) {
    const kl = readU16(packed, p + 1);
    const ks = p + 3;
    const ss = ks + kl + 4;
    const end = ss + readU32(packed, ks + kl);
    out[i] = { stage: packed[p]!, key: readUtf8(packed, ks, ks + kl), state: packed.subarray(ss, end) };
    p = end;
  }
  assert(p === packed.length, `${count} packed entries end at ${p} of ${packed.length} bytes`);
  return out;
}

/** A whole STATE frame carrying `count` packed entries, `packed[start…end)`, of one slot. */
export function encodeStatePacked(seq: number, epoch: number, slot: number, count: number, packed: Uint8Array, start: number, end: number): Uint8Array {
  const out = new Uint8Array(DATA_HEADER_BYTES + 6 + (end - start));
  const p = beginFrame(out, 0, DATA_KIND.state, seq, epoch);
  writeU16(out, p, slot);
  writeU32(out, p + 2, count);
  out.set(packed.subarray(start, end), p + 6);
  endFrame(out, 0, p + 6 + (end - start));
  return out;
}

/** A whole STATE frame carrying some keys of one slot. */
export function encodeState(seq: number, epoch: number, slot: number, entries: readonly StateEntry[]): Uint8Array {
  const o = new ByteBuilder(256);
  for (const e of entries) packEntry(o, e);
  return encodeStatePacked(seq, epoch, slot, entries.length, o.buf, 0, o.len);
}

export function encodeStateEnd(seq: number, epoch: number, slot: number, keys: number): Uint8Array {
  const out = new Uint8Array(DATA_HEADER_BYTES + 6);
  const p = beginFrame(out, 0, DATA_KIND.stateEnd, seq, epoch);
  writeU16(out, p, slot);
  writeU32(out, p + 2, keys);
  endFrame(out, 0, p + 6);
  return out;
}

export function encodeHello(seq: number, epoch: number, name: string, id: number): Uint8Array {
  const nb = utf8Length(name);
  const out = new Uint8Array(DATA_HEADER_BYTES + 2 + nb + 2);
  const p = beginFrame(out, 0, DATA_KIND.hello, seq, epoch);
  writeU16(out, p, nb);
  writeUtf8(out, p + 2, name);
  writeU16(out, p + 2 + nb, id);
  endFrame(out, 0, p + 4 + nb);
  return out;
}

/** A whole BARRIER frame: round `round` of checkpoint `checkpoint`. */
export function encodeBarrier(seq: number, epoch: number, checkpoint: number, round: number): Uint8Array {
  const out = new Uint8Array(DATA_HEADER_BYTES + 5);
  const p = beginFrame(out, 0, DATA_KIND.barrier, seq, epoch);
  writeU32(out, p, checkpoint);
  out[p + 4] = round;
  endFrame(out, 0, p + 5);
  return out;
}

const f64 = new DataView(new ArrayBuffer(8));

/** Writes a whole TIME frame at `off` (room for TIME_FRAME_BYTES must exist); returns the end offset. */
export function writeTime(buf: Uint8Array, off: number, seq: number, epoch: number, ingestMs: number): number {
  const p = beginFrame(buf, off, DATA_KIND.time, seq, epoch);
  f64.setFloat64(0, ingestMs);
  for (let i = 0; i < 8; i++) buf[p + i] = f64.getUint8(i);
  endFrame(buf, off, p + 8);
  return p + 8;
}

/** Receives the contents of one frame; views are valid only during the call. */
export interface DataVisitor {
  record(stage: number, flags: number, slot: number, key: string, buf: Uint8Array, start: number, end: number): void;
  marker(slots: number[]): void;
  state(slot: number, stage: number, key: string, buf: Uint8Array, start: number, end: number): void;
  stateEnd(slot: number, keys: number): void;
  hello(name: string, id: number): void;
  barrier(checkpoint: number, round: number): void;
  time(ingestMs: number): void;
}

export interface FrameHead {
  kind: number;
  seq: number;
  epoch: number;
}

export const DATA_ERROR = {
  short: "frame shorter than its header",
  kind: "unknown frame kind",
  truncated: "frame ends inside a record",
  trailing: "bytes after the last record",
  utf8: "key is not valid UTF-8",
} as const;
export type DataError = (typeof DATA_ERROR)[keyof typeof DATA_ERROR];

/** Reads the header of a frame body `[start, end)` (after the u32 length). */
export function readHead(buf: Uint8Array, start: number, end: number, into: FrameHead): DataError | null {
  if (end - start < 9) return DATA_ERROR.short;
  into.kind = buf[start]!;
  into.seq = readU32(buf, start + 1);
  into.epoch = readU32(buf, start + 5);
  if (into.kind < DATA_KIND.data || into.kind > DATA_KIND.time) return DATA_ERROR.kind;
  return null;
}

/**
 * Walks the body of a frame `[start, end)` (after the u32 length) whose head was read with
 * `readHead`, calling the visitor. Returns an error for malformed content; a visitor call that
 * was already made for earlier records stands.
 */
export function visitBody(buf: Uint8Array, start: number, end: number, kind: number, v: DataVisitor): DataError | null {
  let p = start + 9;
  {
    switch (kind) {
      case DATA_KIND.data: {
        if (end - p < 4) return DATA_ERROR.truncated;
        const count = readU32(buf, p);
        p += 4;
        for (let i = 0; i < count; i++) {
          if (end - p < 6) return DATA_ERROR.truncated;
          const stage = buf[p]!;
          const flags = buf[p + 1]!;
          const slot = readU16(buf, p + 2);
          const kl = readU16(buf, p + 4);
          const ks = p + 6;
          if (end - ks < kl + 4) return DATA_ERROR.truncated;
          const key = tryUtf8(buf, ks, ks + kl);
          if (key === null) return DATA_ERROR.utf8;
          const pl = readU32(buf, ks + kl);
          const ps = ks + kl + 4;
          if (end - ps < pl) return DATA_ERROR.truncated;
          v.record(stage, flags, slot, key, buf, ps, ps + pl);
          p = ps + pl;
        }
        break;
      }
      case DATA_KIND.marker: {
        if (end - p < 4) return DATA_ERROR.truncated;
        const count = readU32(buf, p);
        p += 4;
        if (end - p < 2 * count) return DATA_ERROR.truncated;
        const slots: number[] = new Array(count);
        for (let i = 0; i < count; i++) slots[i] = readU16(buf, p + 2 * i);
        p += 2 * count;
        v.marker(slots);
        break;
      }
      case DATA_KIND.state: {
        if (end - p < 6) return DATA_ERROR.truncated;
        const slot = readU16(buf, p);
        const count = readU32(buf, p + 2);
        p += 6;
        for (let i = 0; i < count; i++) {
          if (end - p < 3) return DATA_ERROR.truncated;
          const stage = buf[p]!;
          const kl = readU16(buf, p + 1);
          const ks = p + 3;
          if (end - ks < kl + 4) return DATA_ERROR.truncated;
          const key = tryUtf8(buf, ks, ks + kl);
          if (key === null) return DATA_ERROR.utf8;
          const sl = readU32(buf, ks + kl);
          const ss = ks + kl + 4;
          if (end - ss < sl) return DATA_ERROR.truncated;
          v.state(slot, stage, key, buf, ss, ss + sl);
          p = ss + sl;
        }
        break;
      }
      case DATA_KIND.stateEnd: {
        if (end - p < 6) return DATA_ERROR.truncated;
        v.stateEnd(readU16(buf, p), readU32(buf, p + 2));
        p += 6;
        break;
      }
      case DATA_KIND.hello: {
        if (end - p < 2) return DATA_ERROR.truncated;
        const nl = readU16(buf, p);
        if (end - p - 4 < nl) return DATA_ERROR.truncated;
        const name = tryUtf8(buf, p + 2, p + 2 + nl);
        if (name === null) return DATA_ERROR.utf8;
        v.hello(name, readU16(buf, p + 2 + nl));
        p += 4 + nl;
        break;
      }
      case DATA_KIND.barrier: {
        if (end - p < 5) return DATA_ERROR.truncated;
        v.barrier(readU32(buf, p), buf[p + 4]!);
        p += 5;
        break;
      }
      case DATA_KIND.time: {
        if (end - p < 8) return DATA_ERROR.truncated;
        for (let i = 0; i < 8; i++) f64.setUint8(i, buf[p + i]!);
        v.time(f64.getFloat64(0));
        p += 8;
        break;
      }
      default:
        return DATA_ERROR.kind;
    }
  }
  return p === end ? null : DATA_ERROR.trailing;
}
