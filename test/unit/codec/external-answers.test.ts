// The distribution answers (types 8, 13, 18, 20, 22, 24, 26): golden frames, and every JSON value
// of the type the original wrote (ids are strings, counts are integers), so a strict client
// written against the original reads ours.
import { describe, expect, test } from "bun:test";
import {
  encodeClusterStateEntityCounts,
  encodePartitionCounts,
  encodePartitions,
  encodeStateEntities,
  encodeStateEntityCounts,
  encodeStatelessPartitionCounts,
  encodeStatelessPartitions,
  statelessStepId,
  type LocalSteps,
} from "../../../src/codec/external-answers.ts";
import { decodeExternalBody, encodeExternal, EXTERNAL_MSG } from "../../../src/codec/external.ts";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const utf8 = (s: string) => new TextEncoder().encode(s);
/** A frame as the 6-byte prefix in hex, then the payload's text. */
const golden = (prefixHex: string, payload: string) => prefixHex.replace(/ /g, "") + hex(utf8(payload));

// word_count on member 1 ("w1"): stateful "count" owns slots 1, 3 and 1023; "split" (stage 0) is parallel.
const W1: LocalSteps = { worker: "w1", state: [["count", [1, 3, 1023]]], stateless: [["split", [statelessStepId(1, 0)]]] };
// alphabet on the initializer: no parallel step.
const INIT: LocalSteps = { worker: "initializer", state: [["add votes", [0, 2]]], stateless: [] };

const GOLDEN = [
  {
    name: "8 partitions, with a parallel step",
    type: EXTERNAL_MSG.PartitionQueryResponse,
    payload: encodePartitions(W1),
    bytes: golden("0000006a 0008", `{"state_partitions":{"count":{"w1":["1","3","1023"]}},"stateless_partitions":{"split":{"w1":["65536"]}}}`),
  },
  {
    name: "8 partitions, without",
    type: EXTERNAL_MSG.PartitionQueryResponse,
    payload: encodePartitions(INIT),
    bytes: golden("00000058 0008", `{"state_partitions":{"add votes":{"initializer":["0","2"]}},"stateless_partitions":{}}`),
  },
  {
    name: "13 partition counts",
    type: EXTERNAL_MSG.PartitionCountQueryResponse,
    payload: encodePartitionCounts(W1),
    bytes: golden("00000053 000d", `{"state_partitions":{"count":{"w1":3}},"stateless_partitions":{"split":{"w1":1}}}`),
  },
  {
    name: "18 state entities",
    type: EXTERNAL_MSG.StateEntityQueryResponse,
    payload: encodeStateEntities({ count: ["the", "7", "é"] }),
    bytes: golden("0000001c 0012", `{"count":["the","7","é"]}`),
  },
  {
    name: "20 stateless partitions",
    type: EXTERNAL_MSG.StatelessPartitionQueryResponse,
    payload: encodeStatelessPartitions(W1),
    bytes: golden("0000001c 0014", `{"split":{"w1":["65536"]}}`),
  },
  {
    name: "20 stateless partitions of an application without stateless steps",
    type: EXTERNAL_MSG.StatelessPartitionQueryResponse,
    payload: encodeStatelessPartitions(INIT),
    bytes: golden("00000004 0014", `{}`),
  },
  {
    name: "22 state entity counts",
    type: EXTERNAL_MSG.StateEntityCountQueryResponse,
    payload: encodeStateEntityCounts({ "add votes": 10 }),
    bytes: golden("00000012 0016", `{"add votes":10}`),
  },
  {
    name: "24 stateless partition counts",
    type: EXTERNAL_MSG.StatelessPartitionCountQueryResponse,
    payload: encodeStatelessPartitionCounts(W1),
    bytes: golden("00000014 0018", `{"split":{"w1":1}}`),
  },
  {
    name: "24 stateless partition counts without stateless steps",
    type: EXTERNAL_MSG.StatelessPartitionCountQueryResponse,
    payload: encodeStatelessPartitionCounts(INIT),
    bytes: golden("00000004 0018", `{}`),
  },
  {
    name: "26 cluster state entity counts",
    type: EXTERNAL_MSG.ClusterStateEntityCountQueryResponse,
    payload: encodeClusterStateEntityCounts([
      ["w1", { "add votes": { "55": 1, "137": 2 } }],
      ["initializer", { "add votes": {} }],
    ]),
    bytes: golden("00000046 001a", `{"w1":{"add votes":{"55":1,"137":2}},"initializer":{"add votes":{}}}`),
  },
] as const;

