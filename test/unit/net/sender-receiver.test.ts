// Real sockets on 127.0.0.1, ports from the OS. Every receiver is stopped in afterEach and every
// wait has a deadline, so a failure never leaves a listener or a hung test behind.
import { afterEach, describe, expect, test } from "bun:test";
import { readU32 } from "../../../src/codec/frame.ts";
import { UnreachableError } from "../../../src/errors.ts";
import { RECEIVER_MAX_FRAME, startReceiver, type Receiver, type ReceiverOptions } from "../../../src/net/receiver.ts";
import { ConnectionLostError, runSender } from "../../../src/net/sender.ts";
import {
  alphabetGenerator,
  decodeSequenceWindowPayload,
  expectedAlphabetTotals,
  sequenceWindowGenerator,
  type Generator,
} from "../../../src/tools/generators.ts";

const HOST = "127.0.0.1";
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

const receivers: Receiver[] = [];
const sockets: { end(): void }[] = [];
afterEach(() => {
  for (const r of receivers.splice(0)) r.stop();
  for (const s of sockets.splice(0)) s.end();
});

async function listen(opts: Partial<ReceiverOptions> & Pick<ReceiverOptions, "onData">): Promise<Receiver> {
  const r = await startReceiver({ host: HOST, port: 0, framed: true, ...opts });
  receivers.push(r);
  return r;
}

async function waitFor(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const until = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > until) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await Bun.sleep(5);
  }
}

/** `n` frames from `g`, then null: the shape runSender wants. */
function limited(g: Generator, n: number): () => Uint8Array | null {
  let i = 0;
  return () => (i++ < n ? g.next() : null);
}

/** A port nothing listens on: one the OS just handed out and we released. */
async function freePort(): Promise<number> {
  const r = await startReceiver({ host: HOST, port: 0, framed: false, onData: () => {} });
  const port = r.port;
  r.stop();
  return port;
}

