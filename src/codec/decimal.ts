// Numbers as ASCII decimal text, written straight into an output buffer: the output writer's
// fast path (an encoder's `w.number(total)` costs no string).
//
//   decimal = ["-"] digit+ ["." digit+] | "NaN" | "Infinity" | "-Infinity" | exponent forms
//
// Whatever the number, the bytes are exactly `String(n)`'s: integers with |n| < 2^53 take the
// digit loop; everything else (fractions, exponents, NaN, -0 as "0") goes through String().

/** Scratch for one integer's digits, least significant first (2^53 has 16 digits). */
const digits = new Uint8Array(20);

/** Upper bound on the bytes `writeDecimal` writes for any number. */
export const DECIMAL_MAX_BYTES = 32;

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
  let k = 0;
  // Below 2^31 the division stays in int32; above, split in two halves of at most 9 digits so
  // the loop never does a floating-point modulo (an fmod costs ~10× an integer divide).
  if (n < 0x80000000) {
    let v = n | 0;
    do {
      const q = (v / 10) | 0;
      digits[k++] = 48 + v - q * 10;
      v = q;
    } while (v > 0);
  } else {
    const hi = Math.floor(n / 1e9);
    let lo = n - hi * 1e9;
    for (let i = 0; i < 9; i++) {
      const q = (lo / 10) | 0;
      digits[k++] = 48 + lo - q * 10;
      lo = q;
    }
    let v = hi;
    do {
      const q = Math.floor(v / 10);
      digits[k++] = 48 + v - q * 10;
      v = q;
    } while (v > 0);
  }
  while (k > 0) buf[off++] = digits[--k]!;
  return off;
}
