// Control channel codec: type:u16be + JSON, validated on receipt. decodeControl never throws.
import { describe, expect, test } from "bun:test";
import { CONTROL, CONTROL_MAX_FRAME, type ControlBody, type ControlName, decodeControl, encodeControl } from "../../../src/codec/control.ts";
import { readU32 } from "../../../src/codec/frame.ts";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const te = new TextEncoder();

const member = (id: number, name: string) => ({ id, name, host: "127.0.0.1", controlPort: 7000 + id, dataPort: 8000 + id });
const topology = { members: [member(0, "initializer"), member(1, "w1")], epoch: 3, owners: [0, 1, 0, 1] };

/** One valid body per message type; the test below checks none is missing. */
const SAMPLES: { [N in ControlName]: ControlBody<N> } = {
  hello: { name: "w1" },
  register: { name: "w2", host: "10.0.0.2", controlPort: 0, dataPort: 65535 },
  refused: { reason: "name taken" },
  topology,
  connected: { name: "w1" },
  start: { members: [member(0, "initializer")] },
  join: { name: "j1", count: 2, host: "::1", controlPort: 1, dataPort: 2 },
  tryJoin: { reqId: 5, name: "j1", count: 1, host: "h", controlPort: 3, dataPort: 4 },
  joinReply: { reqId: 5, ok: true, topology },
  addWorkers: { members: [member(2, "j1"), member(3, "j2")] },
  plan: { epoch: 0xffffffff, moves: [[1023, 0, 1], [0, 1, 0xfffe]], participants: [0, 1], dead: [2] },
  slotsInstalled: { epoch: 4, slots: [1, 2, 3], keys: 10, bytes: 1234 },
  complete: { members: [member(0, "initializer")], leaving: ["w1", "w2"] },
  tryShrink: { reqId: 1, query: false, names: ["w1"], count: 0 },
  shrinkReply: { reqId: 1, type: 6, payload: "Shrinking by 1 worker!" },
  keyCountReq: { reqId: 9 },
  keyCountReply: { reqId: 9, name: "w1", counts: { counter: { "12": 3, "1023": 0 } } },
  shutdown: { reason: "SIGTERM received by w1" },
  abortJoin: { names: ["j1"] },
  lost: { id: 3 },
  pressure: { high: true },
  linkLost: { id: 0xfffe },
  heartbeat: { keys: 100_000 },
  down: { names: ["w2"], epoch: 4 },
  barrierDone: { k: 12, round: 1 },
  snapshot: { k: 12 },
  snapshotWritten: { k: 12, slots: 3, bytes: 400 },
  snapshotCaptured: { k: 12 },
  committed: { k: 12 },
  rollback: { k: 12, epoch: 9, members: [member(0, "initializer")], owners: [0, 0], empty: [1], restore: [1] },
  rolledBack: { k: 12, epoch: 9 },
  rollbackLinked: { k: 12, epoch: 9 },
  rejoin: { name: "w1", cluster: "c-1", host: "h", controlPort: 1, dataPort: 2, epoch: 8 },
  undone: { epoch: 7 },
  rotateLog: { name: "w2" },
  statusReq: { reqId: 3 },
  statusReply: {
    reqId: 3,
    name: "w1",
    status: {
      name: "w1",
      role: "worker",
      ready: true,
      epoch: 4,
      members: ["initializer", "w1"],
      down: [],
      slots: 512,
      keys: 26,
      held: 0,
      slots_in_transit: 0,
      messages_in: 100,
      messages_out: 90,
      sources_paused: false,
      latency: { count: 90, sum: 0.05, buckets: [[9, 90]] },
      autoscale: { phase: "idle" },
    },
  },
};

/** A frame body (after the u32 length) for a type id and raw JSON text. */
function body(typeId: number, json: string | Uint8Array): Uint8Array {
  const j = typeof json === "string" ? te.encode(json) : json;
  const out = new Uint8Array(2 + j.length);
  out[0] = typeId >>> 8;
  out[1] = typeId & 0xff;
  out.set(j, 2);
  return out;
}

