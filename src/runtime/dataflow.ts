// The worker's dataflow: runs an application's stages on one message, deciding at each stage
// where it runs. Sources and non-parallel stateless steps run on the initializer, parallel
// stateless steps wherever the message is, stateful steps on the worker holding the key's slot,
// and the sink on the worker that produced the output.
// Which slots are where is the Router's (src/runtime/router.ts).
import type { AppSpec, Encoder, KeyStage, MapStage, MessageCodec, StatefulStage } from "../app/types.ts";
import { MAX_KEY_BYTES, RECORD_FLAG, utf8Length } from "../codec/data.ts";
import { assert } from "../assert.ts";
import { log } from "../log.ts";
import { KeyedState } from "./keyed-state.ts";
import { SLOT_STATUS, type Router } from "./router.ts";
import { slotOf } from "./slot-hash.ts";
import { defaultMessageCodec } from "../app/validate.ts";
import { systemClock, type Clock } from "../clock.ts";
import { Histogram } from "../metrics/histogram.ts";
import { OutputLatency } from "./output-latency.ts";

/** Where outputs go: the worker's Sink, or an in-process capture (src/testing/pipeline-harness.ts). */
export interface OutputSink {
  /** Encodes one output; returns why it was dropped, or null. */
  output(encode: Encoder<unknown>, msg: unknown): string | null;
  /** Outputs written so far (the latency histogram counts them). */
  readonly written: number;
}

/** One stage and everything after it, for a message at that stage (see `Dataflow.compile`). */
type StageRunner = (msg: unknown, key: string, slot: number, raw: Uint8Array | null, here: boolean, timed: boolean) => void;

interface Held {
  stage: number;
  key: string;
  msg: unknown;
  /** When its input was ingested (OutputLatency.at). */
  at: number;
}

export class Dataflow {
  readonly state: KeyedState;
  private readonly held = new Map<number, Held[]>();
  private readonly stages: AppSpec["stages"];
  private readonly codec: MessageCodec<unknown>;
  private readonly decode: AppSpec["source"]["decode"];
  private readonly encode: AppSpec["sink"]["encode"];
  /** entry[i] runs the message from stage i on; entry[stages.length] emits it. */
  private readonly entry: StageRunner[];
  private readonly first: StageRunner;
  /** A local recovery's replay: the stages up to the stateful one, which forwards only `replayTo`'s slots. */
  private readonly replayFirst: StageRunner;
  private replayTo = -1;
  /** Messages a local replay forwarded to the member it restores. */
  replayForwarded = 0;
  /** Reused payload arrays for source frames shorter than 64 bytes, one per length. */
  private readonly scratch: readonly Uint8Array[] = Array.from({ length: 64 }, (_, n) => new Uint8Array(n));
  heldCount = 0;
  processed = 0;
  decodeDrops = 0;
  misrouted = 0;
  errors = 0;
  /**
   * Per stage index, for steps: messages the step returned nothing for, or threw on. Counted on
   * those paths only: a count of every run would cost an increment per message and step
   * (measured: several per cent of the alphabet job's throughput on one worker).
   */
  readonly stepFiltered: Float64Array;
  readonly stepFailed: Float64Array;
  /**
   * Per stage index, for steps: the time of one run, sampled: the first message of each chunk an
   * input reads (`chunkStart`) has every step it runs here timed, so the clock is read a few
   * times per chunk, never per message.
   */
  readonly stepSeconds: readonly (Histogram | undefined)[];
  private sampleNext = false;
  /** Output latency: the ingest time of what runs now, and the histogram of outputs' ages. */
  readonly latency: OutputLatency;
  /**
   * Told of each message dropped, instead of the log: `failed` when application code failed (a
   * decoder, key function, step, encoder or codec threw), not when a decoder returned nothing.
   * The test harness turns failures into exceptions.
   */
  onDrop: ((message: string, failed: boolean) => void) | undefined = undefined;

