import { describe, expect, test } from "bun:test";
import { readU32 } from "../../../src/codec/frame.ts";
import { WallarooError } from "../../../src/errors.ts";
import {
  ALPHABET_VOTES_MAX,
  ALPHABET_VOTES_MIN,
  alphabetGenerator,
  checkFramedFile,
  decodeSequenceWindowPayload,
  DEFAULT_VOCABULARY,
  encodeAlphabetFrame,
  encodeSequenceWindowFrame,
  expectedAlphabetTotals,
  expectedWordCounts,
  GENERATORS,
  passthroughGenerator,
  readFramedFile,
  sequenceWindowGenerator,
  WORD_COUNT_WORDS_MAX,
  wordCountGenerator,
  type Generator,
} from "../../../src/tools/generators.ts";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const take = (g: Generator, n: number) => Array.from({ length: n }, () => g.next());
const concat = (parts: Uint8Array[]) => new Uint8Array(Buffer.concat(parts));
const payload = (f: Uint8Array) => f.subarray(4);

/** Every frame's length header must match its size: the sender relies on it to find boundaries. */
function expectWellFramed(frames: Uint8Array[]): void {
  for (const f of frames) expect(readU32(f, 0)).toBe(f.length - 4);
}

describe("alphabet", () => {
  test("golden frame: 'A' with 5428 votes, as in the original README", () => {
    expect(hex(encodeAlphabetFrame("A", 5428))).toBe("000000054100001534");
  });

  test("the same seed gives the same bytes; another seed does not", () => {
    const a = concat(take(alphabetGenerator({ seed: 42 }), 500));
    const b = concat(take(alphabetGenerator({ seed: 42 }), 500));
    const c = concat(take(alphabetGenerator({ seed: 43 }), 500));
    expect(hex(a)).toBe(hex(b));
    expect(hex(a)).not.toBe(hex(c));
  });

  test("lowercase letters and votes in [1, 9999], like the original test generator", () => {
    const frames = take(alphabetGenerator({ seed: 1 }), 5000);
    expectWellFramed(frames);
    const letters = new Set<string>();
    for (const f of frames) {
      expect(f.length).toBe(9);
      const letter = String.fromCharCode(f[4]!);
      expect(letter).toMatch(/^[a-z]$/);
      letters.add(letter);
      const votes = readU32(f, 5);
      expect(votes).toBeGreaterThanOrEqual(ALPHABET_VOTES_MIN);
      expect(votes).toBeLessThanOrEqual(ALPHABET_VOTES_MAX);
    }
    expect(letters.size).toBe(26);
  });

  test("keys narrows the letters used", () => {
    const frames = take(alphabetGenerator({ seed: 3, keys: "xy" }), 200);
    expect(new Set(frames.map((f) => String.fromCharCode(f[4]!)))).toEqual(new Set(["x", "y"]));
  });

  test("expectedAlphabetTotals sums votes per letter", () => {
    const frames = [encodeAlphabetFrame("a", 5), encodeAlphabetFrame("b", 7), encodeAlphabetFrame("a", 10)];
    expect(expectedAlphabetTotals(frames)).toEqual(new Map([["a", 15], ["b", 7]]));
  });
});

describe("word_count", () => {
  test("lines of 1..8 words from the vocabulary, deterministic by seed", () => {
    const frames = take(wordCountGenerator({ seed: 9 }), 2000);
    expectWellFramed(frames);
    const vocab = new Set<string>(DEFAULT_VOCABULARY);
    const lengths = new Set<number>();
    for (const f of frames) {
      const words = new TextDecoder().decode(payload(f)).split(" ");
      lengths.add(words.length);
      for (const w of words) expect(vocab.has(w)).toBe(true);
    }
    expect(Math.min(...lengths)).toBe(1);
    expect(Math.max(...lengths)).toBe(WORD_COUNT_WORDS_MAX);
    expect(hex(concat(take(wordCountGenerator({ seed: 9 }), 2000)))).toBe(hex(concat(frames)));
  });

  test("expectedWordCounts counts words over lines", () => {
    const frames = take(wordCountGenerator({ seed: 1, vocabulary: ["x", "y"] }), 100);
    const counts = expectedWordCounts(frames);
    const total = frames.reduce((n, f) => n + new TextDecoder().decode(payload(f)).split(" ").length, 0);
    expect((counts.get("x") ?? 0) + (counts.get("y") ?? 0)).toBe(total);
  });
});

