// FrameReader: the one framing loop every TCP channel uses. Sockets hand over chunks that split
// and merge frames arbitrarily, so every test here feeds the same byte stream cut in different
// ways and checks the frames come out byte-exact and in order.
import { createUnitRng as prng } from "../../../src/tools/generators.ts";
import { describe, expect, test } from "bun:test";
import { encodeFrame, FRAME_ERROR, FRAME_HEADER_BYTES, FrameReader, readU32, writeU32 } from "../../../src/codec/frame.ts";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const fromHex = (s: string) => new Uint8Array(Buffer.from(s.replace(/ /g, ""), "hex"));
const bytes = (...xs: number[]) => new Uint8Array(xs);

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Feeds `chunks` in order; returns copies of every frame (views are valid only in the callback). */
function feedAll(reader: FrameReader, chunks: readonly Uint8Array[]): Uint8Array[] {
  const frames: Uint8Array[] = [];
  for (const c of chunks) {
    const err = reader.feed(c, (buf, start, end) => frames.push(buf.slice(start, end)));
    expect(err).toBeNull();
  }
  return frames;
}

/** Cuts `stream` at the given offsets (ascending). */
function cut(stream: Uint8Array, at: readonly number[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  let prev = 0;
  for (const a of at) {
    out.push(stream.slice(prev, a));
    prev = a;
  }
  out.push(stream.slice(prev));
  return out;
}

const PAYLOADS = [bytes(1, 2, 3), bytes(), bytes(0xff), new Uint8Array(7).fill(0xab), bytes(0, 0, 0, 0, 5)];
const STREAM = concat(PAYLOADS.map(encodeFrame));

describe("primitives: golden bytes", () => {
  test("writeU32 writes big-endian", () => {
    const b = new Uint8Array(6);
    writeU32(b, 1, 0x01020304);
    expect(hex(b)).toBe("000102030400");
    writeU32(b, 0, 0xffffffff);
    expect(hex(b.subarray(0, 4))).toBe("ffffffff");
    writeU32(b, 2, 0);
    expect(hex(b)).toBe("ffff00000000");
  });

  test("readU32 reads big-endian and unsigned", () => {
    expect(readU32(fromHex("01020304"), 0)).toBe(0x01020304);
    expect(readU32(fromHex("00ffffffff"), 1)).toBe(4294967295);
    expect(readU32(fromHex("80000000"), 0)).toBe(2147483648);
    expect(readU32(fromHex("00000011"), 0)).toBe(17);
  });

  test("encodeFrame = length:u32be payload", () => {
    expect(hex(encodeFrame(bytes(0x61, 0x62, 0x63)))).toBe("00000003616263");
    expect(hex(encodeFrame(bytes()))).toBe("00000000");
    expect(hex(encodeFrame(new Uint8Array(256)))).toBe("00000100" + "00".repeat(256));
    expect(FRAME_HEADER_BYTES).toBe(4);
  });

  test("readU32 ∘ writeU32 is the identity on u32", () => {
    const b = new Uint8Array(4);
    for (const v of [0, 1, 255, 256, 65535, 65536, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff]) {
      writeU32(b, 0, v);
      expect(readU32(b, 0)).toBe(v);
    }
  });
});

describe("FrameReader", () => {
  test("rejects a bad maxFrame", () => {
    for (const bad of [-1, 1.5, 0x80000000, NaN]) expect(() => new FrameReader(bad)).toThrow(RangeError);
    expect(new FrameReader(0).maxFrame).toBe(0);
  });

  test("a single frame, decoded from golden bytes", () => {
    const r = new FrameReader(100);
    expect(feedAll(r, [fromHex("00000003 616263")]).map(hex)).toEqual(["616263"]);
    expect(r.pending).toBe(0);
  });

  test("a frame wholly inside a chunk is a view into that chunk (no copy)", () => {
    const r = new FrameReader(100);
    const chunk = fromHex("00000002 aabb 00000001 cc");
    const seen: Array<[Uint8Array, number, number]> = [];
    r.feed(chunk, (buf, start, end) => seen.push([buf, start, end]));
    expect(seen).toEqual([
      [chunk, 4, 6],
      [chunk, 10, 11],
    ]);
    expect(seen[0]![0]).toBe(chunk);
  });

  test("several frames in one chunk come out in order", () => {
    const r = new FrameReader(100);
    expect(feedAll(r, [STREAM]).map(hex)).toEqual(PAYLOADS.map(hex));
    expect(r.pending).toBe(0);
  });

  test("a zero-length frame is delivered as an empty payload", () => {
    const r = new FrameReader(100);
    const calls: Array<[number, number]> = [];
    expect(r.feed(fromHex("00000000"), (_b, s, e) => calls.push([s, e]))).toBeNull();
    expect(calls).toEqual([[4, 4]]);
    // Also when it arrives one byte at a time (through the carry buffer).
    const r2 = new FrameReader(100);
    const frames = feedAll(r2, cut(fromHex("00000000 00000000"), [1, 2, 3, 4, 5, 6, 7]));
    expect(frames.map((f) => f.length)).toEqual([0, 0]);
    // A zero maxFrame admits exactly the empty frame.
    expect(feedAll(new FrameReader(0), [fromHex("00000000")]).length).toBe(1);
  });

  test("a stream split at every single byte boundary (incl. inside each header)", () => {
    for (let i = 0; i <= STREAM.length; i++) {
      const r = new FrameReader(100);
      const frames = feedAll(r, cut(STREAM, [i]));
      expect({ split: i, frames: frames.map(hex) }).toEqual({ split: i, frames: PAYLOADS.map(hex) });
      expect(r.pending).toBe(0);
    }
  });

  test("a stream split at every pair of byte boundaries (three chunks, empty ones included)", () => {
    for (let i = 0; i <= STREAM.length; i++) {
      for (let j = i; j <= STREAM.length; j++) {
        const r = new FrameReader(100);
        const frames = feedAll(r, cut(STREAM, [i, j]));
        expect({ split: [i, j], frames: frames.map(hex) }).toEqual({ split: [i, j], frames: PAYLOADS.map(hex) });
        expect(r.pending).toBe(0);
      }
    }
  });

  test("pending counts the bytes held back, header bytes included", () => {
    const r = new FrameReader(100);
    const frame = fromHex("00000003 616263");
    const out: string[] = [];
    for (let i = 0; i < frame.length; i++) {
      expect(r.pending).toBe(i);
      r.feed(frame.subarray(i, i + 1), (b, s, e) => out.push(hex(b.subarray(s, e))));
    }
    expect(out).toEqual(["616263"]);
    expect(r.pending).toBe(0);
  });

  test("many frames fed one byte at a time", () => {
    const payloads: Uint8Array[] = [];
    const rnd = prng(7);
    for (let i = 0; i < 200; i++) payloads.push(Uint8Array.from({ length: Math.floor(rnd() * 40) }, () => Math.floor(rnd() * 256)));
    const stream = concat(payloads.map(encodeFrame));
    const r = new FrameReader(64);
    const frames = feedAll(r, Array.from(stream, (b) => bytes(b)));
    expect(frames.map(hex)).toEqual(payloads.map(hex));
    expect(r.pending).toBe(0);
  });

  test("a frame exactly at maxFrame is accepted, whole and split", () => {
    const payload = Uint8Array.from({ length: 10 }, (_, i) => i + 1);
    const frame = encodeFrame(payload);
    expect(feedAll(new FrameReader(10), [frame]).map(hex)).toEqual([hex(payload)]);
    for (let i = 1; i < frame.length; i++) expect(feedAll(new FrameReader(10), cut(frame, [i])).map(hex)).toEqual([hex(payload)]);
  });

  test("maxFrame+1 is rejected before any of it is buffered", () => {
    const frame = encodeFrame(new Uint8Array(11));
    const r = new FrameReader(10);
    let called = 0;
    const err = r.feed(frame, () => called++);
    expect(err).toEqual({ kind: FRAME_ERROR.oversized, claimed: 11, max: 10 });
    expect(err!.kind).toBe("oversized");
    expect(called).toBe(0);
    expect(r.pending).toBe(0);
  });

  test("an oversized claim after good frames in the same chunk: the good ones are delivered, then the error", () => {
    const r = new FrameReader(10);
    const out: string[] = [];
    const err = r.feed(concat([encodeFrame(bytes(1)), fromHex("0000000b 00")]), (b, s, e) => out.push(hex(b.subarray(s, e))));
    expect(out).toEqual(["01"]);
    expect(err).toEqual({ kind: "oversized", claimed: 11, max: 10 });
    expect(r.pending).toBe(0);
  });

  test("an oversized header split across chunks: at most the header is held, never the body", () => {
    for (let i = 1; i < 4; i++) {
      const r = new FrameReader(1024);
      // Claims 2 GiB − 1 and follows with some bytes of "body".
      const stream = concat([fromHex("7fffffff"), new Uint8Array(100)]);
      expect(r.feed(stream.subarray(0, i), () => {})).toBeNull();
      expect(r.pending).toBe(i);
      const err = r.feed(stream.subarray(i), () => {});
      expect(err).toEqual({ kind: "oversized", claimed: 0x7fffffff, max: 1024 });
      expect(r.pending).toBe(0);
      // The carry buffer did not grow towards the claim.
      expect((r as unknown as { carry: Uint8Array }).carry.length).toBeLessThanOrEqual(1024 + FRAME_HEADER_BYTES);
    }
  });

  test("a header is not read before all four bytes are there (stale carry bytes never count)", () => {
    // Frame A passes through the carry buffer, leaving its header (00 00 00 05) there. Frame B
    // claims exactly maxFrame = 16 MiB (01 00 00 00); its first byte alone over A's stale bytes
    // would read as 0x01000005 > maxFrame.
    const max = 16 * 1024 * 1024;
    const r = new FrameReader(max);
    const a = encodeFrame(bytes(1, 2, 3, 4, 5));
    const b = new Uint8Array(FRAME_HEADER_BYTES + max);
    writeU32(b, 0, max);
    b[FRAME_HEADER_BYTES + max - 1] = 0x77;
    const sizes: number[] = [];
    const on = (_buf: Uint8Array, s: number, e: number) => sizes.push(e - s);
    expect(r.feed(a.subarray(0, 6), on)).toBeNull();
    expect(r.feed(a.subarray(6), on)).toBeNull();
    expect(r.feed(b.subarray(0, 1), on)).toBeNull();
    expect(r.pending).toBe(1);
    expect(r.feed(b.subarray(1, 3), on)).toBeNull();
    expect(r.feed(b.subarray(3), (buf, s, e) => {
      on(buf, s, e);
      expect(buf[e - 1]).toBe(0x77);
    })).toBeNull();
    expect(sizes).toEqual([5, max]);
    expect(r.pending).toBe(0);
  });

  test("a claim of 0xffffffff is reported unsigned", () => {
    const r = new FrameReader(5);
    expect(r.feed(fromHex("ffffffff"), () => {})).toEqual({ kind: "oversized", claimed: 0xffffffff, max: 5 });
  });

  test("every call after an error returns the same error and delivers nothing", () => {
    const r = new FrameReader(4);
    const first = r.feed(fromHex("00000005 0102030405"), () => {});
    expect(first).not.toBeNull();
    expect(r.failed).toBe(first);
    let called = 0;
    for (const chunk of [encodeFrame(bytes(1)), bytes(), fromHex("00000000"), encodeFrame(new Uint8Array(100))]) {
      expect(r.feed(chunk, () => called++)).toBe(first!);
    }
    expect(called).toBe(0);
    expect(r.pending).toBe(0);
  });

  test("a 1 MiB frame (maxFrame 2 MiB) in random chunks reassembles byte-exact", () => {
    const seed = 0x5eed;
    const rnd = prng(seed);
    const big = Uint8Array.from({ length: 1024 * 1024 }, () => Math.floor(rnd() * 256));
    const small = bytes(9, 8, 7);
    const stream = concat([encodeFrame(small), encodeFrame(big), encodeFrame(bytes()), encodeFrame(small)]);
    for (let round = 0; round < 5; round++) {
      const at: number[] = [];
      let p = 0;
      for (;;) {
        // Mostly socket-sized chunks, sometimes tiny ones, sometimes huge ones.
        const r = rnd();
        p += r < 0.2 ? 1 + Math.floor(rnd() * 5) : r < 0.9 ? 45 + Math.floor(rnd() * 65536) : Math.floor(rnd() * 600_000);
        if (p >= stream.length) break;
        at.push(p);
      }
      const reader = new FrameReader(2 * 1024 * 1024);
      const frames = feedAll(reader, cut(stream, at));
      expect(frames.length, `seed ${seed} round ${round}`).toBe(4);
      expect(hex(frames[0]!)).toBe("090807");
      expect(frames[1]!.length).toBe(big.length);
      expect(Buffer.compare(frames[1]!, big), `seed ${seed} round ${round}`).toBe(0);
      expect(frames[2]!.length).toBe(0);
      expect(hex(frames[3]!)).toBe("090807");
      expect(reader.pending).toBe(0);
    }
  });

  test("a claimed length costs memory only as its bytes arrive", () => {
    const max = 1 << 30;
    const reader = new FrameReader(max);
    const header = new Uint8Array(4);
    writeU32(header, 0, max);
    // The claim split across chunks, then a few bytes of it; and the claim at a chunk's end.
    expect(feedAll(reader, [header.subarray(0, 2), header.subarray(2), bytes(1, 2, 3)])).toEqual([]);
    expect(reader.pending).toBe(7);
    expect(reader.capacity).toBeLessThanOrEqual(64 * 1024);
    const tail = new FrameReader(max);
    expect(feedAll(tail, [concat([encodeFrame(bytes(5)), header])])).toEqual([bytes(5)]);
    expect(tail.pending).toBe(4);
    expect(tail.capacity).toBeLessThanOrEqual(64 * 1024);
    // As the bytes come, it grows with them (doubling).
    const chunk = new Uint8Array(100_000);
    feedAll(tail, [chunk, chunk, chunk]);
    expect(tail.pending).toBe(300_004);
    expect(tail.capacity).toBeLessThan(2 * 300_004);
  });
});
