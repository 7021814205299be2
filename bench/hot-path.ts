// The framework's own cost per message, without sockets: the alphabet job's frames handed to a
// real Source, Dataflow and Sink in this process, as a socket would hand them (64 KiB chunks),
// with a sink link that takes every byte at once (an infinitely fast kernel). What it prints is
// the part of bench/throughput.ts's per-message time that is ours to cut, beside the same work
// written by hand (bench/baseline.ts's job, inlined here without sockets) as its floor.
//
//   bun bench/hot-path.ts [--messages 20000000] [--rounds 5]
//
// With `--cpu-prof` (bun's flag, before the script) the profile shows only the hot path.
import { Dataflow } from "../src/runtime/dataflow.ts";
import { Sink } from "../src/runtime/sink.ts";
import { Source } from "../src/runtime/source.ts";
import { SLOT_COUNT } from "../src/runtime/slot-hash.ts";
import { SLOT_STATUS, type Router } from "../src/runtime/router.ts";
import { GrowBuffer } from "../src/net/out-buffer.ts";
import type { Link, LinkHandlers, Server, Transport } from "../src/net/transport.ts";
import { systemClock } from "../src/clock.ts";
import alphabet from "../src/app/builtins/alphabet.ts";
import { fmtInt, numFlag, parseFlags, table } from "./lib.ts";

const flags = parseFlags(process.argv.slice(2), {
  messages: "messages per round (default 20000000)",
  rounds: "rounds, alternating framework and hand-written (default 5)",
});
const N = numFlag(flags, "messages", 20_000_000);
const ROUNDS = numFlag(flags, "rounds", 5);
const CHUNK = 64 * 1024;

/** A link whose kernel takes every byte the moment it is flushed. */
class DiscardLink implements Link {
  readonly id = 1;
  readonly remote = "discard";
  readonly local = "discard";
  readonly out = new GrowBuffer();
  sentBytes = 0;
  closed = false;
  constructor(readonly handlers: LinkHandlers) {}
  get queuedBytes(): number {
    return this.out.len;
  }
  get congested(): boolean {
    return false;
  }
  write(bytes: Uint8Array): void {
    this.sentBytes += bytes.length;
  }
  private scheduled = false;
  flush(): void {
    this.sentBytes += this.out.len;
    this.out.len = 0;
  }
  flushSoon(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      this.sentBytes += this.out.len;
      this.out.len = 0;
    });
  }
  pause(): void {}
  resume(): void {}
  end(): void {}
  destroy(): void {}
}

/** Accepts the one source connection and the sink's connect, both as DiscardLinks. */
class BenchTransport implements Transport {
  sourceHandlers: LinkHandlers | undefined;
  sourceLink: DiscardLink | undefined;
  async listen(host: string, port: number, accept: (link: Link) => LinkHandlers): Promise<Server> {
    const link = new DiscardLink({ data() {}, close() {} });
    this.sourceLink = link;
    this.sourceHandlers = accept(link);
    return { host, port, stop() {} };
  }
  async connect(_h: string, _p: number, handlers: LinkHandlers): Promise<Link> {
    return new DiscardLink(handlers);
  }
}

/** N alphabet frames (26 letters, votes 1..7), cut into socket-sized chunks. */
function chunks(n: number): Uint8Array[] {
  const frame = 9;
  const per = Math.floor(CHUNK / frame);
  const out: Uint8Array[] = [];
  for (let done = 0; done < n; ) {
    const k = Math.min(per, n - done);
    const b = new Uint8Array(k * frame);
    for (let i = 0; i < k; i++) {
      const m = done + i;
      const p = i * frame;
      b[p + 3] = 5;
      b[p + 4] = 97 + (m % 26);
      b[p + 8] = 1 + (m % 7);
    }
    out.push(b);
    done += k;
  }
  return out;
}

