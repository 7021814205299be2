// Numbers as ASCII decimal text, written straight into an output buffer: the output writer's
// fast path (an encoder's `w.number(total)` costs no string).
//
//   decimal = ["-"] digit+ ["." digit+] | "NaN" | "Infinity" | "-Infinity" | exponent forms
//
// Whatever the number, the bytes are exactly `String(n)`'s: integers with |n| < 2^53 take the
// digit loop; everything else (fractions, exponents, NaN, -0 as "0") goes through String().

/** Scratch for one integer's digits, least significant first (2^53 has 16 digits). */
const digits = new Uint8Array(20);
/** "00".."99" as byte pairs: one division per two digits. */
const PAIRS = new Uint8Array(200);
for (let i = 0; i < 100; i++) {
  PAIRS[2 * i] = 48 + Math.floor(i / 10);
  PAIRS[2 * i + 1] = 48 + (i % 10);
}

/** Upper bound on the bytes `writeDecimal` writes for any number. */
export const DECIMAL_MAX_BYTES = 32;

/** Appends the digits of int32 `v` ≥ 0 to `digits` from `k`, least significant first. */
function int32Digits(v: number, k: number): number {
  while (v >= 100) {
    const q = (v / 100) | 0;
    const r = (v - q * 100) << 1;
    digits[k++] = PAIRS[r + 1]!;
    digits[k++] = PAIRS[r]!;
    v = q;
  }
  if (v >= 10) {
    digits[k++] = PAIRS[(v << 1) + 1]!;
    digits[k++] = PAIRS[v << 1]!;
  } else digits[k++] = 48 + v;
  return k;
}

/** Writes `String(n)` as ASCII at `off` (room for DECIMAL_MAX_BYTES must exist); returns the end. */
export function writeDecimal(buf: Uint8Array, off: number, n: number): number {
  if (!Number.isSafeInteger(n)) {
    const s = String(n);
    for (let i = 0; i < s.length; i++) buf[off + i] = s.charCodeAt(i);
    return off + s.length;
  }
  if (n < 0) {
    buf[off++] = 45; // '-'
    n = -n;
  }
  let k: number;
  // Integer division stays in int32: above 2^31 the number is split at 10^9 into two int32
  // halves (a floating-point modulo costs ~10x an integer divide).
  if (n < 0x80000000) k = int32Digits(n | 0, 0);
  else {
    const hi = Math.floor(n / 1e9);
    let lo = (n - hi * 1e9) | 0;
    k = 0;
    for (let i = 0; i < 4; i++) {
      const q = (lo / 100) | 0;
      const r = (lo - q * 100) << 1;
      digits[k++] = PAIRS[r + 1]!;
      digits[k++] = PAIRS[r]!;
      lo = q;
    }
    digits[k++] = 48 + lo;
    // hi < 2^53 / 10^9 < 2^24
    k = int32Digits(hi | 0, k);
  }
  while (k > 0) buf[off++] = digits[--k]!;
  return off;
}
