// Keys → slots. Placement is part of the state format, so the hash is pinned: xxHash32 with
// seed 0 over the key's UTF-8 bytes, modulo SLOT_COUNT. The runtime owns it (the dataflow and the
// keyed state need it); the cluster layer only plans which worker owns which slot.

export const SLOT_COUNT = 1024;

const slotCache = new Map<string, number>();
const SLOT_CACHE_MAX = 1 << 16;

export function slotOf(key: string): number {
  let s = slotCache.get(key);
  if (s !== undefined) return s;
  s = Bun.hash.xxHash32(key, 0) % SLOT_COUNT;
  if (slotCache.size >= SLOT_CACHE_MAX) slotCache.clear();
  slotCache.set(key, s);
  return s;
}
