// An application's pipeline run in one process for its author's tests: the worker's own dataflow,
// keyed state, codecs and encoders, with the sockets replaced by function calls. It is the
// smallest cluster: the initializer (the source, every non-parallel step, and at first every
// slot) and one more worker, "w1", that a key's slot can move to and back with `moveKey`, its
// state serialised by its step's state codec on the way out and rebuilt from the bytes on the
// way in, as a grow or shrink moves it. Once a slot is on w1, its messages cross to w1 the way
// they cross between processes (the raw frame, or the message codec) and come back through the
// message codec to a non-parallel step.
import type { AppSpec, Encoder, StatefulStage } from "../app/types.ts";
import { validatedSpec } from "../app/validate.ts";
import { RECORD_FLAG } from "../codec/data.ts";
import { AppError } from "../errors.ts";
import type { WallarooApi } from "../index.ts";
import * as api from "../index.ts";
import { GrowBuffer } from "../net/out-buffer.ts";
import { Dataflow, type OutputSink } from "../runtime/dataflow.ts";
import { BufferWriter, encodeInto } from "../runtime/output-writer.ts";
import { SLOT_STATUS, type Router } from "../runtime/router.ts";
import { SLOT_COUNT, slotOf } from "../runtime/slot-hash.ts";

/** What an application module exports: the finished AppSpec, or a function of the API that builds it. */
export type ApplicationExport = AppSpec | ((api: WallarooApi) => AppSpec);

/** The names of the harness's two workers. */
export type HarnessWorker = "initializer" | "w1";
const WORKERS: readonly HarnessWorker[] = ["initializer", "w1"];

/** An application running in-process; see `testPipeline`. */
export interface PipelineHarness {
  /** The validated application. */
  readonly app: AppSpec;
  /**
   * Feeds payloads to the source in order, as `wallaroo send` frames would arrive, and returns the
   * bytes the sink wrote for each output they produced, in order. Throws, with the sentence a
   * worker would log, when a decoder, key function, step, encoder or codec throws (a worker drops
   * that message and goes on).
   */
  send(...payloads: ReadonlyArray<Uint8Array | string>): Uint8Array[];
  /** `send`, with each output decoded as UTF-8. */
  sendText(...payloads: ReadonlyArray<Uint8Array | string>): string[];
  /** Every output so far, in order. */
  readonly outputs: readonly Uint8Array[];
  /**
   * The state object of `key` at a stateful step (the only one, unless `step` names it): the live
   * object, as the step will see it next; undefined before the key's first message there.
   */
  state<S = unknown>(key: string, step?: string): S | undefined;
  /** Every key with state at a stateful step (the only one, unless `step` names it), sorted. */
  keys(step?: string): string[];
  /**
   * Moves the slot holding `key` to the other worker, as a grow or shrink would: the state of
   * every key in that slot, at every stateful step, is serialised with the step's state codec,
   * dropped, and deserialised on the other worker, where the slot's messages are processed from
   * then on. Returns the keys whose state moved (keys sharing the slot move with it).
   */
  moveKey(key: string): string[];
  /** The worker that holds the slot of `key` now. */
  workerOf(key: string): HarnessWorker;
}

/**
 * Runs an application in-process for tests: `testPipeline(app)` takes what the module exports
 * (an AppSpec, or `(api) => AppSpec`), checks it as a worker does at start-up, and returns a
 * harness to feed payloads to and read outputs and state from.
 */
export function testPipeline(app: ApplicationExport): PipelineHarness {
  let built: unknown = app;
  if (typeof app === "function") built = app(api);
  if (built instanceof Promise) {
    throw new AppError("the application's builder is async: build it first, testPipeline(await app(api)), and pass the AppSpec");
  }
  return new Harness(validatedSpec(built, "The pipeline given to testPipeline"));
}

class Harness implements PipelineHarness {
  readonly outputs: Uint8Array[] = [];
  private readonly owners = new Int32Array(SLOT_COUNT);
  private readonly workers: Dataflow[];
  private readonly errors: string[] = [];

