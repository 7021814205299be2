// The hand-written baseline: the alphabet job with no framework, as one Bun process. It is what
// the runtime can do on this machine, so every wallaroo figure is also a ratio to it.
//
//   bun bench/baseline.ts --in 127.0.0.1:PIN --out 127.0.0.1:POUT
//
// Source: Bun.listen on --in, frames `u32 BE 5` + letter + `u32 BE votes` (other lengths are
// skipped, like the app's decoder dropping them). State: a total per letter. Sink: one Bun.connect
// to --out, `<letter> => <total>\n` per input, coalesced into one write per input chunk, partial
// writes kept and resumed in `drain`, and inputs paused while more than HIGH_WATER bytes wait.
// Logs `baseline: ready (in host:port, …)` on stderr once it listens and the sink is connected;
// runs until killed.
import type { Socket } from "bun";

const MAX_FRAME = 1 << 20;
const HIGH_WATER = 4 * 1024 * 1024;
const LOW_WATER = 1024 * 1024;
const CONNECT_DEADLINE_MS = 10_000;

function addr(flag: string): { host: string; port: number } {
  const i = process.argv.indexOf(flag);
  const v = i === -1 ? undefined : process.argv[i + 1];
  const m = v?.match(/^(.+):(\d+)$/);
  if (!m) {
    console.error(`usage: bun bench/baseline.ts --in host:port --out host:port (missing ${flag})`);
    process.exit(2);
  }
  return { host: m[1]!, port: Number(m[2]) };
}

const inAddr = addr("--in");
const outAddr = addr("--out");

// ---------------------------------------------------------------- output buffer and the sink

let out = new Uint8Array(1 << 20);
let outStart = 0;
let outEnd = 0;
let sink: Socket<undefined> | null = null;
const inputs = new Set<Socket<Carry>>();
let paused = false;
let processed = 0;

