// The sink (src/runtime/sink.ts): this worker's connection to the user's receiver. Its time is
// a ManualClock, so a 250 ms retry or a 5 s flush deadline is one `advance` away; its transport is
// a fake whose "kernel" takes bytes only when the test says so, plus one test on real TCP.
import { afterEach, beforeEach, describe, expect, spyOn, test } from "bun:test";
import { log } from "../../../src/log.ts";
import { startReceiver, type Receiver } from "../../../src/net/receiver.ts";
import { GrowBuffer } from "../../../src/net/out-buffer.ts";
import { tcpTransport } from "../../../src/net/tcp.ts";
import { LINK_LIMITS, type Link, type LinkHandlers, type Transport } from "../../../src/net/transport.ts";
import { SINK_RECONNECT_MS, Sink } from "../../../src/runtime/sink.ts";
import { ManualClock } from "../../sim/manual-clock.ts";
import { Changes } from "../net/until.ts";

const ADDR = { host: "127.0.0.1", port: 7002 };
const text = (b: Uint8Array) => new TextDecoder().decode(b);
const asText = (s: unknown) => s as string;

/** A link whose kernel takes bytes only on `take()`. */
class FakeLink implements Link {
  static nextId = 1;
  readonly id = FakeLink.nextId++;
  readonly remote = "127.0.0.1:7002";
  readonly local = "127.0.0.1";
  readonly out = new GrowBuffer();
  closed = false;
  ended = false;
  destroyed = false;
  flushes = 0;
  sentBytes = 0;
  /** What the peer received, in order. */
  delivered = "";

  constructor(private readonly handlers: LinkHandlers) {}

  get queuedBytes(): number {
    return this.out.len;
  }
  get congested(): boolean {
    return this.out.len > LINK_LIMITS.highWaterBytes;
  }
  get queued(): string {
    return text(this.out.buf.subarray(0, this.out.len));
  }
  write(bytes: Uint8Array): void {
    if (!this.closed) this.out.append(bytes);
  }
  flushSoon(): void {
    this.flushes++;
  }
  flush(): void {
    this.flushes++;
  }
  pause(): void {}
  resume(): void {}
  end(): void {
    this.ended = true;
  }
  destroy(): void {
    this.destroyed = true;
    this.out.len = 0;
    this.lose();
  }
  private wasCongested = false;

  /** The kernel accepts the first `n` queued bytes; drain fires as the TCP link's would. */
  take(n = this.out.len): void {
    if (this.congested) this.wasCongested = true;
    this.delivered += text(this.out.buf.subarray(0, n));
    this.sentBytes += n;
    this.out.buf.copyWithin(0, n, this.out.len);
    this.out.len -= n;
    if (this.wasCongested && this.out.len < LINK_LIMITS.lowWaterBytes) {
      this.wasCongested = false;
      this.handlers.drain?.(this);
    }
  }
  /** The connection is gone (peer closed, reset). */
  lose(err?: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.handlers.close(this, err);
  }
}

class FakeNet implements Transport {
  up = false;
  attempts = 0;
  readonly links: FakeLink[] = [];
  /** When set, the next connect waits for the test to settle it. */
  hold: { resolve: () => void } | undefined;
  private holdNext = false;

  holdNextConnect(): void {
    this.holdNext = true;
  }
  get last(): FakeLink {
    return this.links.at(-1)!;
  }
  listen(): never {
    throw new Error("the sink never listens");
  }
  async connect(_host: string, _port: number, handlers: LinkHandlers): Promise<Link> {
    this.attempts++;
    if (this.holdNext) {
      this.holdNext = false;
      await new Promise<void>((resolve) => (this.hold = { resolve }));
    }
    if (!this.up) throw new Error("connect ECONNREFUSED 127.0.0.1:7002");
    const l = new FakeLink(handlers);
    this.links.push(l);
    return l;
  }
}

