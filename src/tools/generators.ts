// Source messages for the built-in applications, as whole frames (u32 BE length + payload), for
// `wallaroo send` and for tests. Pure and deterministic: the same seed gives the same bytes on
// every machine, so a test can regenerate what was sent and compute what the sink must show.
//
//   alphabet        payload = letter:u8 votes:u32be                 (frame = 9 bytes)
//   word_count      payload = one line of UTF-8 text, no newline
//   sequence_window payload = value:u64be key:utf8                   (per key 1, 2, 3, …)
//   passthrough     payload = "<seq> <filler>\n", ASCII, `size` bytes (so sinks can count lines)
import { WallarooError } from "../errors.ts";
import { FRAME_HEADER_BYTES, readU32, writeU32 } from "../codec/frame.ts";

export interface Generator {
  /** One whole frame including its u32 length prefix; a fresh buffer the caller may keep. */
  next(): Uint8Array;
  readonly name: string;
}

export const LOWERCASE = "abcdefghijklmnopqrstuvwxyz";
/** As the original alphabet test generator (_test/gen.py): votes in [1, 9999]. */
export const ALPHABET_VOTES_MIN = 1;
export const ALPHABET_VOTES_MAX = 9999;
export const WORD_COUNT_WORDS_MAX = 8;
export const DEFAULT_VOCABULARY = [
  "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "stream", "state",
  "worker", "cluster", "grow", "shrink", "key", "slot", "marker", "epoch", "sink", "source",
] as const;
export const DEFAULT_SEQUENCE_KEYS = 100;
export const DEFAULT_PASSTHROUGH_SIZE = 32;

/** mulberry32: tiny, fast and fully specified, so a seed means the same stream everywhere. */
export function createRng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** The same stream as `createRng`, scaled to a float in [0, 1). */
export function createUnitRng(seed: number): () => number {
  const next = createRng(seed);
  return () => next() / 4294967296;
}

/** An integer in [0, n); the modulo bias is irrelevant for n this small against 2^32. */
function below(rng: () => number, n: number): number {
  return rng() % n;
}

function checkSeed(seed: number): void {
  if (!Number.isSafeInteger(seed)) throw new RangeError(`generator seed must be an integer, not ${seed}`);
}

export function encodeAlphabetFrame(letter: string, votes: number): Uint8Array {
  const code = letter.charCodeAt(0);
  if (letter.length !== 1 || code > 0x7f) throw new RangeError(`alphabet key must be one ASCII letter, not "${letter}"`);
  if (!(Number.isInteger(votes) && votes >= 0 && votes <= 0xffffffff)) throw new RangeError(`alphabet votes must fit a u32, not ${votes}`);
  const out = new Uint8Array(FRAME_HEADER_BYTES + 5);
  writeU32(out, 0, 5);
  out[4] = code;
  writeU32(out, 5, votes);
  return out;
}

export function alphabetGenerator(opts: { seed: number; keys?: string }): Generator {
  checkSeed(opts.seed);
  const keys = opts.keys ?? LOWERCASE;
  if (keys.length === 0 || !/^[\x00-\x7f]+$/.test(keys)) throw new RangeError(`alphabet keys must be ASCII letters, not "${keys}"`);
  const rng = createRng(opts.seed);
  const span = ALPHABET_VOTES_MAX - ALPHABET_VOTES_MIN + 1;
  return {
    name: "alphabet",
    next: () => encodeAlphabetFrame(keys[below(rng, keys.length)]!, ALPHABET_VOTES_MIN + below(rng, span)),
  };
}

const utf8 = new TextEncoder();

export function encodeTextFrame(text: string): Uint8Array {
  const body = utf8.encode(text);
  const out = new Uint8Array(FRAME_HEADER_BYTES + body.length);
  writeU32(out, 0, body.length);
  out.set(body, FRAME_HEADER_BYTES);
  return out;
}

