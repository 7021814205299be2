// Keyed state of this worker, grouped by slot so a slot moves as a unit: one Map per
// (stateful stage, slot), one state object per key, created from the stage's init() on first use.
import type { AppSpec, StateCodec, StatefulStage } from "../app/types.ts";
import { SLOT_COUNT } from "./slot-hash.ts";
import { beginSlotImage, decodeSlotImage, endSlotImage } from "../codec/slot-image.ts";
import { beginEntry, endEntry, unpackEntries } from "../codec/data.ts";
import { ByteBuilder, type ByteSink } from "../codec/bytes.ts";
import { decodeValueAt, encodeValueInto } from "../codec/value.ts";
import { defaultStateCodec } from "../app/validate.ts";

export interface ExportedEntry {
  stage: number;
  key: string;
  state: Uint8Array;
}

/** A slot's keys as packed entries (src/codec/data.ts: STATE entries back to back). */
export interface PackedSlot {
  count: number;
  bytes: Uint8Array;
}

export class KeyedState {
  /** maps[stageIndex][slot] */
  private readonly maps: Array<Array<Map<string, unknown> | undefined>> = [];
  private readonly codecs: Array<StateCodec<unknown> | undefined> = [];
  private readonly stageNames: string[] = [];
  /** `getter(stage)` made once per stage, for `get`. */
  private readonly getters: Array<((slot: number, key: string) => unknown) | undefined> = [];
  readonly statefulStages: number[] = [];
  /**
   * slot → 1 when its state may have changed since the last checkpoint image (any read through
   * `get` counts: a step mutates the object it is given). One byte store per message.
   */
  private readonly dirty = new Uint8Array(SLOT_COUNT);

  constructor(private readonly app: AppSpec) {
    app.stages.forEach((st, i) => {
      if (st.kind === "stateful") {
        this.maps[i] = new Array(SLOT_COUNT);
        this.codecs[i] = (st as StatefulStage).stateCodec ?? defaultStateCodec;
        this.statefulStages.push(i);
      }
      this.stageNames[i] = st.name;
    });
  }

  /**
   * `get` for one stage, as a function closed over that stage's slot table (never replaced: slots
   * are emptied in place), for the dataflow's per-message path.
   */
  getter(stage: number): (slot: number, key: string) => unknown {
    const bySlot = this.maps[stage];
    if (!bySlot) throw new Error(`stage ${stage} is not stateful`);
    const init = (this.app.stages[stage] as StatefulStage).init;
    const dirty = this.dirty;
    return (slot, key) => {
      dirty[slot] = 1;
      let m = bySlot[slot];
      if (m === undefined) {
        m = new Map();
        bySlot[slot] = m;
      }
      let s = m.get(key);
      if (s === undefined) {
        s = init();
        m.set(key, s);
      }
      return s;
    };
  }

  /** The state of `key` at `stage`, created on first use. */
  get(stage: number, slot: number, key: string): unknown {
    let g = this.getters[stage];
    if (!g) this.getters[stage] = g = this.getter(stage);
    return g(slot, key);
  }

  /** The state of `key` at `stage` if it has one here; nothing is created or marked changed. */
  peek(stage: number, slot: number, key: string): unknown {
    return this.maps[stage]?.[slot]?.get(key);
  }

  /** Serialises and removes every key of `slot`, across all stateful stages. */
  takeSlot(slot: number): ExportedEntry[] {
    const p = this.takePacked(slot);
    return unpackEntries(p.bytes, p.count);
  }

  /** `takeSlot` as packed entries: what migration sends, without an object or array per key. */
  takePacked(slot: number): PackedSlot {
    const o = new ByteBuilder(4096);
    const count = this.packSlot(slot, o);
    this.forget(slot);
    return { count, bytes: o.buf.subarray(0, o.len) };
  }

  private forget(slot: number): void {
    for (const stage of this.statefulStages) this.maps[stage]![slot] = undefined;
  }

  /**
   * Appends every key of `slot` to `o` as packed entries; returns how many. The default codec
   * writes each state in place; an application's codec returns bytes that are copied in.
   */
  private packSlot(slot: number, o: ByteSink): number {
    let n = 0;
    for (const stage of this.statefulStages) {
      const m = this.maps[stage]![slot];
      if (!m) continue;
      const codec = this.codecs[stage]!;
      const inPlace = codec === defaultStateCodec;
      for (const [key, st] of m) {
        const at = beginEntry(o, stage, key);
        if (inPlace) encodeValueInto(o, st);
        else {
          const b = codec.serialize(st);
          o.ensure(b.length);
          o.buf.set(b, o.len);
          o.len += b.length;
        }
        endEntry(o, at);
        n++;
      }
    }
    return n;
  }

  install(stage: number, slot: number, key: string, bytes: Uint8Array): void {
    this.installAt(stage, slot, key, bytes, 0, bytes.length);
  }