function decode(b: Uint8Array) {
  let r: ReturnType<typeof decodeControl> | undefined;
  expect(() => (r = decodeControl(b, 0, b.length))).not.toThrow();
  return r!;
}

function rejected(b: Uint8Array): string {
  const r = decode(b);
  expect(r.ok).toBe(false);
  return r.ok ? "" : r.reason;
}

describe("message table", () => {
  test("type ids are 1..N without duplicates, only the retired ones missing, and every type has a sample here", () => {
    const RETIRED = [13, 15];
    const ids: number[] = Object.values(CONTROL).map((d) => d.id).sort((a, b) => a - b);
    const n = ids.length + RETIRED.length;
    expect(ids).toEqual(Array.from({ length: n }, (_, i) => i + 1).filter((id) => !RETIRED.includes(id)));
    expect(ids.length).toBeGreaterThanOrEqual(21);
    expect(Object.keys(SAMPLES).sort()).toEqual(Object.keys(CONTROL).sort());
    expect(CONTROL_MAX_FRAME).toBe(16 * 1024 * 1024);
  });
});

describe("round trips", () => {
  for (const name of Object.keys(CONTROL) as ControlName[]) {
    test(`${name} (id ${CONTROL[name].id})`, () => {
      const frame = encodeControl(name, SAMPLES[name] as never);
      expect(readU32(frame, 0)).toBe(frame.length - 4);
      expect((frame[4]! << 8) | frame[5]!).toBe(CONTROL[name].id);
      expect(JSON.parse(new TextDecoder().decode(frame.subarray(6)))).toEqual(SAMPLES[name]);
      const r = decodeControl(frame, 4, frame.length);
      expect(r).toEqual({ ok: true, msg: { type: name, body: SAMPLES[name] } } as never);
    });
  }

  test("decoding a frame inside a larger buffer uses only [start, end)", () => {
    const frame = encodeControl("linkLost", { id: 7 });
    const buf = new Uint8Array(frame.length + 10).fill(0x20);
    buf.set(frame, 5);
    expect(decodeControl(buf, 5 + 4, 5 + frame.length)).toEqual({ ok: true, msg: { type: "linkLost", body: { id: 7 } } });
  });

  test("optional fields may be absent", () => {
    expect(decode(body(9, `{"reqId":1,"ok":false}`))).toEqual({ ok: true, msg: { type: "joinReply", body: { reqId: 1, ok: false } } });
    expect(decode(body(20, `{}`))).toEqual({ ok: true, msg: { type: "shutdown", body: {} } });
  });

  test("non-ASCII names survive", () => {
    const frame = encodeControl("hello", { name: "wörker-🔑" });
    expect(decodeControl(frame, 4, frame.length)).toEqual({ ok: true, msg: { type: "hello", body: { name: "wörker-🔑" } } });
  });
});

describe("golden bytes", () => {
  const GOLDEN = "0000000f 0001" + hex(te.encode(`{"name":"w1"}`));
  test("encode hello {name: w1}", () => {
    expect(hex(encodeControl("hello", { name: "w1" }))).toBe(GOLDEN.replace(/ /g, ""));
  });
  test("decode hello {name: w1}", () => {
    const b = new Uint8Array(Buffer.from(GOLDEN.replace(/ /g, ""), "hex"));
    expect(decodeControl(b, 4, b.length)).toEqual({ ok: true, msg: { type: "hello", body: { name: "w1" } } });
  });
  test("encode linkLost {id: 258}", () => {
    expect(hex(encodeControl("linkLost", { id: 258 }))).toBe("0000000c" + "0018" + hex(te.encode(`{"id":258}`)));
  });

  test("the retired ids of commit (13) and leave (15) are unknown", () => {
    expect(rejected(body(13, `{"epoch":1}`))).toBe("unknown control message type 13");
    expect(rejected(body(15, `{}`))).toBe("unknown control message type 15");
  });
  test("encode pressure {high: false}", () => {
    expect(hex(encodeControl("pressure", { high: false }))).toBe("00000010" + "0017" + hex(te.encode(`{"high":false}`)));
  });
});

