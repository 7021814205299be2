// Slot image: the keyed state one worker holds for one slot at a checkpoint, as the checkpoint
// store keeps it on disk (src/resilience/checkpoint-store.ts).
//
//   image   = count:u32be entry{count}
//   entry   = stage:u8 keyLen:u16be key:utf8 stateLen:u32be state
//
// An entry is laid out as a STATE frame's entry (src/codec/data.ts), so a recovered slot and a
// migrated one are installed alike. The image has no header of its own: the store says which slot
// and checkpoint it belongs to. It is the format of files that outlive the process, so it changes
// only together with the store's schema version. A state's bytes are its codec's: the default
// codec (src/codec/value.ts) reads both its own form and the bun:jsc form images held before it,
// so stores written before it are read as they are (a binary older than it cannot read newer
// images: it fails on them as on a damaged store).
import { packEntry, readU16, readUtf8, type StateEntry } from "./data.ts";
import { readU32, writeU32 } from "./frame.ts";
import { ByteBuilder } from "./bytes.ts";

/** The fewest bytes an entry takes (empty key, empty state): a bound on `count` before any read. */
const MIN_ENTRY_BYTES = 1 + 2 + 0 + 4 + 0;

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
  const o = beginSlotImage();
  for (const e of entries) packEntry(o, e);
  return endSlotImage(o, entries.length);
}

/** An image built in place: entries are packed after the count, which `endSlotImage` fills in. */
export function beginSlotImage(): ByteBuilder {
  const o = new ByteBuilder(1024);
  o.len = 4;
  return o;
}

/** The image of `count` entries packed into `o` since `beginSlotImage`, at its exact size. */
export function endSlotImage(o: ByteBuilder, count: number): Uint8Array {
  writeU32(o.buf, 0, count);
  return o.buf.slice(0, o.len);
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
