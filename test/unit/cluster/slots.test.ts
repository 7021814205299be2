// Slot placement is part of the state format: the hash is pinned here both by golden numbers and
// by an independent xxHash32, and planMoves is checked against its contract (balanced, minimal,
// one-directional, deterministic) on fixed and random membership changes.
import { createUnitRng as prng } from "../../../src/tools/generators.ts";
import { describe, expect, test } from "bun:test";
import { InvariantError } from "../../../src/assert.ts";
import { applyMoves, initialOwners, type Move, planMoves, slotCounts } from "../../../src/cluster/slots.ts";
import { SLOT_COUNT, slotOf, xxHash32Ascii } from "../../../src/runtime/slot-hash.ts";

/** Reference xxHash32 (seed 0) over the UTF-8 bytes, written from the spec. */
function xxh32(bytes: Uint8Array, seed = 0): number {
  const P1 = 2654435761,
    P2 = 2246822519,
    P3 = 3266489917,
    P4 = 668265263,
    P5 = 374761393;
  const rotl = (x: number, r: number) => ((x << r) | (x >>> (32 - r))) >>> 0;
  const u32 = (i: number) => (bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24)) >>> 0;
  const round = (acc: number, lane: number) => Math.imul(rotl((acc + Math.imul(lane, P2)) >>> 0, 13), P1) >>> 0;
  const len = bytes.length;
  let p = 0;
  let h: number;
  if (len >= 16) {
    let v1 = (seed + P1 + P2) >>> 0,
      v2 = (seed + P2) >>> 0,
      v3 = seed >>> 0,
      v4 = (seed - P1) >>> 0;
    for (; p + 16 <= len; p += 16) {
      v1 = round(v1, u32(p));
      v2 = round(v2, u32(p + 4));
      v3 = round(v3, u32(p + 8));
      v4 = round(v4, u32(p + 12));
    }
    h = (rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18)) >>> 0;
  } else h = (seed + P5) >>> 0;
  h = (h + len) >>> 0;
  for (; p + 4 <= len; p += 4) h = Math.imul(rotl((h + Math.imul(u32(p), P3)) >>> 0, 17), P4) >>> 0;
  for (; p < len; p++) h = Math.imul(rotl((h + Math.imul(bytes[p]!, P5)) >>> 0, 11), P1) >>> 0;
  h ^= h >>> 15;
  h = Math.imul(h, P2) >>> 0;
  h ^= h >>> 13;
  h = Math.imul(h, P3) >>> 0;
  h ^= h >>> 16;
  return h >>> 0;
}