/** Lets every promise the fake settled run its continuations (no real time passes). */
const settle = () => new Promise<void>((r) => setImmediate(r));

/** Moves the clock in `stepMs` steps until `p` settles; fails past `maxMs` of virtual time. */
async function drive<T>(clock: ManualClock, p: Promise<T>, maxMs: number, stepMs = 10): Promise<T> {
  let done = false;
  void p.then(
    () => (done = true),
    () => (done = true),
  );
  const end = clock.now() + maxMs;
  await settle();
  while (!done) {
    if (clock.now() >= end) throw new Error(`still pending after ${maxMs} ms of virtual time`);
    clock.advance(stepMs);
    await settle();
  }
  return p;
}

let logged: Array<{ level: string; event: string; msg: string }> = [];
let spies: Array<{ mockRestore(): void }> = [];
beforeEach(() => {
  logged = [];
  const record = (level: string) => (event: string, msg: string) => void logged.push({ level, event, msg });
  spies = (["info", "warn", "error", "debug"] as const).map((l) => spyOn(log, l).mockImplementation(record(l)));
});
afterEach(() => {
  for (const s of spies.splice(0)) s.mockRestore();
});
const events = () => logged.map((l) => l.event);

function setup() {
  const clock = new ManualClock();
  const net = new FakeNet();
  const sink = new Sink(ADDR, net, clock);
  let writable = 0;
  sink.onWritable = () => void writable++;
  return { clock, net, sink, writable: () => writable };
}

/** A sink that has made its first connection attempt, with the receiver up or not. */
async function started(receiverUp: boolean) {
  const t = setup();
  t.net.up = receiverUp;
  t.sink.start();
  await settle();
  return t;
}

describe("while the receiver is away", () => {
  test("output is held, and the sink retries every 250 ms of its clock, warning once", async () => {
    const { clock, net, sink } = await started(false);
    expect(net.attempts).toBe(1);
    expect(events()).toEqual(["sink_unreachable"]);
    expect(sink.output(asText, "a\n")).toBeNull();
    expect(sink.output(asText, "b\n")).toBeNull();
    expect(sink.connected).toBe(false);
    expect(sink.queuedBytes).toBe(4);
    expect(sink.written).toBe(2);
    clock.advance(SINK_RECONNECT_MS - 1);
    await settle();
    expect(net.attempts).toBe(1);
    clock.advance(1);
    await settle();
    expect(net.attempts).toBe(2);
    clock.advance(SINK_RECONNECT_MS);
    await settle();
    expect(net.attempts).toBe(3);
    expect(events()).toEqual(["sink_unreachable"]);
  });

  test("the connection, once made, carries the held output first, then what follows", async () => {
    const { clock, net, sink, writable } = await started(false);
    sink.output(asText, "held-1\n");
    sink.output(asText, "held-2\n");
    net.up = true;
    clock.advance(SINK_RECONNECT_MS);
    await settle();
    expect(sink.connected).toBe(true);
    expect(writable()).toBe(1);
    expect(events()).toEqual(["sink_unreachable", "sink_connected"]);
    sink.output(asText, "live\n");
    expect(net.last.queued).toBe("held-1\nheld-2\nlive\n");
    expect(net.last.flushes).toBeGreaterThan(0);
    expect(clock.timers).toBe(0);
  });

  test("congested once the held output passes the high-water mark; drained by the connection", async () => {
    const { clock, net, sink, writable } = await started(false);
    const big = "x".repeat(LINK_LIMITS.highWaterBytes);
    sink.output(asText, big);
    expect(sink.congested).toBe(false);
    sink.output(asText, "!");
    expect(sink.congested).toBe(true);
    net.up = true;
    clock.advance(SINK_RECONNECT_MS);
    await settle();
    // Connected, but the link now holds it all: still congested until the kernel takes it.
    expect(sink.connected).toBe(true);
    expect(sink.congested).toBe(true);
    const before = writable();
    net.last.take(LINK_LIMITS.highWaterBytes - LINK_LIMITS.lowWaterBytes);
    expect(sink.congested).toBe(false);
    expect(writable()).toBe(before); // between the marks: no drain yet
    net.last.take();
    expect(writable()).toBe(before + 1);
    expect(net.last.delivered.length).toBe(big.length + 1);
  });
});

