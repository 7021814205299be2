// KeyedState: per (stateful stage, slot) maps of per-key state, moved a slot at a time.
import { describe, expect, test } from "bun:test";
import { APP_SPEC_KIND, type AppSpec } from "../../../src/app/types.ts";
import { DATA_KIND, type DataVisitor, encodeState, type FrameHead, readHead, visitBody } from "../../../src/codec/data.ts";
import { SLOT_COUNT, slotOf } from "../../../src/runtime/slot-hash.ts";
import { KeyedState } from "../../../src/runtime/keyed-state.ts";
import { defaultStateCodec } from "../../../src/app/validate.ts";

interface Count {
  n: number;
}

/** key (0) → stateful "count" (1) → map (2) → stateful "last" with its own codec (3). */
function makeApp(inits: { count: number; last: number }): AppSpec {
  return {
    kind: APP_SPEC_KIND,
    name: "test",
    source: { name: "src", decode: (p) => p },
    stages: [
      { kind: "key", name: "by", fn: (m: string) => m },
      {
        kind: "stateful",
        name: "count",
        init: () => {
          inits.count++;
          return { n: 0 };
        },
        fn: (_m, s: Count) => ++s.n,
      },
      { kind: "map", name: "id", parallel: true, multi: false, fn: (m) => m },
      {
        kind: "stateful",
        name: "last",
        init: () => {
          inits.last++;
          return { v: "" };
        },
        fn: (m: string, s: { v: string }) => (s.v = m),
        stateCodec: {
          serialize: (s: { v: string }) => new TextEncoder().encode(`L:${s.v}`),
          deserialize: (b: Uint8Array) => ({ v: new TextDecoder().decode(b).slice(2) }),
        },
      },
    ],
    sink: { name: "out", encode: (o) => String(o) },
  };
}

const COUNT = 1;
const LAST = 3;

function fresh() {
  const inits = { count: 0, last: 0 };
  return { inits, ks: new KeyedState(makeApp(inits)) };
}

