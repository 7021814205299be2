// Data channel codec: golden bytes written by hand from the grammar at the top of
// src/codec/data.ts, checked both ways (encode → bytes, bytes → visitor calls).
import { describe, expect, test } from "bun:test";
import {
  beginFrame,
  DATA_ERROR,
  DATA_HEADER_BYTES,
  DATA_KIND,
  type DataVisitor,
  encodeBarrier,
  encodeHello,
  encodeMarker,
  encodeState,
  encodeStatePacked,
  beginEntry,
  endEntry,
  entryEnd,
  unpackEntries,
  encodeStateEnd,
  endFrame,
  type FrameHead,
  MAX_KEY_BYTES,
  readHead,
  readU16,
  readUtf8,
  RECORD_FLAG,
  recordBytes,
  stateEntryBytes,
  utf8Length,
  visitBody,
  writeRecordHead,
  writeU16,
  writeUtf8,
  TIME_FRAME_BYTES,
  writeTime,
} from "../../../src/codec/data.ts";
import { ByteBuilder } from "../../../src/codec/bytes.ts";
import { readU32, writeU32 } from "../../../src/codec/frame.ts";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const fromHex = (s: string) => new Uint8Array(Buffer.from(s.replace(/ /g, ""), "hex"));
const te = new TextEncoder();

type Call =
  | ["record", number, number, number, string, string]
  | ["marker", number[]]
  | ["state", number, number, string, string]
  | ["stateEnd", number, number]
  | ["hello", string, number]
  | ["barrier", number, number]
  | ["time", number];

/** A visitor that records every call, copying views (valid only during the call) as hex. */
function recorder(): { calls: Call[]; v: DataVisitor } {
  const calls: Call[] = [];
  return {
    calls,
    v: {
      record: (stage, flags, slot, key, buf, s, e) => calls.push(["record", stage, flags, slot, key, hex(buf.subarray(s, e))]),
      marker: (slots) => calls.push(["marker", slots]),
      state: (slot, stage, key, buf, s, e) => calls.push(["state", slot, stage, key, hex(buf.subarray(s, e))]),
      stateEnd: (slot, keys) => calls.push(["stateEnd", slot, keys]),
      hello: (name, id) => calls.push(["hello", name, id]),
      barrier: (k, round) => calls.push(["barrier", k, round]),
      time: (ms) => calls.push(["time", ms]),
    },
  };
}

interface Decoded {
  head: FrameHead;
  headErr: string | null;
  bodyErr: string | null;
  calls: Call[];
}

/** Decodes one whole frame (length prefix included), checking the prefix against the size. */
function decodeFrame(frame: Uint8Array): Decoded {
  expect(readU32(frame, 0)).toBe(frame.length - 4);
  return decodeBody(frame, 4, frame.length);
}

function decodeBody(buf: Uint8Array, start: number, end: number): Decoded {
  const head: FrameHead = { kind: -1, seq: -1, epoch: -1 };
  const headErr = readHead(buf, start, end, head);
  const { calls, v } = recorder();
  const bodyErr = headErr === null ? visitBody(buf, start, end, head.kind, v) : null;
  return { head, headErr, bodyErr, calls };
}

/** Builds a DATA frame with beginFrame/writeRecordHead/endFrame, the way a batch is written. */
function dataFrame(
  seq: number,
  epoch: number,
  records: ReadonlyArray<{ stage: number; flags: number; slot: number; key: string; payload: Uint8Array }>,
  keyBytes: (key: string) => number = utf8Length,
): Uint8Array {
  let size = DATA_HEADER_BYTES + 4;
  for (const r of records) size += recordBytes(keyBytes(r.key), r.payload.length);
  const buf = new Uint8Array(size + 16);
  const start = 3; // not at offset 0, as inside a growable output buffer
  let p = beginFrame(buf, start, DATA_KIND.data, seq, epoch);
  writeU32(buf, p, records.length);
  p += 4;
  for (const r of records) {
    p = writeRecordHead(buf, p, r.stage, r.flags, r.slot, r.key, keyBytes(r.key), r.payload.length);
    buf.set(r.payload, p);
    p += r.payload.length;
  }
  endFrame(buf, start, p);
  return buf.slice(start, p);
}

