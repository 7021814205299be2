// Numbers as ASCII decimal text, written straight into an output buffer: the output writer's
// fast path (an encoder's `w.number(total)` costs no string).
//
//   decimal = ["-"] digit+ ["." digit+] | "NaN" | "Infinity" | "-Infinity" | exponent forms
//
// Whatever the number, the bytes are exactly `String(n)`'s: integers with |n| < 2^53 take the
// digit loop; everything else (fractions, exponents, NaN, -0 as "0") goes through String().

/** "00".."99" as byte pairs: one division per two digits. */
const PAIRS = new Uint8Array(200);
for (let i = 0; i < 100; i++) {
  PAIRS[2 * i] = 48 + Math.floor(i / 10);
  PAIRS[2 * i + 1] = 48 + (i % 10);
}

/** Upper bound on the bytes `writeDecimal` writes for any number. */
export const DECIMAL_MAX_BYTES = 32;

/** Decimal digits of int32 `v` ≥ 0. */
function digitCount(v: number): number {
  if (v < 100_000) return v < 10 ? 1 : v < 100 ? 2 : v < 1000 ? 3 : v < 10_000 ? 4 : 5;
  return v < 1_000_000 ? 6 : v < 10_000_000 ? 7 : v < 100_000_000 ? 8 : v < 1_000_000_000 ? 9 : 10;
}

/** Writes the digits of int32 `v` ≥ 0 backwards so that the last one is at `end - 1`. */
function putDigits(buf: Uint8Array, end: number, v: number): void {
  let p = end;
  while (v >= 100) {
    const q = (v / 100) | 0;
    const r = (v - q * 100) << 1;
    buf[--p] = PAIRS[r + 1]!;
    buf[--p] = PAIRS[r]!;
    v = q;
  }
  if (v >= 10) {
    buf[--p] = PAIRS[(v << 1) + 1]!;
    buf[--p] = PAIRS[v << 1]!;
  } else buf[--p] = 48 + v;
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
  // Integer division stays in int32: above 2^31 the number is split at 10^9 into two int32
  // halves (a floating-point modulo costs ~10x an integer divide). Digits are counted first and
  // written in place from the end, with no scratch to reverse.
  if (n < 0x80000000) {
    const end = off + digitCount(n);
    putDigits(buf, end, n | 0);
    return end;
  }
  const hi = Math.floor(n / 1e9); // < 2^53 / 10^9 < 2^24
  let lo = (n - hi * 1e9) | 0;
  const end = off + digitCount(hi) + 9;
  let p = end;
  for (let i = 0; i < 4; i++) {
    const q = (lo / 100) | 0;
    const r = (lo - q * 100) << 1;
    buf[--p] = PAIRS[r + 1]!;
    buf[--p] = PAIRS[r]!;
    lo = q;
  }
  buf[--p] = 48 + lo;
  putDigits(buf, p, hi | 0);
  return end;
}
