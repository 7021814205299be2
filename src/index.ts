// The public API for application authors. An application module imports it as "wallaroo", which
// the binary answers with this very module (src/app/api-module.ts; `wallaroo types` prints its
// declarations), or default-exports a function that receives this module's namespace:
//
//   import type { WallarooApi } from "wallaroo";
//   export default (api: WallarooApi) => api.application("x").source(...)...toSink(...);
//
// Everything here is plain functions over plain data: no classes to `instanceof`, no shared state.

/** Starts a pipeline: `application(name).source(...)...toSink(...)` returns an `AppSpec`. */
export { application } from "./app/builder.ts";
/** Builder types: the app before its source, a pipeline of `M` messages, and step options. */
export type { AppBuilder, Pipeline, StepOptions, StatefulOptions } from "./app/builder.ts";
/** The `kind` tag every AppSpec carries ("wallaroo.app/v1"). */
export { APP_SPEC_KIND } from "./app/types.ts";
/** The AppSpec contract and the function types of each step. */
export type {
  AppSpec,
  Decoder,
  Encoder,
  FlatMapFn,
  KeyFn,
  KeyStage,
  MapFn,
  MapStage,
  MessageCodec,
  OutputWriter,
  SinkSpec,
  SourceSpec,
  StageSpec,
  StateCodec,
  StatefulFn,
  StatefulStage,
} from "./app/types.ts";

/** The bytes an encoder writes for one output, as the sink would: for an application's tests. */
export { encodeOutput } from "./runtime/output-writer.ts";
/** An application's pipeline run in-process on the worker's dataflow, for its tests. */
export { testPipeline } from "./testing/pipeline-harness.ts";
export type { ApplicationExport, HarnessWorker, PipelineHarness } from "./testing/pipeline-harness.ts";

/** The type of this module's namespace: what a default-exported `(api) => AppSpec` receives. */
export type WallarooApi = typeof import("./index.ts");

const FRAME_HEADER_BYTES = 4;
/** 2^53 − 1 split at 32 bits: the largest upper word of a u64 that is still a safe integer. */
const U64_HI_SAFE_MAX = 0x1fffff;
const textDecoder = new TextDecoder();
const textEncoder = new TextEncoder();

/** Reads an unsigned 32-bit big-endian integer at `off`; throws RangeError past the end. */
export function u32be(view: Uint8Array, off: number): number {
  if (!(off >= 0 && off + 4 <= view.length)) throw new RangeError(`u32be at offset ${off} is outside ${view.length} bytes`);
  return view[off]! * 0x1000000 + ((view[off + 1]! << 16) | (view[off + 2]! << 8) | view[off + 3]!);
}

/**
 * Reads an unsigned 64-bit big-endian integer at `off` as a number; throws RangeError past the
 * end or when the value exceeds Number.MAX_SAFE_INTEGER (2^53 − 1) and could not be exact.
 */
export function u64be(view: Uint8Array, off: number): number {
  if (!(off >= 0 && off + 8 <= view.length)) throw new RangeError(`u64be at offset ${off} is outside ${view.length} bytes`);
  const hi = u32be(view, off);
  if (hi > U64_HI_SAFE_MAX) throw new RangeError(`u64be at offset ${off} exceeds 2^53 - 1 and cannot be a number exactly`);
  return hi * 0x100000000 + u32be(view, off + 4);
}

/** Decodes UTF-8 bytes to a string (invalid sequences become U+FFFD); copies, so safe to keep. */
export function utf8Decode(bytes: Uint8Array): string {
  return textDecoder.decode(bytes);
}

/** Encodes a string as UTF-8 bytes. */
export function utf8Encode(str: string): Uint8Array {
  return textEncoder.encode(str);
}

/** Prefixes a payload (bytes, or a string as UTF-8) with its u32 BE length: one source frame. */
export function frame(payload: Uint8Array | string): Uint8Array {
  const body = typeof payload === "string" ? textEncoder.encode(payload) : payload;
  if (body.length > 0xffffffff) throw new RangeError(`payload of ${body.length} bytes does not fit a u32 length`);
  const out = new Uint8Array(FRAME_HEADER_BYTES + body.length);
  const n = body.length;
  out[0] = n >>> 24;
  out[1] = (n >>> 16) & 0xff;
  out[2] = (n >>> 8) & 0xff;
  out[3] = n & 0xff;
  out.set(body, FRAME_HEADER_BYTES);
  return out;
}
