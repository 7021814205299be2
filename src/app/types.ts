// The application spec is plain data: a module imported at run time by the compiled binary gets
// its own copy of every file it imports, so nothing here may rely on classes, `instanceof` or
// module-level singletons. The builder in ./builder.ts produces exactly this shape and
// ./validate.ts checks any object claiming to be one.

export const APP_SPEC_KIND = "wallaroo.app/v1" as const;

/** Turns one source frame's payload into a message; `null`/`undefined` drops the frame. */
export type Decoder<M> = (payload: Uint8Array) => M | null | undefined;
/**
 * Writes one output's bytes straight into the sink's buffer: the fast path for encoders, e.g.
 * `(o, w) => { w.text(o.letter); w.text(" => "); w.number(o.total); w.byte(10); }` builds no
 * string. Valid only during the encoder call.
 */
export interface OutputWriter {
  /** Appends `s` as UTF-8. */
  text(s: string): void;
  /** Appends the text `String(n)` (integers without making the string). */
  number(n: number): void;
  /** Appends one byte (its low 8 bits). */
  byte(b: number): void;
  /** Appends a copy of `b`. */
  bytes(b: Uint8Array): void;
}

/**
 * Turns one output into the bytes written to the sink: return a string (written as UTF-8) or a
 * Uint8Array, or write through `w` and return nothing. Whatever it wrote is dropped if it throws.
 */
export type Encoder<O> = (out: O, w: OutputWriter) => Uint8Array | string | null | undefined | void;
export type KeyFn<M> = (msg: M) => string;
/** 1 → 0..1 messages; `null`/`undefined` filters the message out. */
export type MapFn<I, O> = (msg: I) => O | null | undefined;
/** 1 → 0..n messages. */
export type FlatMapFn<I, O> = (msg: I) => readonly O[] | null | undefined;
/**
 * Runs on the worker owning the key's slot with that key's state object, which it may mutate.
 * The state object must survive `bun:jsc` serialize/deserialize (plain objects, arrays, Maps,
 * Sets, typed arrays, strings, numbers, bigints, Dates): it migrates between workers.
 */
export type StatefulFn<I, S, O> = (msg: I, state: S, key: string) => O | null | undefined;

/** Optional custom codec for a stage's state (default: `bun:jsc` structured serialization). */
export interface StateCodec<S> {
  readonly serialize: (state: S) => Uint8Array;
  readonly deserialize: (bytes: Uint8Array) => S;
}
/** Optional custom codec for messages crossing workers (default: `bun:jsc`). */
export interface MessageCodec<M> {
  readonly encode: (msg: M) => Uint8Array;
  readonly decode: (bytes: Uint8Array) => M;
}

export interface SourceSpec {
  readonly name: string;
  readonly decode: Decoder<any>;
}

export interface MapStage {
  readonly kind: "map";
  readonly name: string;
  /** Parallel stages run on whichever worker holds the message; others on the initializer. */
  readonly parallel: boolean;
  readonly multi: boolean;
  readonly fn: MapFn<any, any> | FlatMapFn<any, any>;
}
export interface KeyStage {
  readonly kind: "key";
  readonly name: string;
  readonly fn: KeyFn<any>;
}
export interface StatefulStage {
  readonly kind: "stateful";
  readonly name: string;
  readonly init: () => any;
  readonly fn: StatefulFn<any, any, any>;
  readonly stateCodec?: StateCodec<any>;
}
export type StageSpec = MapStage | KeyStage | StatefulStage;

export interface SinkSpec {
  readonly name: string;
  readonly encode: Encoder<any>;
}

export interface AppSpec {
  readonly kind: typeof APP_SPEC_KIND;
  readonly name: string;
  readonly source: SourceSpec;
  readonly stages: readonly StageSpec[];
  readonly sink: SinkSpec;
  readonly messageCodec?: MessageCodec<any>;
  /** Optional per-app statistics the runtime exposes (e.g. sequence_window's violations). */
  readonly counters?: () => Record<string, number>;
}
