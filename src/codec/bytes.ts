// Growable byte buffers that encoders append to in place: `buf` holds the bytes, `len` says how
// many, `ensure(n)` makes room for n more (and may replace `buf`). A Link's outbound buffer
// (src/net/out-buffer.ts) has the same shape, so an encoder writes into either.

export interface ByteSink {
  buf: Uint8Array;
  len: number;
  ensure(n: number): void;
}

/** A ByteSink that doubles as it fills; for building a frame, an image or a value. */
export class ByteBuilder implements ByteSink {
  buf: Uint8Array;
  len = 0;

  constructor(initialBytes = 256) {
    this.buf = new Uint8Array(Math.max(1, initialBytes));
  }

  ensure(n: number): void {
    const need = this.len + n;
    if (need <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < need) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }
}