// ---------------------------------------------------------------------------------------------
// Golden frames. Each `bytes` is written from the grammar; comments give the field boundaries.

const GOLDEN: ReadonlyArray<{ name: string; encode: () => Uint8Array; bytes: string; head: FrameHead; calls: Call[] }> = [
  {
    name: "MARKER seq 1 epoch 7 slots [3, 1023]",
    encode: () => encodeMarker(1, 7, [3, 1023]),
    // len=17 | kind 2 | seq 1 | epoch 7 | count 2 | 3 | 1023
    bytes: "00000011 02 00000001 00000007 00000002 0003 03ff",
    head: { kind: 2, seq: 1, epoch: 7 },
    calls: [["marker", [3, 1023]]],
  },
  {
    name: "MARKER with no slots",
    encode: () => encodeMarker(0, 0, []),
    bytes: "0000000d 02 00000000 00000000 00000000",
    head: { kind: 2, seq: 0, epoch: 0 },
    calls: [["marker", []]],
  },
  {
    name: "STATE slot 258 with two entries",
    encode: () =>
      encodeState(4, 9, 0x0102, [
        { stage: 1, key: "k", state: new Uint8Array([0xaa, 0xbb]) },
        { stage: 2, key: "", state: new Uint8Array() },
      ]),
    // len=32 | kind 3 | seq 4 | epoch 9 | slot 0x0102 | count 2
    // | stage 1 keyLen 1 "k" stateLen 2 aa bb | stage 2 keyLen 0 stateLen 0
    bytes: "00000020 03 00000004 00000009 0102 00000002 01 0001 6b 00000002 aabb 02 0000 00000000",
    head: { kind: 3, seq: 4, epoch: 9 },
    calls: [
      ["state", 0x0102, 1, "k", "aabb"],
      ["state", 0x0102, 2, "", ""],
    ],
  },
  {
    name: "STATE with a multi-byte key",
    encode: () => encodeState(0, 1, 1023, [{ stage: 3, key: "é€", state: new Uint8Array([1]) }]),
    // "é€" = c3 a9 e2 82 ac (5 bytes). len = 9 + 6 + (1+2+5+4+1) = 28
    bytes: "0000001c 03 00000000 00000001 03ff 00000001 03 0005 c3a9e282ac 00000001 01",
    head: { kind: 3, seq: 0, epoch: 1 },
    calls: [["state", 1023, 3, "é€", "01"]],
  },
  {
    name: "STATE_END slot 5, 10 keys",
    encode: () => encodeStateEnd(3, 2, 5, 10),
    // len=15 | kind 4 | seq 3 | epoch 2 | slot 5 | keys 10
    bytes: "0000000f 04 00000003 00000002 0005 0000000a",
    head: { kind: 4, seq: 3, epoch: 2 },
    calls: [["stateEnd", 5, 10]],
  },
  {
    name: "HELLO w1, member 3",
    encode: () => encodeHello(0, 0, "w1", 3),
    // len=15 | kind 5 | seq 0 | epoch 0 | nameLen 2 | "w1" | id 3
    bytes: "0000000f 05 00000000 00000000 0002 7731 0003",
    head: { kind: 5, seq: 0, epoch: 0 },
    calls: [["hello", "w1", 3]],
  },
  {
    name: "BARRIER round 2 of checkpoint 258",
    encode: () => encodeBarrier(7, 3, 258, 2),
    // len=14 | kind 6 | seq 7 | epoch 3 | checkpoint 258 | round 2
    bytes: "0000000e 06 00000007 00000003 00000102 02",
    head: { kind: 6, seq: 7, epoch: 3 },
    calls: [["barrier", 258, 2]],
  },
  {
    name: "TIME 1.5 ms after the epoch",
    encode: () => {
      const out = new Uint8Array(TIME_FRAME_BYTES);
      expect(writeTime(out, 0, 9, 4, 1.5)).toBe(TIME_FRAME_BYTES);
      return out;
    },
    // len=17 | kind 7 | seq 9 | epoch 4 | f64be 1.5
    bytes: "00000011 07 00000009 00000004 3ff8000000000000",
    head: { kind: 7, seq: 9, epoch: 4 },
    calls: [["time", 1.5]],
  },
  {
    name: "HELLO with seq and epoch at the u32 limits",
    encode: () => encodeHello(0xffffffff, 0x80000000, "initializer", 0xfffe),
    bytes: "00000018 05 ffffffff 80000000 000b " + hex(te.encode("initializer")) + " fffe",
    head: { kind: 5, seq: 0xffffffff, epoch: 0x80000000 },
    calls: [["hello", "initializer", 0xfffe]],
  },
  {
    name: "DATA with a RAW and a non-RAW record",
    encode: () =>
      dataFrame(0x01020304, 0xfffffffe, [
        { stage: 1, flags: RECORD_FLAG.raw, slot: 0x03ff, key: "ab", payload: new Uint8Array([0x10]) },
        { stage: 2, flags: 0, slot: 0, key: "", payload: new Uint8Array() },
      ]),
    // len=36 | kind 1 | seq | epoch | count 2
    // | stage 1 flags 1 slot 03ff keyLen 2 "ab" payloadLen 1 10 | stage 2 flags 0 slot 0 keyLen 0 payloadLen 0
    bytes: "00000024 01 01020304 fffffffe 00000002 01 01 03ff 0002 6162 00000001 10 02 00 0000 0000 00000000",
    head: { kind: 1, seq: 0x01020304, epoch: 0xfffffffe },
    calls: [
      ["record", 1, 1, 0x03ff, "ab", "10"],
      ["record", 2, 0, 0, "", ""],
    ],
  },
  {
    name: "DATA with no records",
    encode: () => dataFrame(0, 0, []),
    bytes: "0000000d 01 00000000 00000000 00000000",
    head: { kind: 1, seq: 0, epoch: 0 },
    calls: [],
  },
];

