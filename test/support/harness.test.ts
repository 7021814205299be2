// The harness's own checks: the workloads send the generators' bytes, and the validators the
// e2e tests, benchmarks and demo rely on do fail on loss, duplication, disorder and bad windows
// (and the replaying one on loss and on anything but a replay of outputs already seen, while a
// letter that moved between workers may arrive out of order across their sink connections).
import { describe, expect, test } from "bun:test";
import { alphabetGenerator, sequenceWindowGenerator } from "../../src/tools/generators.ts";
import { AlphabetWorkload, SequenceWorkload } from "./load.ts";
import type { Conn } from "./receiver.ts";
import { AlphabetValidator, ReplayingAlphabetValidator, SequenceValidator, type Replayed } from "./validate.ts";

const enc = new TextEncoder();
let nextId = 0;
const conn = (): Conn => ({ id: nextId++, lines: 0, bytes: 0, carry: new Uint8Array(0), tail: [], openedAt: 0 });

/** Feeds `lines` on one connection, cut mid-line so the carry-over is exercised. */
function feed(handler: { onChunk(c: Conn, b: Uint8Array, t: number): void }, lines: string[], c = conn()): void {
  const bytes = enc.encode(lines.map((l) => l + "\n").join(""));
  const cut = Math.floor(bytes.length / 2) + 1;
  handler.onChunk(c, bytes.subarray(0, cut), 0);
  handler.onChunk(c, bytes.subarray(cut), 0);
}

function concat(frames: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(frames));
}

describe("workloads", () => {
  test("alphabet: the generator's frames, in order", () => {
    const wl = new AlphabetWorkload(9, 1);
    const gen = alphabetGenerator({ seed: 9 });
    const got = wl.take(1000);
    expect(got.first).toBe(0);
    expect(got.bytes).toEqual(concat(Array.from({ length: got.count }, () => gen.next())));
  });

  test("sequence_window: the generator's frames, in order, across batches", () => {
    const wl = new SequenceWorkload(7);
    const gen = sequenceWindowGenerator({ keys: 7 });
    // take() reuses one buffer: keep a copy of the first batch before the next.
    const a = wl.take(3).bytes.slice();
    const b = wl.take(5);
    expect(b.first).toBe(3);
    expect(concat([a, b.bytes])).toEqual(concat(Array.from({ length: 8 }, () => gen.next())));
  });
});

test("sequence_window with a shuffled first round: every key once with value 1, then the same rounds in key order", () => {
  const K = 50;
  const parse = (bytes: Uint8Array) => {
    const out: string[] = [];
    for (let p = 0; p < bytes.length; ) {
      const len = new DataView(bytes.buffer, bytes.byteOffset + p).getUint32(0);
      const value = new DataView(bytes.buffer, bytes.byteOffset + p + 4).getUint32(4);
      out.push(`${new TextDecoder().decode(bytes.subarray(p + 12, p + 4 + len))}=${value}`);
      p += 4 + len;
    }
    return out;
  };
  const plain = parse(new SequenceWorkload(K).take(3 * K).bytes.slice());
  const shuffled = parse(new SequenceWorkload(K, 0, { shuffleFirstRound: 1 }).take(3 * K).bytes.slice());
  expect(shuffled.slice(0, K)).not.toEqual(plain.slice(0, K));
  expect([...shuffled.slice(0, K)].sort()).toEqual([...plain.slice(0, K)].sort());
  expect(shuffled.slice(K)).toEqual(plain.slice(K));
  expect(parse(new SequenceWorkload(K, 0, { shuffleFirstRound: 1 }).take(K).bytes.slice())).toEqual(shuffled.slice(0, K));
});

describe("alphabet validator", () => {
  const wl = new AlphabetWorkload(3, 1);
  const totals = new Map<string, number>();
  const exact = Array.from({ length: 200 }, (_, i) => {
    const { letter, votes } = wl.message(i);
    totals.set(letter, (totals.get(letter) ?? 0) + votes);
    return `${letter} => ${totals.get(letter)}`;
  });
  const verify = (lines: string[]) => {
    const v = new AlphabetValidator();
    feed(v, lines);
    return v.verify(wl, 200);
  };

  test("exact outputs pass", () => expect(verify(exact)).toEqual([]));
  test("a lost output fails", () => expect(verify(exact.slice(1)).join()).toContain("missing"));
  test("a duplicated output fails", () => expect(verify([...exact, exact[7]!]).join()).toContain("output 2 times"));
  test("a wrong total fails", () => expect(verify([...exact.slice(0, -1), `${exact.at(-1)![0]} => 1`]).length).toBeGreaterThan(0));
  test("a letter's totals going back on one connection fail", () => {
    const i = exact.findIndex((l, j) => j > 0 && l[0] === exact[0]![0]);
    const swapped = [...exact];
    [swapped[0], swapped[i]] = [swapped[i]!, swapped[0]!];
    expect(verify(swapped).join()).toContain("went from");
  });
});