describe("slotOf is pinned", () => {
  test("the reference xxHash32 matches the published test vectors", () => {
    expect(xxh32(new Uint8Array())).toBe(0x02cc5d05);
    expect(xxh32(new TextEncoder().encode("a"))).toBe(0x550d7456);
  });

  test("golden slots", () => {
    const GOLDEN: Record<string, number> = {
      "": 261,
      a: 86,
      b: 447,
      hello: 1017,
      word: 680,
      ключ: 347,
      "🔑": 636,
      "key-12345": 356,
      "The quick brown fox": 766,
    };
    for (const [k, s] of Object.entries(GOLDEN)) expect({ k, slot: slotOf(k) }).toEqual({ k, slot: s });
    expect(slotOf("a")).toBe(Bun.hash.xxHash32("a", 0) % 1024);
    expect(SLOT_COUNT).toBe(1024);
  });

  test("slotOf = xxHash32(utf8(key), seed 0) mod 1024 for many keys, cached or not", () => {
    const te = new TextEncoder();
    const rnd = prng(99);
    const keys: string[] = [];
    for (let i = 0; i < 2000; i++) keys.push(`key-${i}`);
    for (let i = 0; i < 300; i++) keys.push(String.fromCodePoint(...Array.from({ length: Math.floor(rnd() * 40) }, () => 0x20 + Math.floor(rnd() * 0x3000))));
    for (let round = 0; round < 2; round++) {
      for (const k of keys) {
        const want = xxh32(te.encode(k)) % SLOT_COUNT;
        if (slotOf(k) !== want) expect({ k, slot: slotOf(k) }).toEqual({ k, slot: want });
      }
    }
  });

  test("the JavaScript hash of ASCII keys is xxHash32 of every length, and declines any other key", () => {
    const te = new TextEncoder();
    const rnd = prng(7);
    for (let len = 0; len <= 70; len++) {
      for (let t = 0; t < 20; t++) {
        const k = String.fromCharCode(...Array.from({ length: len }, () => Math.floor(rnd() * 0x80)));
        if (xxHash32Ascii(k) !== xxh32(te.encode(k))) expect({ k, h: xxHash32Ascii(k) }).toEqual({ k, h: xxh32(te.encode(k)) });
      }
    }
    // A non-ASCII character anywhere (in a 16-byte stripe, a 4-byte lane or the tail) declines.
    for (const k of ["é", "abcé", "abcdefghijklmnopé", "0123456789abcdef0123\u0080", "\u0080" + "a".repeat(20), "🔑"]) expect(xxHash32Ascii(k)).toBe(-1);
  });

  test("slotOf agrees with the hash beyond what its cache holds, for keys seen once and again", () => {
    const te = new TextEncoder();
    const keys = Array.from({ length: 10_000 }, (_, i) => (i % 3 === 0 ? `ключ-${i}` : `key-${i}-${"x".repeat(i % 40)}`));
    for (let round = 0; round < 2; round++) {
      for (const k of keys) {
        const want = xxh32(te.encode(k)) % SLOT_COUNT;
        if (slotOf(k) !== want) expect({ k, round, slot: slotOf(k) }).toEqual({ k, round, slot: want });
      }
    }
  });

  test("slots of 100 000 keys are spread over every slot", () => {
    const counts = new Array(SLOT_COUNT).fill(0);
    for (let i = 0; i < 100_000; i++) counts[slotOf(`k${i}`)]++;
    expect(Math.min(...counts)).toBeGreaterThan(40);
    expect(Math.max(...counts)).toBeLessThan(160);
  });
});

describe("initialOwners", () => {
  test("round-robin in member order, balanced", () => {
    expect(initialOwners([5]).every((o) => o === 5)).toBe(true);
    const o = initialOwners([4, 2, 9]);
    expect(o.length).toBe(SLOT_COUNT);
    expect(o.slice(0, 7)).toEqual([4, 2, 9, 4, 2, 9, 4]);
    expect([...slotCounts(o)]).toEqual([
      [4, 342],
      [2, 341],
      [9, 341],
    ]);
    for (const n of [1, 2, 3, 5, 7, 8, 13, 64, 100, 1024]) {
      const c = [...slotCounts(initialOwners(Array.from({ length: n }, (_, i) => i))).values()];
      expect(c.length).toBe(n);
      expect(Math.max(...c) - Math.min(...c)).toBeLessThanOrEqual(1);
    }
  });

  test("no members is an invariant violation", () => {
    expect(() => initialOwners([])).toThrow(InvariantError);
  });
});

/** The fewest moves that can balance `owners` over `targetIds`, computed independently. */
function minimalMoves(owners: readonly number[], targetIds: readonly number[]): number {
  const held = new Map<number, number>();
  for (const o of owners) held.set(o, (held.get(o) ?? 0) + 1);
  const inTarget = new Set(targetIds);
  let leaverHeld = 0;
  for (const [id, n] of held) if (!inTarget.has(id)) leaverHeld += n;
  const base = Math.floor(owners.length / targetIds.length);
  const extra = owners.length % targetIds.length;
  // A +1 share keeps one more slot in place only where a member holds more than `base`.
  const h = targetIds.map((id) => held.get(id) ?? 0).sort((a, b) => b - a);
  let surplus = 0;
  h.forEach((n, i) => (surplus += Math.max(0, n - (base + (i < extra ? 1 : 0)))));
  return leaverHeld + surplus;
}

