// Keys → slots. Placement is part of the state format, so the hash is pinned: xxHash32 with
// seed 0 over the key's UTF-8 bytes, modulo SLOT_COUNT. The runtime owns it (the dataflow and the
// keyed state need it); the cluster layer only plans which worker owns which slot.

export const SLOT_COUNT = 1024;

/**
 * Slots of the first keys seen. It is filled once and never cleared: with more distinct keys
 * than it holds, a cache that is cleared when full (as it was) misses on nearly every message of
 * a round-robin load and spends ≈ 300 ns a message on inserting and clearing. A miss now costs a
 * lookup and the hash below (≈ 20 ns for a short key); a small key set (the alphabet's 26
 * letters) still costs one lookup.
 */
const slotCache = new Map<string, number>();
const SLOT_CACHE_MAX = 4096;

export function slotOf(key: string): number {
  let s = slotCache.get(key);
  if (s !== undefined) return s;
  const h = xxHash32Ascii(key);
  s = (h >= 0 ? h : Bun.hash.xxHash32(key, 0)) % SLOT_COUNT;
  if (slotCache.size < SLOT_CACHE_MAX) slotCache.set(key, s);
  return s;
}

const P1 = 0x9e3779b1;
const P2 = 0x85ebca77;
const P3 = 0xc2b2ae3d;
const P4 = 0x27d4eb2f;
const P5 = 0x165667b1;

function rotl(x: number, r: number): number {
  return (x << r) | (x >>> (32 - r));
}

/** Four ASCII characters from `i` as one little-endian word of their bytes; -1 if one is not ASCII. */
function lane(s: string, i: number): number {
  const a = s.charCodeAt(i);
  const b = s.charCodeAt(i + 1);
  const c = s.charCodeAt(i + 2);
  const d = s.charCodeAt(i + 3);
  if ((a | b | c | d) > 0x7f) return -1;
  return a | (b << 8) | (c << 16) | (d << 24);
}

/**
 * xxHash32 (seed 0) of `s`'s UTF-8 bytes when every character is ASCII (one byte each), else -1
 * (the caller hashes it natively). In JavaScript because Bun's native call costs more than the
 * hash of a short key.
 */
export function xxHash32Ascii(s: string): number {
  const n = s.length;
  let i = 0;
  let h: number;
  if (n >= 16) {
    let v1 = (P1 + P2) | 0;
    let v2 = P2 | 0;
    let v3 = 0;
    let v4 = -P1 | 0;
    for (; i + 16 <= n; i += 16) {
      const l1 = lane(s, i);
      const l2 = lane(s, i + 4);
      const l3 = lane(s, i + 8);
      const l4 = lane(s, i + 12);
      // A lane of four ASCII bytes is never -1 (its top byte is below 0x80).
      if (l1 === -1 || l2 === -1 || l3 === -1 || l4 === -1) return -1;
      v1 = Math.imul(rotl((v1 + Math.imul(l1, P2)) | 0, 13), P1);
      v2 = Math.imul(rotl((v2 + Math.imul(l2, P2)) | 0, 13), P1);
      v3 = Math.imul(rotl((v3 + Math.imul(l3, P2)) | 0, 13), P1);
      v4 = Math.imul(rotl((v4 + Math.imul(l4, P2)) | 0, 13), P1);
    }
    h = (rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18)) | 0;
  } else h = P5 | 0;
  h = (h + n) | 0;
  for (; i + 4 <= n; i += 4) {
    const l = lane(s, i);
    if (l === -1) return -1;
    h = Math.imul(rotl((h + Math.imul(l, P3)) | 0, 17), P4);
  }
  for (; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c > 0x7f) return -1;
    h = Math.imul(rotl((h + Math.imul(c, P5)) | 0, 11), P1);
  }
  h ^= h >>> 15;
  h = Math.imul(h, P2);
  h ^= h >>> 13;
  h = Math.imul(h, P3);
  h ^= h >>> 16;
  return h >>> 0;
}