describe("sender → receiver", () => {
  test("20 000 alphabet frames arrive complete and in order", async () => {
    const N = 20_000;
    const got: string[] = [];
    const r = await listen({ onData: (_c, p) => void got.push(hex(p)) });
    const result = await runSender({ targets: [{ host: HOST, port: r.port }], next: limited(alphabetGenerator({ seed: 7 }), N), reconnect: true, deadlineMs: 5000 });
    expect(result).toEqual({ sent: N, bytes: N * 9, reconnects: 0 });
    await waitFor("all frames", () => got.length >= N);
    const want = Array.from({ length: N }, ((g) => () => hex(g.next().subarray(4)))(alphabetGenerator({ seed: 7 })));
    expect(got).toEqual(want);
  });

  test("round-robin over two targets: frame i goes to target i mod 2", async () => {
    const N = 10_001;
    const a: number[] = [];
    const b: number[] = [];
    const ra = await listen({ onData: (_c, p) => void a.push(decodeSequenceWindowPayload(p).value) });
    const rb = await listen({ onData: (_c, p) => void b.push(decodeSequenceWindowPayload(p).value) });
    const result = await runSender({
      targets: [{ host: HOST, port: ra.port }, { host: HOST, port: rb.port }],
      next: limited(sequenceWindowGenerator({ keys: 1 }), N),
      reconnect: true,
      deadlineMs: 5000,
    });
    expect(result.sent).toBe(N);
    await waitFor("both targets' frames", () => a.length + b.length >= N);
    expect(a).toEqual(Array.from({ length: 5001 }, (_, i) => 2 * i + 1));
    expect(b).toEqual(Array.from({ length: 5000 }, (_, i) => 2 * i + 2));
  });

  test("a slow receiver forces short writes; nothing is lost or reordered", async () => {
    // 2 M frames (18 MB) against a receiver that keeps pausing: write() must return short and
    // the rest must go out on drain.
    const N = 2_000_000;
    const totals = new Map<string, number>();
    let frames = 0;
    let paused = 0;
    const r = await listen({
      onData: (_c, p) => {
        frames++;
        const letter = String.fromCharCode(p[0]!);
        totals.set(letter, (totals.get(letter) ?? 0) + readU32(p, 1));
        if (frames % 200_000 === 0) {
          paused++;
          return Bun.sleep(20);
        }
      },
    });
    const result = await runSender({ targets: [{ host: HOST, port: r.port }], next: limited(alphabetGenerator({ seed: 3 }), N), reconnect: true, deadlineMs: 5000 });
    expect(result.sent).toBe(N);
    await waitFor("all frames", () => frames >= N, 20_000);
    expect(paused).toBe(10);
    const g = alphabetGenerator({ seed: 3 });
    expect(totals).toEqual(expectedAlphabetTotals({ [Symbol.iterator]: function* () { for (let i = 0; i < N; i++) yield g.next(); } }));
  }, 30_000);

  test("a receiver restarted on the same port mid-stream: the sender reconnects and the new one gets only whole frames", async () => {
    const N = 6000;
    const before: number[] = [];
    const after: number[] = [];
    const onData = (into: number[]) => (_c: number, p: Uint8Array) => {
      const { key, value } = decodeSequenceWindowPayload(p);
      expect(key).toBe("key-0");
      into.push(value);
    };
    const first = await listen({ onData: onData(before) });
    const port = first.port;
    let restarting: Promise<unknown> | null = null;
    const result = await runSender({
      targets: [{ host: HOST, port }],
      next: limited(sequenceWindowGenerator({ keys: 1 }), N),
      ratePerSec: 20_000,
      reconnect: true,
      deadlineMs: 5000,
      onProgress: (sent) => {
        if (restarting || sent < N / 3) return;
        first.stop();
        restarting = Bun.sleep(150).then(() => listen({ port, onData: onData(after) }));
      },
    });
    expect(restarting).not.toBeNull();
    await restarting;
    expect(result.sent).toBe(N);
    expect(result.reconnects).toBe(1);
    await waitFor("the last frame", () => after.at(-1) === N);
    // The old receiver saw 1..j; the new one k..N with k > j, every value once, in order.
    // Frames between j and k were taken by the old socket's kernel buffer when it died.
    expect(before).toEqual(Array.from({ length: before.length }, (_, i) => i + 1));
    const k = after[0]!;
    expect(k).toBeGreaterThan(before.length);
    expect(after).toEqual(Array.from({ length: N - k + 1 }, (_, i) => k + i));
  }, 15_000);

  test("abort stops the stream between frames and reports exactly what was sent", async () => {
    let frames = 0;
    const r = await listen({ onData: () => void frames++ });
    const abort = new AbortController();
    const g = alphabetGenerator({ seed: 1 });
    setTimeout(() => abort.abort(), 100);
    const result = await runSender({ targets: [{ host: HOST, port: r.port }], next: () => g.next(), reconnect: true, signal: abort.signal, deadlineMs: 5000 });
    expect(result.sent).toBeGreaterThan(0);
    expect(result.bytes).toBe(result.sent * 9);
    // The receiver reads frames, so a torn last frame would leave it one short forever.
    await waitFor("every sent frame", () => frames === result.sent);
  });

  test("abort against a peer that stopped reading still resolves promptly", async () => {
    // The receiver pauses its only connection for good: the sender's buffers fill and its last
    // write is short. Regression: a head batch cut exactly at a frame boundary once hung here.
    for (const seed of [1, 2, 3]) {
      let frames = 0;
      const r = await listen({
        onData: () => {
          frames++;
          return new Promise(() => {});
        },
      });
      const abort = new AbortController();
      const g = alphabetGenerator({ seed });
      setTimeout(() => abort.abort(), 300);
      const t0 = performance.now();
      const result = await runSender({ targets: [{ host: HOST, port: r.port }], next: () => g.next(), reconnect: true, signal: abort.signal, deadlineMs: 5000 });
      expect(performance.now() - t0).toBeLessThan(300 + 3000);
      expect(result.bytes).toBe(result.sent * 9);
      expect(result.sent).toBeGreaterThan(frames);
      r.stop();
    }
  }, 15_000);

  test("a rate limit spreads the frames over time", async () => {
    let frames = 0;
    const r = await listen({ onData: () => void frames++ });
    const t0 = performance.now();
    await runSender({ targets: [{ host: HOST, port: r.port }], next: limited(alphabetGenerator({ seed: 1 }), 400), ratePerSec: 2000, reconnect: true, deadlineMs: 5000 });
    // 400 frames at 2000/s is 200 ms; allow for timer slack at the start only.
    expect(performance.now() - t0).toBeGreaterThan(150);
    await waitFor("all frames", () => frames === 400);
  });

  test("nothing listening: UnreachableError after the deadline", async () => {
    const port = await freePort();
    const t0 = performance.now();
    const run = runSender({ targets: [{ host: HOST, port }], next: limited(alphabetGenerator({ seed: 1 }), 10), reconnect: true, deadlineMs: 400 });
    await expect(run).rejects.toBeInstanceOf(UnreachableError);
    await expect(run).rejects.toThrow(`Could not connect to ${HOST}:${port} within 0.4 s.`);
    expect(performance.now() - t0).toBeLessThan(3000);
  });

  test("reconnect: false ends the run when the connection drops, with what was sent", async () => {
    let r: Receiver | null = null;
    r = await listen({
      onData: () => {
        r?.stop();
        r = null;
      },
    });
    const g = alphabetGenerator({ seed: 1 });
    const run = runSender({ targets: [{ host: HOST, port: r.port }], next: () => g.next(), ratePerSec: 10_000, reconnect: false, deadlineMs: 5000 });
    const err = await run.then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConnectionLostError);
    expect((err as ConnectionLostError).result.sent).toBeGreaterThan(0);
    expect((err as ConnectionLostError).message).toContain("not reconnecting (--no-reconnect)");
  });

  test("a frame whose header lies is refused before anything is written", async () => {
    const r = await listen({ onData: () => {} });
    const bad = new Uint8Array([0, 0, 0, 9, 1, 2]);
    let i = 0;
    await expect(
      runSender({ targets: [{ host: HOST, port: r.port }], next: () => (i++ === 0 ? bad : null), reconnect: true, deadlineMs: 5000 }),
    ).rejects.toThrow("malformed frame");
  });
});

