// The OutputWriter encoders write through: appends into whatever buffer `target()` names at
// the moment of each call (the sink's connection buffer, or its pending buffer while the
// receiver is away).
import type { Encoder, OutputWriter } from "../app/types.ts";
import { writeUtf8 } from "../codec/data.ts";
import { DECIMAL_MAX_BYTES, writeDecimal } from "../codec/decimal.ts";
import { InvariantError } from "../assert.ts";
import { GrowBuffer } from "../net/out-buffer.ts";
import type { OutBuffer } from "../net/transport.ts";

export function bufferWriter(target: () => OutBuffer): OutputWriter {
  return {
    text(s) {
      const o = target();
      // UTF-8 needs at most 3 bytes per UTF-16 unit: reserving that is cheaper than measuring.
      o.ensure(s.length * 3);
      o.len = writeUtf8(o.buf, o.len, s);
    },
    number(n) {
      const o = target();
      o.ensure(DECIMAL_MAX_BYTES);
      o.len = writeDecimal(o.buf, o.len, n);
    },
    byte(b) {
      const o = target();
      o.ensure(1);
      o.buf[o.len++] = b;
    },
    bytes(b) {
      const o = target();
      o.ensure(b.length);
      o.buf.set(b, o.len);
      o.len += b.length;
    },
  };
}

/**
 * Runs `encode` on one output into `o` as the sink does: what it writes through the writer,
 * then what it returns. If it throws or returns something else, `o` is left as it was and the
 * reason is returned.
 */
export function encodeInto(encode: Encoder<unknown>, msg: unknown, o: OutBuffer, w: OutputWriter): string | null {
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
  if (typeof r === "string") w.text(r);
  else if (r instanceof Uint8Array) w.bytes(r);
  else if (r !== null && r !== undefined) {
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
  const failure = encodeInto(encode as Encoder<unknown>, out, o, bufferWriter(() => o));
  if (failure) throw new Error(failure);
  return o.buf.slice(0, o.len);
}
