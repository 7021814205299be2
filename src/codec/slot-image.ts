// Slot image: the keyed state one worker holds for one slot at a checkpoint, as the checkpoint
// store keeps it on disk (src/resilience/checkpoint-store.ts).
//
//   image   = count:u32be entry{count}
//   entry   = stage:u8 keyLen:u16be key:utf8 stateLen:u32be state
//
// An entry is laid out as a STATE frame's entry (src/codec/data.ts), so a recovered slot and a
// migrated one are installed alike. The image has no header of its own: the store says which slot
// and checkpoint it belongs to. It is the format of files that outlive the process, so it changes
// only together with the store's schema version.
import { MAX_KEY_BYTES, readU16, readUtf8, type StateEntry, stateEntryBytes, utf8Length, writeU16, writeUtf8 } from "./data.ts";
import { readU32, writeU32 } from "./frame.ts";
import { assert } from "../assert.ts";

/** The fewest bytes an entry takes (empty key, empty state): a bound on `count` before any read. */
const MIN_ENTRY_BYTES = 1 + 2 + 0 + 4 + 0;
const MAX_STATE_BYTES = 0xffffffff;

export const SLOT_IMAGE_ERROR = {
  short: "image shorter than its count",
  count: "count claims more entries than the image has bytes for",
  truncated: "image ends inside an entry",
  trailing: "bytes after the last entry",
  utf8: "key is not valid UTF-8",
} as const;
export type SlotImageError = (typeof SLOT_IMAGE_ERROR)[keyof typeof SLOT_IMAGE_ERROR];

export type DecodedSlotImage = { ok: true; entries: StateEntry[] } | { ok: false; reason: SlotImageError };

export function encodeSlotImage(entries: readonly StateEntry[]): Uint8Array {
  let size = 4;
  for (const e of entries) size += stateEntryBytes(e);
  const out = new Uint8Array(size);
  writeU32(out, 0, entries.length);
  let p = 4;
  for (const e of entries) {
    const kb = utf8Length(e.key);
    // The test comes first so that no message is built for an entry that fits.
    if (!(e.stage >>> 0 === e.stage && e.stage <= 0xff && kb <= MAX_KEY_BYTES && e.state.length <= MAX_STATE_BYTES)) {
      assert(false, `an entry of stage ${e.stage}, a ${kb}-byte key and a ${e.state.length}-byte state fits the grammar`);
    }
    out[p] = e.stage;
    writeU16(out, p + 1, kb);
    p = writeUtf8(out, p + 3, e.key);
    writeU32(out, p, e.state.length);
    out.set(e.state, p + 4);
    p += 4 + e.state.length;
  }
  assert(p === size, `slot image written to ${p} of ${size} bytes`);
  return out;
}

/**
 * Reads an image; never throws. States are views into `bytes` (no copy: the caller deserialises
 * them at once), so `bytes` must not be reused while they are needed.
 */
export function decodeSlotImage(bytes: Uint8Array): DecodedSlotImage {
  const end = bytes.length;
  if (end < 4) return { ok: false, reason: SLOT_IMAGE_ERROR.short };
  const count = readU32(bytes, 0);
  // Checked before the loop so a corrupt count costs nothing, however large it claims to be.
  if (count > (end - 4) / MIN_ENTRY_BYTES) return { ok: false, reason: SLOT_IMAGE_ERROR.count };
  const entries: StateEntry[] = [];
  let p = 4;
  for (let i = 0; i < count; i++) {
    if (end - p < 3) return { ok: false, reason: SLOT_IMAGE_ERROR.truncated };
    const stage = bytes[p]!;
    const kl = readU16(bytes, p + 1);
    const ks = p + 3;
    if (end - ks < kl + 4) return { ok: false, reason: SLOT_IMAGE_ERROR.truncated };
    let key: string;
    try {
      key = readUtf8(bytes, ks, ks + kl);
    } catch {
      return { ok: false, reason: SLOT_IMAGE_ERROR.utf8 };
    }
    const sl = readU32(bytes, ks + kl);
    const ss = ks + kl + 4;
    if (end - ss < sl) return { ok: false, reason: SLOT_IMAGE_ERROR.truncated };
    entries.push({ stage, key, state: bytes.subarray(ss, ss + sl) });
    p = ss + sl;
  }
  if (p !== end) return { ok: false, reason: SLOT_IMAGE_ERROR.trailing };
  return { ok: true, entries };
}
