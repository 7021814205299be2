// The growable outbound byte buffer behind every Link: encoders write in place at `len`.
import { InvariantError } from "../assert.ts";
import { LINK_LIMITS, type OutBuffer } from "./transport.ts";

export class GrowBuffer implements OutBuffer {
  buf: Uint8Array;
  len = 0;

  constructor(initialBytes: number = LINK_LIMITS.initialBufferBytes) {
    this.buf = new Uint8Array(initialBytes);
  }

  ensure(n: number): void {
    const need = this.len + n;
    if (need <= this.buf.length) return;
    // Producers stop at the high-water mark; one that got this far ignored it. That is a bug in
    // flow control, and growing on would only turn it into running out of memory.
    if (need > LINK_LIMITS.hardLimitBytes) throw new InvariantError(`outbound buffer would exceed ${LINK_LIMITS.hardLimitBytes} bytes`);
    let size = this.buf.length * 2;
    while (size < need) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }

  /** Appends a copy of `bytes`. */
  append(bytes: Uint8Array): void {
    this.ensure(bytes.length);
    this.buf.set(bytes, this.len);
    this.len += bytes.length;
  }
}
