import { encodeOutput } from "../../../src/runtime/output-writer.ts";
import { describe, expect, test } from "bun:test";
import { application } from "../../../src/app/builder.ts";
import { APP_SPEC_KIND, type AppSpec } from "../../../src/app/types.ts";
import { AppError } from "../../../src/errors.ts";
import * as api from "../../../src/index.ts";

interface Vote {
  letter: string;
  votes: number;
}

const decodeVote = (p: Uint8Array): Vote | null => (p.length === 5 ? { letter: String.fromCharCode(p[0]!), votes: p[4]! } : null);

function alphabetLike(): AppSpec {
  return application("alpha")
    .source("votes", decodeVote)
    .to("double", (v) => ({ ...v, votes: v.votes * 2 }), { parallel: true })
    .keyBy("letter", (v) => v.letter)
    .toStateful(
      "add votes",
      () => ({ total: 0 }),
      (v, s) => {
        s.total += v.votes;
        return { letter: v.letter, total: s.total };
      },
    )
    .toSink((o) => `${o.letter} => ${o.total}\n`);
}

/** Expects `fn` to throw an AppError whose message contains every fragment. */
function expectAppError(fn: () => unknown, ...fragments: string[]): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(AppError);
  for (const f of fragments) expect((caught as Error).message).toContain(f);
}

describe("builder output", () => {
  test("is frozen plain data of the AppSpec shape", () => {
    const spec = alphabetLike();
    expect(spec.kind).toBe(APP_SPEC_KIND);
    expect(spec.name).toBe("alpha");
    expect(spec.source.name).toBe("votes");
    expect(spec.stages.map((s) => [s.kind, s.name])).toEqual([
      ["map", "double"],
      ["key", "letter"],
      ["stateful", "add votes"],
    ]);
    const map = spec.stages[0]!;
    expect(map.kind === "map" && map.parallel && !map.multi).toBe(true);
    expect(spec.sink.name).toBe("sink");
    expect(Object.isFrozen(spec)).toBe(true);
    expect(Object.isFrozen(spec.stages)).toBe(true);
    expect(Object.isFrozen(spec.stages[2])).toBe(true);
    expect(Object.getPrototypeOf(spec)).toBe(Object.prototype);
    expect(Object.getPrototypeOf(spec.source)).toBe(Object.prototype);
    expect("messageCodec" in spec).toBe(false);
    expect("counters" in spec).toBe(false);
    // Plain data survives a structured clone minus the functions: no hidden class state.
    expect(Object.keys(spec).sort()).toEqual(["kind", "name", "sink", "source", "stages"]);
  });

  test("the functions in the spec run the pipeline by hand", () => {
    const spec = alphabetLike();
    const msg = spec.source.decode(new Uint8Array([0x41, 0, 0, 0, 3]));
    const doubled = (spec.stages[0]!.fn as (m: unknown) => unknown)(msg);
    const key = (spec.stages[1]!.fn as (m: unknown) => string)(doubled);
    const st = spec.stages[2]!;
    if (st.kind !== "stateful") throw new Error("expected stateful");
    const state = st.init();
    expect(st.fn(doubled, state, key)).toEqual({ letter: "A", total: 6 });
    expect(st.fn(doubled, state, key)).toEqual({ letter: "A", total: 12 });
    expect(new TextDecoder().decode(encodeOutput(spec.sink.encode, { letter: "A", total: 12 }))).toBe("A => 12\n");
  });

  test("defaults: non-parallel steps, toMulti marks multi, unnamed keyBy and sink get fresh names", () => {
    const spec = application("x")
      .source("s", (p) => p[0])
      .toMulti("split", (n) => [n, n])
      .to("key by", (n) => n) // takes the default name first: the keyBy steps must pick others
      .keyBy((n) => String(n))
      .keyBy((n) => String(n))
      .toSink((n) => String(n), "out");
    expect(spec.stages.map((s) => s.name)).toEqual(["split", "key by", "key by 2", "key by 3"]);
    const multi = spec.stages[0]!;
    expect(multi.kind === "map" && multi.multi && !multi.parallel).toBe(true);
    expect(spec.sink.name).toBe("out");
  });

  test("stateCodec, messageCodec and counters are carried", () => {
    const stateCodec = { serialize: (s: { n: number }) => new Uint8Array([s.n]), deserialize: (b: Uint8Array) => ({ n: b[0]! }) };
    const messageCodec = { encode: (m: number) => new Uint8Array([m]), decode: (b: Uint8Array) => b[0]! };
    const spec = application("x")
      .source("s", (p) => p[0]!)
      .keyBy((n) => String(n))
      .toStateful("st", () => ({ n: 0 }), (m, s) => (s.n += m), { stateCodec })
      .messageCodec(messageCodec)
      .counters(() => ({ c: 1 }))
      .toSink((n) => String(n));
    const st = spec.stages[1]!;
    expect(st.kind === "stateful" && st.stateCodec?.serialize({ n: 7 })[0]).toBe(7);
    expect(spec.messageCodec?.decode(new Uint8Array([9]))).toBe(9);
    expect(spec.counters?.()).toEqual({ c: 1 });
  });

  test("branches do not share stages", () => {
    const base = application("x").source("s", (p) => p.length);
    const a = base.to("a", (n) => n + 1).toSink(String);
    const b = base.to("b", (n) => n + 2).toSink(String);
    expect(a.stages.map((s) => s.name)).toEqual(["a"]);
    expect(b.stages.map((s) => s.name)).toEqual(["b"]);
  });

  test("passthrough shape: no stages", () => {
    const spec = application("p")
      .source("s", (p) => p.slice())
      .toSink((b) => b);
    expect(spec.stages).toEqual([]);
  });
});