function ensure(n: number): void {
  if (outEnd + n <= out.length) return;
  const live = outEnd - outStart;
  if (outStart > 0 && live + n <= out.length) {
    out.copyWithin(0, outStart, outEnd);
  } else {
    let size = out.length * 2;
    while (size < live + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(out.subarray(outStart, outEnd));
    out = next;
  }
  outStart = 0;
  outEnd = live;
}

function flush(): void {
  if (!sink || outEnd === outStart) return;
  const n = sink.write(out.subarray(outStart, outEnd));
  if (n < 0) {
    console.error("baseline: sink closed");
    process.exit(1);
  }
  outStart += n;
  if (outStart === outEnd) outStart = outEnd = 0;
  const queued = outEnd - outStart;
  if (!paused && queued > HIGH_WATER) {
    paused = true;
    for (const s of inputs) s.pause();
  } else if (paused && queued < LOW_WATER) {
    paused = false;
    for (const s of inputs) s.resume();
  }
}

// ----------------------------------------------------------------------------- the job

const totals = new Float64Array(256);
/** Scratch for a total's digits, least significant first. */
const digits = new Uint8Array(24);

/**
 * ASCII digits of a safe non-negative integer at o[p…]; returns the end. Integer arithmetic in two
 * halves of 9 digits: `%` on a double is an fmod, ≈10× slower, and totals pass 2^31 quickly.
 */
function writeUint(o: Uint8Array, p: number, total: number): number {
  let n = 0;
  if (total < 1e9) {
    let v = total | 0;
    do {
      const q = (v / 10) | 0;
      digits[n++] = 48 + v - q * 10;
      v = q;
    } while (v > 0);
  } else {
    const hi = Math.floor(total / 1e9);
    let lo = (total - hi * 1e9) | 0;
    for (let k = 0; k < 9; k++) {
      const q = (lo / 10) | 0;
      digits[n++] = 48 + lo - q * 10;
      lo = q;
    }
    let v = hi | 0;
    do {
      const q = (v / 10) | 0;
      digits[n++] = 48 + v - q * 10;
      v = q;
    } while (v > 0);
  }
  while (n > 0) o[p++] = digits[--n]!;
  return p;
}

function emit(letter: number, votes: number): void {
  const total = (totals[letter] = totals[letter]! + votes);
  ensure(6 + 24);
  const o = out;
  let p = outEnd;
  o[p] = letter;
  o[p + 1] = 32; // ' '
  o[p + 2] = 61; // '='
  o[p + 3] = 62; // '>'
  o[p + 4] = 32;
  p += 5;
  p = writeUint(o, p, total);
  o[p++] = 10;
  outEnd = p;
  processed++;
}

interface Carry {
  buf: Uint8Array;
  len: number;
}

/** Frames from `b[start…]`; returns where an unfinished frame begins (or b.length). */
function frames(b: Uint8Array, start: number): number {
  let p = start;
  const end = b.length;
  while (p + 4 <= end) {
    const len = ((b[p]! << 24) | (b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!) >>> 0;
    if (len === 0 || len > MAX_FRAME) return -1;
    if (p + 4 + len > end) break;
    if (len === 5) emit(b[p + 4]!, b[p + 5]! * 0x1000000 + ((b[p + 6]! << 16) | (b[p + 7]! << 8) | b[p + 8]!));
    p += 4 + len;
  }
  return p;
}

/** Bytes still missing from the frame held in `c` (header first, then its body); −1 if invalid. */
function missing(c: Carry): number {
  if (c.len < 4) return 4 - c.len;
  const b = c.buf;
  const len = ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
  if (len === 0 || len > MAX_FRAME) return -1;
  return 4 + len - c.len;
}

function onData(s: Socket<Carry>, chunk: Uint8Array): void {
  const c = s.data;
  let at = 0;
  // Finish the frame cut by the previous chunk before parsing this one in place.
  while (c.len > 0 && at < chunk.length) {
    const m = missing(c);
    if (m < 0) return void s.end();
    const take = Math.min(m, chunk.length - at);
    if (c.len + take > c.buf.length) {
      const next = new Uint8Array(Math.max(c.buf.length * 2, c.len + take));
      next.set(c.buf.subarray(0, c.len));
      c.buf = next;
    }
    c.buf.set(chunk.subarray(at, at + take), c.len);
    c.len += take;
    at += take;
    if (c.len >= 4 && missing(c) === 0) {
      frames(c.buf.subarray(0, c.len), 0);
      c.len = 0;
    }
  }
  if (c.len > 0) return flush();
  const rest = frames(chunk, at);
  if (rest < 0) {
    console.error("baseline: bad frame; closing the connection");
    return void s.end();
  }
  if (rest < chunk.length) {
    const left = chunk.length - rest;
    if (c.buf.length < left) c.buf = new Uint8Array(Math.max(64, left));
    c.buf.set(chunk.subarray(rest), 0);
    c.len = left;
  }
  flush();
}

// ------------------------------------------------------------------------------ start-up

async function connectSink(): Promise<void> {
  const end = performance.now() + CONNECT_DEADLINE_MS;
  for (;;) {
    try {
      sink = await Bun.connect<undefined>({
        hostname: outAddr.host,
        port: outAddr.port,
        socket: {
          data() {},
          drain: () => flush(),
          close: () => {
            console.error("baseline: sink connection closed");
            process.exit(0);
          },
          error: (_s, e) => console.error(`baseline: sink error ${e.message}`),
        },
      });
      return;
    } catch (e) {
      if (performance.now() > end) {
        console.error(`baseline: cannot reach the sink at ${outAddr.host}:${outAddr.port}: ${(e as Error).message}`);
        process.exit(1);
      }
      await Bun.sleep(50);
    }
  }
}

await connectSink();
const server = Bun.listen<Carry>({
  hostname: inAddr.host,
  port: inAddr.port,
  socket: {
    open(s) {
      s.data = { buf: new Uint8Array(64), len: 0 };
      inputs.add(s);
      if (paused) s.pause();
    },
    data: onData,
    close(s) {
      inputs.delete(s);
    },
    error() {},
  },
});
// Port 0 in --in: the OS picks, and the bench reads the port from this line.
console.error(`baseline: ready (in ${inAddr.host}:${server.port}, out ${outAddr.host}:${outAddr.port})`);
process.on("SIGTERM", () => {
  flush();
  console.error(`baseline: ${processed} messages processed`);
  process.exit(0);
});