describe("constants", () => {
  test("kinds, flags and sizes match the grammar", () => {
    expect(DATA_KIND).toEqual({ data: 1, marker: 2, state: 3, stateEnd: 4, hello: 5, barrier: 6, time: 7 });
    expect(RECORD_FLAG.raw).toBe(1);
    expect(DATA_HEADER_BYTES).toBe(13);
    expect(MAX_KEY_BYTES).toBe(65535);
    expect(recordBytes(3, 10)).toBe(1 + 1 + 2 + 2 + 3 + 4 + 10);
    expect(stateEntryBytes({ stage: 0, key: "ключ", state: new Uint8Array(5) })).toBe(1 + 2 + 8 + 4 + 5);
  });
});

describe("golden frames", () => {
  for (const g of GOLDEN) {
    test(`encode ${g.name}`, () => {
      expect(hex(g.encode())).toBe(g.bytes.replace(/ /g, ""));
    });
    test(`decode ${g.name}`, () => {
      const d = decodeFrame(fromHex(g.bytes));
      expect(d.headErr).toBeNull();
      expect(d.head).toEqual(g.head);
      expect(d.bodyErr).toBeNull();
      expect(d.calls).toEqual(g.calls);
    });
  }

  test("decoding works on a frame inside a larger buffer (start ≠ 0)", () => {
    const frame = fromHex(GOLDEN[0]!.bytes);
    const buf = new Uint8Array(frame.length + 20).fill(0xee);
    buf.set(frame, 11);
    const d = decodeBody(buf, 11 + 4, 11 + frame.length);
    expect(d.bodyErr).toBeNull();
    expect(d.calls).toEqual([["marker", [3, 1023]]]);
  });
});

