// The fluent pipeline builder application authors use, close to the original Python API:
//
//   application("alphabet")
//     .source("alphabet", decode)          // Pipeline<Vote>
//     .keyBy((v) => v.letter)              // Pipeline<Vote>
//     .toStateful("add votes", init, fn)   // Pipeline<Total>
//     .toSink(encode)                      // AppSpec (frozen plain data)
//
// Every call returns a new builder value (nothing is shared between branches) and `toSink`
// returns the finished `AppSpec`, not a builder, so nothing can be added after the sink. The
// output is plain frozen data: no classes, no `instanceof`, no module-level state, because an
// application module imported at run time by the compiled binary gets its own copy of this file.
import { AppError } from "../errors.ts";
import {
  APP_SPEC_KIND,
  type AppSpec,
  type Decoder,
  type Encoder,
  type FlatMapFn,
  type KeyFn,
  type MapFn,
  type MessageCodec,
  type StageSpec,
  type StateCodec,
  type StatefulFn,
} from "./types.ts";

/** Longest step or application name accepted (names appear in logs, metrics and queries). */
export const MAX_NAME_LENGTH = 128;
/** Application names name resilience files (`<dir>/<app>-<worker>.<ext>`), so they stay file-safe. */
export const APP_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

export interface StepOptions {
  /** Run on whichever worker holds the message (default false: run on the initializer). */
  readonly parallel?: boolean;
}
export interface StatefulOptions<S> {
  /** Custom state codec for migration (default: `bun:jsc` structured serialization). */
  readonly stateCodec?: StateCodec<S>;
}

/** An application that has a name but no source yet. */
export interface AppBuilder {
  /** Adds the application's TCP source; `decode` turns one frame's payload into a message. */
  source<M>(name: string, decode: Decoder<M>): Pipeline<M>;
}

/** A pipeline whose current messages are of type `M`. */
export interface Pipeline<M> {
  /** Stateless 1 → 0..1 step; returning `null`/`undefined` filters the message out. */
  to<O>(name: string, fn: MapFn<M, O>, options?: StepOptions): Pipeline<O>;
  /** Stateless 1 → 0..n step. */
  toMulti<O>(name: string, fn: FlatMapFn<M, O>, options?: StepOptions): Pipeline<O>;
  /** Keys the messages: the key picks the slot, hence the worker, of the next stateful step. */
  keyBy(fn: KeyFn<M>): Pipeline<M>;
  keyBy(name: string, fn: KeyFn<M>): Pipeline<M>;
  /** Stateful step, one state object per key created by `init()` on the key's first message. */
  toStateful<S, O>(name: string, init: () => S, fn: StatefulFn<M, S, O>, options?: StatefulOptions<S>): Pipeline<O>;
  /** Custom codec for messages that cross workers (default: `bun:jsc`). */
  messageCodec(codec: MessageCodec<any>): Pipeline<M>;
  /** Per-app statistics the runtime exposes (read whenever metrics or status are asked for). */
  counters(fn: () => Record<string, number>): Pipeline<M>;
  /** Ends the pipeline: returns the finished, frozen `AppSpec`. */
  toSink(encode: Encoder<M>, name?: string): AppSpec;
}

interface Draft {
  readonly app: string;
  readonly names: readonly string[];
  readonly source: { readonly name: string; readonly decode: Decoder<any> };
  readonly stages: readonly StageSpec[];
  readonly keyed: boolean;
  readonly messageCodec?: MessageCodec<any>;
  readonly counters?: () => Record<string, number>;
}

/** Starts an application named `name` (letters, digits, `_`, `-`, `.`). */
export function application(name: string): AppBuilder {
  checkAppName(name);
  return {
    source<M>(sourceName: string, decode: Decoder<M>): Pipeline<M> {
      const where = `application "${name}": source`;
      checkStepName(name, [], sourceName, where);
      checkFunction(name, decode, `source "${sourceName}" decoder`);
      return pipeline<M>({
        app: name,
        names: [sourceName],
        source: Object.freeze({ name: sourceName, decode }),
        stages: [],
        keyed: false,
      });
    },
  };
}