describe("a mark of the output so far (what a checkpoint covers)", () => {
  test("handed over once the kernel took every byte before the mark, whatever came after", async () => {
    const { net, sink } = await started(true);
    sink.output(asText, "before\n");
    const mark = sink.mark();
    sink.output(asText, "after\n");
    expect(sink.handedOver(mark)).toBe(false);
    net.last.take(3);
    expect(sink.handedOver(mark)).toBe(false);
    net.last.take(4);
    expect(sink.handedOver(mark)).toBe(true);
    expect(sink.queuedBytes).toBe(6);
  });

  test("across a reconnection: handed over once the new connection has nothing queued", async () => {
    const { clock, net, sink } = await started(true);
    sink.output(asText, "before\n");
    const mark = sink.mark();
    net.last.lose();
    net.up = true;
    clock.advance(SINK_RECONNECT_MS);
    await settle();
    expect(sink.handedOver(mark)).toBe(false);
    net.last.take();
    expect(sink.handedOver(mark)).toBe(true);
  });
});

describe("a lost connection", () => {
  test("what the kernel had not taken is sent again first on the next connection; one warning", async () => {
    const { clock, net, sink } = await started(true);
    sink.output(asText, "1\n");
    sink.output(asText, "2\n");
    const first = net.last;
    first.take(2);
    net.up = false;
    first.lose(new Error("connection reset"));
    expect(sink.connected).toBe(false);
    expect(sink.queuedBytes).toBe(2);
    expect(logged.filter((l) => l.event === "sink_lost").map((l) => l.msg)).toEqual([
      "Sink connection to 127.0.0.1:7002 closed (connection reset); reconnecting",
    ]);
    sink.output(asText, "3\n");
    clock.advance(SINK_RECONNECT_MS);
    await settle();
    expect(net.attempts).toBe(2);
    expect(events().filter((e) => e === "sink_unreachable" || e === "sink_lost")).toEqual(["sink_lost"]);
    net.up = true;
    clock.advance(SINK_RECONNECT_MS);
    await settle();
    expect(net.last).not.toBe(first);
    expect(net.last.queued).toBe("2\n3\n");
    expect(first.delivered + net.last.queued).toBe("1\n2\n3\n");
  });

  test("an encoder that throws drops only that output, and says why", () => {
    const { sink } = setup();
    sink.output(asText, "kept\n");
    const why = sink.output(() => {
      throw new Error("bad output");
    }, 1);
    expect(why).toBe("sink encoder threw: bad output");
    expect(sink.written).toBe(1);
    expect(sink.queuedBytes).toBe(5);
  });
});