describe("DATA batches", () => {
  const records = [
    { stage: 0, flags: RECORD_FLAG.raw, slot: 0, key: "ascii-key", payload: te.encode("hello") },
    { stage: 1, flags: 0, slot: 1023, key: "ключ", payload: new Uint8Array([0, 1, 2, 255]) },
    { stage: 2, flags: RECORD_FLAG.raw, slot: 512, key: "🔑", payload: new Uint8Array() },
    { stage: 3, flags: 0, slot: 7, key: "", payload: new Uint8Array(300).fill(9) },
    { stage: 255, flags: 0xfe, slot: 0xffff, key: "mixed ключ 🔑 é", payload: new Uint8Array([42]) },
    { stage: 4, flags: RECORD_FLAG.raw, slot: 100, key: "k".repeat(100), payload: new Uint8Array([1]) },
  ];

  test("records with ASCII, multi-byte UTF-8 and empty keys, RAW and non-RAW, decode to the same records", () => {
    const d = decodeFrame(dataFrame(42, 3, records));
    expect(d.headErr).toBeNull();
    expect(d.head).toEqual({ kind: DATA_KIND.data, seq: 42, epoch: 3 });
    expect(d.bodyErr).toBeNull();
    expect(d.calls).toEqual(records.map((r) => ["record", r.stage, r.flags, r.slot, r.key, hex(r.payload)] as Call));
  });

  test("the key is written as its UTF-8 bytes with their byte length", () => {
    const f = dataFrame(0, 0, [{ stage: 0, flags: 0, slot: 0, key: "🔑", payload: new Uint8Array() }]);
    // record starts after len(4) + head(9) + count(4) = 17
    expect(readU16(f, 17 + 4)).toBe(4);
    expect(hex(f.subarray(17 + 6, 17 + 10))).toBe("f09f9491");
  });

  test("writeRecordHead returns the offset where the payload goes", () => {
    const buf = new Uint8Array(64);
    const p = writeRecordHead(buf, 5, 1, 0, 2, "ключ", 8, 3);
    expect(p).toBe(5 + 6 + 8 + 4);
    expect(hex(buf.subarray(5, p))).toBe("01 00 0002 0008 d0bad0bbd18ed187 00000003".replace(/ /g, ""));
  });

  test("a key longer than MAX_KEY_BYTES cannot be written correctly, so the dataflow refuses it", () => {
    // keyLen is a u16: the codec cannot carry such a key (70 000 & 0xffff = 4464 would be written).
    // The dataflow refuses keys above MAX_KEY_BYTES before they reach a writer (see
    // test/unit/runtime/dataflow-keys.test.ts); this pins why that check must exist.
    const key = "k".repeat(70_000);
    const f = dataFrame(0, 0, [{ stage: 0, flags: 0, slot: 0, key, payload: new Uint8Array([1]) }]);
    expect(readU16(f, 17 + 4)).toBe(70_000 & 0xffff);
    expect(decodeFrame(f).bodyErr).not.toBeNull();
  });
});

describe("readHead", () => {
  test("a body shorter than kind+seq+epoch is short", () => {
    const h: FrameHead = { kind: 0, seq: 0, epoch: 0 };
    for (let n = 0; n < 9; n++) expect(readHead(new Uint8Array(9).fill(1), 0, n, h)).toBe(DATA_ERROR.short);
    expect(readHead(fromHex("05 00000000 00000000"), 0, 9, h)).toBeNull();
  });

  test("kinds 0 and 8..255 are unknown", () => {
    const h: FrameHead = { kind: 0, seq: 0, epoch: 0 };
    for (const k of [0, 8, 128, 255]) expect(readHead(fromHex(k.toString(16).padStart(2, "0") + " 00000001 00000002"), 0, 9, h)).toBe(DATA_ERROR.kind);
    for (const k of [1, 2, 3, 4, 5, 6, 7]) {
      expect(readHead(fromHex(`0${k} 00000001 00000002`), 0, 9, h)).toBeNull();
      expect(h).toEqual({ kind: k, seq: 1, epoch: 2 });
    }
  });

  test("visitBody with an unknown kind reports it", () => {
    const { v, calls } = recorder();
    expect(visitBody(fromHex("09 00000000 00000000"), 0, 9, 9, v)).toBe(DATA_ERROR.kind);
    expect(calls).toEqual([]);
  });
});

