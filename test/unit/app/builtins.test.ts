import { encodeOutput } from "../../../src/runtime/output-writer.ts";
import { describe, expect, spyOn, test } from "bun:test";
import alphabet, { decodeVote } from "../../../src/app/builtins/alphabet.ts";
import passthrough from "../../../src/app/builtins/passthrough.ts";
import sequenceWindow, { build as buildSequenceWindow, decodeSample, windowIsValid } from "../../../src/app/builtins/sequence_window.ts";
import wordCount, { splitWords } from "../../../src/app/builtins/word_count.ts";
import type { AppSpec } from "../../../src/app/types.ts";
import { checkStateSerialisable, validateAppSpec } from "../../../src/app/validate.ts";

const hexBytes = (h: string) => Uint8Array.from(Buffer.from(h.replace(/ /g, ""), "hex"));
const utf8 = (s: string) => new TextEncoder().encode(s);

/**
 * Runs a spec's steps by hand, as one worker would: decode, each stage in order, keyed state per
 * (stage, key) created from init() on first use, encode. Returns what the sink would receive.
 * The payload buffer is overwritten after each decode to catch a decoder that keeps the view.
 */
function runner(spec: AppSpec) {
  const states = new Map<string, unknown>();
  return (payload: Uint8Array): (Uint8Array | string)[] => {
    const buf = payload.slice();
    const first = spec.source.decode(buf);
    buf.fill(0xee);
    // Each message travels with its key (the last keyBy's result), as the runtime carries it.
    let msgs: [unknown, string][] = first === null || first === undefined ? [] : [[first, ""]];
    for (const stage of spec.stages) {
      const next: [unknown, string][] = [];
      for (const [m, key] of msgs) {
        if (stage.kind === "key") {
          next.push([m, stage.fn(m)]);
        } else if (stage.kind === "map") {
          const r = stage.fn(m);
          if (stage.multi) for (const x of (r as unknown[] | null) ?? []) next.push([x, key]);
          else if (r !== null && r !== undefined) next.push([r, key]);
        } else {
          const id = `${stage.name}\u0000${key}`;
          if (!states.has(id)) states.set(id, stage.init());
          const r = stage.fn(m, states.get(id), key);
          if (r !== null && r !== undefined) next.push([r, key]);
        }
      }
      msgs = next;
    }
    // Text comes back as a string, anything else as bytes: the sink writes both the same way.
    return msgs.map(([m]) => {
      const bytes = encodeOutput(spec.sink.encode, m);
      return spec === passthrough ? bytes : new TextDecoder().decode(bytes);
    });
  };
}

test("every built-in is a valid spec whose state can migrate", () => {
  for (const spec of [alphabet, wordCount, sequenceWindow, passthrough]) {
    expect(validateAppSpec(spec).name).toBe(spec.name);
    checkStateSerialisable(spec);
  }
  expect([alphabet.name, wordCount.name, sequenceWindow.name, passthrough.name]).toEqual(["alphabet", "word_count", "sequence_window", "passthrough"]);
});

describe("alphabet", () => {
  test("golden frame from the original README: A, 5428 votes; the next vote adds", () => {
    const frame = hexBytes("00 00 00 05 41 00 00 15 34");
    const payload = frame.subarray(4);
    expect(decodeVote(payload)).toEqual({ letter: "A", votes: 5428 });
    const run = runner(alphabet);
    expect(run(payload)).toEqual(["A => 5428\n"]);
    expect(run(hexBytes("41 00 00 00 02"))).toEqual(["A => 5430\n"]);
    expect(run(hexBytes("62 00 00 00 07"))).toEqual(["b => 7\n"]);
    expect(run(hexBytes("41 00 00 00 00"))).toEqual(["A => 5430\n"]);
  });

  test("full u32 vote range and every byte as a letter", () => {
    expect(decodeVote(hexBytes("7a ff ff ff ff"))).toEqual({ letter: "z", votes: 4294967295 });
    expect(decodeVote(hexBytes("00 80 00 00 00"))).toEqual({ letter: "\u0000", votes: 2147483648 });
  });

  test("payloads that are not exactly 5 bytes are dropped", () => {
    for (const n of [0, 1, 4, 6, 9]) expect(decodeVote(new Uint8Array(n))).toBeNull();
    expect(runner(alphabet)(new Uint8Array(9))).toEqual([]);
  });

  test("the stateful step returns a copy, not the live state", () => {
    const stage = alphabet.stages.find((s) => s.kind === "stateful")!;
    if (stage.kind !== "stateful") throw new Error("unreachable");
    const state = stage.init();
    const out = stage.fn({ letter: "c", votes: 3 }, state, "c");
    expect(out).toEqual({ letter: "c", total: 3 });
    expect(out).not.toBe(state);
    expect(state).toEqual({ total: 3 });
  });
});