describe("golden answers", () => {
  for (const g of GOLDEN) {
    test(`encode ${g.name}`, () => expect(hex(encodeExternal(g.type, g.payload))).toBe(g.bytes));
    test(`decode ${g.name}`, () => {
      const frame = Buffer.from(g.bytes, "hex");
      expect(frame.readUInt32BE(0)).toBe(frame.length - 4);
      expect(decodeExternalBody(frame.subarray(4))).toEqual({ ok: true, type: g.type, payload: g.payload });
    });
  }
});

/** Every leaf of `v`, with its path. */
function leaves(v: unknown, path = "$"): Array<[string, unknown]> {
  if (Array.isArray(v)) return v.flatMap((x, i) => leaves(x, `${path}[${i}]`));
  if (v !== null && typeof v === "object") return Object.entries(v).flatMap(([k, x]) => leaves(x, `${path}.${k}`));
  return [[path, v]];
}
const isInteger = (x: unknown) => typeof x === "number" && Number.isSafeInteger(x) && x >= 0;

describe("value types are the original's", () => {
  test("8 and 20 list step ids as strings of decimal digits", () => {
    for (const text of [encodePartitions(W1), encodeStatelessPartitions(W1)]) {
      const all = leaves(JSON.parse(text));
      expect(all.length).toBeGreaterThan(0);
      for (const [path, x] of all) expect({ path, ok: typeof x === "string" && /^\d+$/.test(x) }).toEqual({ path, ok: true });
    }
  });

  test("13, 22, 24 and 26 count with integers", () => {
    const texts = [
      encodePartitionCounts(W1),
      encodeStateEntityCounts({ a: 0, b: 3 }),
      encodeStatelessPartitionCounts(W1),
      encodeClusterStateEntityCounts([["w1", { a: { "7": 2 } }]]),
    ];
    for (const text of texts) for (const [path, x] of leaves(JSON.parse(text))) expect({ path, ok: isInteger(x) }).toEqual({ path, ok: true });
  });

  test("18 lists keys as strings, even keys that look like numbers", () => {
    for (const [path, x] of leaves(JSON.parse(encodeStateEntities({ count: ["1", "2.5", "x"] })))) expect({ path, t: typeof x }).toEqual({ path, t: "string" });
  });

  test("a step or worker named __proto__ stays a key", () => {
    const text = encodeStatelessPartitions({ worker: "__proto__", state: [], stateless: [["__proto__", ["1"]]] });
    expect(text).toBe(`{"__proto__":{"__proto__":["1"]}}`);
    expect(encodeClusterStateEntityCounts([["__proto__", { s: {} }]])).toBe(`{"__proto__":{"s":{}}}`);
  });
});

describe("statelessStepId", () => {
  test("unique per member and stage, decimal", () => {
    expect(statelessStepId(0, 0)).toBe("0");
    expect(statelessStepId(1, 0)).toBe("65536");
    expect(statelessStepId(2, 3)).toBe("131075");
    expect(statelessStepId(0xffff, 0xffff)).toBe(String(0xffffffff));
  });
  test("refuses what is not a u16", () => {
    for (const [m, s] of [[-1, 0], [0x10000, 0], [0, 1.5], [0, 0x10000]] as const) expect(() => statelessStepId(m, s)).toThrow(RangeError);
  });
});