  constructor(
    private readonly app: AppSpec,
    private readonly router: Router,
    private readonly sink: OutputSink,
    private readonly clock: Clock = systemClock,
  ) {
    this.state = new KeyedState(app);
    this.stages = app.stages;
    this.codec = app.messageCodec ?? defaultMessageCodec;
    this.decode = app.source.decode;
    this.encode = app.sink.encode;
    const n = app.stages.length;
    this.stepFiltered = new Float64Array(n);
    this.stepFailed = new Float64Array(n);
    this.stepSeconds = app.stages.map((st) => (st.kind === "key" ? undefined : new Histogram()));
    this.latency = new OutputLatency(clock, () => sink.written);
    this.entry = this.compile();
    this.first = this.entry[0]!;
    this.replayFirst = this.compileReplay();
  }

  /**
   * An input starts handling a chunk: what it produces was ingested at `ingestMs` (a source's
   * chunk; a data link's batches say it with their TIME frames), and its next message is sampled.
   */
  chunkStart(ingestMs?: number): void {
    if (ingestMs !== undefined) this.latency.from(ingestMs);
    this.sampleNext = true;
  }

  /** The chunk is handled: its outputs are counted against their ingest time. */
  chunkEnd(): void {
    this.latency.settle();
  }

  private takeSample(): true {
    this.sampleNext = false;
    return true;
  }

  private timed(stage: number, t0: number): void {
    this.stepSeconds[stage]!.observe((this.clock.now() - t0) / 1000);
  }

  /** slot → SLOT_STATUS on this worker (the router's, read only). */
  get status(): Uint8Array {
    return this.router.status;
  }

  /**
   * One frame from a source connection. A decoder may use its payload only during the call, so
   * a small payload is copied into a reused array of its exact length: cheaper than the view
   * object `subarray` allocates for every message.
   */
  ingest(buf: Uint8Array, start: number, end: number): void {
    const n = end - start;
    let view: Uint8Array;
    if (n < this.scratch.length) {
      view = this.scratch[n]!;
      for (let i = 0; i < n; i++) view[i] = buf[start + i]!;
    } else view = buf.subarray(start, end);
    let msg: unknown;
    try {
      msg = this.decode(view);
    } catch (err) {
      this.decodeDrops++;
      const why = `Unable to decode message at ${this.app.source.name} source: ${(err as Error).message}`;
      if (this.onDrop) return this.onDrop(why, true);
      if (this.decodeDrops <= 10 || this.decodeDrops % 10000 === 0) log.error("decode_failed", `${why} (${this.decodeDrops} so far)`);
      return;
    }
    if (msg === null || msg === undefined) {
      this.decodeDrops++;
      const why = `${this.app.source.name} source: decoder dropped a ${end - start}-byte frame`;
      if (this.onDrop) return this.onDrop(why, false);
      if (this.decodeDrops <= 10 || this.decodeDrops % 10000 === 0) log.warn("decode_dropped", `${why} (${this.decodeDrops} so far)`);
      return;
    }
    this.first(msg, "", 0, view, false, this.sampleNext && this.takeSample());
  }

  /**
   * One frame of the input log, replayed for member `owner` alone (a local recovery, in a
   * pipeline whose one stateful step is the only crossing): it runs up to that step and is
   * forwarded if `owner` holds its slot; nothing else runs, nothing is emitted here. A frame the
   * decoder refused was counted and said when it was first ingested.
   */
  replayFor(owner: number, buf: Uint8Array, start: number, end: number): void {
    const view = buf.subarray(start, end);
    let msg: unknown;
    try {
      msg = this.decode(view);
    } catch {
      return;
    }
    if (msg === null || msg === undefined) return;
    this.replayTo = owner;
    this.replayFirst(msg, "", 0, view, false, false);
  }

  /** One record routed to this worker by a peer. */
  receive(stage: number, flags: number, slot: number, key: string, buf: Uint8Array, start: number, end: number): void {
    if (stage >= this.stages.length) {
      this.fail(`a peer routed a message to stage ${stage}; this application has ${this.stages.length} stages`);
      return;
    }
    const view = buf.subarray(start, end);
    let msg: unknown;
    const raw = (flags & RECORD_FLAG.raw) !== 0;
    try {
      msg = raw ? this.decode(view) : this.codec.decode(view.slice());
    } catch (err) {
      this.errors++;
      const why = `A message routed from a peer could not be decoded: ${(err as Error).message}`;
      if (this.onDrop) return this.onDrop(why, true);
      log.error("record_undecodable", why);
      return;
    }
    if (msg === null || msg === undefined) return;
    this.run(msg, stage, key, slot, raw ? view : null, true, this.sampleNext && this.takeSample());
  }