describe("builder errors", () => {
  test("stateful without a keyBy before it names the step", () => {
    expectAppError(
      () =>
        application("x")
          .source("s", (p) => p)
          .to("m", (p) => p)
          .toStateful("count", () => ({ n: 0 }), () => null),
      'application "x"',
      'stateful step "count" needs a keyBy before it',
    );
  });

  test("duplicate names anywhere in the app", () => {
    expectAppError(() => application("x").source("s", (p) => p).to("s", (p) => p), 'the name "s" is used twice');
    expectAppError(
      () =>
        application("x")
          .source("s", (p) => p)
          .keyBy("k", () => "a")
          .toStateful("k", () => ({}), () => null),
      'the name "k" is used twice',
    );
    expectAppError(() => application("x").source("s", (p) => p).to("a", (p) => p).toSink((p) => p, "a"), 'the name "a" is used twice');
  });

  test("empty and blank names", () => {
    expectAppError(() => application(""), "application name must not be empty");
    expectAppError(() => application("x").source("", (p) => p), "source name must not be empty");
    expectAppError(() => application("x").source("s", (p) => p).to("  ", (p) => p), "step name must not be empty");
    expectAppError(() => application("x").source("s", (p) => p).keyBy("", () => "k"), "keyBy step name must not be empty");
    expectAppError(() => application("x").source("s", (p) => p).toSink((p) => p, ""), "sink name must not be empty");
  });

  test("application names must be file-safe", () => {
    expectAppError(() => application("word count"), 'application name "word count" may contain only letters, digits');
    expectAppError(() => application("../x"), "may contain only");
    expect(application("word_count-2.v1")).toBeDefined();
  });

  test("names longer than the limit", () => {
    expectAppError(() => application("x").source("s".repeat(200), (p) => p), "longer than 128 characters");
  });

  test("non-functions and bad options", () => {
    const p = application("x").source("s", (b) => b);
    expectAppError(() => application("x").source("s", 5 as never), 'source "s" decoder must be a function, got number 5');
    expectAppError(() => p.to("m", null as never), 'step "m" function must be a function, got null');
    expectAppError(() => p.to("m", (b) => b, { parallel: "yes" as never }), 'option parallel of step "m" must be true or false');
    expectAppError(() => p.keyBy("k", undefined as never), 'keyBy step "k" key function must be a function, got nothing');
    expectAppError(() => p.keyBy(() => "a").toStateful("st", {} as never, () => null), 'stateful step "st" init must be a function');
    expectAppError(
      () => p.keyBy(() => "a").toStateful("st", () => ({}), () => null, { stateCodec: { serialize: () => new Uint8Array() } as never }),
      'stateful step "st" stateCodec.deserialize must be a function',
    );
    expectAppError(() => p.messageCodec({ encode: () => new Uint8Array() } as never), "messageCodec.decode must be a function");
    expectAppError(() => p.counters(() => ({})).counters(() => ({})), "counters is set twice");
    expectAppError(() => p.toSink("x" as never), 'sink "sink" encoder must be a function');
  });
});