describe("visitBody errors", () => {
  const twoRecords = dataFrame(0, 0, [
    { stage: 1, flags: 0, slot: 1, key: "aa", payload: new Uint8Array([1, 2]) },
    { stage: 2, flags: 0, slot: 2, key: "bb", payload: new Uint8Array([3, 4]) },
  ]);

  test("a DATA frame cut anywhere inside its records is truncated; earlier records stand", () => {
    // body = head 9 + count 4 + 2 × (6 + 2 + 4 + 2 = 14) = 41
    expect(twoRecords.length).toBe(45);
    for (let end = 4 + 9; end < twoRecords.length; end++) {
      const d = decodeBody(twoRecords, 4, end);
      expect({ end, err: d.bodyErr }).toEqual({ end, err: DATA_ERROR.truncated });
      // The first record is complete once its 14 bytes are there (at 4+13+14 = 31).
      expect(d.calls.length).toBe(end >= 31 ? 1 : 0);
    }
  });

  test("a count larger than the records present is truncated, not a hang or a throw", () => {
    const f = twoRecords.slice();
    writeU32(f, 13, 0xffffffff);
    expect(decodeFrame(f).bodyErr).toBe(DATA_ERROR.truncated);
  });

  test("a payload length past the end is truncated", () => {
    const f = dataFrame(0, 0, [{ stage: 0, flags: 0, slot: 0, key: "a", payload: new Uint8Array([1]) }]);
    writeU32(f, 17 + 7, 2); // payloadLen 1 → 2
    expect(decodeFrame(f).bodyErr).toBe(DATA_ERROR.truncated);
  });

  test("bytes after the last record are trailing", () => {
    for (const frame of [twoRecords, encodeMarker(1, 2, [5]), encodeStateEnd(0, 0, 1, 2), encodeHello(0, 0, "w", 1), encodeState(0, 0, 1, []), encodeBarrier(0, 0, 1, 1)]) {
      const longer = new Uint8Array(frame.length + 1);
      longer.set(frame);
      const d = decodeBody(longer, 4, longer.length);
      expect(d.headErr).toBeNull();
      expect(d.bodyErr).toBe(DATA_ERROR.trailing);
    }
  });

  test("a count smaller than the records present leaves trailing bytes", () => {
    const f = twoRecords.slice();
    writeU32(f, 13, 1);
    const d = decodeFrame(f);
    expect(d.bodyErr).toBe(DATA_ERROR.trailing);
    expect(d.calls.length).toBe(1);
  });

  test("an invalid UTF-8 key is DATA_ERROR.utf8, not a throw", () => {
    for (const badKey of ["ff", "c3", "c328", "eda080" /* encoded surrogate */, "f8888080 80", "61".repeat(30) + "ff" /* > 24 bytes */]) {
      const kb = fromHex(badKey);
      const f = dataFrame(0, 0, [{ stage: 0, flags: 0, slot: 0, key: "x".repeat(kb.length), payload: new Uint8Array([7]) }]);
      f.set(kb, 17 + 6);
      let d: Decoded | undefined;
      expect(() => (d = decodeFrame(f))).not.toThrow();
      expect({ badKey, err: d!.bodyErr }).toEqual({ badKey, err: DATA_ERROR.utf8 });
      expect(d!.calls).toEqual([]);
    }
  });

  test("invalid UTF-8 in a STATE key or HELLO name is DATA_ERROR.utf8", () => {
    const s = encodeState(0, 0, 1, [{ stage: 0, key: "ab", state: new Uint8Array([1]) }]);
    s[4 + 9 + 6 + 3] = 0xff;
    expect(decodeFrame(s).bodyErr).toBe(DATA_ERROR.utf8);
    const h = encodeHello(0, 0, "ab", 1);
    h[4 + 9 + 2] = 0xc0;
    expect(decodeFrame(h).bodyErr).toBe(DATA_ERROR.utf8);
  });

  test("MARKER, STATE, STATE_END and HELLO cut short are truncated", () => {
    const frames = [
      encodeMarker(0, 0, [1, 2, 3]),
      encodeState(0, 0, 9, [
        { stage: 0, key: "a", state: new Uint8Array([1, 2]) },
        { stage: 0, key: "b", state: new Uint8Array([3]) },
      ]),
      encodeStateEnd(0, 0, 1, 1),
      encodeHello(0, 0, "worker", 2),
    ];
    for (const f of frames) {
      for (let end = 4 + 9; end < f.length; end++) {
        const d = decodeBody(f, 4, end);
        expect({ kind: f[4], end, err: d.bodyErr }).toEqual({ kind: f[4], end, err: DATA_ERROR.truncated });
      }
    }
  });

  test("a MARKER count of 0xffffffff is truncated without allocating", () => {
    const f = encodeMarker(0, 0, [1]);
    writeU32(f, 13, 0xffffffff);
    expect(decodeFrame(f).bodyErr).toBe(DATA_ERROR.truncated);
  });
});