describe("close(deadline)", () => {
  test("waits for the kernel to take what is queued, then ends the connection and returns once it closed", async () => {
    const { clock, net, sink } = await started(true);
    sink.output(asText, "last words\n");
    const link = net.last;
    const closed = sink.close(5000);
    clock.advance(100);
    await settle();
    expect(link.ended).toBe(false); // still queued: ending now could lose it
    link.take();
    clock.advance(10);
    await settle();
    expect(link.ended).toBe(true);
    link.lose();
    await drive(clock, closed, 100);
    expect(link.delivered).toBe("last words\n");
    expect(link.destroyed).toBe(false);
    expect(clock.timers).toBe(0);
    expect(events()).not.toContain("sink_undelivered");
  });

  test("a receiver that comes back before the deadline still gets everything", async () => {
    const { clock, net, sink } = await started(false);
    sink.output(asText, "held\n");
    const closed = sink.close(5000);
    clock.advance(600);
    await settle();
    net.up = true;
    clock.advance(SINK_RECONNECT_MS);
    await settle();
    expect(net.last.queued).toBe("held\n");
    net.last.take();
    clock.advance(10);
    await settle();
    net.last.lose();
    await drive(clock, closed, 100);
    expect(net.last.delivered).toBe("held\n");
  });

  test("an unreachable receiver: gives up at the deadline, says how much output it drops, retries no more", async () => {
    const { clock, net, sink } = await started(false);
    sink.output(asText, "never delivered\n");
    const t0 = clock.now();
    await drive(clock, sink.close(1000), 2000);
    expect(clock.now() - t0).toBeGreaterThanOrEqual(1000);
    expect(clock.now() - t0).toBeLessThan(1000 + SINK_RECONNECT_MS);
    expect(clock.timers).toBe(0); // the pending retry went with it
    const warn = logged.find((l) => l.event === "sink_undelivered");
    expect(warn?.msg).toBe("Sink 127.0.0.1:7002: 16 bytes of output still undelivered after 1000 ms; closing anyway");
    const attempts = net.attempts;
    clock.advance(10 * SINK_RECONNECT_MS);
    await settle();
    expect(net.attempts).toBe(attempts);
    expect(clock.timers).toBe(0);
  });

  test("a connection that never closes after end() is destroyed 1 s later", async () => {
    const { clock, net, sink } = await started(true);
    const link = net.last;
    const closed = sink.close(5000);
    await drive(clock, closed, 2000);
    expect(link.ended).toBe(true);
    expect(link.destroyed).toBe(true);
    expect(clock.now()).toBeGreaterThanOrEqual(1000);
  });

  test("a connect that completes after close() gave up is destroyed, not used", async () => {
    const { clock, net, sink } = setup();
    net.up = true;
    net.holdNextConnect();
    sink.start();
    await settle();
    await drive(clock, sink.close(0), 100);
    net.hold!.resolve();
    await settle();
    expect(net.links.length).toBe(1);
    expect(net.last.destroyed).toBe(true);
    expect(sink.connected).toBe(false);
  });
});

describe("on real TCP", () => {
  const receivers: Receiver[] = [];
  afterEach(() => {
    for (const r of receivers.splice(0)) r.stop();
  });

  test("output held while the receiver is down reaches it, in order, when it starts; close() flushes", async () => {
    const changes = new Changes();
    let got = "";
    let closes = 0;
    const listen = (port: number) =>
      startReceiver({
        host: "127.0.0.1",
        port,
        framed: false,
        onData: (_c, chunk) => {
          got += text(chunk);
          changes.note();
        },
        onClose: () => {
          closes++;
          changes.note();
        },
      }).then((r) => (receivers.push(r), r));
    // A port from the OS, released so nothing listens on it yet.
    const probe = await listen(0);
    const port = probe.port;
    probe.stop();
    const clock = new ManualClock();
    const sink = new Sink({ host: "127.0.0.1", port }, tcpTransport, clock);
    let refused = false;
    spies.push(spyOn(log, "warn").mockImplementation((event: string) => void ((refused ||= event === "sink_unreachable"), changes.note())));
    sink.start();
    await changes.until("the first connect to be refused", () => refused);
    for (let i = 0; i < 100; i++) sink.output(asText, `${i}\n`);
    await listen(port);
    clock.advance(SINK_RECONNECT_MS);
    await changes.until("the sink to connect", () => sink.connected);
    sink.output(asText, "after\n");
    const want = Array.from({ length: 100 }, (_, i) => `${i}\n`).join("") + "after\n";
    await changes.until("every output", () => got.length >= want.length);
    expect(got).toBe(want);
    await drive(clock, sink.close(5000), 2000);
    await changes.until("the receiver to see the close", () => closes === 1);
  });
});