describe("sequence_window", () => {
  test("golden frame: value 1 for key-0", () => {
    expect(hex(encodeSequenceWindowFrame(new TextEncoder().encode("key-0"), 1))).toBe("0000000d" + "0000000000000001" + hex(new TextEncoder().encode("key-0")));
  });

  test("values above 2^32 are written as u64 BE", () => {
    const f = encodeSequenceWindowFrame(new Uint8Array(0), 2 ** 40 + 3);
    expect(hex(f)).toBe("00000008" + "0000010000000003");
    expect(decodeSequenceWindowPayload(payload(f)).value).toBe(2 ** 40 + 3);
  });

  test("round-robin over key-0..key-(K-1), each key counting 1, 2, 3, … exactly", () => {
    const keys = 7;
    const frames = take(sequenceWindowGenerator({ keys }), keys * 50 + 3);
    expectWellFramed(frames);
    const lastByKey = new Map<string, number>();
    frames.forEach((f, i) => {
      const { key, value } = decodeSequenceWindowPayload(payload(f));
      expect(key).toBe(`key-${i % keys}`);
      expect(value).toBe((lastByKey.get(key) ?? 0) + 1);
      lastByKey.set(key, value);
    });
    expect(lastByKey.size).toBe(keys);
  });

  test("defaults to 100 keys", () => {
    const frames = take(sequenceWindowGenerator(), 101);
    expect(decodeSequenceWindowPayload(payload(frames[99]!)).key).toBe("key-99");
    expect(decodeSequenceWindowPayload(payload(frames[100]!))).toEqual({ key: "key-0", value: 2 });
  });
});

describe("passthrough", () => {
  test("each payload is one line starting with its sequence number, `size` bytes long", () => {
    const frames = take(passthroughGenerator({ seed: 5, size: 20 }), 200);
    expectWellFramed(frames);
    frames.forEach((f, i) => {
      const text = new TextDecoder().decode(payload(f));
      expect(text.length).toBe(20);
      expect(text).toMatch(new RegExp(`^${i} [a-z]*\\n$`));
    });
  });

  test("grows past `size` when the sequence number needs it", () => {
    const g = passthroughGenerator({ seed: 5, size: 2 });
    const frames = take(g, 12);
    expect(new TextDecoder().decode(payload(frames[11]!))).toBe("11 \n");
  });
});

describe("GENERATORS table", () => {
  test("every entry builds a generator of its own name", () => {
    for (const [name, make] of Object.entries(GENERATORS)) expect(make({ seed: 1 }).name).toBe(name);
  });

  test("--keys maps to the first K letters, words or sequence keys", () => {
    const letters = take(GENERATORS.alphabet({ seed: 1, keys: 2 }), 100).map((f) => String.fromCharCode(f[4]!));
    expect(new Set(letters)).toEqual(new Set(["a", "b"]));
    expect(() => GENERATORS.alphabet({ seed: 1, keys: 27 })).toThrow(RangeError);
    expect(() => GENERATORS.passthrough({ seed: 1, keys: 3 })).toThrow(RangeError);
    const seq = take(GENERATORS.sequence_window({ seed: 1, keys: 2 }), 3).map((f) => decodeSequenceWindowPayload(payload(f)));
    expect(seq).toEqual([{ key: "key-0", value: 1 }, { key: "key-1", value: 1 }, { key: "key-0", value: 2 }]);
  });
});

describe("readFramedFile", () => {
  const frames = take(alphabetGenerator({ seed: 11 }), 10);
  const file = concat(frames);

  test("splits a file into whole frames, headers included", () => {
    const got = readFramedFile(file, 16);
    expect(got.length).toBe(10);
    got.forEach((f, i) => expect(hex(f)).toBe(hex(frames[i]!)));
    expect(checkFramedFile(file, 16)).toBe(10);
  });

  test("frames of different sizes", () => {
    const mixed = [encodeAlphabetFrame("a", 1), ...take(wordCountGenerator({ seed: 2 }), 5), encodeAlphabetFrame("b", 2)];
    expect(readFramedFile(concat(mixed), 1024).map(hex)).toEqual(mixed.map(hex));
  });

  test("an empty file holds no frames", () => {
    expect(readFramedFile(new Uint8Array(0), 16)).toEqual([]);
  });

  test("a truncated last frame is an error naming it", () => {
    const cut = file.subarray(0, file.length - 3);
    expect(() => readFramedFile(cut, 16)).toThrow(WallarooError);
    expect(() => readFramedFile(cut, 16)).toThrow("Frame 10 (at byte 81) is truncated: it claims 5 bytes but the file ends after 2.");
  });

  test("a file ending inside a length header is an error", () => {
    expect(() => readFramedFile(concat([file, new Uint8Array([0, 0])]), 16)).toThrow("Frame 11 (at byte 90) is truncated: the file ends 2 bytes into its 4-byte length header.");
  });

  test("a frame over maxFrame is an error before anything is read past it", () => {
    expect(() => readFramedFile(file, 4)).toThrow("Frame 1 (at byte 0) claims 5 bytes, over the 4-byte limit.");
    const huge = concat([frames[0]!, new Uint8Array([0xff, 0xff, 0xff, 0xff])]);
    expect(() => readFramedFile(huge, 1024)).toThrow("Frame 2 (at byte 9) claims 4294967295 bytes, over the 1024-byte limit.");
  });

  test("an empty frame is a legal frame: workers hand the decoder an empty payload", () => {
    const got = readFramedFile(concat([frames[0]!, new Uint8Array(4)]), 16);
    expect(got.length).toBe(2);
    expect(Array.from(got[1]!)).toEqual([0, 0, 0, 0]);
  });
});