describe("STATE round trips", () => {
  test("several entries, then STATE_END", () => {
    const entries = [
      { stage: 1, key: "a", state: new Uint8Array([1]) },
      { stage: 1, key: "ключ", state: new Uint8Array(1000).map((_, i) => i & 0xff) },
      { stage: 4, key: "🔑", state: new Uint8Array() },
      { stage: 1, key: "", state: new Uint8Array([0, 0]) },
    ];
    const d = decodeFrame(encodeState(11, 12, 777, entries));
    expect(d.head).toEqual({ kind: DATA_KIND.state, seq: 11, epoch: 12 });
    expect(d.bodyErr).toBeNull();
    expect(d.calls).toEqual(entries.map((e) => ["state", 777, e.stage, e.key, hex(e.state)] as Call));
    const end = decodeFrame(encodeStateEnd(13, 12, 777, entries.length));
    expect(end.head).toEqual({ kind: DATA_KIND.stateEnd, seq: 13, epoch: 12 });
    expect(end.calls).toEqual([["stateEnd", 777, 4]]);
  });

  test("an empty STATE frame", () => {
    const d = decodeFrame(encodeState(0, 0, 3, []));
    expect(d.bodyErr).toBeNull();
    expect(d.calls).toEqual([]);
  });

  test("HELLO with a multi-byte name", () => {
    expect(decodeFrame(encodeHello(1, 2, "wörker-🔑", 9)).calls).toEqual([["hello", "wörker-🔑", 9]]);
  });
});

describe("UTF-8 helpers", () => {
  const WELL_FORMED = [
    "",
    "a",
    "hello world",
    "\u007f",
    "\u0080",
    "é",
    "\u07ff",
    "\u0800",
    "ключ",
    "中文字",
    "\uffff",
    "🔑",
    "a🔑b",
    "🔑🔑",
    "\u{10ffff}",
    "mixed ключ 🔑 é and a longer ASCII tail to pass 24 bytes",
    "x".repeat(1000) + "é",
  ];
  // Lone surrogates: TextEncoder writes each as U+FFFD (ef bf bd, 3 bytes).
  const LONE_OK = ["\ud800", "\udc00", "a\ud800", "\udc00a", "\udc00\ud800", "\udfff\udbff", "\ud800a"];
  const LONE_BAD = ["\ud800\u00e9", "\ud800中", "\ud800\ud800", "\udbff\ud83d", "\ud800ключ"];

  test("utf8Length agrees with TextEncoder on well-formed strings", () => {
    for (const s of WELL_FORMED) expect({ s, n: utf8Length(s) }).toEqual({ s, n: te.encode(s).length });
  });

  test("utf8Length agrees with TextEncoder on lone surrogates at the end or before ASCII/low surrogates", () => {
    for (const s of LONE_OK) expect({ s, n: utf8Length(s) }).toEqual({ s, n: te.encode(s).length });
  });

  test("utf8Length on a high surrogate followed by a non-ASCII, non-low-surrogate code unit", () => {
    // A lone high surrogate is written as U+FFFD (3 bytes) and the next code unit is its own.
    const actual = LONE_BAD.map((s) => utf8Length(s));
    const expected = LONE_BAD.map((s) => te.encode(s).length);
    expect(expected).toEqual([5, 6, 6, 6, 11]);
    expect(actual).toEqual(expected);
  });

  test("a key with such a lone surrogate round-trips through STATE as U+FFFD", () => {
    const f = encodeState(0, 0, 1, [{ stage: 0, key: "\ud800é", state: new Uint8Array([1, 2, 3]) }]);
    const d = decodeFrame(f);
    expect(d.bodyErr).toBeNull();
    expect(JSON.stringify(d.calls)).toContain("\ufffdé");
  });

  test("a key with such a lone surrogate round-trips through a DATA record", () => {
    const f = dataFrame(0, 0, [{ stage: 0, flags: 0, slot: 0, key: "\ud800é", payload: new Uint8Array([1]) }]);
    expect(readU16(f, 17 + 4)).toBe(5);
    const d = decodeFrame(f);
    expect(d.bodyErr).toBeNull();
    expect(JSON.stringify(d.calls)).toContain("\ufffdé");
  });

  test("writeUtf8 writes what TextEncoder writes and returns the end offset", () => {
    for (const s of [...WELL_FORMED, ...LONE_OK]) {
      const want = te.encode(s);
      const buf = new Uint8Array(want.length + 8).fill(0xee);
      const end = writeUtf8(buf, 3, s);
      expect(end).toBe(3 + want.length);
      expect(hex(buf.subarray(3, end))).toBe(hex(want));
      expect(buf[2]).toBe(0xee);
      expect(buf[end]).toBe(0xee);
    }
  });

  test("readUtf8 ∘ writeUtf8 is the identity on well-formed strings", () => {
    for (const s of WELL_FORMED) {
      const buf = new Uint8Array(utf8Length(s) + 4);
      const end = writeUtf8(buf, 2, s);
      expect(readUtf8(buf, 2, end)).toBe(s);
    }
  });

  test("a lone surrogate round-trips as U+FFFD", () => {
    const buf = new Uint8Array(8);
    const end = writeUtf8(buf, 0, "a\ud800");
    expect(readUtf8(buf, 0, end)).toBe("a\ufffd");
  });

  test("readUtf8 throws on invalid UTF-8, short and long", () => {
    expect(() => readUtf8(fromHex("ff"), 0, 1)).toThrow();
    expect(() => readUtf8(fromHex("61".repeat(40) + "c3"), 0, 41)).toThrow();
    expect(readUtf8(fromHex("ff 6869 ff"), 1, 3)).toBe("hi");
  });

  test("writeU16/readU16 big-endian", () => {
    const b = new Uint8Array(3);
    writeU16(b, 1, 0x03ff);
    expect(hex(b)).toBe("0003ff");
    expect(readU16(b, 1)).toBe(1023);
    writeU16(b, 0, 0xffff);
    expect(readU16(b, 0)).toBe(65535);
  });
});

