import { describe, expect, test } from "bun:test";
import { application } from "../../../src/app/builder.ts";
import { APP_SPEC_KIND, type AppSpec } from "../../../src/app/types.ts";
import {
  checkStateSerialisable,
  defaultMessageCodec,
  defaultStateCodec,
  plainDataProblem,
  validateAppSpec,
} from "../../../src/app/validate.ts";
import { AppError } from "../../../src/errors.ts";

const fn = () => null;
/** A hand-written spec (as a module could export without the builder), overridable per test. */
function raw(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    kind: APP_SPEC_KIND,
    name: "app",
    source: { name: "src", decode: fn },
    stages: [
      { kind: "key", name: "key", fn },
      { kind: "stateful", name: "count", init: () => ({ n: 0 }), fn },
    ],
    sink: { name: "out", encode: fn },
    ...over,
  };
}

function message(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(AppError);
    return (e as Error).message;
  }
  throw new Error("expected an AppError");
}

describe("validateAppSpec accepts", () => {
  test("a hand-written spec, returning a frozen copy of the known fields", () => {
    const input = raw({ extra: 1, counters: () => ({}) });
    const spec = validateAppSpec(input);
    expect(spec).not.toBe(input as unknown as AppSpec);
    expect(Object.isFrozen(spec)).toBe(true);
    expect("extra" in spec).toBe(false);
    expect(spec.stages.map((s) => s.kind)).toEqual(["key", "stateful"]);
    expect(typeof spec.counters).toBe("function");
  });

  test("what the builder produces", () => {
    const built = application("b")
      .source("s", (p) => p)
      .toMulti("m", (p) => [p], { parallel: true })
      .toSink((p) => p);
    expect(validateAppSpec(built).stages[0]).toEqual(built.stages[0]!);
  });
});

describe("validateAppSpec rejection sentences", () => {
  const cases: [string, unknown, string][] = [
    ["not an object", 42, "not a wallaroo application: expected an AppSpec object, got number 42"],
    ["null", null, "expected an AppSpec object, got null"],
    ["a builder without its sink", application("x").source("s", fn), "the pipeline has no sink; end it with .toSink(encode)"],
    ["missing kind", raw({ kind: undefined }), `kind is missing, expected "${APP_SPEC_KIND}"`],
    ["wrong kind", raw({ kind: "wallaroo.app/v0" }), `kind is the string "wallaroo.app/v0", expected "${APP_SPEC_KIND}"`],
    ["name not a string", raw({ name: 7 }), "name must be a string, got number 7"],
    ["bad name", raw({ name: "a b" }), `application name "a b" must be 1 to 128 letters`],
    ["source missing", raw({ source: undefined }), 'application "app": source must be an object with a name and a decode function, got nothing'],
    ["source decode not a function", raw({ source: { name: "src", decode: "x" } }), 'source "src" decode must be a function, got the string "x"'],
    ["source without a name", raw({ source: { decode: fn } }), "the source has no name (got nothing)"],
    ["stages not an array", raw({ stages: {} }), "stages must be an array, got an object"],
    ["stage not an object", raw({ stages: [5] }), "stage 1 must be an object, got number 5"],
    ["unknown stage kind", raw({ stages: [{ kind: "window", name: "w", fn }] }), 'stage 1 ("w") has unknown kind the string "window"; expected one of map, key, stateful'],
    ["stage fn missing", raw({ stages: [{ kind: "key", name: "k" }] }), 'stage 1 ("k") fn must be a function, got nothing'],
    ["map without parallel", raw({ stages: [{ kind: "map", name: "m", multi: false, fn }] }), 'stage 1 ("m") parallel must be true or false, got nothing'],
    ["map without multi", raw({ stages: [{ kind: "map", name: "m", parallel: true, fn }] }), 'stage 1 ("m") multi must be true or false'],
    [
      "stateful before any key",
      raw({ stages: [{ kind: "map", name: "split", parallel: true, multi: true, fn }, { kind: "stateful", name: "count", init: fn, fn }] }),
      'application "app": stage 2 ("count") is stateful but no keyBy comes before it',
    ],
    ["stateful without init", raw({ stages: [{ kind: "key", name: "k", fn }, { kind: "stateful", name: "c", fn }] }), 'stage 2 ("c") init must be a function'],
    [
      "bad stateCodec",
      raw({ stages: [{ kind: "key", name: "k", fn }, { kind: "stateful", name: "c", init: fn, fn, stateCodec: { serialize: fn } }] }),
      'stage 2 ("c") stateCodec.deserialize must be a function, got nothing',
    ],
    ["duplicate names", raw({ sink: { name: "count", encode: fn } }), 'the sink reuses the name "count"; every source, step and sink needs its own name'],
    ["empty stage name", raw({ stages: [{ kind: "key", name: " ", fn }] }), "stage 1 has an empty name"],
    ["sink missing", raw({ sink: null }), "sink must be an object with a name and an encode function, got null"],
    ["sink encode missing", raw({ sink: { name: "out" } }), 'sink "out" encode must be a function, got nothing'],
    ["messageCodec incomplete", raw({ messageCodec: { encode: fn } }), "messageCodec.decode must be a function"],
    ["counters not a function", raw({ counters: {} }), "counters must be a function, got an object"],
  ];
  for (const [what, input, sentence] of cases) {
    test(what, () => {
      expect(message(() => validateAppSpec(input))).toContain(sentence);
    });
  }
});