function pipeline<M>(d: Draft): Pipeline<M> {
  const withStage = <O>(stage: StageSpec, keyed: boolean): Pipeline<O> =>
    pipeline<O>({ ...d, names: [...d.names, stage.name], stages: [...d.stages, Object.freeze(stage)], keyed });

  return {
    to<O>(name: string, fn: MapFn<M, O>, options?: StepOptions): Pipeline<O> {
      checkStepName(d.app, d.names, name, "step");
      checkFunction(d.app, fn, `step "${name}" function`);
      const parallel = parallelOption(d.app, name, options);
      return withStage<O>({ kind: "map", name, parallel, multi: false, fn }, d.keyed);
    },
    toMulti<O>(name: string, fn: FlatMapFn<M, O>, options?: StepOptions): Pipeline<O> {
      checkStepName(d.app, d.names, name, "step");
      checkFunction(d.app, fn, `step "${name}" function`);
      const parallel = parallelOption(d.app, name, options);
      return withStage<O>({ kind: "map", name, parallel, multi: true, fn }, d.keyed);
    },
    keyBy(nameOrFn: string | KeyFn<M>, maybeFn?: KeyFn<M>): Pipeline<M> {
      let name: string;
      let fn: unknown;
      if (typeof nameOrFn === "function") {
        if (maybeFn !== undefined) fail(d.app, "keyBy takes either (fn) or (name, fn), not a function followed by another argument");
        name = freshName(d.names, "key by");
        fn = nameOrFn;
      } else {
        checkStepName(d.app, d.names, nameOrFn, "keyBy step");
        name = nameOrFn;
        fn = maybeFn;
      }
      checkFunction(d.app, fn, `keyBy step "${name}" key function`);
      return withStage<M>({ kind: "key", name, fn: fn as KeyFn<M> }, true);
    },
    toStateful<S, O>(name: string, init: () => S, fn: StatefulFn<M, S, O>, options?: StatefulOptions<S>): Pipeline<O> {
      checkStepName(d.app, d.names, name, "stateful step");
      if (!d.keyed) {
        fail(d.app, `stateful step "${name}" needs a keyBy before it: state is kept per key, so the pipeline must say what the key is`);
      }
      checkFunction(d.app, init, `stateful step "${name}" init`);
      checkFunction(d.app, fn, `stateful step "${name}" function`);
      const codec = options?.stateCodec;
      if (codec !== undefined) checkCodec(d.app, codec, ["serialize", "deserialize"], `stateful step "${name}" stateCodec`);
      const stage: StageSpec =
        codec === undefined ? { kind: "stateful", name, init, fn } : { kind: "stateful", name, init, fn, stateCodec: Object.freeze({ ...codec }) };
      return withStage<O>(stage, d.keyed);
    },
    messageCodec(codec: MessageCodec<any>): Pipeline<M> {
      if (d.messageCodec !== undefined) fail(d.app, "messageCodec is set twice; an application has one message codec");
      checkCodec(d.app, codec, ["encode", "decode"], "messageCodec");
      return pipeline<M>({ ...d, messageCodec: Object.freeze({ ...codec }) });
    },
    counters(fn: () => Record<string, number>): Pipeline<M> {
      if (d.counters !== undefined) fail(d.app, "counters is set twice; give one function that returns every counter");
      checkFunction(d.app, fn, "counters");
      return pipeline<M>({ ...d, counters: fn });
    },
    toSink(encode: Encoder<M>, name?: string): AppSpec {
      const sinkName = name === undefined ? freshName(d.names, "sink") : name;
      if (name !== undefined) checkStepName(d.app, d.names, name, "sink");
      checkFunction(d.app, encode, `sink "${sinkName}" encoder`);
      const spec: AppSpec = {
        kind: APP_SPEC_KIND,
        name: d.app,
        source: d.source,
        stages: Object.freeze([...d.stages]),
        sink: Object.freeze({ name: sinkName, encode }),
        ...(d.messageCodec !== undefined ? { messageCodec: d.messageCodec } : {}),
        ...(d.counters !== undefined ? { counters: d.counters } : {}),
      };
      return Object.freeze(spec);
    },
  };
}

