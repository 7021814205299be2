// Encoders write through an OutputWriter or return a string/bytes; a failing encoder leaves no
// partial output behind.
import { describe, expect, test } from "bun:test";
import type { Encoder } from "../../../src/app/types.ts";
import { InvariantError } from "../../../src/assert.ts";
import { GrowBuffer } from "../../../src/net/out-buffer.ts";
import { BufferWriter, encodeInto, encodeOutput } from "../../../src/runtime/output-writer.ts";

const text = (b: Uint8Array) => new TextDecoder().decode(b);

describe("encodeOutput", () => {
  test("a returned string is written as UTF-8, returned bytes as they are", () => {
    expect(text(encodeOutput((o: string) => `${o}!\n`, "héllo €𝄞"))).toBe("héllo €𝄞!\n");
    expect(Array.from(encodeOutput(() => new Uint8Array([0, 255, 7]), null))).toEqual([0, 255, 7]);
  });

  test("the writer: text, number, byte, bytes, in order, then whatever is returned", () => {
    const enc: Encoder<{ k: string; n: number }> = (o, w) => {
      w.text(o.k);
      w.text(" => ");
      w.number(o.n);
      w.byte(0x20);
      w.bytes(new Uint8Array([0x3c, 0x3e]));
      return "\n";
    };
    expect(text(encodeOutput(enc, { k: "ä", n: 1234567890123 }))).toBe("ä => 1234567890123 <>\n");
    expect(text(encodeOutput((o: number, w) => w.number(o), -0.5))).toBe("-0.5");
    expect(encodeOutput(() => null, 1).length).toBe(0);
  });

  test("a long output grows the buffer", () => {
    const big = "x".repeat(100_000);
    expect(text(encodeOutput((_: null, w) => { w.text(big); w.text(big); }, null)).length).toBe(200_000);
  });

  test("an encoder that throws or returns another type is refused", () => {
    expect(() => encodeOutput(() => { throw new Error("nope"); }, 1)).toThrow("sink encoder threw: nope");
    expect(() => encodeOutput((() => 42) as unknown as Encoder<number>, 1)).toThrow("sink encoder returned number");
  });
});

describe("encodeInto", () => {
  test("a failed output leaves the buffer as it was, earlier outputs intact", () => {
    const o = new GrowBuffer(16);
    const w = new BufferWriter(o);
    expect(encodeInto((s) => `${s}\n`, "first", w)).toBeNull();
    const failing: Encoder<unknown> = (_m, wr) => {
      wr.text("partial output that must not stay");
      throw new Error("late failure");
    };
    expect(encodeInto(failing, null, w)).toBe("sink encoder threw: late failure");
    const wrongType = ((_m: unknown, wr: { text(s: string): void }) => {
      wr.text("also partial");
      return 7;
    }) as unknown as Encoder<unknown>;
    expect(encodeInto(wrongType, null, w)).toStartWith("sink encoder returned number");
    expect(encodeInto((s) => `${s}\n`, "second", w)).toBeNull();
    expect(text(o.buf.subarray(0, o.len))).toBe("first\nsecond\n");
  });

  test("a broken invariant inside is not the encoder's failure: it propagates, the buffer as it was", () => {
    const o = new GrowBuffer(8);
    const w = new BufferWriter(o);
    expect(encodeInto((s) => `${s}\n`, "first", w)).toBeNull();
    const breaks: Encoder<unknown> = (_m, wr) => {
      wr.text("partial");
      throw new InvariantError("a link queue past its hard limit");
    };
    expect(() => encodeInto(breaks, null, w)).toThrow(InvariantError);
    expect(new TextDecoder().decode(o.buf.subarray(0, o.len))).toBe("first\n");
  });
});