/** Checks every promise of planMoves for one step; returns the new owners. */
function checkStep(owners: readonly number[], targetIds: readonly number[], label: string): number[] {
  const moves = planMoves(owners, targetIds);
  const old = new Set(owners);
  const target = new Set(targetIds);
  const joiners = new Set(targetIds.filter((id) => !old.has(id)));
  const leavers = new Set([...old].filter((id) => !target.has(id)));
  const msg = `${label}: ${[...old].join(",")} → ${targetIds.join(",")}`;

  expect(planMoves([...owners], [...targetIds]), `${msg}: deterministic`).toEqual(moves);
  expect(moves.length, `${msg}: minimal`).toBe(minimalMoves(owners, targetIds));
  // Checked per move without an expect() each (a plan has up to 1024 moves); any failure is
  // reported with the move and the seed.
  const problems: string[] = [];
  const seen = new Set<number>();
  for (const [slot, from, to] of moves) {
    const bad = (why: string) => problems.push(`move [${slot}, ${from}, ${to}] ${why}`);
    if (seen.has(slot)) bad("moves a slot twice");
    seen.add(slot);
    if (owners[slot] !== from) bad("has the wrong from");
    if (!target.has(to)) bad("goes to a non-member");
    if (from === to) bad("goes nowhere");
    // A grow: existing members → joiners.
    if (leavers.size === 0 && !(old.has(from) && joiners.has(to))) bad("is not existing → joiner");
    // A shrink: leavers → remaining.
    if (joiners.size === 0 && !(leavers.has(from) && target.has(to))) bad("is not leaver → remaining");
  }
  expect(problems.slice(0, 5), msg).toEqual([]);
  const next = [...owners];
  applyMoves(next, moves);
  const counts = slotCounts(next);
  for (const o of counts.keys()) expect(target.has(o), `${msg}: ${o} still owns slots`).toBe(true);
  const per = targetIds.map((id) => counts.get(id) ?? 0);
  expect(Math.max(...per) - Math.min(...per), `${msg}: unbalanced ${per.join(",")}`).toBeLessThanOrEqual(1);
  expect(next.length).toBe(SLOT_COUNT);
  return next;
}

const range = (a: number, b: number) => Array.from({ length: b - a }, (_, i) => a + i);

describe("planMoves from initialOwners", () => {
  const CASES: Array<[string, number[], number[]]> = [
    ["grow 1→2", [0], [0, 1]],
    ["grow 2→3", [0, 1], [0, 1, 2]],
    ["grow 3→5", [0, 1, 2], [0, 1, 2, 3, 4]],
    ["grow 7→8", range(0, 7), range(0, 8)],
    ["grow 1→8", [0], range(0, 8)],
    ["grow 3→5, joiners listed first", [0, 1, 2], [9, 8, 0, 1, 2]],
    ["shrink 5→1", range(0, 5), [0]],
    ["shrink 4→3 (middle member leaves)", [0, 1, 2, 3], [0, 2, 3]],
    ["shrink 3→2 (first member leaves)", [0, 1, 2], [1, 2]],
    ["shrink 8→7", range(0, 8), range(0, 7)],
    ["no change", [0, 1, 2], [0, 1, 2]],
  ];
  for (const [label, from, to] of CASES) test(label, () => void checkStep(initialOwners(from), to, label));

  test("concrete moves: grow 1→2 moves the upper half, highest slots first freed, ascending", () => {
    const moves = planMoves(initialOwners([0]), [0, 1]);
    expect(moves.length).toBe(512);
    expect(moves[0]).toEqual([512, 0, 1]);
    expect(moves.at(-1)).toEqual([1023, 0, 1]);
  });

  test("concrete moves: shrink 2→1", () => {
    const moves = planMoves(initialOwners([0, 1]), [0]);
    expect(moves).toEqual(range(0, 512).map((i) => [2 * i + 1, 1, 0] as Move));
  });

  test("no change plans no moves", () => {
    expect(planMoves(initialOwners([3, 1, 2]), [3, 1, 2])).toEqual([]);
  });

  test("no target is an invariant violation", () => {
    expect(() => planMoves(initialOwners([0]), [])).toThrow(InvariantError);
  });
});