function fail(app: string, sentence: string): never {
  throw new AppError(`application "${app}": ${sentence}`);
}

function checkAppName(name: unknown): void {
  if (typeof name !== "string") throw new AppError(`application name must be a string, got ${describe(name)}`);
  if (name.length === 0) throw new AppError("application name must not be empty");
  if (name.length > MAX_NAME_LENGTH) throw new AppError(`application name "${name.slice(0, 32)}…" is longer than ${MAX_NAME_LENGTH} characters`);
  if (!APP_NAME_PATTERN.test(name)) {
    throw new AppError(`application name "${name}" may contain only letters, digits, "_", "-" and "." and must start with a letter or digit (it names resilience files)`);
  }
}

/** Step names: any non-blank string up to MAX_NAME_LENGTH, unique within the application. */
function checkStepName(app: string, taken: readonly string[], name: unknown, what: string): void {
  if (typeof name !== "string") fail(app, `${what} name must be a string, got ${describe(name)}`);
  if (name.trim().length === 0) fail(app, `${what} name must not be empty`);
  if (name.length > MAX_NAME_LENGTH) fail(app, `${what} name "${name.slice(0, 32)}…" is longer than ${MAX_NAME_LENGTH} characters`);
  if (taken.includes(name)) fail(app, `the name "${name}" is used twice; every source, step and sink needs its own name`);
}

function checkFunction(app: string, fn: unknown, what: string): void {
  if (typeof fn !== "function") fail(app, `${what} must be a function, got ${describe(fn)}`);
}

function checkCodec(app: string, codec: unknown, methods: readonly string[], what: string): void {
  if (typeof codec !== "object" || codec === null) fail(app, `${what} must be an object with ${methods.join(" and ")} functions, got ${describe(codec)}`);
  for (const m of methods) {
    const f = (codec as Record<string, unknown>)[m];
    if (typeof f !== "function") fail(app, `${what}.${m} must be a function, got ${describe(f)}`);
  }
}

function parallelOption(app: string, name: string, options: StepOptions | undefined): boolean {
  if (options === undefined) return false;
  if (typeof options !== "object" || options === null) fail(app, `options of step "${name}" must be an object like { parallel: true }, got ${describe(options)}`);
  const p = options.parallel;
  if (p !== undefined && typeof p !== "boolean") fail(app, `option parallel of step "${name}" must be true or false, got ${describe(p)}`);
  return p === true;
}

/** `base`, or `base 2`, `base 3`, … whichever is not taken yet. */
function freshName(taken: readonly string[], base: string): string {
  if (!taken.includes(base)) return base;
  // Among taken.length + 1 candidates at least one is free.
  for (let i = 2; i <= taken.length + 2; i++) {
    const candidate = `${base} ${i}`;
    if (!taken.includes(candidate)) return candidate;
  }
  throw new Error("unreachable: freshName ran out of candidates");
}

/** A short description of a value for error sentences. */
export function describe(x: unknown): string {
  if (x === null) return "null";
  if (Array.isArray(x)) return "an array";
  switch (typeof x) {
    case "undefined":
      return "nothing";
    case "string":
      return x.length > 40 ? `the string "${x.slice(0, 40)}…"` : `the string "${x}"`;
    case "number":
    case "bigint":
    case "boolean":
      return `${typeof x} ${String(x)}`;
    case "function":
      return "a function";
    case "symbol":
      return "a symbol";
    default:
      return "an object";
  }
}