export function wordCountGenerator(opts: { seed: number; vocabulary?: readonly string[] }): Generator {
  checkSeed(opts.seed);
  const vocabulary = opts.vocabulary ?? DEFAULT_VOCABULARY;
  if (vocabulary.length === 0 || vocabulary.some((w) => w === "" || /\s/.test(w))) {
    throw new RangeError("word_count vocabulary must be non-empty words without spaces");
  }
  const rng = createRng(opts.seed);
  return {
    name: "word_count",
    next: () => {
      const n = 1 + below(rng, WORD_COUNT_WORDS_MAX);
      const words: string[] = [];
      for (let i = 0; i < n; i++) words.push(vocabulary[below(rng, vocabulary.length)]!);
      return encodeTextFrame(words.join(" "));
    },
  };
}

export function encodeSequenceWindowFrame(key: Uint8Array, value: number): Uint8Array {
  const out = new Uint8Array(sequenceWindowFrameBytes(key));
  writeSequenceWindowFrame(out, 0, key, value);
  return out;
}

export function sequenceWindowFrameBytes(key: Uint8Array): number {
  return FRAME_HEADER_BYTES + 8 + key.length;
}

/**
 * Writes the frame `encodeSequenceWindowFrame` returns into `out` at `pos` and returns its size,
 * so a load sender can fill one reused batch buffer instead of allocating a frame per message.
 */
export function writeSequenceWindowFrame(out: Uint8Array, pos: number, key: Uint8Array, value: number): number {
  if (!(Number.isSafeInteger(value) && value >= 0)) throw new RangeError(`sequence value must be a safe non-negative integer, not ${value}`);
  const len = 8 + key.length;
  writeU32(out, pos, len);
  // u64 BE without BigInt: values stay below 2^53.
  writeU32(out, pos + 4, Math.floor(value / 0x1_0000_0000));
  writeU32(out, pos + 8, value >>> 0);
  out.set(key, pos + 12);
  return FRAME_HEADER_BYTES + len;
}

/** The i-th key of the sequence_window generator. */
export function sequenceWindowKey(i: number): string {
  return `key-${i}`;
}

/** Round-robin over `key-0` … `key-<keys-1>`; each key counts 1, 2, 3, … with no gap. */
export function sequenceWindowGenerator(opts: { keys?: number; seed?: number } = {}): Generator {
  const keys = opts.keys ?? DEFAULT_SEQUENCE_KEYS;
  if (!(Number.isSafeInteger(keys) && keys >= 1)) throw new RangeError(`sequence_window keys must be at least 1, not ${keys}`);
  const keyBytes = Array.from({ length: keys }, (_, i) => utf8.encode(sequenceWindowKey(i)));
  let n = 0;
  return {
    name: "sequence_window",
    next: () => {
      const k = n % keys;
      const value = Math.floor(n / keys) + 1;
      n++;
      return encodeSequenceWindowFrame(keyBytes[k]!, value);
    },
  };
}

/** Each payload is one ASCII line starting with its sequence number, padded to `size` bytes. */
export function passthroughGenerator(opts: { seed: number; size?: number }): Generator {
  checkSeed(opts.seed);
  const size = opts.size ?? DEFAULT_PASSTHROUGH_SIZE;
  if (!(Number.isSafeInteger(size) && size >= 2)) throw new RangeError(`passthrough size must be at least 2, not ${size}`);
  const rng = createRng(opts.seed);
  let seq = 0;
  return {
    name: "passthrough",
    next: () => {
      const head = `${seq++} `;
      const len = Math.max(size, head.length + 1);
      const out = new Uint8Array(FRAME_HEADER_BYTES + len);
      writeU32(out, 0, len);
      for (let i = 0; i < head.length; i++) out[FRAME_HEADER_BYTES + i] = head.charCodeAt(i);
      for (let i = FRAME_HEADER_BYTES + head.length; i < out.length - 1; i++) out[i] = 0x61 + below(rng, 26);
      out[out.length - 1] = 0x0a;
      return out;
    },
  };
}

/** Options every generator understands from the command line; `keys` narrows the key space. */
export interface GeneratorOptions {
  readonly seed: number;
  readonly keys?: number;
}

function firstKeys<T>(what: string, all: readonly T[], keys: number | undefined): readonly T[] | undefined {
  if (keys === undefined) return undefined;
  if (!(Number.isSafeInteger(keys) && keys >= 1 && keys <= all.length)) {
    throw new RangeError(`${what} has ${all.length} keys; --keys must be from 1 to ${all.length}, not ${keys}`);
  }
  return all.slice(0, keys);
}

