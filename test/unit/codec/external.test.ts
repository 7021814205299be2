import { describe, expect, test } from "bun:test";
import {
  decodeExternalBody,
  encodeClusterStatus,
  encodeExternal,
  encodeShrinkQueryResponse,
  encodeShrinkRequest,
  EXTERNAL_MAX_REQUEST,
  EXTERNAL_MSG,
  formatClusterStatus,
  formatEligible,
  parseClusterStatus,
  parseShrinkQueryResponse,
  decodeShrinkRequest,
  type ShrinkRequest,
  shrinkCount,
} from "../../../src/codec/external.ts";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const utf8 = (s: string) => new TextEncoder().encode(s);
/** Golden frame: the 6-byte prefix in hex as reference §3.5 writes it, then the payload text. */
const golden = (prefixHex: string, payload: string) => prefixHex.replace(/ /g, "") + hex(utf8(payload));

// Reference §3.5, each example both ways.
const GOLDEN = [
  {
    name: "shrink by names",
    type: EXTERNAL_MSG.ShrinkRequest,
    payload: encodeShrinkRequest({ query: false, node_names: ["worker2", "worker3"], node_count: 0 }),
    bytes: golden("00000043 0004", `{"query":false,"node_names":["worker2","worker3"],"node_count":0}`),
  },
  {
    name: "shrink query",
    type: EXTERNAL_MSG.ShrinkRequest,
    payload: encodeShrinkRequest({ query: true, node_names: [], node_count: 0 }),
    bytes: golden("0000002f 0004", `{"query":true,"node_names":[],"node_count":0}`),
  },
  { name: "shrink reply", type: EXTERNAL_MSG.ShrinkErrorResponse, payload: "Shrinking by 2 workers!", bytes: golden("00000019 0006", "Shrinking by 2 workers!") },
  { name: "status request", type: EXTERNAL_MSG.ClusterStatusQuery, payload: "", bytes: "000000020009" },
  { name: "clean shutdown", type: EXTERNAL_MSG.CleanShutdown, payload: "", bytes: "000000020003" },
] as const;

describe("external message ids", () => {
  test("1..26 with the original's names, no gaps or duplicates; ours from 100 on", () => {
    const ids: number[] = Object.values(EXTERNAL_MSG).sort((a, b) => a - b);
    expect(ids).toEqual([...Array.from({ length: 26 }, (_, i) => i + 1), 100, 101, 102, 103, 104]);
    expect(EXTERNAL_MSG.Print).toBe(1);
    expect(EXTERNAL_MSG.ShrinkRequest).toBe(4);
    expect(EXTERNAL_MSG.ClusterStatusQueryResponseNotInitialized).toBe(11);
    expect(EXTERNAL_MSG.ClusterStateEntityCountQueryResponse).toBe(26);
    expect(EXTERNAL_MAX_REQUEST).toBe(16384);
  });
});

describe("golden frames", () => {
  for (const g of GOLDEN) {
    test(`encode ${g.name}`, () => {
      expect(hex(encodeExternal(g.type, g.payload))).toBe(g.bytes);
    });
    test(`decode ${g.name}`, () => {
      const frame = Buffer.from(g.bytes, "hex");
      expect(frame.readUInt32BE(0)).toBe(frame.length - 4);
      expect(decodeExternalBody(frame.subarray(4))).toEqual({ ok: true, type: g.type, payload: g.payload });
    });
  }

  test("shrink by names is 71 bytes in all", () => {
    expect(encodeExternal(GOLDEN[0].type, GOLDEN[0].payload).length).toBe(71);
  });

  test("length counts UTF-8 bytes, not characters", () => {
    const f = encodeExternal(EXTERNAL_MSG.Print, "é✓");
    expect(hex(f)).toBe("00000007" + "0001" + hex(utf8("é✓")));
    expect(decodeExternalBody(f.subarray(4))).toEqual({ ok: true, type: 1, payload: "é✓" });
  });

  test("encode refuses unknown types", () => {
    expect(() => encodeExternal(0, "")).toThrow(RangeError);
    expect(() => encodeExternal(27, "")).toThrow(RangeError);
  });

  test("a reply may be larger than the 16 KiB request limit", () => {
    const payload = "x".repeat(3 * EXTERNAL_MAX_REQUEST);
    const f = encodeExternal(EXTERNAL_MSG.StateEntityQueryResponse, payload);
    expect(hex(f.subarray(0, 6))).toBe((2 + payload.length).toString(16).padStart(8, "0") + "0012");
    expect(decodeExternalBody(f.subarray(4))).toEqual({ ok: true, type: EXTERNAL_MSG.StateEntityQueryResponse, payload });
  });
});