  constructor(readonly app: AppSpec) {
    const out = new GrowBuffer(256);
    const writer = new BufferWriter(out);
    const outputs = this.outputs;
    const sink: OutputSink = {
      output: (encode: Encoder<unknown>, msg: unknown) => {
        out.len = 0;
        const failure = encodeInto(encode, msg, writer);
        if (failure === null) outputs.push(out.buf.slice(0, out.len));
        return failure;
      },
      get written() {
        return outputs.length;
      },
    };
    this.workers = WORKERS.map((_, id) => {
      const status = new Uint8Array(SLOT_COUNT).fill(id === 0 ? SLOT_STATUS.owned : SLOT_STATUS.none);
      const router: Router = {
        selfId: id,
        initializerId: 0,
        isInitializer: id === 0,
        owners: this.owners,
        status,
        forward: (peer, stage, raw, slot, key, payload, start, end) =>
          this.workers[peer]!.receive(stage, raw ? RECORD_FLAG.raw : 0, slot, key, payload, start, end),
      };
      const df = new Dataflow(app, router, sink);
      df.onDrop = (message, failed) => {
        if (failed) this.errors.push(message);
      };
      return df;
    });
  }

  send(...payloads: ReadonlyArray<Uint8Array | string>): Uint8Array[] {
    const first = this.outputs.length;
    for (const p of payloads) {
      const bytes = typeof p === "string" ? api.utf8Encode(p) : p;
      this.workers[0]!.ingest(bytes, 0, bytes.length);
      if (this.errors.length > 0) throw new AppError(this.errors.splice(0).join("; "));
    }
    return this.outputs.slice(first);
  }

  sendText(...payloads: ReadonlyArray<Uint8Array | string>): string[] {
    return this.send(...payloads).map((b) => api.utf8Decode(b));
  }

  state<S = unknown>(key: string, step?: string): S | undefined {
    const stage = this.statefulStage(step);
    const slot = slotOf(key);
    return this.workers[this.owners[slot]!]!.state.peek(stage, slot, key) as S | undefined;
  }

  keys(step?: string): string[] {
    const name = this.app.stages[this.statefulStage(step)]!.name;
    return this.workers.flatMap((w) => w.state.keys()[name] ?? []).sort();
  }

  moveKey(key: string): string[] {
    const slot = slotOf(key);
    const from = this.owners[slot]!;
    const to = 1 - from;
    let entries;
    try {
      entries = this.workers[from]!.state.takeSlot(slot);
    } catch (e) {
      throw new AppError(`the state of the slot of key "${key}" cannot be serialised to move: ${(e as Error).message}`);
    }
    this.owners[slot] = to;
    this.workers[from]!.status[slot] = SLOT_STATUS.none;
    this.workers[to]!.status[slot] = SLOT_STATUS.owned;
    for (const e of entries) {
      try {
        this.workers[to]!.state.install(e.stage, slot, e.key, e.state);
      } catch (err) {
        const step = this.app.stages[e.stage]!.name;
        throw new AppError(`the state of key "${e.key}" at step "${step}" cannot be deserialised after moving: ${(err as Error).message}`);
      }
    }
    return [...new Set(entries.map((e) => e.key))].sort();
  }

  workerOf(key: string): HarnessWorker {
    return WORKERS[this.owners[slotOf(key)]!]!;
  }

  /** The index of the stateful stage named `step`, or of the only one. */
  private statefulStage(step: string | undefined): number {
    const stateful = this.app.stages.flatMap((s, i) => (s.kind === "stateful" ? [{ s: s as StatefulStage, i }] : []));
    if (step !== undefined) {
      const found = stateful.find((x) => x.s.name === step);
      if (!found) throw new AppError(`"${step}" is not a stateful step of application "${this.app.name}"; its stateful steps: ${names(stateful)}`);
      return found.i;
    }
    if (stateful.length === 1) return stateful[0]!.i;
    if (stateful.length === 0) throw new AppError(`application "${this.app.name}" has no stateful step, so no state per key`);
    throw new AppError(`application "${this.app.name}" has several stateful steps: name one (${names(stateful)})`);
  }
}

function names(stages: ReadonlyArray<{ s: StatefulStage }>): string {
  return stages.length === 0 ? "none" : stages.map((x) => `"${x.s.name}"`).join(", ");
}
