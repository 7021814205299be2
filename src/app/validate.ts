// Checks on anything that claims to be an AppSpec, and the default codecs for state and messages.
//
// An application module is user code imported at run time, so its default export is untrusted:
// `validateAppSpec` checks the shape field by field and throws an AppError whose sentence names
// the first problem; `checkStateSerialisable` creates each stateful step's initial state and
// round-trips it through the codec migration will use, so a state that cannot move between
// workers is refused at start-up rather than in the middle of a shrink.
import { decodeValue, encodeValue } from "../codec/value.ts";
import { AppError } from "../errors.ts";
import { APP_NAME_PATTERN, MAX_NAME_LENGTH, describe } from "./builder.ts";
import { APP_SPEC_KIND, type AppSpec, type MessageCodec, type SinkSpec, type SourceSpec, type StageSpec, type StateCodec } from "./types.ts";

/**
 * State codec used when a stateful step gives none: plain data in the compact form of
 * src/codec/value.ts, anything else through `bun:jsc` structured serialization.
 */
export const defaultStateCodec: StateCodec<any> = Object.freeze({
  serialize: (state: unknown): Uint8Array => encodeValue(state),
  deserialize: (bytes: Uint8Array): any => decodeValue(bytes),
});

/** Message codec used when the application gives none: the same as state's. */
export const defaultMessageCodec: MessageCodec<any> = Object.freeze({
  encode: (msg: unknown): Uint8Array => encodeValue(msg),
  decode: (bytes: Uint8Array): any => decodeValue(bytes),
});

const STAGE_KINDS = ["map", "key", "stateful"] as const;
const PLAIN_DATA_SENTENCE = "State must be plain data: objects, arrays, Map, Set, typed arrays, strings, numbers, bigints, Dates.";
/** Nodes visited in one state before the plain-data walk stops looking (initial states are small). */
const PLAIN_DATA_NODES_MAX = 100_000;

/**
 * Checks that `x` is a well-formed AppSpec and returns a frozen copy holding only the known
 * fields. Throws an AppError naming the first problem.
 */