describe("replaying alphabet validator", () => {
  const wl = new AlphabetWorkload(3, 1, "ab");
  const totals = new Map<string, number>();
  const exact = Array.from({ length: 60 }, (_, i) => {
    const { letter, votes } = wl.message(i);
    totals.set(letter, (totals.get(letter) ?? 0) + votes);
    return `${letter} => ${totals.get(letter)}`;
  });
  const a = exact.filter((l) => l[0] === "a");
  const b = exact.filter((l) => l[0] === "b");
  /** The input positions replayed from b's j-th message to the end. */
  const replayedFrom = (j: number): Replayed[] => [{ from: wl.indexOfOccurrence("b".charCodeAt(0), j), to: 60 }];
  /** Letter b's outputs as given (each list on a connection of its own), after every output of a. */
  const verify = (bLines: string[][], recoveries = 1, replayed?: Replayed[]) => {
    const v = new ReplayingAlphabetValidator();
    feed(v, a);
    for (const lines of bLines) feed(v, lines);
    return { problems: v.verify(wl, 60, recoveries, replayed).join(), v };
  };

  test("exact outputs pass, with nothing repeated", () => {
    const { problems, v } = verify([b], 0);
    expect(problems).toBe("");
    expect({ repeats: v.repeats, replays: v.replays() }).toEqual({ repeats: 0, replays: 0 });
  });
  test("a replay from a checkpoint on a new connection passes and is counted", () => {
    const { problems, v } = verify([b.slice(0, 12), b.slice(5)], 1, replayedFrom(5));
    expect(problems).toBe("");
    expect({ repeats: v.repeats, wentBack: v.wentBack, replays: v.replays(), ofB: v.replays("b"), ofA: v.replays("a") }).toEqual({ repeats: 7, wentBack: 1, replays: 7, ofB: 7, ofA: 0 });
  });
  test("a replay on the same connection passes", () => expect(verify([[...b.slice(0, 12), ...b.slice(5)]], 1, replayedFrom(5)).problems).toBe(""));
  test("a moved letter's last outputs arriving after the new owner's first ones pass", () => {
    // The old owner's connection is read after the new owner's: order holds per connection only.
    const v = new ReplayingAlphabetValidator();
    feed(v, a);
    const old = conn();
    feed(v, b.slice(0, 6), old);
    feed(v, b.slice(9));
    feed(v, b.slice(6, 9), old);
    expect(v.verify(wl, 60, 0)).toEqual([]);
    expect(v.replays()).toBe(0);
  });
  test("more replays than recoveries fail", () => {
    expect(verify([b.slice(0, 12), b.slice(5, 14), b.slice(9)]).problems).toContain("totals output more than once per recovery (1 recoveries)");
    expect(verify([[...b.slice(0, 12), ...b.slice(5, 14), ...b.slice(9)]], 2).problems).toBe("");
    expect(verify([[...b.slice(0, 12), ...b.slice(5, 14), ...b.slice(9)]], 1).problems).toContain("went back 2 times on connection");
  });
  test("a repeated total that no recovery replayed fails", () => expect(verify([b.slice(0, 12), b.slice(5)], 1, replayedFrom(7)).problems).toContain("that no recovery replayed"));
  test("a lost output fails", () => expect(verify([[...b.slice(0, 7), ...b.slice(8)]]).problems).toContain("1 of"));
  test("a lost output filled in by a replay on its connection fails", () =>
    expect(verify([[...b.slice(0, 7), ...b.slice(8, 12), ...b.slice(7)]]).problems).toContain("output only once (a step back that is no replay)"));
  test("a lost output filled in by a replay on another connection fails when the replayed positions are known", () =>
    expect(verify([[...b.slice(0, 7), ...b.slice(8, 12)], b.slice(7)], 1, replayedFrom(10)).problems).toContain("that no recovery replayed"));
  test("a replay that stops short of the final total fails", () => expect(verify([b.slice(0, 12), b.slice(5, -1)]).problems).toContain("not the final total"));
  test("a total that is no running total fails", () => expect(verify([[...b, "b => 1"]]).problems).toContain("not running totals"));
  test("a letter never sent fails", () => expect(verify([[...b, "z => 1"]]).problems).toContain("never sent"));
});

describe("sequence_window validator", () => {
  const wl = new SequenceWorkload(2);
  const exact = ["key-0 [0,0,0,1]", "key-1 [0,0,0,1]", "key-0 [0,0,1,2]", "key-1 [0,0,1,2]", "key-0 [0,1,2,3]"];
  const problems = (lines: string[], sent = 5) => {
    const v = new SequenceValidator(2);
    feed(v, lines);
    return v.verify(wl, sent).problems.join();
  };

  test("exact outputs pass", () => expect(problems(exact)).toBe(""));
  test("a lost output fails", () => expect(problems(exact.slice(0, 4))).toContain("key-0: 2 outputs for 3 inputs"));
  test("a duplicated output fails", () => expect(problems([...exact, exact[4]!])).toContain("output twice"));
  test("a wrong window fails", () => expect(problems([...exact.slice(0, 4), "key-0 [0,0,2,3]"])).toContain("window"));
  test("a key going back on one connection fails", () => expect(problems([exact[2]!, exact[0]!, ...exact.slice(3), exact[1]!])).toContain("went from"));
  test("a garbled line fails", () => expect(problems([...exact, "kex-0 [1]"])).toContain("unparsable"));
});