describe("planMoves chained", () => {
  test("each plan starts from the previous result", () => {
    const steps = [[0, 1], [0, 1, 2], range(0, 5), range(0, 8), [0, 2, 4, 6], [0, 2, 4, 6, 8, 9, 10], [0, 10], [0], [0, 11, 12], [12]];
    let owners = initialOwners([0]);
    steps.forEach((to, i) => (owners = checkStep(owners, to, `step ${i}`)));
    expect([...slotCounts(owners)]).toEqual([[12, 1024]]);
  });

  test("grow 1→2→3→…→12, then shrink back one at a time", () => {
    let owners = initialOwners([0]);
    for (let n = 2; n <= 12; n++) owners = checkStep(owners, range(0, n), `grow to ${n}`);
    for (let n = 11; n >= 1; n--) owners = checkStep(owners, range(0, n), `shrink to ${n}`);
  });

  test("large clusters where ⌊1024/n⌋ and ⌈1024/(n+1)⌉ cross (n ≥ 32)", () => {
    let owners = initialOwners(range(0, 30));
    for (const n of [33, 40, 50, 51, 64, 100, 101, 200, 1024, 600, 599, 64, 50, 1]) owners = checkStep(owners, range(0, n), `to ${n}`);
  });
});

describe("planMoves randomized", () => {
  test("200 random sequences of grows and shrinks", () => {
    const base = 0xc0ffee;
    for (let run = 0; run < 200; run++) {
      const seed = base + run;
      const rnd = prng(seed);
      const pick = (n: number) => Math.floor(rnd() * n);
      let nextId = 0;
      // Ids in a random order, not always starting at 0.
      let members = range(0, 1 + pick(rnd() < 0.1 ? 70 : 8)).map(() => (nextId += 1 + pick(3)));
      members.sort(() => rnd() - 0.5);
      let owners = initialOwners(members);
      const steps = 3 + pick(8);
      for (let s = 0; s < steps; s++) {
        let target: number[];
        if (members.length === 1 || rnd() < 0.5) {
          const k = 1 + pick(rnd() < 0.1 ? 60 : 5);
          const joiners = range(0, k).map(() => (nextId += 1 + pick(3)));
          target = rnd() < 0.5 ? [...members, ...joiners] : [...joiners, ...members];
        } else {
          const leave = 1 + pick(members.length - 1);
          const gone = new Set([...members].sort(() => rnd() - 0.5).slice(0, leave));
          target = members.filter((m) => !gone.has(m));
        }
        owners = checkStep(owners, target, `seed ${seed} step ${s}`);
        members = target;
      }
    }
  });
});

describe("applyMoves", () => {
  test("applyMoves moves each slot", () => {
    const owners = initialOwners([0, 1]);
    applyMoves(owners, [
      [0, 0, 7],
      [1, 1, 7],
    ]);
    expect(owners.slice(0, 4)).toEqual([7, 7, 0, 1]);
  });

  test("applyMoves throws on a move whose from is wrong", () => {
    const owners = initialOwners([0, 1]);
    expect(() => applyMoves(owners, [[0, 1, 2]])).toThrow(new InvariantError("slot 0 moves from 1 but is owned by 0"));
    expect(owners[0]).toBe(0);
    // Applying a plan twice is caught too.
    const moves = planMoves(owners, [0, 1, 2]);
    applyMoves(owners, moves);
    expect(() => applyMoves(owners, moves)).toThrow(InvariantError);
  });
});