describe("decodeExternalBody rejects without throwing", () => {
  const bad: [string, Uint8Array][] = [
    ["empty body", new Uint8Array(0)],
    ["one-byte body", new Uint8Array([0])],
    ["type 0", new Uint8Array([0, 0])],
    ["type 27", new Uint8Array([0, 27, 0x41])],
    ["type 0x0104", new Uint8Array([1, 4])],
    ["lone continuation byte", new Uint8Array([0, 1, 0x80])],
    ["truncated 2-byte sequence", new Uint8Array([0, 1, 0x41, 0xc3])],
    ["overlong encoding", new Uint8Array([0, 1, 0xc0, 0xaf])],
    ["UTF-16 surrogate", new Uint8Array([0, 1, 0xed, 0xa0, 0x80])],
  ];
  for (const [name, body] of bad) {
    test(name, () => {
      const r = decodeExternalBody(body);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.reason.length).toBeGreaterThan(0);
    });
  }

  test("every known id decodes, with an empty payload", () => {
    for (const id of Object.values(EXTERNAL_MSG)) {
      expect(decodeExternalBody(new Uint8Array([0, id]))).toEqual({ ok: true, type: id, payload: "" });
    }
  });
});

describe("decodeShrinkRequest", () => {
  const ok = (value: ShrinkRequest) => ({ ok: true as const, value });
  test("accepts any key order and ignores extra keys", () => {
    const want = ok({ query: false, node_names: ["a", "b"], node_count: 0 });
    expect(decodeShrinkRequest(`{"query":false,"node_names":["a","b"],"node_count":0}`)).toEqual(want);
    expect(decodeShrinkRequest(`{"node_count":0,"query":false,"node_names":["a","b"]}`)).toEqual(want);
    expect(decodeShrinkRequest(`{"node_names":["a","b"],"extra":{"node_count":1.5},"node_count":0,"query":false}`)).toEqual(want);
    expect(decodeShrinkRequest(` { "query" : true , "node_names" : [ ] , "node_count" : 3 } `)).toEqual(ok({ query: true, node_names: [], node_count: 3 }));
  });

  test("round-trips what encodeShrinkRequest writes", () => {
    const req = { query: false, node_names: ["w1", "w1", "w9"], node_count: 0 };
    expect(decodeShrinkRequest(encodeShrinkRequest(req))).toEqual(ok(req));
  });

  test("a negative count is the original's every eligible worker (its cluster_shrinker --count -1)", () => {
    expect(encodeShrinkRequest({ query: false, node_names: [], node_count: -1 })).toBe(`{"query":false,"node_names":[],"node_count":-1}`);
    expect(decodeShrinkRequest(`{"query":false,"node_names":[],"node_count":-1}`)).toEqual(ok({ query: false, node_names: [], node_count: -1 }));
    expect(shrinkCount(-1)).toBe(Number.MAX_SAFE_INTEGER);
    expect(shrinkCount(-7)).toBe(Number.MAX_SAFE_INTEGER);
    expect(shrinkCount(0)).toBe(0);
    expect(shrinkCount(2)).toBe(2);
  });

  test("an integer too large for a double is still an integer: as many as there are", () => {
    const d = decodeShrinkRequest(`{"query":false,"node_names":[],"node_count":18446744073709551615}`);
    expect(d.ok).toBe(true);
    if (d.ok) expect(shrinkCount(d.value.node_count)).toBe(Number.MAX_SAFE_INTEGER);
    const huge = decodeShrinkRequest(`{"query":false,"node_names":[],"node_count":1${"0".repeat(400)}}`);
    expect(huge.ok && shrinkCount(huge.value.node_count)).toBe(Number.MAX_SAFE_INTEGER);
    expect(decodeShrinkRequest(`{"query":false,"node_names":[],"node_count":-0}`)).toEqual(ok({ query: false, node_names: [], node_count: -0 }));
  });

  const rejected: [string, string, string][] = [
    ["not JSON", "query", "the payload is not JSON"],
    ["empty", "", "the payload is not JSON"],
    ["JSON null", "null", "the payload is not a JSON object"],
    ["an array", "[]", "the payload is not a JSON object"],
    ["missing query", `{"node_names":[],"node_count":0}`, "query must be true or false"],
    ["missing node_names", `{"query":true,"node_count":0}`, "node_names must be an array of worker names"],
    ["missing node_count", `{"query":true,"node_names":[]}`, "node_count is missing"],
    ["query as string", `{"query":"true","node_names":[],"node_count":0}`, "query must be true or false"],
    ["query as number", `{"query":1,"node_names":[],"node_count":0}`, "query must be true or false"],
    ["node_names as string", `{"query":false,"node_names":"a,b","node_count":0}`, "node_names must be an array of worker names"],
    ["node_names with a number", `{"query":false,"node_names":["a",2],"node_count":0}`, "node_names must be an array of worker names"],
    ["node_count as string", `{"query":false,"node_names":[],"node_count":"2"}`, `node_count must be an integer, not "2"`],
    ["fractional node_count", `{"query":false,"node_names":[],"node_count":1.5}`, "node_count must be an integer, not 1.5"],
    ["node_count 1e0", `{"query":false,"node_names":[],"node_count":1e0}`, "node_count must be an integer, not 1e0"],
    ["node_count 0.0", `{"query":false,"node_names":[],"node_count":0.0}`, "node_count must be an integer, not 0.0"],
    ["node_count 2E1", `{"query":false,"node_names":[],"node_count":2E1}`, "node_count must be an integer, not 2E1"],
    ["node_count -1.0", `{"query":false,"node_names":[],"node_count":-1.0}`, "node_count must be an integer, not -1.0"],
    ["null node_count", `{"query":false,"node_names":[],"node_count":null}`, "node_count must be an integer, not null"],
    ["node_count as array", `{"query":false,"node_names":[],"node_count":[1]}`, "node_count must be an integer, not [1]"],
    ["a long float", `{"query":false,"node_names":[],"node_count":1.${"5".repeat(100)}}`, `node_count must be an integer, not 1.${"5".repeat(30)}…`],
  ];
  for (const [name, payload, reason] of rejected) {
    test(`rejects ${name}, saying why`, () => expect(decodeShrinkRequest(payload)).toEqual({ ok: false, reason }));
  }
});

