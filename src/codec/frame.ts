// Length-prefixed framing shared by every TCP channel.
//
//   frame   = length:u32be payload:byte[length]
//
// `length` counts payload bytes only. A reader is fed the chunks a socket hands over (frames split
// and merge arbitrarily across chunks) and calls back once per complete frame with a view into
// either the chunk itself (no copy) or its own carry buffer (only for a frame split across
// chunks). A claimed length above `maxFrame` is an error before any byte of it is buffered, and
// the carry grows with the bytes that arrived, never to the length claimed: a hostile peer can
// never make us allocate what it claims. A view is valid only during the callback.

export const FRAME_HEADER_BYTES = 4;

export const FRAME_ERROR = {
  oversized: "oversized",
} as const;
export type FrameErrorKind = (typeof FRAME_ERROR)[keyof typeof FRAME_ERROR];

export interface FrameError {
  readonly kind: FrameErrorKind;
  readonly claimed: number;
  readonly max: number;
}

export type OnFrame = (buf: Uint8Array, start: number, end: number) => void;

export class FrameReader {
  readonly maxFrame: number;
  private carry: Uint8Array;
  private carryLen = 0;
  /** Set once an error was returned; the stream has lost its frame boundary for good. */
  failed: FrameError | null = null;

  constructor(maxFrame: number) {
    if (!(Number.isInteger(maxFrame) && maxFrame >= 0 && maxFrame <= 0x7fffffff)) throw new RangeError(`bad maxFrame ${maxFrame}`);
    this.maxFrame = maxFrame;
    this.carry = new Uint8Array(Math.min(maxFrame + FRAME_HEADER_BYTES, 64 * 1024));
  }

  /** Bytes held back waiting for the rest of a frame. */
  get pending(): number {
    return this.carryLen;
  }

  /** Bytes of buffer this reader keeps: what arrived, rounded up, never what a length claims. */
  get capacity(): number {
    return this.carry.length;
  }

  /**
   * Feeds one chunk; calls `onFrame` for each complete frame in order. Returns the error that
   * stopped parsing, or null. After an error every later call returns the same error.
   */
  feed(chunk: Uint8Array, onFrame: OnFrame): FrameError | null {
    if (this.failed) return this.failed;
    let pos = 0;
    const n = chunk.length;
    // First complete a frame split across earlier chunks.
    if (this.carryLen > 0) {
      if (this.carryLen < FRAME_HEADER_BYTES) {
        const take = Math.min(FRAME_HEADER_BYTES - this.carryLen, n);
        this.carry.set(chunk.subarray(0, take), this.carryLen);
        this.carryLen += take;
        pos = take;
        if (this.carryLen < FRAME_HEADER_BYTES) return null;
      }
      const len = readU32(this.carry, 0);
      if (len > this.maxFrame) return this.fail(len);
      const total = FRAME_HEADER_BYTES + len;
      const take = Math.min(total - this.carryLen, n - pos);
      this.ensureCarry(this.carryLen + take);
      this.carry.set(chunk.subarray(pos, pos + take), this.carryLen);
      this.carryLen += take;
      pos += take;
      if (this.carryLen < total) return null;
      this.carryLen = 0;
      onFrame(this.carry, FRAME_HEADER_BYTES, total);
    }
    while (n - pos >= FRAME_HEADER_BYTES) {
      const len = readU32(chunk, pos);
      if (len > this.maxFrame) return this.fail(len);
      const end = pos + FRAME_HEADER_BYTES + len;
      if (end > n) break;
      onFrame(chunk, pos + FRAME_HEADER_BYTES, end);
      pos = end;
    }
    if (pos < n) {
      const rest = n - pos;
      this.ensureCarry(rest);
      this.carry.set(chunk.subarray(pos), 0);
      this.carryLen = rest;
    }
    return null;
  }

  /** Room for `total` bytes, doubling: a frame arriving in many small chunks costs O(its size) in copies. */
  private ensureCarry(total: number): void {
    if (this.carry.length >= total) return;
    let size = Math.max(this.carry.length * 2, 1);
    while (size < total) size *= 2;
    const next = new Uint8Array(Math.min(size, this.maxFrame + FRAME_HEADER_BYTES));
    next.set(this.carry.subarray(0, this.carryLen));
    this.carry = next;
  }

  private fail(claimed: number): FrameError {
    this.failed = { kind: FRAME_ERROR.oversized, claimed, max: this.maxFrame };
    this.carryLen = 0;
    return this.failed;
  }
}

export function readU32(buf: Uint8Array, off: number): number {
  return ((buf[off]! << 24) >>> 0) + (buf[off + 1]! << 16) + (buf[off + 2]! << 8) + buf[off + 3]!;
}

export function writeU32(buf: Uint8Array, off: number, v: number): void {
  buf[off] = v >>> 24;
  buf[off + 1] = (v >>> 16) & 0xff;
  buf[off + 2] = (v >>> 8) & 0xff;
  buf[off + 3] = v & 0xff;
}

/** One frame as a new buffer: header + payload. For rare messages; the hot path writes in place. */
export function encodeFrame(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(FRAME_HEADER_BYTES + payload.length);
  writeU32(out, 0, payload.length);
  out.set(payload, FRAME_HEADER_BYTES);
  return out;
}