  /**
   * Runs stages from `from` on. `raw` is the source payload while the message is still exactly
   * what the decoder made of it (only keyBy stages so far), so a crossing can forward the frame
   * instead of serialising the message. `here` says the message was routed here for stage
   * `from`, so that stage runs here whatever the table says now.
   */
  private run(msg: unknown, from: number, key: string, slot: number, raw: Uint8Array | null, here: boolean, timed = false): void {
    this.entry[from]!(msg, key, slot, raw, here, timed);
  }

  /**
   * The stages as a chain of closures, built once: each calls the next directly, so every call
   * site sees one function (the JIT inlines the chain) and no stage kind is tested per message.
   * An interpreting loop over the stages cost about a third of the alphabet job's time.
   */
  private compile(): StageRunner[] {
    const n = this.stages.length;
    const runners: StageRunner[] = new Array(n + 1);
    runners[n] = (msg) => this.emit(msg);
    for (let i = n - 1; i >= 0; i--) {
      const st = this.stages[i]!;
      const next = runners[i + 1]!;
      if (st.kind === "key") runners[i] = this.keyStage(st, next);
      else if (st.kind === "map") runners[i] = this.mapStage(i, st, next);
      else runners[i] = this.statefulStage(i, st, next);
    }
    return runners;
  }

  /**
   * The chain `replayFor` runs: the stages before the first stateful step as usual, then a
   * forward to `replayTo` of the messages in its slots. Without a stateful step every stage runs
   * on the source's worker, so no other member has anything to replay.
   */
  private compileReplay(): StageRunner {
    const at = this.stages.findIndex((st) => st.kind === "stateful");
    if (at < 0) return () => {};
    const owners = this.router.owners;
    let next: StageRunner = (msg, key, slot, raw) => {
      if (owners[slot] !== this.replayTo) return;
      this.replayForwarded++;
      this.send(this.replayTo, at, key, slot, msg, raw);
    };
    for (let i = at - 1; i >= 0; i--) {
      const st = this.stages[i] as KeyStage | MapStage;
      next = st.kind === "key" ? this.keyStage(st, next) : this.mapStage(i, st, next);
    }
    return next;
  }

  private keyStage(st: KeyStage, next: StageRunner): StageRunner {
    const fn = st.fn;
    return (msg, _key, _slot, raw, _here, timed) => {
      const key = fn(msg);
      if (typeof key !== "string") {
        this.fail(`keyBy "${st.name}" returned ${typeof key}, not a string`);
        return;
      }
      // Keys cross the data channel with a u16 length: refuse what cannot be encoded.
      if (key.length > MAX_KEY_BYTES / 3 && utf8Length(key) > MAX_KEY_BYTES) {
        this.fail(`keyBy "${st.name}" returned a key of ${utf8Length(key)} bytes; keys are limited to ${MAX_KEY_BYTES} bytes`);
        return;
      }
      next(msg, key, slotOf(key), raw, false, timed);
    };
  }

  private mapStage(i: number, st: MapStage, next: StageRunner): StageRunner {
    const r = this.router;
    const fn = st.fn as (m: unknown) => unknown;
    const initializerOnly = !st.parallel;
    const multi = st.multi;
    return (msg, key, slot, raw, here, timed) => {
      if (initializerOnly && !here && !r.isInitializer) {
        this.send(r.initializerId, i, key, slot, msg, raw);
        return;
      }
      let out: unknown;
      const t0 = timed ? this.clock.now() : -1;
      try {
        out = fn(msg);
      } catch (err) {
        this.stepFailed[i]!++;
        this.fail(`step "${st.name}" threw: ${(err as Error).message}`);
        return;
      }
      if (t0 >= 0) this.timed(i, t0);
      if (out === null || out === undefined) {
        this.stepFiltered[i]!++;
        return;
      }
      if (multi) {
        for (const o of out as unknown[]) next(o, key, slot, null, false, false);
        return;
      }
      next(out, key, slot, null, false, timed);
    };
  }

