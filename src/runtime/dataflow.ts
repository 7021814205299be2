// The worker's dataflow: runs an application's stages on one message, deciding at each stage
// where it runs. Sources and non-parallel stateless steps run on the initializer, parallel
// stateless steps wherever the message is, stateful steps on the worker holding the key's slot,
// and the sink on the worker that produced the output.
//
// Slot status on this worker (DESIGN §4):
//   OWNED     the state is here; messages are applied.
//   OUTGOING  the table now names another owner, but upstreams' markers have not all arrived:
//             messages that still arrive for it were routed under the old table and are applied.
//   INCOMING  the table names this worker but the state has not arrived: messages wait, in
//             arrival order, only for this slot.
//   NONE      another worker's slot.
import type { AppSpec, MapStage, MessageCodec, StatefulStage } from "../app/types.ts";
import { SLOT_COUNT, slotOf } from "../cluster/slots.ts";
import { MAX_KEY_BYTES, RECORD_FLAG, utf8Length } from "../codec/data.ts";
import { log } from "../log.ts";
import { KeyedState } from "./keyed-state.ts";
import type { Sink } from "./sink.ts";
import { serialize, deserialize } from "bun:jsc";

export const SLOT_STATUS = { none: 0, owned: 1, outgoing: 2, incoming: 3 } as const;

const jscMessageCodec: MessageCodec<unknown> = {
  encode: (m) => new Uint8Array(serialize(m)),
  decode: (b) => deserialize(b),
};

/** What the dataflow needs from the cluster around it. */
export interface Router {
  readonly selfId: number;
  readonly initializerId: number;
  readonly isInitializer: boolean;
  /** slot → owner id under the current table */
  readonly owners: Int32Array;
  /** Sends one record to a peer; returns false when the peer is gone (the record is dropped). */
  forward(peerId: number, stage: number, raw: boolean, slot: number, key: string, payload: Uint8Array, start: number, end: number): void;
}

interface Held {
  stage: number;
  key: string;
  msg: unknown;
}

export class Dataflow {
  readonly state: KeyedState;
  readonly status = new Uint8Array(SLOT_COUNT);
  private readonly held = new Map<number, Held[]>();
  private readonly stages: AppSpec["stages"];
  private readonly codec: MessageCodec<unknown>;
  private readonly decode: AppSpec["source"]["decode"];
  private readonly encode: AppSpec["sink"]["encode"];
  /** Reused payload arrays for source frames shorter than 64 bytes, one per length. */
  private readonly scratch: readonly Uint8Array[] = Array.from({ length: 64 }, (_, n) => new Uint8Array(n));
  heldCount = 0;
  processed = 0;
  decodeDrops = 0;
  misrouted = 0;
  errors = 0;

  constructor(
    private readonly app: AppSpec,
    private readonly router: Router,
    private readonly sink: Sink,
  ) {
    this.state = new KeyedState(app);
    this.stages = app.stages;
    this.codec = app.messageCodec ?? jscMessageCodec;
    this.decode = app.source.decode;
    this.encode = app.sink.encode;
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
      if (this.decodeDrops <= 10 || this.decodeDrops % 10000 === 0)
        log.error("decode_failed", `Unable to decode message at ${this.app.source.name} source: ${(err as Error).message} (${this.decodeDrops} so far)`);
      return;
    }
    if (msg === null || msg === undefined) {
      this.decodeDrops++;
      if (this.decodeDrops <= 10 || this.decodeDrops % 10000 === 0)
        log.warn("decode_dropped", `${this.app.source.name} source: decoder dropped a ${end - start}-byte frame (${this.decodeDrops} so far)`);
      return;
    }
    this.run(msg, 0, "", 0, view, false);
  }

  /** One record routed to this worker by a peer. */
  receive(stage: number, flags: number, slot: number, key: string, buf: Uint8Array, start: number, end: number): void {
    const view = buf.subarray(start, end);
    let msg: unknown;
    const raw = (flags & RECORD_FLAG.raw) !== 0;
    try {
      msg = raw ? this.decode(view) : this.codec.decode(view.slice());
    } catch (err) {
      this.errors++;
      log.error("record_undecodable", `A message routed from a peer could not be decoded: ${(err as Error).message}`);
      return;
    }
    if (msg === null || msg === undefined) return;
    this.run(msg, stage, key, slot, raw ? view : null, true);
  }

  /**
   * Runs stages from `from` on. `raw` is the source payload while the message is still exactly
   * what the decoder made of it (only keyBy stages so far), so a crossing can forward the frame
   * instead of serialising the message. `arrived` says the message was routed here for stage
   * `from`, so that stage runs here whatever the table says now.
   */
  private run(msg: unknown, from: number, key: string, slot: number, raw: Uint8Array | null, arrived: boolean): void {
    const stages = this.stages;
    const r = this.router;
    for (let i = from; i < stages.length; i++) {
      const st = stages[i]!;
      if (st.kind === "key") {
        key = st.fn(msg);
        if (typeof key !== "string") {
          this.fail(`keyBy "${st.name}" returned ${typeof key}, not a string`);
          return;
        }
        // Keys cross the data channel with a u16 length: refuse what cannot be encoded.
        if (key.length > MAX_KEY_BYTES / 3 && utf8Length(key) > MAX_KEY_BYTES) {
          this.fail(`keyBy "${st.name}" returned a key of ${utf8Length(key)} bytes; keys are limited to ${MAX_KEY_BYTES} bytes`);
          return;
        }
        slot = slotOf(key);
        continue;
      }
      if (st.kind === "map") {
        if (!st.parallel && !r.isInitializer && !(arrived && i === from)) {
          this.send(r.initializerId, i, key, slot, msg, raw);
          return;
        }
        let out: unknown;
        try {
          out = (st as MapStage).fn(msg);
        } catch (err) {
          this.fail(`step "${st.name}" threw: ${(err as Error).message}`);
          return;
        }
        if (out === null || out === undefined) return;
        if (st.multi) {
          for (const o of out as unknown[]) this.run(o, i + 1, key, slot, null, false);
          return;
        }
        msg = out;
        raw = null;
        continue;
      }
      // stateful
      const here = arrived && i === from;
      const status = this.status[slot]!;
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
      try {
        out = (st as StatefulStage).fn(msg, this.state.get(i, slot, key), key);
      } catch (err) {
        this.fail(`step "${st.name}" threw on key "${key}": ${(err as Error).message}`);
        return;
      }
      if (out === null || out === undefined) return;
      msg = out;
      raw = null;
      arrived = false;
    }
    this.emit(msg);
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
    q.push({ stage, key, msg });
    this.heldCount++;
  }

  /** The slot's state is complete here: run what waited for it, in arrival order. */
  release(slot: number): number {
    this.status[slot] = SLOT_STATUS.owned;
    const q = this.held.get(slot);
    if (!q) return 0;
    this.held.delete(slot);
    this.heldCount -= q.length;
    for (const h of q) this.run(h.msg, h.stage, h.key, slot, null, true);
    return q.length;
  }

  private fail(message: string): void {
    this.errors++;
    if (this.errors <= 20 || this.errors % 10000 === 0) log.error("step_failed", `${message} (message dropped; ${this.errors} errors so far)`);
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