export const GENERATORS = {
  alphabet: (o: GeneratorOptions) => alphabetGenerator({ seed: o.seed, keys: firstKeys("alphabet", [...LOWERCASE], o.keys)?.join("") }),
  word_count: (o: GeneratorOptions) => wordCountGenerator({ seed: o.seed, vocabulary: firstKeys("word_count", DEFAULT_VOCABULARY, o.keys) }),
  sequence_window: (o: GeneratorOptions) => sequenceWindowGenerator({ keys: o.keys }),
  passthrough: (o: GeneratorOptions) => {
    if (o.keys !== undefined) throw new RangeError("passthrough messages have no keys");
    return passthroughGenerator({ seed: o.seed });
  },
} as const satisfies Record<string, (o: GeneratorOptions) => Generator>;
export type GeneratorName = keyof typeof GENERATORS;

export function isGeneratorName(s: string): s is GeneratorName {
  return Object.hasOwn(GENERATORS, s);
}

/**
 * Walks a file of framed messages and returns how many whole frames it holds. Throws a
 * WallarooError naming the first bad frame: over `maxFrame`, or cut short by the end of the
 * file. Empty frames are legal (workers hand the decoder an empty payload, as the original did).
 */
export function checkFramedFile(bytes: Uint8Array, maxFrame: number): number {
  let pos = 0;
  let count = 0;
  while (pos < bytes.length) {
    const at = `Frame ${count + 1} (at byte ${pos})`;
    if (bytes.length - pos < FRAME_HEADER_BYTES) {
      throw new WallarooError(`${at} is truncated: the file ends ${bytes.length - pos} bytes into its 4-byte length header.`);
    }
    const len = readU32(bytes, pos);
    if (len > maxFrame) throw new WallarooError(`${at} claims ${len} bytes, over the ${maxFrame}-byte limit.`);
    const end = pos + FRAME_HEADER_BYTES + len;
    if (end > bytes.length) {
      throw new WallarooError(`${at} is truncated: it claims ${len} bytes but the file ends after ${bytes.length - pos - FRAME_HEADER_BYTES}.`);
    }
    pos = end;
    count++;
  }
  return count;
}

/** The whole frames of a framed file (like the original votes.msg), as views into `bytes`. */
export function readFramedFile(bytes: Uint8Array, maxFrame: number): Uint8Array[] {
  const count = checkFramedFile(bytes, maxFrame);
  const frames = new Array<Uint8Array>(count);
  let pos = 0;
  for (let i = 0; i < count; i++) {
    const end = pos + FRAME_HEADER_BYTES + readU32(bytes, pos);
    frames[i] = bytes.subarray(pos, end);
    pos = end;
  }
  return frames;
}

/** Letter → sum of votes: what the alphabet sink's last line per letter must show. */
export function expectedAlphabetTotals(frames: Iterable<Uint8Array>): Map<string, number> {
  const totals = new Map<string, number>();
  for (const f of frames) {
    if (f.length !== FRAME_HEADER_BYTES + 5 || readU32(f, 0) !== 5) throw new RangeError(`not an alphabet frame (${f.length} bytes)`);
    const letter = String.fromCharCode(f[4]!);
    totals.set(letter, (totals.get(letter) ?? 0) + readU32(f, 5));
  }
  return totals;
}

/** Word → occurrences over word_count frames (words are separated by single spaces). */
export function expectedWordCounts(frames: Iterable<Uint8Array>): Map<string, number> {
  const counts = new Map<string, number>();
  const text = new TextDecoder();
  for (const f of frames) {
    for (const w of text.decode(f.subarray(FRAME_HEADER_BYTES)).split(" ")) {
      if (w !== "") counts.set(w, (counts.get(w) ?? 0) + 1);
    }
  }
  return counts;
}

/** Decodes a sequence_window payload (no length header) back into key and value. */
export function decodeSequenceWindowPayload(payload: Uint8Array): { key: string; value: number } {
  if (payload.length < 8) throw new RangeError(`sequence_window payload must hold at least 8 bytes, not ${payload.length}`);
  const value = readU32(payload, 0) * 0x1_0000_0000 + readU32(payload, 4);
  return { key: new TextDecoder().decode(payload.subarray(8)), value };
}