describe("word_count", () => {
  test("splits into lower-case words on anything but letters and digits", () => {
    expect(splitWords("Hello, hello WORLD!  it's 2 o'clock—Ünïcode ok")).toEqual(["hello", "hello", "world", "it", "s", "2", "o", "clock", "ünïcode", "ok"]);
    expect(splitWords("  ...  ")).toEqual([]);
    expect(splitWords("")).toEqual([]);
  });

  test("counts per word across payloads", () => {
    const run = runner(wordCount);
    expect(run(utf8("the cat and THE hat"))).toEqual(["the => 1\n", "cat => 1\n", "and => 1\n", "the => 2\n", "hat => 1\n"]);
    expect(run(utf8("Cat!"))).toEqual(["cat => 2\n"]);
    expect(run(new Uint8Array(0))).toEqual([]);
  });

  test("the split step is parallel and multi", () => {
    const split = wordCount.stages[0]!;
    expect(split.kind === "map" && split.parallel && split.multi).toBe(true);
  });
});

describe("sequence_window", () => {
  const sample = (value: bigint, key: string) => {
    const out = new Uint8Array(8 + utf8(key).length);
    new DataView(out.buffer).setBigUint64(0, value);
    out.set(utf8(key), 8);
    return out;
  };

  test("decodes a u64 value and the key; drops short payloads and values above 2^53 - 1", () => {
    expect(decodeSample(sample(7n, "k1"))).toEqual({ key: "k1", value: 7 });
    expect(decodeSample(sample(2n ** 53n - 1n, "é"))).toEqual({ key: "é", value: Number.MAX_SAFE_INTEGER });
    expect(decodeSample(sample(2n ** 53n, "k"))).toBeNull();
    expect(decodeSample(sample(2n ** 64n - 1n, "k"))).toBeNull();
    expect(decodeSample(new Uint8Array(7))).toBeNull();
    expect(decodeSample(sample(1n, ""))).toEqual({ key: "", value: 1 });
  });

  test("window rule", () => {
    for (const ok of [[0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 2], [0, 1, 2, 3], [1, 2, 3, 4], [3, 4, 5, 6]]) expect(windowIsValid(ok)).toBe(true);
    for (const bad of [[0, 0, 0, 2], [0, 0, 2, 3], [1, 2, 4, 5], [2, 1, 3, 4], [1, 2, 2, 3], [0, 1, 0, 1], [4, 3, 2, 1]]) expect(windowIsValid(bad)).toBe(false);
  });

  test("the ring shifts per key and good sequences count no violation", () => {
    const spec = buildSequenceWindow();
    const run = runner(spec);
    const out: (string | Uint8Array)[] = [];
    for (let v = 1n; v <= 5n; v++) {
      out.push(...run(sample(v, "a")));
      out.push(...run(sample(v, "b")));
    }
    expect(out.filter((_, i) => i % 2 === 0)).toEqual(["a [0,0,0,1]\n", "a [0,0,1,2]\n", "a [0,1,2,3]\n", "a [1,2,3,4]\n", "a [2,3,4,5]\n"]);
    expect(out[9]).toBe("b [2,3,4,5]\n");
    expect(spec.counters!()).toEqual({ window_violations: 0 });
  });

  test("a gap, a duplicate and a lost first value are each logged and counted, per spec", () => {
    const errors = spyOn(process.stderr, "write").mockImplementation(() => true);
    try {
      const spec = buildSequenceWindow();
      const other = buildSequenceWindow();
      const run = runner(spec);
      run(sample(1n, "a"));
      run(sample(2n, "a"));
      expect(run(sample(4n, "a"))).toEqual(["a [0,1,2,4]\n"]); // 3 lost
      run(sample(2n, "z")); // 1 lost: [0,0,0,2]
      run(sample(1n, "d"));
      run(sample(1n, "d")); // duplicate: [0,0,1,1]
      expect(spec.counters!()).toEqual({ window_violations: 3 });
      expect(other.counters!()).toEqual({ window_violations: 0 });
      const text = errors.mock.calls.map((c) => String(c[0])).join("");
      expect(text).toContain('window violation for key "a": [0,1,2,4]');
      expect(text).toContain('window violation for key "z": [0,0,0,2]');
    } finally {
      errors.mockRestore();
    }
  });

  test("the state is a plain array of 4 numbers and outputs are copies", () => {
    const stage = sequenceWindow.stages.find((s) => s.kind === "stateful")!;
    if (stage.kind !== "stateful") throw new Error("unreachable");
    const w = stage.init();
    expect(w).toEqual([0, 0, 0, 0]);
    const out = stage.fn({ key: "k", value: 1 }, w, "k") as { window: number[] };
    expect(w).toEqual([0, 0, 0, 1]);
    expect(out.window).not.toBe(w);
  });
});

describe("passthrough", () => {
  test("copies the payload and writes it unchanged", () => {
    const payload = hexBytes("00 01 02 ff");
    const decoded = passthrough.source.decode(payload) as Uint8Array;
    payload[0] = 9;
    expect([...decoded]).toEqual([0, 1, 2, 255]);
    expect(encodeOutput(passthrough.sink.encode, decoded)).toEqual(decoded);
    expect(passthrough.stages).toEqual([]);
    expect(runner(passthrough)(hexBytes("aa bb"))).toEqual([hexBytes("aa bb")]);
  });
});