async function framework(input: Uint8Array[]): Promise<{ ns: number; bytes: number }> {
  const net = new BenchTransport();
  const router: Router = {
    selfId: 0,
    initializerId: 0,
    isInitializer: true,
    owners: new Int32Array(SLOT_COUNT),
    status: new Uint8Array(SLOT_COUNT).fill(SLOT_STATUS.owned),
    forward() {
      throw new Error("one worker forwards nothing");
    },
  };
  const sink = new Sink({ host: "127.0.0.1", port: 1 }, net, systemClock);
  sink.start();
  await Bun.sleep(0);
  const df = new Dataflow(alphabet, router, sink);
  const src = new Source("alphabet", { host: "127.0.0.1", port: 1, name: undefined, maxFrame: 1 << 20 }, net, (b, s, e) => df.ingest(b, s, e), () => {}, undefined, systemClock, df);
  await src.listen();
  src.unmute();
  const h = net.sourceHandlers!;
  const link = net.sourceLink!;
  const t0 = Bun.nanoseconds();
  // Sixteen chunks per turn of the microtask queue, as a socket's reads would come; fed from a
  // plain function (a loop inside an async function is compiled worse, and measured that).
  const feed = (from: number, to: number) => {
    for (let i = from; i < to; i++) {
      h.data(link, input[i]!);
    }
  };
  for (let i = 0; i < input.length; i += 16) {
    feed(i, Math.min(i + 16, input.length));
    await Promise.resolve();
  }
  await Bun.sleep(0);
  const ns = Bun.nanoseconds() - t0;
  if (df.processed !== N) throw new Error(`processed ${df.processed}, expected ${N}`);
  return { ns, bytes: sink.sentBytes };
}

function handWritten(input: Uint8Array[]): { ns: number; bytes: number } {
  const totals = new Float64Array(256);
  const digits = new Uint8Array(24);
  let out = new Uint8Array(1 << 20);
  let len = 0;
  let bytes = 0;
  const t0 = Bun.nanoseconds();
  for (const b of input) {
    for (let p = 0; p + 9 <= b.length; p += 9) {
      const letter = b[p + 4]!;
      const total = (totals[letter] = totals[letter]! + (b[p + 5]! * 0x1000000 + ((b[p + 6]! << 16) | (b[p + 7]! << 8) | b[p + 8]!)));
      if (len + 32 > out.length) {
        bytes += len;
        len = 0;
      }
      out[len] = letter;
      out[len + 1] = 32;
      out[len + 2] = 61;
      out[len + 3] = 62;
      out[len + 4] = 32;
      len += 5;
      let v = total | 0;
      let n = 0;
      do {
        const q = (v / 10) | 0;
        digits[n++] = 48 + v - q * 10;
        v = q;
      } while (v > 0);
      while (n > 0) out[len++] = digits[--n]!;
      out[len++] = 10;
    }
    bytes += len;
    len = 0;
  }
  return { ns: Bun.nanoseconds() - t0, bytes: bytes + len };
}

const input = chunks(N);
console.log(`hot path, in process: ${fmtInt(N)} alphabet messages per round, ${ROUNDS} rounds, Bun ${Bun.version}`);
const ours: number[] = [];
const hand: number[] = [];
for (let r = 0; r < ROUNDS; r++) {
  const a = await framework(input);
  const b = handWritten(input);
  if (a.bytes !== b.bytes) throw new Error(`output differs: ${a.bytes} bytes vs hand-written ${b.bytes}`);
  ours.push(a.ns / N);
  hand.push(b.ns / N);
  console.log(`  round ${r + 1}: wallaroo ${(a.ns / N).toFixed(1)} ns/msg, hand-written ${(b.ns / N).toFixed(1)} ns/msg`);
}
const med = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
const min = (xs: number[]) => Math.min(...xs);
console.log(
  "\n" +
    table([
      ["path", "ns/msg (median)", "ns/msg (best)", "M msg/s (median)", "× hand-written (median)"],
      ["wallaroo source→dataflow→sink", med(ours).toFixed(1), min(ours).toFixed(1), (1e3 / med(ours)).toFixed(2), (med(ours) / med(hand)).toFixed(2)],
      ["hand-written", med(hand).toFixed(1), min(hand).toFixed(1), (1e3 / med(hand)).toFixed(2), "1.00"],
    ]),
);
console.log(JSON.stringify({ bench: "hot-path", messages: N, ns_per_msg: med(ours), hand_ns_per_msg: med(hand) }));
