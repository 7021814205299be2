// The outbound buffer behind every link: grows by doubling, keeps what was written, and refuses
// to pass the hard limit (a flow-control bug, so a broken invariant) before allocating anything.
import { describe, expect, test } from "bun:test";
import { InvariantError } from "../../../src/assert.ts";
import { GrowBuffer } from "../../../src/net/out-buffer.ts";
import { LINK_LIMITS } from "../../../src/net/transport.ts";

describe("GrowBuffer", () => {
  test("append grows by doubling and keeps every byte in order", () => {
    const g = new GrowBuffer(4);
    g.append(new Uint8Array([1, 2, 3]));
    g.append(new Uint8Array([4, 5, 6]));
    expect(g.buf.length).toBe(8);
    g.append(new Uint8Array(9).fill(7));
    expect(g.buf.length).toBe(16);
    expect([...g.buf.subarray(0, g.len)]).toEqual([1, 2, 3, 4, 5, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7]);
  });

  test("ensure within capacity keeps the same array (encoders may hold it during one write)", () => {
    const g = new GrowBuffer(8);
    const before = g.buf;
    g.len = 6;
    g.ensure(2);
    expect(g.buf).toBe(before);
  });

  test("past the hard limit: an InvariantError, and the buffer is left as it was", () => {
    const g = new GrowBuffer(16);
    g.append(new Uint8Array([9, 9]));
    const before = g.buf;
    expect(() => g.ensure(LINK_LIMITS.hardLimitBytes)).toThrow(InvariantError);
    expect(g.buf).toBe(before);
    expect(g.len).toBe(2);
  });
});