describe("packed entries", () => {
  test("entries packed in place read back whole, and each entry's end is found from its header", () => {
    const o = new ByteBuilder(8);
    const states = [new Uint8Array([1, 2, 3]), new Uint8Array(0), new Uint8Array(300).fill(7)];
    const keys = ["a", "ключ", ""];
    keys.forEach((key, i) => {
      const at = beginEntry(o, i, key);
      o.ensure(states[i]!.length);
      o.buf.set(states[i]!, o.len);
      o.len += states[i]!.length;
      endEntry(o, at);
    });
    const packed = o.buf.subarray(0, o.len);
    const back = unpackEntries(packed, 3);
    expect(back.map((e) => [e.stage, e.key, Array.from(e.state)])).toEqual(keys.map((k, i) => [i, k, Array.from(states[i]!)]));
    expect(entryEnd(packed, 0)).toBe(1 + 2 + 1 + 4 + 3);
    // The same entries through the STATE frame encoder give the same bytes after its header.
    const frame = encodeStatePacked(0, 0, 1, 3, packed, 0, packed.length);
    expect(Array.from(frame.subarray(DATA_HEADER_BYTES + 6))).toEqual(Array.from(packed));
    expect(Array.from(encodeState(0, 0, 1, back))).toEqual(Array.from(frame));
  });

  test("a key that starts with U+FEFF keeps it (a decoder must not take it for a byte-order mark)", () => {
    const o = new ByteBuilder(8);
    endEntry(o, beginEntry(o, 0, "\uFEFFx"));
    expect(unpackEntries(o.buf.subarray(0, o.len), 1)[0]!.key).toBe("\uFEFFx");
  });

  test("a count that disagrees with the bytes is an invariant failure, not a short read", () => {
    const o = new ByteBuilder(8);
    endEntry(o, beginEntry(o, 0, "k"));
    expect(() => unpackEntries(o.buf.subarray(0, o.len), 2)).toThrow();
  });
});
