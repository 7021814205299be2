// Sequence window: a correctness probe for loss, duplication and reordering per key.
//
//   payload = value:u64be key:utf8(rest)      (values above 2^53 − 1 are dropped)
//   output  = "<key> [a,b,c,d]\n"             (the key's last four values, oldest first)
//
// A sender gives each key the values 1, 2, 3, … in order. The key's state is the window of its
// last 4 values, starting [0,0,0,0]; each input shifts its value in. A correct window is some
// zeros (fewer than 4 values seen yet) followed by values each exactly 1 more than the one before,
// and when zeros lead the first value is 1 (the key's first value was not lost): [0,0,0,1],
// [0,0,1,2], [3,4,5,6], [0,0,0,0]. Anything else is logged ("window_violation") and counted in
// the app counter `window_violations`.
import { log } from "../../log.ts";
import { application } from "../builder.ts";
import type { AppSpec } from "../types.ts";

export interface Sample {
  readonly key: string;
  readonly value: number;
}
export interface KeyWindow {
  readonly key: string;
  readonly window: readonly number[];
}

const WINDOW = 4;
const HEADER_BYTES = 8;
/** Largest upper 32-bit word of a u64 that is still a safe integer (2^53 − 1 = 0x1FFFFF_FFFFFFFF). */
const HI_MAX = 0x1fffff;
const decoder = new TextDecoder();

export function decodeSample(p: Uint8Array): Sample | null {
  if (p.length < HEADER_BYTES) return null;
  const hi = ((p[0]! << 24) | (p[1]! << 16) | (p[2]! << 8) | p[3]!) >>> 0;
  if (hi > HI_MAX) return null;
  const lo = ((p[4]! << 24) | (p[5]! << 16) | (p[6]! << 8) | p[7]!) >>> 0;
  return { key: decoder.decode(p.subarray(HEADER_BYTES)), value: hi * 0x100000000 + lo };
}

/** True when `w` is zeros then a run increasing by exactly 1 that starts at 1 if zeros lead. */
export function windowIsValid(w: readonly number[]): boolean {
  let i = 0;
  while (i < w.length && w[i] === 0) i++;
  if (i === w.length) return true;
  if (i > 0 && w[i] !== 1) return false;
  for (let j = i + 1; j < w.length; j++) if (w[j] !== w[j - 1]! + 1) return false;
  return true;
}

/** Shifts `value` into the window in place (oldest value falls out). */
export function shiftIn(w: number[], value: number): void {
  for (let i = 0; i < w.length - 1; i++) w[i] = w[i + 1]!;
  w[w.length - 1] = value;
}

export function build(): AppSpec {
  // Belongs to this spec: two specs built here count separately.
  let violations = 0;
  return application("sequence_window")
    .source("sequence", decodeSample)
    .keyBy("key", (s) => s.key)
    .toStateful(
      "window",
      (): number[] => new Array<number>(WINDOW).fill(0),
      (s, w): KeyWindow => {
        shiftIn(w, s.value);
        const window = w.slice();
        if (!windowIsValid(window)) {
          violations++;
          log.error("window_violation", `window violation for key "${s.key}": [${window.join(",")}]`, { key: s.key, window });
        }
        return { key: s.key, window };
      },
    )
    .counters(() => ({ window_violations: violations }))
    .toSink((o, w) => {
      // `${o.key} [${o.window.join(",")}]\n`, written without building the string.
      w.text(o.key);
      w.text(" [");
      for (let i = 0; i < o.window.length; i++) {
        if (i > 0) w.byte(44); // ','
        w.number(o.window[i]!);
      }
      w.text("]\n");
    });
}

export default build();
