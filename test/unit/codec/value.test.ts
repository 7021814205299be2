// The default value codec: golden bytes for the compact form, exact round trips (what structured
// cloning gives), jsc's form for everything the compact one cannot hold exactly, old jsc bytes
// still decoded, and damaged bytes refused with a reason.
import { describe, expect, test } from "bun:test";
import { serialize } from "bun:jsc";
import { decodeValue, decodeValueAt, encodeValue, encodeValueInto, VALUE_MAGIC } from "../../../src/codec/value.ts";
import { ByteBuilder } from "../../../src/codec/bytes.ts";
import { createUnitRng } from "../../../src/tools/generators.ts";

const bytes = (v: unknown) => Array.from(encodeValue(v));
const roundTrip = (v: unknown) => decodeValue(encodeValue(v));

describe("value codec: compact form", () => {
  test("golden bytes", () => {
    expect(bytes([0, 0, 0, 0])).toEqual([0xc5, 7, 4, 4, 0, 0, 0, 0, 4, 0, 0, 0, 0, 4, 0, 0, 0, 0, 4, 0, 0, 0, 0]);
    expect(bytes({ total: -2 })).toEqual([0xc5, 8, 1, 5, 0x74, 0x6f, 0x74, 0x61, 0x6c, 4, 0xfe, 0xff, 0xff, 0xff]);
    expect(bytes(null)).toEqual([0xc5, 1]);
    expect(bytes([true, false, undefined])).toEqual([0xc5, 7, 3, 3, 2, 0]);
    expect(bytes(0.5)).toEqual([0xc5, 5, 0, 0, 0, 0, 0, 0, 0xe0, 0x3f]);
    expect(bytes("é")).toEqual([0xc5, 6, 2, 0xc3, 0xa9]);
    // 300 elements: the count is a two-byte varuint (300 = 0b10_0101100).
    expect(bytes(new Array(300).fill(null)).slice(0, 4)).toEqual([0xc5, 7, 0xac, 0x02]);
  });

  test("round trips keep every value, -0 and NaN included", () => {
    const cases: unknown[] = [
      0, -0, 1, -1, 2 ** 31 - 1, 2 ** 31, -(2 ** 31), -(2 ** 31) - 1, 1.5, NaN, Infinity, -Infinity, Number.MAX_VALUE,
      "", "ascii", "héllo €𝄞", true, false, null, undefined,
      [], [1, "a", [2, [3, {}]]], { a: 1, b: { c: [null, undefined] } }, { "2": "x", "1": "y", z: 0 },
    ];
    for (const v of cases) {
      const e = encodeValue(v);
      expect(e[0], `compact form for ${String(v)}`).toBe(VALUE_MAGIC);
      const back = decodeValue(e);
      if (typeof v === "number" && Number.isNaN(v)) expect(Number.isNaN(back)).toBe(true);
      else expect(Object.is(back, v) || JSON.stringify(back) === JSON.stringify(v)).toBe(true);
      expect(back).toStrictEqual(structuredClone(v));
    }
    expect(Object.is(roundTrip(-0), -0)).toBe(true);
    expect(Object.keys(roundTrip({ "2": "x", "1": "y", z: 0 }) as object)).toEqual(["1", "2", "z"]);
  });

  test("a leading U+FEFF is text, kept in strings and keys", () => {
    expect(roundTrip("\uFEFFabc")).toBe("\uFEFFabc");
    expect(roundTrip("\uFEFF")).toBe("\uFEFF");
    expect(Object.keys(roundTrip({ "\uFEFFk": 1 }) as object)).toEqual(["\uFEFFk"]);
  });

  test("an own __proto__ key stays data, never a prototype", () => {
    const v = JSON.parse('{"__proto__": {"polluted": 1}, "a": 2}');
    const back = roundTrip(v) as Record<string, unknown>;
    expect(Object.getPrototypeOf(back)).toBe(Object.prototype);
    expect(Object.keys(back)).toEqual(["__proto__", "a"]);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  test("random plain values round trip as structured cloning gives them", () => {
    const r = createUnitRng(11);
    const gen = (d: number): unknown => {
      const k = Math.floor(r() * (d > 3 ? 6 : 8));
      if (k === 0) return Math.floor((r() - 0.5) * 2 ** (r() * 60));
      if (k === 1) return (r() - 0.5) * 10 ** Math.floor(r() * 40 - 20);
      if (k === 2) return String.fromCharCode(...Array.from({ length: Math.floor(r() * 12) }, () => Math.floor(r() * 0xd000)));
      if (k === 3) return r() < 0.5;
      if (k === 4) return null;
      if (k === 5) return undefined;
      if (k === 6) return Array.from({ length: Math.floor(r() * 5) }, () => gen(d + 1));
      return Object.fromEntries(Array.from({ length: Math.floor(r() * 5) }, (_, i) => [`k${i}${Math.floor(r() * 100)}`, gen(d + 1)]));
    };
    for (let i = 0; i < 3000; i++) {
      const v = gen(0);
      expect(roundTrip(v)).toStrictEqual(structuredClone(v));
    }
  });
});

describe("value codec: jsc's form for the rest", () => {
  class Point {
    constructor(readonly x: number) {}
  }
  const shared = { n: 1 };
  const cyclic: Record<string, unknown> = { a: 1 };
  cyclic.self = cyclic;
  const holey = [1, , 3];
  const deep = Array.from({ length: 70 }).reduce<unknown>((acc) => [acc], 0);
  const cases: Array<[string, unknown]> = [
    ["a Map", new Map([["a", 1]])],
    ["a Set", new Set([1, 2])],
    ["a Date", new Date(5)],
    ["a typed array", new Uint8Array([1, 2])],
    ["a bigint", 10n ** 30n],
    ["a class instance", new Point(3)],
    ["a lone surrogate", "a\ud800b"],
    ["a shared reference", { a: shared, b: shared }],
    ["a cycle", cyclic],
    ["an array with a hole", holey],
    ["nesting deeper than the limit", deep],
  ];
  for (const [what, v] of cases) {
    test(`${what} is kept exactly`, () => {
      const e = encodeValue(v);
      expect(e[0]).toBe(14);
      expect(decodeValue(e)).toStrictEqual(structuredClone(v));
    });
  }

  test("a shared reference stays shared; a cycle stays a cycle", () => {
    const s = roundTrip({ a: shared, b: shared }) as { a: object; b: object };
    expect(s.a).toBe(s.b);
    const c = roundTrip(cyclic) as Record<string, unknown>;
    expect(c.self).toBe(c);
  });

  test("named properties on an array are the one thing not kept (validate refuses them in an initial state)", () => {
    const named = Object.assign([1, 2], { extra: "dropped" });
    const back = roundTrip(named) as unknown[] & { extra?: string };
    expect(Array.from(back)).toEqual([1, 2]);
    expect(back.extra).toBeUndefined();
  });

  test("what neither form holds throws as before", () => {
    expect(() => encodeValue({ f: () => 1 })).toThrow();
    expect(() => encodeValue(Symbol("s"))).toThrow();
  });

  test("bytes written by jsc's serialize (older images) still decode", () => {
    const v = { total: 7, window: [1, 2, 3, 4] };
    expect(decodeValue(new Uint8Array(serialize(v)))).toStrictEqual(v);
  });
});

describe("value codec: damaged bytes", () => {
  const bad: Array<[string, number[], string]> = [
    ["truncated int32", [0xc5, 4, 1, 2], "ends early"],
    ["truncated string", [0xc5, 6, 5, 0x61], "ends early"],
    ["an array longer than its bytes", [0xc5, 7, 0xff, 0xff, 0xff, 0xff, 0x0f], "ends early"],
    ["an unknown tag", [0xc5, 99], "unknown value tag 99"],
    ["trailing bytes", [0xc5, 1, 1], "1 bytes after the value"],
    ["a varuint of six bytes", [0xc5, 6, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01], "past 5 bytes"],
    ["invalid UTF-8", [0xc5, 6, 2, 0xc3, 0x28], ""],
  ];
  for (const [what, b, msg] of bad) {
    test(`${what} is refused`, () => {
      expect(() => decodeValue(new Uint8Array(b))).toThrow(msg);
    });
  }

  test("hostile nesting is refused, not a stack overflow", () => {
    const b = new Uint8Array(2 + 10_000).fill(7);
    b[0] = 0xc5;
    // [7, 1, 7, 1, …]: an array of one array of one array…
    for (let i = 1; i < b.length; i += 2) b[i + 1] = 1;
    expect(() => decodeValue(b)).toThrow("nested deeper");
  });
});

describe("value codec: in place", () => {
  test("encodeValueInto appends after what the buffer holds, growing it, and decodeValueAt reads the range", () => {
    const o = new ByteBuilder(4);
    o.buf.set([9, 9], 0);
    o.len = 2;
    const big = { xs: Array.from({ length: 100 }, (_, i) => i * 1.5), s: "é".repeat(50) };
    encodeValueInto(o, big);
    const end = o.len;
    encodeValueInto(o, new Map([[1, 2]]));
    expect(Array.from(o.buf.subarray(0, 2))).toEqual([9, 9]);
    expect(o.buf[2]).toBe(VALUE_MAGIC);
    expect(decodeValueAt(o.buf, 2, end)).toStrictEqual(big);
    expect(decodeValueAt(o.buf, end, o.len)).toStrictEqual(new Map([[1, 2]]));
  });

  test("a value neither form holds leaves the buffer as it was", () => {
    const o = new ByteBuilder(8);
    encodeValueInto(o, [1]);
    const len = o.len;
    expect(() => encodeValueInto(o, [1, 2, { f: () => 0 }])).toThrow();
    expect(o.len).toBe(len);
    expect(decodeValueAt(o.buf, 0, o.len)).toEqual([1]);
  });
});