export function validateAppSpec(x: unknown): AppSpec {
  if (typeof x !== "object" || x === null) throw new AppError(`not a wallaroo application: expected an AppSpec object, got ${describe(x)}`);
  const o = x as Record<string, unknown>;
  if (typeof o.toSink === "function" && o.kind === undefined) {
    throw new AppError("not a wallaroo application: the pipeline has no sink; end it with .toSink(encode)");
  }
  if (o.kind !== APP_SPEC_KIND) {
    throw new AppError(
      `not a wallaroo application: kind is ${o.kind === undefined ? "missing" : describe(o.kind)}, expected "${APP_SPEC_KIND}" (build it with application(...)...toSink(...))`,
    );
  }
  const name = o.name;
  if (typeof name !== "string") throw new AppError(`not a wallaroo application: name must be a string, got ${describe(name)}`);
  if (name.length === 0 || name.length > MAX_NAME_LENGTH || !APP_NAME_PATTERN.test(name)) {
    throw new AppError(
      `application name "${name.slice(0, MAX_NAME_LENGTH)}" must be 1 to ${MAX_NAME_LENGTH} letters, digits, "_", "-" or "." starting with a letter or digit`,
    );
  }
  const fail = (sentence: string): never => {
    throw new AppError(`application "${name}": ${sentence}`);
  };
  const names = new Set<string>();
  const checkName = (n: unknown, what: string): string => {
    if (typeof n !== "string") fail(`${what} has no name (got ${describe(n)})`);
    const s = n as string;
    if (s.trim().length === 0) fail(`${what} has an empty name`);
    if (s.length > MAX_NAME_LENGTH) fail(`${what} has a name longer than ${MAX_NAME_LENGTH} characters`);
    if (names.has(s)) fail(`${what} reuses the name "${s}"; every source, step and sink needs its own name`);
    names.add(s);
    return s;
  };
  const checkFn = (f: unknown, what: string): void => {
    if (typeof f !== "function") fail(`${what} must be a function, got ${describe(f)}`);
  };

  const src = o.source;
  if (typeof src !== "object" || src === null) fail(`source must be an object with a name and a decode function, got ${describe(src)}`);
  const s = src as Record<string, unknown>;
  const sourceName = checkName(s.name, "the source");
  checkFn(s.decode, `source "${sourceName}" decode`);
  const source: SourceSpec = Object.freeze({ name: sourceName, decode: s.decode as SourceSpec["decode"] });

  if (!Array.isArray(o.stages)) fail(`stages must be an array, got ${describe(o.stages)}`);
  const stages: StageSpec[] = [];
  let keyed = false;
  (o.stages as unknown[]).forEach((raw, i) => {
    const where = `stage ${i + 1}`;
    if (typeof raw !== "object" || raw === null) fail(`${where} must be an object, got ${describe(raw)}`);
    const st = raw as Record<string, unknown>;
    const stageName = checkName(st.name, where);
    const here = `${where} ("${stageName}")`;
    if (!(STAGE_KINDS as readonly unknown[]).includes(st.kind)) fail(`${here} has unknown kind ${describe(st.kind)}; expected one of ${STAGE_KINDS.join(", ")}`);
    checkFn(st.fn, `${here} fn`);
    if (st.kind === "map") {
      if (typeof st.parallel !== "boolean") fail(`${here} parallel must be true or false, got ${describe(st.parallel)}`);
      if (typeof st.multi !== "boolean") fail(`${here} multi must be true or false, got ${describe(st.multi)}`);
      stages.push(Object.freeze({ kind: "map", name: stageName, parallel: st.parallel as boolean, multi: st.multi as boolean, fn: st.fn as any }));
    } else if (st.kind === "key") {
      keyed = true;
      stages.push(Object.freeze({ kind: "key", name: stageName, fn: st.fn as any }));
    } else {
      if (!keyed) fail(`${here} is stateful but no keyBy comes before it`);
      checkFn(st.init, `${here} init`);
      const codec = st.stateCodec;
      if (codec === undefined) {
        stages.push(Object.freeze({ kind: "stateful", name: stageName, init: st.init as () => any, fn: st.fn as any }));
      } else {
        const c = checkCodec(codec, ["serialize", "deserialize"], `${here} stateCodec`, fail);
        stages.push(Object.freeze({ kind: "stateful", name: stageName, init: st.init as () => any, fn: st.fn as any, stateCodec: c as unknown as StateCodec<any> }));
      }
    }
  });

  const snk = o.sink;
  if (typeof snk !== "object" || snk === null) fail(`sink must be an object with a name and an encode function, got ${describe(snk)}`);
  const k = snk as Record<string, unknown>;
  const sinkName = checkName(k.name, "the sink");
  checkFn(k.encode, `sink "${sinkName}" encode`);
  const sink: SinkSpec = Object.freeze({ name: sinkName, encode: k.encode as SinkSpec["encode"] });

  let messageCodec: MessageCodec<any> | undefined;
  if (o.messageCodec !== undefined) messageCodec = checkCodec(o.messageCodec, ["encode", "decode"], "messageCodec", fail) as unknown as MessageCodec<any>;
  if (o.counters !== undefined) checkFn(o.counters, "counters");

  return Object.freeze({
    kind: APP_SPEC_KIND,
    name,
    source,
    stages: Object.freeze(stages),
    sink,
    ...(messageCodec !== undefined ? { messageCodec } : {}),
    ...(o.counters !== undefined ? { counters: o.counters as () => Record<string, number> } : {}),
  });
}

/**
 * Checks what an application module built, as every worker does before it starts: the AppSpec's
 * shape, and that each initial state survives migration. `where` opens the error sentence.
 */
export function validatedSpec(value: unknown, where: string): AppSpec {
  try {
    const spec = validateAppSpec(value);
    checkStateSerialisable(spec);
    return spec;
  } catch (e) {
    if (isAppError(e)) throw new AppError(`${where} is not a valid application: ${e.message}`);
    throw e;
  }
}

/** An AppError, also one thrown by a module's own copy of the builder (another class of that name). */
export function isAppError(e: unknown): e is Error {
  return e instanceof Error && e.name === "AppError";
}

function checkCodec(codec: unknown, methods: readonly string[], what: string, fail: (s: string) => never): Record<string, unknown> {
  if (typeof codec !== "object" || codec === null) fail(`${what} must be an object with ${methods.join(" and ")} functions, got ${describe(codec)}`);
  const out: Record<string, unknown> = {};
  for (const m of methods) {
    const f = (codec as Record<string, unknown>)[m];
    if (typeof f !== "function") fail(`${what}.${m} must be a function, got ${describe(f)}`);
    out[m] = f;
  }
  return Object.freeze(out);
}

/**
 * For each stateful step: creates the initial state with `init()` and round-trips it through
 * the step's `stateCodec` (or `defaultStateCodec`). Throws an AppError when the state could not
 * migrate between workers. Only the initial state is checked; the runtime still reports a state
 * that a step later makes unserialisable when it tries to move it.
 */