  private statefulStage(i: number, st: StatefulStage, next: StageRunner): StageRunner {
    const r = this.router;
    const stateOf = this.state.getter(i);
    const fn = st.fn;
    return (msg, key, slot, raw, here, timed) => {
      const status = r.status[slot]!;
      if (!here) {
        const owner = r.owners[slot]!;
        if (owner !== r.selfId) {
          this.send(owner, i, key, slot, msg, raw);
          return;
        }
      }
      if (status === SLOT_STATUS.incoming) {
        this.hold(slot, i, key, msg);
        return;
      }
      if (status === SLOT_STATUS.none) {
        // Routed here by a peer whose table disagrees with ours: a protocol violation. Keep the
        // message (send it where our table says) and make it loud.
        this.misrouted++;
        log.error("misrouted", `message for slot ${slot} (key "${key}") arrived at a worker that does not hold the slot; forwarding to its owner`);
        const owner = r.owners[slot]!;
        if (owner !== r.selfId) this.send(owner, i, key, slot, msg, raw);
        return;
      }
      let out: unknown;
      const t0 = timed ? this.clock.now() : -1;
      try {
        out = fn(msg, stateOf(slot, key), key);
      } catch (err) {
        this.stepFailed[i]!++;
        this.fail(`step "${st.name}" threw on key "${key}": ${(err as Error).message}`);
        return;
      }
      if (t0 >= 0) this.timed(i, t0);
      if (out === null || out === undefined) {
        this.stepFiltered[i]!++;
        return;
      }
      next(out, key, slot, null, false, timed);
    };
  }

  private emit(msg: unknown): void {
    this.processed++;
    const failure = this.sink.output(this.encode, msg);
    if (failure) this.fail(failure);
  }

  private send(peer: number, stage: number, key: string, slot: number, msg: unknown, raw: Uint8Array | null): void {
    if (raw) {
      this.router.forward(peer, stage, true, slot, key, raw, 0, raw.length);
      return;
    }
    let bytes: Uint8Array;
    try {
      bytes = this.codec.encode(msg);
    } catch (err) {
      this.fail(`message for stage ${stage} cannot cross to another worker: ${(err as Error).message}`);
      return;
    }
    this.router.forward(peer, stage, false, slot, key, bytes, 0, bytes.length);
  }

  private hold(slot: number, stage: number, key: string, msg: unknown): void {
    let q = this.held.get(slot);
    if (!q) {
      q = [];
      this.held.set(slot, q);
    }
    q.push({ stage, key, msg, at: this.latency.at });
    this.heldCount++;
  }

  /** The slot's state is complete here (its status is OWNED again): run what waited for it, in arrival order. */
  release(slot: number): number {
    assert(this.router.status[slot] === SLOT_STATUS.owned, `slot ${slot} released before it is owned`);
    const q = this.held.get(slot);
    if (!q) return 0;
    this.held.delete(slot);
    this.heldCount -= q.length;
    // Each held message's outputs are as old as its input, not as the state that released it.
    const lat = this.latency;
    const at = lat.at;
    for (const h of q) {
      lat.from(h.at);
      this.run(h.msg, h.stage, h.key, slot, null, true);
    }
    lat.from(at);
    return q.length;
  }

  /** A rollback: messages waiting for slots in transit were in flight, and are replayed from the input. */
  discardHeld(): void {
    this.held.clear();
    this.heldCount = 0;
  }

  private fail(message: string): void {
    this.errors++;
    if (this.onDrop) return this.onDrop(message, true);
    if (this.errors <= 20 || this.errors % 10000 === 0) log.error("step_failed", `${message} (message dropped; ${this.errors} errors so far)`);
  }

  /** The application's own counters() (empty without the hook, or when it throws). */
  appCounters(): Record<string, number> {
    try {
      return this.app.counters?.() ?? {};
    } catch (err) {
      log.warn("app_counters_failed", `The application's counters() threw: ${(err as Error).message}`);
      return {};
    }
  }

  counters(): Record<string, number> {
    return {
      processed: this.processed,
      decode_drops: this.decodeDrops,
      misrouted: this.misrouted,
      errors: this.errors,
      held: this.heldCount,
      ...(this.app.counters?.() ?? {}),
    };
  }
}