describe("checkStateSerialisable", () => {
  const withInit = (init: () => unknown, stateCodec?: unknown): AppSpec =>
    validateAppSpec(
      raw({ stages: [{ kind: "key", name: "key", fn }, { kind: "stateful", name: "count", init, fn, ...(stateCodec ? { stateCodec } : {}) }] }),
    );
  const TAIL = "State must be plain data: objects, arrays, Map, Set, typed arrays, strings, numbers, bigints, Dates.";

  test("accepts plain objects, arrays, Map, Set, typed arrays, Dates, bigints, null prototypes", () => {
    checkStateSerialisable(withInit(() => ({ n: 0 })));
    checkStateSerialisable(withInit(() => [0, 0, 0, 0]));
    checkStateSerialisable(withInit(() => new Map([["a", { n: 1n }]])));
    checkStateSerialisable(
      withInit(() => ({ s: new Set(["x"]), t: new Float64Array(3), d: new Date(0), b: new Uint8Array(2), nested: [{ m: new Map() }], z: null })),
    );
    checkStateSerialisable(withInit(() => Object.assign(Object.create(null), { n: 1 })));
  });

  test("refuses a function in state", () => {
    expect(message(() => checkStateSerialisable(withInit(() => ({ n: 0, inc: () => 1 }))))).toBe(
      `application "app": state of step "count" cannot migrate between workers: state.inc is a function. ${TAIL}`,
    );
  });

  test("refuses a class instance, also nested", () => {
    class Counter {
      n = 0;
      inc(): void {
        this.n++;
      }
    }
    expect(message(() => checkStateSerialisable(withInit(() => new Counter())))).toBe(
      `application "app": state of step "count" cannot migrate between workers: state is an instance of Counter, whose class and methods would be lost. ${TAIL}`,
    );
    expect(message(() => checkStateSerialisable(withInit(() => ({ byKey: new Map([["a", new Counter()]]) }))))).toContain(
      'state.byKey.get("a") is an instance of Counter',
    );
  });

  test("refuses symbols and symbol-keyed properties", () => {
    expect(message(() => checkStateSerialisable(withInit(() => [Symbol("x")])))).toContain("state[0] is a symbol.");
    expect(message(() => checkStateSerialisable(withInit(() => ({ [Symbol("x")]: 1 }))))).toContain("state has a symbol-keyed property");
  });

  test("refuses primitive state, shared state and a throwing init", () => {
    expect(message(() => checkStateSerialisable(withInit(() => 0)))).toContain('init() of step "count" returned number 0; state must be an object');
    const shared = { n: 0 };
    expect(message(() => checkStateSerialisable(withInit(() => shared)))).toContain('init() of step "count" returned the same object twice');
    expect(
      message(() =>
        checkStateSerialisable(
          withInit(() => {
            throw new Error("boom");
          }),
        ),
      ),
    ).toContain('init() of step "count" threw: boom');
  });

  test("uses a custom stateCodec instead of the plain-data rule", () => {
    class Point {
      constructor(
        public x: number,
        public y: number,
      ) {}
      len(): number {
        return Math.hypot(this.x, this.y);
      }
    }
    const good = { serialize: (p: Point) => new Uint8Array([p.x, p.y]), deserialize: (b: Uint8Array) => new Point(b[0]!, b[1]!) };
    checkStateSerialisable(withInit(() => new Point(1, 2), good));
    const lossy = { serialize: (_p: Point) => new Uint8Array([0]), deserialize: () => new Point(0, 0) };
    expect(message(() => checkStateSerialisable(withInit(() => new Point(1, 2), lossy)))).toContain(
      "a round trip through its stateCodec does not give back an equal value",
    );
    const throwing = { serialize: () => { throw new Error("nope"); }, deserialize: () => null };
    expect(message(() => checkStateSerialisable(withInit(() => new Point(1, 2), throwing)))).toContain("its stateCodec failed: nope");
    const notBytes = { serialize: () => "x", deserialize: () => null };
    expect(message(() => checkStateSerialisable(withInit(() => ({}), notBytes)))).toContain('serialize returned the string "x", not a Uint8Array');
  });

  test("plainDataProblem reports the path of the first problem", () => {
    expect(plainDataProblem({ a: [1, { "b-c": () => 1 }] })).toBe('state.a[1]["b-c"] is a function');
    expect(plainDataProblem(new Set([new (class Foo {})()]))).toBe("an element of state is an instance of Foo, whose class and methods would be lost");
    expect(plainDataProblem({ w: Object.assign([1], { extra: 2 }) })).toBe(`state.w is an array with a named property ("extra"), which would be lost`);
    expect(plainDataProblem({ w: [1, 2, 3] })).toBeNull();
    const cyclic: Record<string, unknown> = { n: 1 };
    cyclic.self = cyclic;
    expect(plainDataProblem(cyclic)).toBeNull();
  });
});

describe("default codecs", () => {
  test("state codec round-trips plain data into a plain (non-shared) Uint8Array", () => {
    const state = { total: 5, m: new Map([["a", [1, 2]]]), big: 2n ** 70n };
    const bytes = defaultStateCodec.serialize(state);
    expect(Object.getPrototypeOf(bytes)).toBe(Uint8Array.prototype);
    expect(bytes.buffer).toBeInstanceOf(ArrayBuffer);
    expect(bytes.buffer instanceof SharedArrayBuffer).toBe(false);
    expect(defaultStateCodec.deserialize(bytes)).toEqual(state);
  });

  test("message codec round-trips, also from a view inside a larger buffer", () => {
    const msg = { letter: "A", votes: 5428 };
    const bytes = defaultMessageCodec.encode(msg);
    expect(bytes.buffer instanceof SharedArrayBuffer).toBe(false);
    const frame = new Uint8Array(bytes.length + 7);
    frame.set(bytes, 3);
    expect(defaultMessageCodec.decode(frame.subarray(3, 3 + bytes.length))).toEqual(msg);
  });
});
