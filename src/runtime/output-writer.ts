// The OutputWriter encoders write through: appends into the buffer its owner points it at before
// each output (the sink's connection buffer, or its pending buffer while the receiver is away).
// The target is a field, not a callback: four writer calls per output each paid a closure call
// and a getter to find the same buffer.
import type { Encoder, OutputWriter } from "../app/types.ts";
import { writeUtf8 } from "../codec/data.ts";
import { DECIMAL_MAX_BYTES, writeDecimal } from "../codec/decimal.ts";
import { InvariantError } from "../assert.ts";
import { GrowBuffer } from "../net/out-buffer.ts";
import type { OutBuffer } from "../net/transport.ts";

export class BufferWriter implements OutputWriter {
  constructor(
    /** Where the next writes go; set by the owner before each encode. */
    public o: OutBuffer,
  ) {}

  text(s: string): void {
    const o = this.o;
    // UTF-8 needs at most 3 bytes per UTF-16 unit: reserving that is cheaper than measuring.
    // (Each method tests for room itself: the common case then costs no call.)
    if (o.len + s.length * 3 > o.buf.length) o.ensure(s.length * 3);
    o.len = writeUtf8(o.buf, o.len, s);
  }

  number(n: number): void {
    const o = this.o;
    if (o.len + DECIMAL_MAX_BYTES > o.buf.length) o.ensure(DECIMAL_MAX_BYTES);
    o.len = writeDecimal(o.buf, o.len, n);
  }

  byte(b: number): void {
    const o = this.o;
    if (o.len >= o.buf.length) o.ensure(1);
    o.buf[o.len++] = b;
  }

  bytes(b: Uint8Array): void {
    const o = this.o;
    o.ensure(b.length);
    o.buf.set(b, o.len);
    o.len += b.length;
  }
}

/**
 * Runs `encode` on one output into the writer's buffer as the sink does: what it writes through
 * the writer, then what it returns. If it throws or returns something else, the buffer is left
 * as it was and the reason is returned.
 */
export function encodeInto(encode: Encoder<unknown>, msg: unknown, w: BufferWriter): string | null {
  const o = w.o;
  const start = o.len;
  let r: unknown;
  try {
    r = encode(msg, w);
  } catch (err) {
    o.len = start;
    // The buffer's own limit is a flow-control bug, not the encoder's.
    if (err instanceof InvariantError) throw err;
    return `sink encoder threw: ${(err as Error).message}`;
  }
  if (r === undefined) return null;
  if (typeof r === "string") w.text(r);
  else if (r instanceof Uint8Array) w.bytes(r);
  else if (r !== null) {
    o.len = start;
    return `sink encoder returned ${typeof r}; return a string or a Uint8Array, or nothing after writing through the writer`;
  }
  return null;
}

/**
 * The bytes an encoder produces for one output, exactly as the sink would write them: for an
 * application's own tests. Throws when the sink would drop the output.
 */
export function encodeOutput<O>(encode: Encoder<O>, out: O): Uint8Array {
  const o = new GrowBuffer(256);
  const failure = encodeInto(encode as Encoder<unknown>, out, new BufferWriter(o));
  if (failure) throw new Error(failure);
  return o.buf.slice(0, o.len);
}