describe("receiver", () => {
  async function client(port: number): Promise<{ write(b: Uint8Array): void; closed: () => boolean }> {
    let closed = false;
    const s = await Bun.connect({ hostname: HOST, port, socket: { data() {}, close: () => void (closed = true) } });
    sockets.push(s);
    return { write: (b) => void s.write(b), closed: () => closed };
  }

  test("raw mode hands over the bytes as they come, per connection", async () => {
    const got = new Map<number, string>();
    let opened = 0;
    let closedConns = 0;
    const r = await listen({
      framed: false,
      onData: (c, chunk) => void got.set(c, (got.get(c) ?? "") + new TextDecoder().decode(chunk)),
      onOpen: () => void opened++,
      onClose: () => void closedConns++,
    });
    const a = await client(r.port);
    const b = await client(r.port);
    a.write(new TextEncoder().encode("a => 1\n"));
    b.write(new TextEncoder().encode("b => 2\n"));
    await waitFor("both lines", () => [...got.values()].join("").length === 14);
    expect(new Set(got.values())).toEqual(new Set(["a => 1\n", "b => 2\n"]));
    expect(opened).toBe(2);
    expect(r.connections()).toBe(2);
    r.stop();
    await waitFor("connections closed", () => closedConns === 2 && a.closed() && b.closed());
    expect(r.connections()).toBe(0);
  });

  test("framed mode reassembles frames split byte by byte", async () => {
    const got: string[] = [];
    const r = await listen({ onData: (_c, p) => void got.push(new TextDecoder().decode(p)) });
    const c = await client(r.port);
    const bytes = new Uint8Array(Buffer.concat([Buffer.from([0, 0, 0, 3]), Buffer.from("abc"), Buffer.from([0, 0, 0, 0, 0, 0, 0, 2]), Buffer.from("de")]));
    for (const byte of bytes) {
      c.write(new Uint8Array([byte]));
      await Bun.sleep(1);
    }
    await waitFor("three frames", () => got.length === 3);
    expect(got).toEqual(["abc", "", "de"]);
  });

  test("an oversized frame closes that connection only", async () => {
    const got: string[] = [];
    const r = await listen({ onData: (_c, p) => void got.push(new TextDecoder().decode(p)) });
    const bad = await client(r.port);
    const good = await client(r.port);
    const header = new Uint8Array(4);
    new DataView(header.buffer).setUint32(0, RECEIVER_MAX_FRAME + 1);
    bad.write(header);
    await waitFor("the bad connection to close", () => bad.closed());
    good.write(new Uint8Array([0, 0, 0, 2, 0x6f, 0x6b]));
    await waitFor("the good frame", () => got.length === 1);
    expect(got).toEqual(["ok"]);
    expect(good.closed()).toBe(false);
  });

  test("listening on a taken port is a clear error", async () => {
    const r = await listen({ onData: () => {} });
    await expect(startReceiver({ host: HOST, port: r.port, framed: false, onData: () => {} })).rejects.toThrow(`Could not listen on ${HOST}:${r.port}`);
  });
});