describe("KeyedState", () => {
  test("finds the stateful stages", () => {
    expect(fresh().ks.statefulStages).toEqual([COUNT, LAST]);
  });

  test("get creates the state once per key and returns the same object after", () => {
    const { inits, ks } = fresh();
    const a = ks.get(COUNT, slotOf("a"), "a") as Count;
    expect(a).toEqual({ n: 0 });
    a.n = 5;
    expect(ks.get(COUNT, slotOf("a"), "a")).toBe(a);
    expect(inits.count).toBe(1);
    const b = ks.get(COUNT, slotOf("b"), "b") as Count;
    expect(b).not.toBe(a);
    expect(b).toEqual({ n: 0 });
    expect(inits.count).toBe(2);
    // Stages are independent: the same key at another stage has its own state.
    expect(ks.get(LAST, slotOf("a"), "a")).toEqual({ v: "" });
    expect(inits).toEqual({ count: 2, last: 1 });
    // Two keys in the same slot are distinct.
    const c1 = ks.get(COUNT, 7, "x") as Count;
    const c2 = ks.get(COUNT, 7, "y") as Count;
    expect(c1).not.toBe(c2);
    expect(inits.count).toBe(4);
  });

  test("keys(), counts() and slotKeyCount() report what is held", () => {
    const { ks } = fresh();
    expect(ks.keys()).toEqual({ count: [], last: [] });
    expect(ks.counts()).toEqual({ count: 0, last: 0 });
    expect(ks.slotKeyCount(0)).toBe(0);
    ks.get(COUNT, 1, "a");
    ks.get(COUNT, 1, "b");
    ks.get(COUNT, 1023, "c");
    ks.get(LAST, 1, "a");
    ks.get(LAST, 2, "d");
    ks.get(COUNT, 1, "a"); // again: no new key
    expect(ks.counts()).toEqual({ count: 3, last: 2 });
    const keys = ks.keys();
    expect(Object.keys(keys).sort()).toEqual(["count", "last"]);
    expect(keys.count!.sort()).toEqual(["a", "b", "c"]);
    expect(keys.last!.sort()).toEqual(["a", "d"]);
    expect(ks.slotKeyCount(1)).toBe(3); // a, b at count; a at last
    expect(ks.slotKeyCount(2)).toBe(1);
    expect(ks.slotKeyCount(1023)).toBe(1);
    expect(ks.slotKeyCount(500)).toBe(0);
    // Per stage, only the slots asked for, only those holding keys of that stage (the cluster-wide
    // count once gave every stage the sum over all stages).
    expect(ks.slotCounts([1, 2, 500])).toEqual({ count: { "1": 2 }, last: { "1": 1, "2": 1 } });
    expect(ks.slotCounts([])).toEqual({ count: {}, last: {} });
  });

  test("takeSlot serialises and removes every key of the slot, with its stage index", () => {
    const { inits, ks } = fresh();
    (ks.get(COUNT, 5, "a") as Count).n = 3;
    (ks.get(COUNT, 5, "b") as Count).n = 4;
    (ks.get(LAST, 5, "a") as { v: string }).v = "hello";
    (ks.get(COUNT, 6, "z") as Count).n = 9;
    const entries = ks.takeSlot(5);
    const view = entries.map((e) => ({ stage: e.stage, key: e.key, isBytes: e.state instanceof Uint8Array }));
    expect(view.sort((x, y) => x.stage - y.stage || x.key.localeCompare(y.key))).toEqual([
      { stage: COUNT, key: "a", isBytes: true },
      { stage: COUNT, key: "b", isBytes: true },
      { stage: LAST, key: "a", isBytes: true },
    ]);
    // The custom codec is used for its stage, the default (bun:jsc) for the other.
    expect(new TextDecoder().decode(entries.find((e) => e.stage === LAST)!.state)).toBe("L:hello");
    expect(defaultStateCodec.deserialize(entries.find((e) => e.stage === COUNT && e.key === "b")!.state)).toEqual({ n: 4 });
    // Gone from here; other slots untouched.
    expect(ks.slotKeyCount(5)).toBe(0);
    expect(ks.counts()).toEqual({ count: 1, last: 0 });
    expect(ks.keys()).toEqual({ count: ["z"], last: [] });
    expect(ks.takeSlot(5)).toEqual([]);
    expect((ks.get(COUNT, 6, "z") as Count).n).toBe(9);
    // A key used again after its slot left starts from init().
    const before = inits.count;
    expect(ks.get(COUNT, 5, "a")).toEqual({ n: 0 });
    expect(inits.count).toBe(before + 1);
  });

  test("takeSlot of a slot never seen is empty", () => {
    const { ks } = fresh();
    expect(ks.takeSlot(0)).toEqual([]);
    expect(ks.takeSlot(SLOT_COUNT - 1)).toEqual([]);
  });

  test("install restores taken state into another KeyedState exactly", () => {
    const src = fresh();
    const words = ["a", "b", "ключ", "🔑", "", "a longer key with spaces"];
    for (const w of words) {
      const s = slotOf(w);
      (src.ks.get(COUNT, s, w) as Count).n = w.length + 1;
      (src.ks.get(LAST, s, w) as { v: string }).v = `last-${w}`;
    }
    const dst = fresh();
    const slots = [...new Set(words.map(slotOf))];
    for (const s of slots) for (const e of src.ks.takeSlot(s)) dst.ks.install(e.stage, s, e.key, e.state);
    expect(src.ks.counts()).toEqual({ count: 0, last: 0 });
    expect(dst.ks.counts()).toEqual({ count: words.length, last: words.length });
    for (const s of slots) expect(dst.ks.slotKeyCount(s)).toBe(2 * words.filter((w) => slotOf(w) === s).length);
    for (const w of words) {
      expect(dst.ks.get(COUNT, slotOf(w), w)).toEqual({ n: w.length + 1 });
      expect(dst.ks.get(LAST, slotOf(w), w)).toEqual({ v: `last-${w}` });
    }
    // Installed states are used as they are: init() never ran on the receiving side.
    expect(dst.inits).toEqual({ count: 0, last: 0 });
  });

  test("install from views into a received STATE frame (non-zero byteOffset)", () => {
    const src = fresh();
    const slot = 42;
    (src.ks.get(COUNT, slot, "k1") as Count).n = 11;
    (src.ks.get(COUNT, slot, "k2") as Count).n = 22;
    (src.ks.get(LAST, slot, "k1") as { v: string }).v = "v1";
    const frame = encodeState(0, 1, slot, src.ks.takeSlot(slot));
    const buf = new Uint8Array(frame.length + 9);
    buf.set(frame, 9); // as inside a FrameReader carry buffer or socket chunk
    const head: FrameHead = { kind: 0, seq: 0, epoch: 0 };
    expect(readHead(buf, 13, buf.length, head)).toBeNull();
    expect(head.kind).toBe(DATA_KIND.state);
    const dst = fresh();
    const v: DataVisitor = {
      record: () => {
        throw new Error("unexpected");
      },
      barrier: () => {
        throw new Error("unexpected");
      },
      marker: () => {
        throw new Error("unexpected");
      },
      stateEnd: () => {
        throw new Error("unexpected");
      },
      hello: () => {
        throw new Error("unexpected");
      },
      time: () => {
        throw new Error("unexpected");
      },
      state: (s, stage, key, b, start, end) => dst.ks.install(stage, s, key, b.subarray(start, end)),
    };
    expect(visitBody(buf, 13, buf.length, head.kind, v)).toBeNull();
    expect(dst.ks.get(COUNT, slot, "k1")).toEqual({ n: 11 });
    expect(dst.ks.get(COUNT, slot, "k2")).toEqual({ n: 22 });
    expect(dst.ks.get(LAST, slot, "k1")).toEqual({ v: "v1" });
    expect(dst.ks.slotKeyCount(slot)).toBe(3);
  });

  test("checkpoint images: only slots read or installed since the last images, owned ones, each whole; restore brings them back", () => {
    const a = fresh().ks;
    const s1 = slotOf("k1");
    const s2 = slotOf("k2");
    (a.get(COUNT, s1, "k1") as Count).n = 5;
    (a.get(COUNT, s2, "k2") as Count).n = 7;
    const first = a.dirtyImages(() => true);
    expect(first.map((i) => i.slot).sort()).toEqual([s1, s2].sort());
    expect(a.dirtyImages(() => true)).toEqual([]);
    (a.get(COUNT, s1, "k1") as Count).n = 6;
    // A slot this worker does not own is not written, and its mark is cleared all the same.
    expect(a.dirtyImages((s) => s !== s1)).toEqual([]);
    (a.get(COUNT, s1, "k1") as Count).n = 6;
    const second = a.dirtyImages(() => true);
    expect(second.map((i) => i.slot)).toEqual([s1]);
    const b = fresh().ks;
    (b.get(COUNT, 99, "stale") as Count).n = 1;
    const keys = b.restore(new Map([...first, ...second].map((i) => [i.slot, i.image])), (s) => s !== s2);
    expect(keys).toBe(1);
    expect((b.get(COUNT, s1, "k1") as Count).n).toBe(6);
    expect(b.counts()).toEqual({ count: 1, last: 0 });
    expect(b.slotKeyCount(99)).toBe(0);
  });

  test("adopt takes a state installed ahead of time in one step, through the getters made before", () => {
    const a = fresh().ks;
    const s1 = slotOf("k1");
    (a.get(COUNT, s1, "k1") as Count).n = 5;
    (a.get(LAST, s1, "k1") as { v: string }).v = "x";
    const images = new Map(a.dirtyImages(() => true).map((i) => [i.slot, i.image]));
    const live = fresh().ks;
    const getCount = live.getter(COUNT);
    (live.get(COUNT, 99, "stale") as Count).n = 1;
    const ahead = live.emptyLike();
    expect(ahead.installImages(images, () => true)).toBe(2);
    expect(live.adopt(ahead)).toBe(2);
    // Nothing is dirty: the store holds exactly this.
    expect(live.dirtyImages(() => true).map((i) => i.slot)).toEqual([]);
    expect(live.slotKeyCount(99)).toBe(0);
    expect((getCount(s1, "k1") as Count).n).toBe(5);
    expect(live.peek(LAST, s1, "k1")).toEqual({ v: "x" });
    expect(() => live.adopt(fresh().ks)).toThrow("adopting the state of another application");
  });

  test("restore refuses a damaged image", () => {
    expect(() => fresh().ks.restore(new Map([[3, new Uint8Array([0, 0, 0, 9])]]), () => true)).toThrow(/checkpoint image of slot 3 is damaged/);
  });

  test("install for a stage that is not stateful is refused", () => {
    const { ks } = fresh();
    expect(() => ks.install(0, 1, "a", new Uint8Array([1]))).toThrow("migrated state names stage 0, which is not stateful in this application");
    expect(() => ks.install(9, 1, "a", new Uint8Array([1]))).toThrow("migrated state names stage 9");
  });

  test("install overwrites an existing key's state", () => {
    const { ks } = fresh();
    (ks.get(COUNT, 3, "a") as Count).n = 1;
    ks.install(COUNT, 3, "a", defaultStateCodec.serialize({ n: 100 }));
    expect(ks.get(COUNT, 3, "a")).toEqual({ n: 100 });
    expect(ks.slotKeyCount(3)).toBe(1);
  });

  test("the default codec keeps Maps, Sets, bigints, Dates and typed arrays", () => {
    const s = { m: new Map([["a", 1]]), set: new Set([1, 2]), big: 2n ** 70n, d: new Date(0), u: new Uint8Array([1, 2]), nested: { arr: [1, "x", null] } };
    expect(defaultStateCodec.deserialize(defaultStateCodec.serialize(s))).toEqual(s);
  });
});