describe("rejection (ok:false, never a throw)", () => {
  test("a body shorter than its type", () => {
    expect(rejected(new Uint8Array())).toBe("control frame shorter than its type");
    expect(rejected(new Uint8Array([0]))).toBe("control frame shorter than its type");
  });

  test("an unknown type id", () => {
    expect(rejected(body(0, "{}"))).toBe("unknown control message type 0");
    const next = Math.max(...Object.values(CONTROL).map((d) => d.id)) + 1;
    expect(rejected(body(next, "{}"))).toBe(`unknown control message type ${next}`);
    expect(rejected(body(0xffff, "{}"))).toBe("unknown control message type 65535");
    expect(rejected(body(0x0101, `{"name":"w1"}`))).toBe("unknown control message type 257");
  });

  test("invalid UTF-8", () => {
    const j = te.encode(`{"name":"w1"}`);
    j[9] = 0xff;
    expect(rejected(body(1, j))).toBe("control message hello is not valid UTF-8 JSON");
    expect(rejected(body(1, new Uint8Array([0x22, 0xc3, 0x22])))).toBe("control message hello is not valid UTF-8 JSON");
  });

  test("invalid JSON", () => {
    for (const j of ["", "{", `{"name":"w1"`, `{name:"w1"}`, "undefined", `{"name":"w1"} x`]) {
      expect(rejected(body(1, j))).toBe("control message hello is not valid UTF-8 JSON");
    }
  });

  test("JSON that is not an object", () => {
    for (const j of ["null", "[]", `"w1"`, "1", "true"]) expect(rejected(body(1, j))).toStartWith("control message hello is malformed: ");
  });

  test("schema mismatches", () => {
    const cases: Array<[ControlName, string]> = [
      ["hello", `{}`], // missing field
      ["hello", `{"name":""}`], // too short
      ["hello", `{"name":"${"x".repeat(256)}"}`], // too long
      ["hello", `{"name":1}`], // wrong type
      ["register", `{"name":"w","host":"h","controlPort":70000,"dataPort":1}`], // port out of range
      ["register", `{"name":"w","host":"h","controlPort":-1,"dataPort":1}`],
      ["register", `{"name":"w","host":"h","controlPort":1.5,"dataPort":1}`],
      ["register", `{"name":"w","host":"h","controlPort":"1","dataPort":1}`],
      ["slotsInstalled", `{"epoch":-1,"slots":[],"keys":0,"bytes":0}`], // negative epoch
      ["slotsInstalled", `{"epoch":4294967296,"slots":[],"keys":0,"bytes":0}`], // above u32
      ["slotsInstalled", `{"epoch":null,"slots":[],"keys":0,"bytes":0}`],
      ["linkLost", `{"id":65535}`], // id above 0xfffe
      ["topology", `{"members":[],"epoch":1,"owners":[65535]}`], // id above 0xfffe
      ["topology", `{"members":[{"id":0,"name":"a","host":"h","controlPort":1}],"epoch":1,"owners":[]}`], // member missing dataPort
      ["plan", `{"epoch":1,"moves":[[1,2]],"participants":[]}`], // short tuple
      ["plan", `{"epoch":1,"moves":[[1,2,"3"]],"participants":[]}`],
      ["joinReply", `{"reqId":1,"ok":"yes"}`],
      ["keyCountReply", `{"reqId":1,"name":"w","counts":{"s":{"1":-1}}}`],
      ["tryShrink", `{"reqId":1,"query":false,"names":[1],"count":0}`],
      ["slotsInstalled", `{"epoch":1,"slots":[1],"keys":1}`],
      ["lost", `{"id":-1}`],
      ["pressure", `{"high":1}`],
      ["pressure", `{}`],
    ];
    for (const [type, json] of cases) {
      const reason = rejected(body(CONTROL[type].id, json));
      expect(`${json} → ${reason}`).toStartWith(`${json} → control message ${type} is malformed: `);
    }
  });
});
