// Slot image codec: golden bytes written by hand from the grammar at the top of
// src/codec/slot-image.ts, checked both ways, and every truncation refused with a reason.
import { describe, expect, test } from "bun:test";
import { InvariantError } from "../../../src/assert.ts";
import type { StateEntry } from "../../../src/codec/data.ts";
import { decodeSlotImage, encodeSlotImage, SLOT_IMAGE_ERROR } from "../../../src/codec/slot-image.ts";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const fromHex = (s: string) => new Uint8Array(Buffer.from(s.replace(/ /g, ""), "hex"));

/** Entries with their states as hex, so expect() compares contents and not views. */
function plain(entries: readonly StateEntry[]): [number, string, string][] {
  return entries.map((e) => [e.stage, e.key, hex(e.state)]);
}

function decodeOk(bytes: Uint8Array): [number, string, string][] {
  const d = decodeSlotImage(bytes);
  if (!d.ok) throw new Error(`expected an image, got: ${d.reason}`);
  return plain(d.entries);
}

const GOLDEN = [
  { name: "empty image", entries: [], bytes: "00000000" },
  {
    name: "two entries, one with an empty state",
    entries: [
      { stage: 1, key: "a", state: fromHex("aa") },
      { stage: 2, key: "bc", state: new Uint8Array(0) },
    ],
    bytes: "00000002" + "01 0001 61 00000001 aa" + "02 0002 6263 00000000",
  },
  {
    name: "non-ASCII key: length counts UTF-8 bytes, not characters",
    entries: [{ stage: 0, key: "Zü😀", state: fromHex("0102") }],
    bytes: "00000001" + "00 0007 5a c3bc f09f9880 00000002 0102",
  },
  {
    name: "empty key, highest stage",
    entries: [{ stage: 255, key: "", state: fromHex("ff") }],
    bytes: "00000001" + "ff 0000 00000001 ff",
  },
] as const;

describe("slot image golden bytes", () => {
  for (const g of GOLDEN) {
    test(`${g.name}: encode`, () => {
      expect(hex(encodeSlotImage(g.entries))).toBe(g.bytes.replace(/ /g, ""));
    });
    test(`${g.name}: decode`, () => {
      expect(decodeOk(fromHex(g.bytes))).toEqual(plain(g.entries));
    });
  }
});

describe("slot image refuses malformed bytes", () => {
  test("every truncation of a golden image gives a reason, never throws", () => {
    for (const g of GOLDEN) {
      const whole = fromHex(g.bytes);
      for (let n = 0; n < whole.length; n++) {
        const d = decodeSlotImage(whole.subarray(0, n));
        expect(d.ok).toBe(false);
        if (!d.ok) expect<string[]>([SLOT_IMAGE_ERROR.short, SLOT_IMAGE_ERROR.count, SLOT_IMAGE_ERROR.truncated]).toContain(d.reason);
      }
    }
  });

  test("shorter than the count", () => {
    expect(decodeSlotImage(fromHex("000000"))).toEqual({ ok: false, reason: SLOT_IMAGE_ERROR.short });
  });

  test("a count larger than the bytes could hold is refused before reading an entry", () => {
    expect(decodeSlotImage(fromHex("ffffffff 01 0001 61 00000000"))).toEqual({ ok: false, reason: SLOT_IMAGE_ERROR.count });
  });

  test("a state length past the end", () => {
    expect(decodeSlotImage(fromHex("00000001 01 0001 61 00000002 aa"))).toEqual({ ok: false, reason: SLOT_IMAGE_ERROR.truncated });
  });

  test("bytes after the last entry (overlong)", () => {
    expect(decodeSlotImage(fromHex("00000001 01 0001 61 00000000 00"))).toEqual({ ok: false, reason: SLOT_IMAGE_ERROR.trailing });
    expect(decodeSlotImage(fromHex("00000000 00"))).toEqual({ ok: false, reason: SLOT_IMAGE_ERROR.trailing });
  });

  test("a key that is not UTF-8", () => {
    expect(decodeSlotImage(fromHex("00000001 01 0001 ff 00000000"))).toEqual({ ok: false, reason: SLOT_IMAGE_ERROR.utf8 });
  });
});

describe("slot image round trip", () => {
  test("many entries, decoded states are views of the image", () => {
    const entries: StateEntry[] = [];
    for (let i = 0; i < 500; i++) {
      entries.push({ stage: i % 3, key: `key-${i}-${"é".repeat(i % 4)}`, state: new Uint8Array(i % 40).fill(i & 0xff) });
    }
    const bytes = encodeSlotImage(entries);
    const d = decodeSlotImage(bytes);
    expect(d.ok).toBe(true);
    if (!d.ok) return;
    expect(plain(d.entries)).toEqual(plain(entries));
    expect(d.entries[1]!.state.buffer).toBe(bytes.buffer);
  });

  test("encoding what the grammar cannot hold is a bug, not data", () => {
    for (const stage of [256, -1, 1.5]) expect(() => encodeSlotImage([{ stage, key: "a", state: new Uint8Array(0) }])).toThrow(InvariantError);
    expect(() => encodeSlotImage([{ stage: 1, key: "x".repeat(0x10000), state: new Uint8Array(0) }])).toThrow(InvariantError);
  });
});