  /** Installs the state in `buf[start…end)` (a STATE frame's entry); only an application's codec gets a copy. */
  installAt(stage: number, slot: number, key: string, buf: Uint8Array, start: number, end: number): void {
    this.dirty[slot] = 1;
    const codec = this.codecs[stage];
    if (!codec) throw new Error(`migrated state names stage ${stage}, which is not stateful in this application`);
    const state = codec === defaultStateCodec ? decodeValueAt(buf, start, end) : codec.deserialize(buf.slice(start, end));
    const bySlot = this.maps[stage]!;
    let m = bySlot[slot];
    if (m === undefined) {
      m = new Map();
      bySlot[slot] = m;
    }
    m.set(key, state);
  }

  /** The slot must be written at the next checkpoint (it just became this worker's). */
  touch(slot: number): void {
    this.dirty[slot] = 1;
  }

  /**
   * Checkpoint images of the slots `owned` says are this worker's and that changed since the last
   * call; every dirty mark is cleared (a slot that left is written by its new owner).
   */
  dirtyImages(owned: (slot: number) => boolean, from = 0, to = SLOT_COUNT): Array<{ slot: number; image: Uint8Array }> {
    const out: Array<{ slot: number; image: Uint8Array }> = [];
    for (let slot = from; slot < to; slot++) {
      if (this.dirty[slot] === 0) continue;
      this.dirty[slot] = 0;
      if (!owned(slot)) continue;
      const o = beginSlotImage();
      out.push({ slot, image: endSlotImage(o, this.packSlot(slot, o)) });
    }
    return out;
  }

  /**
   * A rollback: forgets every key, then installs the images of the slots `owned` says are this
   * worker's. Nothing is dirty afterwards (the state is what the checkpoint holds). Returns the
   * keys installed; throws on an image that does not decode (a damaged store).
   */
  restore(images: ReadonlyMap<number, Uint8Array>, owned: (slot: number) => boolean): number {
    this.clear();
    return this.installImages(images, owned);
  }

  /** An empty state of the same application: where a rollback's images are installed ahead of it. */
  emptyLike(): KeyedState {
    return new KeyedState(this.app);
  }

  /**
   * Forgets every key and takes every slot `from` holds instead (`from` must be this state's
   * `emptyLike`, and is not used again): a rollback whose images were installed ahead of time
   * takes them in one step. Nothing is dirty afterwards. Returns the keys taken.
   */
  adopt(from: KeyedState): number {
    if (from.app !== this.app) throw new Error("adopting the state of another application");
    this.clear();
    let keys = 0;
    for (const stage of this.statefulStages) {
      // Copied into this state's own slot table: the getters are closed over it.
      const mine = this.maps[stage]!;
      const theirs = from.maps[stage]!;
      for (let slot = 0; slot < SLOT_COUNT; slot++) {
        const m = theirs[slot];
        mine[slot] = m;
        if (m) keys += m.size;
      }
    }
    return keys;
  }

  /** Forgets every key (a rollback starts from nothing but its checkpoint). */
  clear(): void {
    for (const stage of this.statefulStages) this.maps[stage]!.fill(undefined);
    this.dirty.fill(0);
  }

  /** Installs checkpoint images of the slots `owned` says are this worker's; returns the keys. They are not dirty (the store holds them). */
  installImages(images: Iterable<readonly [number, Uint8Array]>, owned: (slot: number) => boolean): number {
    let keys = 0;
    for (const [slot, image] of images) {
      if (!owned(slot)) continue;
      const d = decodeSlotImage(image);
      if (!d.ok) throw new Error(`the checkpoint image of slot ${slot} is damaged: ${d.reason}`);
      for (const e of d.entries) this.install(e.stage, slot, e.key, e.state);
      this.dirty[slot] = 0;
      keys += d.entries.length;
    }
    return keys;
  }

  // Records by stage name are built with Object.fromEntries: a stage may be named "__proto__".

  /** Stage name → keys held here, for the state-entity query. */
  keys(): Record<string, string[]> {
    return Object.fromEntries(
      this.statefulStages.map((stage) => {
        const keys: string[] = [];
        for (const m of this.maps[stage]!) if (m) for (const k of m.keys()) keys.push(k);
        return [this.stageNames[stage]!, keys];
      }),
    );
  }

  counts(): Record<string, number> {
    return Object.fromEntries(
      this.statefulStages.map((stage) => {
        let n = 0;
        for (const m of this.maps[stage]!) if (m) n += m.size;
        return [this.stageNames[stage]!, n];
      }),
    );
  }

  /** Stage name → slot → keys, for those of `slots` that hold keys of that stage (the cluster-wide count). */
  slotCounts(slots: readonly number[]): Record<string, Record<string, number>> {
    return Object.fromEntries(
      this.statefulStages.map((stage) => {
        const bySlot = this.maps[stage]!;
        const held = slots.filter((s) => (bySlot[s]?.size ?? 0) > 0).map((s) => [String(s), bySlot[s]!.size] as const);
        return [this.stageNames[stage]!, Object.fromEntries(held)];
      }),
    );
  }

  /** Keys held here, across stages. */
  totalKeys(): number {
    let n = 0;
    for (const stage of this.statefulStages) for (const m of this.maps[stage]!) if (m) n += m.size;
    return n;
  }

  /** Keys held in `slot`, across stages (0 for a slot this worker never saw). */
  slotKeyCount(slot: number): number {
    let n = 0;
    for (const stage of this.statefulStages) n += this.maps[stage]![slot]?.size ?? 0;
    return n;
  }
}