export function checkStateSerialisable(spec: AppSpec): void {
  for (const stage of spec.stages) {
    if (stage.kind !== "stateful") continue;
    const fail = (sentence: string): never => {
      throw new AppError(`application "${spec.name}": ${sentence}`);
    };
    const cannot = (reason: string): never => fail(`state of step "${stage.name}" cannot migrate between workers: ${reason}. ${PLAIN_DATA_SENTENCE}`);
    let state: unknown;
    let second: unknown;
    try {
      state = stage.init();
      second = stage.init();
    } catch (e) {
      fail(`init() of step "${stage.name}" threw: ${errorText(e)}`);
    }
    if (typeof state !== "object" || state === null) {
      fail(`init() of step "${stage.name}" returned ${describe(state)}; state must be an object (or array, Map, …) that the step mutates in place`);
    }
    if (state === second) {
      fail(`init() of step "${stage.name}" returned the same object twice; it must create a new state object on every call, one per key`);
    }
    const codec = stage.stateCodec ?? defaultStateCodec;
    if (stage.stateCodec === undefined) {
      const problem = plainDataProblem(state);
      if (problem !== null) cannot(problem);
    }
    let back: unknown;
    try {
      const bytes = codec.serialize(state);
      if (!(bytes instanceof Uint8Array)) cannot(`serialize returned ${describe(bytes)}, not a Uint8Array`);
      back = codec.deserialize(bytes);
    } catch (e) {
      if (e instanceof AppError) throw e;
      cannot(`${stage.stateCodec ? "its stateCodec" : "bun:jsc serialization"} failed: ${errorText(e)}`);
    }
    if (!Bun.deepEquals(state, back)) {
      cannot(`a round trip through ${stage.stateCodec ? "its stateCodec" : "bun:jsc serialization"} does not give back an equal value`);
    }
  }
}

const TYPED_ARRAY_PROTOTYPES: ReadonlySet<object> = new Set<object>(
  [
    Int8Array,
    Uint8Array,
    Uint8ClampedArray,
    Int16Array,
    Uint16Array,
    Int32Array,
    Uint32Array,
    Float32Array,
    Float64Array,
    BigInt64Array,
    BigUint64Array,
    DataView,
    (globalThis as { Float16Array?: { prototype: object } }).Float16Array,
  ]
    .filter((c) => c !== undefined)
    .map((c) => c!.prototype),
);

/**
 * Why `value` is not plain data that survives structured serialization unchanged, or null.
 * Catches what `bun:jsc` refuses (functions, symbols) and what it silently degrades (class
 * instances become plain objects without their methods; symbol-keyed properties vanish).
 */
export function plainDataProblem(value: unknown, root = "state"): string | null {
  const seen = new Set<object>();
  let budget = PLAIN_DATA_NODES_MAX;
  const walk = (v: unknown, path: string): string | null => {
    if (typeof v === "function") return `${path} is a function`;
    if (typeof v === "symbol") return `${path} is a symbol`;
    if (typeof v !== "object" || v === null) return null;
    if (seen.has(v)) return null;
    if (--budget < 0) return null;
    seen.add(v);
    const proto = Object.getPrototypeOf(v);
    if (proto === Object.prototype || proto === null) {
      if (Object.getOwnPropertySymbols(v).length > 0) return `${path} has a symbol-keyed property, which would be lost`;
      for (const key of Object.keys(v)) {
        const p = walk((v as Record<string, unknown>)[key], /^[A-Za-z_$][\w$]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`);
        if (p !== null) return p;
      }
      return null;
    }
    if (proto === Array.prototype) {
      const a = v as unknown[];
      // src/codec/value.ts keeps an array's elements only.
      const named = Object.keys(a).find((k) => !/^(0|[1-9]\d*)$/.test(k));
      if (named !== undefined) return `${path} is an array with a named property (${JSON.stringify(named)}), which would be lost`;
      for (let i = 0; i < a.length; i++) {
        const p = walk(a[i], `${path}[${i}]`);
        if (p !== null) return p;
      }
      return null;
    }
    if (proto === Map.prototype) {
      for (const [mk, mv] of v as Map<unknown, unknown>) {
        const p = walk(mk, `a key of ${path}`) ?? walk(mv, `${path}.get(${typeof mk === "string" ? JSON.stringify(mk) : "…"})`);
        if (p !== null) return p;
      }
      return null;
    }
    if (proto === Set.prototype) {
      for (const sv of v as Set<unknown>) {
        const p = walk(sv, `an element of ${path}`);
        if (p !== null) return p;
      }
      return null;
    }
    if (proto === Date.prototype || proto === RegExp.prototype || proto === ArrayBuffer.prototype || TYPED_ARRAY_PROTOTYPES.has(proto)) return null;
    const ctor = proto !== null && typeof proto.constructor === "function" && proto.constructor.name ? proto.constructor.name : "an anonymous class";
    return `${path} is an instance of ${ctor}, whose class and methods would be lost`;
  };
  return walk(value, root);
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