describe("public API helpers (src/index.ts)", () => {
  test("exports the builder and the kind tag", () => {
    expect(api.application).toBe(application);
    expect(api.APP_SPEC_KIND).toBe("wallaroo.app/v1");
  });

  test("u32be and u64be read big-endian, guard the end and the safe-integer range", () => {
    const b = Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x15, 0x34, 0x00]);
    expect(api.u32be(b, 0)).toBe(4294967295);
    expect(api.u32be(b, 4)).toBe(5428);
    expect(() => api.u32be(b, 6)).toThrow(RangeError);
    expect(() => api.u32be(b, -1)).toThrow(RangeError);
    const big = new Uint8Array(8);
    new DataView(big.buffer).setBigUint64(0, 2n ** 53n - 1n);
    expect(api.u64be(big, 0)).toBe(Number.MAX_SAFE_INTEGER);
    new DataView(big.buffer).setBigUint64(0, 2n ** 53n);
    expect(() => api.u64be(big, 0)).toThrow("exceeds 2^53 - 1");
    new DataView(big.buffer).setBigUint64(0, 0x0010203040506070n);
    expect(api.u64be(big, 0)).toBe(0x0010203040506070);
    expect(() => api.u64be(big, 1)).toThrow(RangeError);
  });

  test("utf8 round trip and frame", () => {
    expect(api.utf8Decode(api.utf8Encode("héllo ✓"))).toBe("héllo ✓");
    expect([...api.frame(Uint8Array.from([0x41, 0, 0, 0x15, 0x34]))]).toEqual([0, 0, 0, 5, 0x41, 0, 0, 0x15, 0x34]);
    expect([...api.frame("é")]).toEqual([0, 0, 0, 2, 0xc3, 0xa9]);
    expect([...api.frame(new Uint8Array(0))]).toEqual([0, 0, 0, 0]);
  });
});

// Never called: checked by `tsc --noEmit` (npm run typecheck). Types flow from step to step.
export function typeFlowChecks(): void {
  const p = application("t").source("s", (b): Vote | null => decodeVote(b));
  const counted = p
    .keyBy((v) => v.letter)
    .toStateful(
      "c",
      () => ({ total: 0 }),
      (v, s, key: string) => {
        s.total += v.votes;
        return { key, total: s.total };
      },
    );
  counted.to("n", (o) => o.total.toFixed(0)).toSink((s: string) => s);
  p.toMulti("words", (v) => [v.letter, v.letter]).to("len", (w) => w.length);
  // @ts-expect-error a Vote has no `word`
  p.to("bad", (v) => v.word);
  // @ts-expect-error the key function must return a string
  p.keyBy((v) => v.votes);
  // @ts-expect-error the encoder receives the last step's output (a number), not a Vote
  p.to("n", (v) => v.votes).toSink((v: Vote) => v.letter);
  // @ts-expect-error toSink returns the finished spec: nothing can follow it
  p.toSink((v) => v.letter).to("after", (x: unknown) => x);
}