describe("parseShrinkQueryResponse", () => {
  test("accepts any order and extra keys", () => {
    expect(parseShrinkQueryResponse(`{"node_count":2,"node_names":["w2","w3"],"x":true}`)).toEqual({ node_names: ["w2", "w3"], node_count: 2 });
  });
  test("round-trips and writes the original's key order", () => {
    const r = { node_names: ["w2", "w3"], node_count: 2 };
    expect(encodeShrinkQueryResponse(r)).toBe(`{"node_names":["w2","w3"],"node_count":2}`);
    expect(parseShrinkQueryResponse(encodeShrinkQueryResponse(r))).toEqual(r);
  });
  for (const p of [`{"node_names":["w2"]}`, `{"node_count":1}`, `{"node_names":[1],"node_count":1}`, `{"node_names":[],"node_count":-2}`, "{"]) {
    test(`rejects ${p}`, () => expect(parseShrinkQueryResponse(p)).toBeNull());
  }
});

describe("parseClusterStatus", () => {
  const status = { worker_count: 3, worker_names: ["initializer", "worker1", "worker2"], processing_messages: true };
  test("encodes compact in the original's key order and round-trips", () => {
    const text = encodeClusterStatus(status);
    expect(text).toBe(`{"worker_count":3,"worker_names":["initializer","worker1","worker2"],"processing_messages":true}`);
    expect(parseClusterStatus(text)).toEqual(status);
  });
  test("accepts any order and extra keys", () => {
    expect(parseClusterStatus(`{"processing_messages":true,"extra":[],"worker_names":["initializer","worker1","worker2"],"worker_count":3}`)).toEqual(status);
  });
  for (const p of [
    `{"worker_names":[],"processing_messages":true}`,
    `{"worker_count":1,"processing_messages":true}`,
    `{"worker_count":1,"worker_names":[]}`,
    `{"worker_count":1,"worker_names":[],"processing_messages":"yes"}`,
    `{"worker_count":-1,"worker_names":[],"processing_messages":true}`,
    `{"worker_count":"1","worker_names":[],"processing_messages":true}`,
    `{"worker_count":1,"worker_names":[null],"processing_messages":true}`,
    `[1,2,3]`,
  ]) {
    test(`rejects ${p}`, () => expect(parseClusterStatus(p)).toBeNull());
  }
});

describe("encoders assert their counts", () => {
  test("negative or fractional counts are programming errors", () => {
    expect(() => encodeShrinkRequest({ query: false, node_names: [], node_count: -2 })).toThrow(RangeError);
    expect(() => encodeShrinkRequest({ query: false, node_names: [], node_count: 1.5 })).toThrow(RangeError);
    expect(() => encodeShrinkQueryResponse({ node_names: [], node_count: 0.5 })).toThrow(RangeError);
    expect(() => encodeClusterStatus({ worker_count: NaN, worker_names: [], processing_messages: true })).toThrow(RangeError);
  });
});

describe("human renderings", () => {
  test("formatEligible", () => {
    expect(formatEligible(["w2", "w3"])).toBe("Eligible for shrink: Node count: 2, Nodes: |w2,w3,|");
    expect(formatEligible([])).toBe("Eligible for shrink: Node count: 0, Nodes: ||");
    expect(formatEligible(["worker1"], 1)).toBe("Eligible for shrink: Node count: 1, Nodes: |worker1,|");
  });

  test("formatEligible survives the sed the original's scripts use", () => {
    // sed 's/.*Nodes: .//; s/,|.*//'  → the names, comma separated
    const cut = formatEligible(["worker1", "worker2"]).replace(/.*Nodes: ./, "").replace(/,\|.*/, "");
    expect(cut).toBe("worker1,worker2");
  });

  test("formatClusterStatus", () => {
    expect(formatClusterStatus({ worker_count: 3, worker_names: ["initializer", "worker1", "worker2"], processing_messages: true })).toBe(
      "Processing messages: true, Worker count: 3, Workers: |initializer,worker1,worker2,|",
    );
    expect(formatClusterStatus({ worker_count: 0, worker_names: [], processing_messages: false })).toBe(
      "Processing messages: false, Worker count: 0, Workers: ||",
    );
  });
});
