// A compute-bound application for the scale-out bench (bench/scaleout.ts): the sequence_window
// input (value:u64be key:utf8, each key counting 1, 2, 3, …), keyed by key, and a stateful step
// that spends a fixed amount of pure computation per message (WALLAROO_BUSY_ITERS rounds of
// xorshift, ≈ 35 µs at the default on this machine) before it counts. Its output line
// "<key> <value> <count> <hash>\n" lets the bench check every key's order exactly (count = value).
import type { WallarooApi } from "wallaroo";

const ITERS = Number(process.env.WALLAROO_BUSY_ITERS ?? "12000");

interface In {
  readonly key: string;
  readonly value: number;
}
interface State {
  count: number;
  hash: number;
}

function spin(seed: number): number {
  let x = seed | 1;
  for (let i = 0; i < ITERS; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
  }
  return x >>> 0;
}

const text = new TextDecoder();

export default (api: WallarooApi) =>
  api
    .application("busy")
    .source("sequence", (p): In => {
      const v = new DataView(p.buffer, p.byteOffset, p.byteLength);
      return { value: v.getUint32(0) * 0x1_0000_0000 + v.getUint32(4), key: text.decode(p.subarray(8)) };
    })
    .keyBy("key", (m) => m.key)
    .toStateful(
      "busy",
      (): State => ({ count: 0, hash: 0 }),
      (m, s, key) => {
        s.count++;
        s.hash = spin(s.hash ^ m.value);
        return `${key} ${m.value} ${s.count} ${s.hash}\n`;
      },
    )
    .toSink((line) => line);
