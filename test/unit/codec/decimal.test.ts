// writeDecimal must produce exactly String(n)'s bytes for every number.
import { describe, expect, test } from "bun:test";
import { DECIMAL_MAX_BYTES, writeDecimal } from "../../../src/codec/decimal.ts";
import { createUnitRng } from "../../../src/tools/generators.ts";

function text(n: number, at = 3): string {
  const buf = new Uint8Array(at + DECIMAL_MAX_BYTES + 1).fill(0xee);
  const end = writeDecimal(buf, at, n);
  expect(buf[at - 1]).toBe(0xee);
  expect(buf[end]).toBe(0xee);
  expect(end - at).toBeLessThanOrEqual(DECIMAL_MAX_BYTES);
  return Buffer.from(buf.subarray(at, end)).toString("latin1");
}

describe("writeDecimal", () => {
  test("golden bytes", () => {
    const buf = new Uint8Array(8);
    expect(writeDecimal(buf, 1, 1205)).toBe(5);
    expect(Array.from(buf)).toEqual([0, 0x31, 0x32, 0x30, 0x35, 0, 0, 0]);
  });

  test("edges are String(n)", () => {
    const cases = [
      0, -0, 1, -1, 9, 10, 99, 100, 2 ** 31 - 1, 2 ** 31, -(2 ** 31), 2 ** 32, 999_999_999, 1_000_000_000, 1_000_000_001,
      4_294_967_295 * 1000, Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER + 1, 2 ** 60, 1e21, 1e-7, 0.1, -2.5,
      123.456, NaN, Infinity, -Infinity, Number.MIN_VALUE, Number.MAX_VALUE,
    ];
    for (const n of cases) expect(text(n), String(n)).toBe(String(n));
  });

  test("random integers of every magnitude, and random doubles", () => {
    const r = createUnitRng(5);
    for (let i = 0; i < 20_000; i++) {
      const mag = 10 ** Math.floor(r() * 16);
      const n = Math.floor(r() * mag) * (r() < 0.2 ? -1 : 1);
      expect(text(n)).toBe(String(n));
      const d = (r() - 0.5) * 10 ** Math.floor(r() * 30 - 10);
      expect(text(d)).toBe(String(d));
    }
  });
});
