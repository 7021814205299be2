// The TCP source (src/runtime/source.ts) over the real transport on 127.0.0.1, clients being
// plain Bun sockets. "Nothing was read" is shown by a later event that would have come after the
// read (a byte round-tripped through another listener), never by a sleep. Log lines are caught
// with spies on `log`, so a test sees exactly what an operator would.
import { afterEach, beforeEach, describe, expect, spyOn, test } from "bun:test";
import type { Socket, TCPSocketListener } from "bun";
import { log } from "../../../src/log.ts";
import { tcpTransport } from "../../../src/net/tcp.ts";
import { Source } from "../../../src/runtime/source.ts";
import { Changes } from "../net/until.ts";

const HOST = "127.0.0.1";
const changes = new Changes();

type Level = "error" | "warn";
let logged: Array<{ level: Level; event: string; msg: string }> = [];
let spies: Array<{ mockRestore(): void }> = [];
const sources: Source[] = [];
const cleanups: Array<() => void> = [];

beforeEach(() => {
  logged = [];
  const record = (level: Level) => (event: string, msg: string) => {
    logged.push({ level, event, msg });
    changes.note();
  };
  spies = [
    spyOn(log, "error").mockImplementation(record("error")),
    spyOn(log, "warn").mockImplementation(record("warn")),
    spyOn(log, "info").mockImplementation(() => {}),
  ];
});
afterEach(() => {
  for (const s of sources.splice(0)) s.stop();
  for (const c of cleanups.splice(0)) c();
  for (const s of spies.splice(0)) s.mockRestore();
});

/**
 * A listening source that records every payload (copied) and every chunk it was handed; with
 * `logged`, every batch it logs too, and `order` says which came first.
 */
async function source(maxFrame = 1024, logged?: Uint8Array[]) {
  const frames: Array<{ conn: number; text: string }> = [];
  const order: string[] = [];
  let chunks = 0;
  const src = new Source(
    "votes",
    { name: "votes", host: HOST, port: 0, maxFrame },
    tcpTransport,
    (buf, start, end, conn) => {
      frames.push({ conn, text: new TextDecoder().decode(buf.subarray(start, end)) });
      order.push("ingest");
      changes.note();
    },
    () => {
      chunks++;
      changes.note();
    },
    logged
      ? (framed, count) => {
          logged.push(framed.slice());
          order.push(`log ${count}`);
        }
      : undefined,
  );
  sources.push(src);
  await src.listen();
  return { src, frames, order, texts: () => frames.map((f) => f.text), chunks: () => chunks };
}

interface Client {
  write(bytes: Uint8Array): void;
  end(): void;
  readonly closed: boolean;
}

async function client(port: number): Promise<Client> {
  let closed = false;
  const sock = await Bun.connect({
    hostname: HOST,
    port,
    socket: {
      data() {},
      close() {
        closed = true;
        changes.note();
      },
      error() {},
    },
  });
  cleanups.push(() => sock.terminate());
  return {
    write: (b) => void sock.write(b),
    end: () => void sock.end(),
    get closed() {
      return closed;
    },
  };
}

function frame(text: string): Uint8Array {
  const p = new TextEncoder().encode(text);
  const f = new Uint8Array(4 + p.length);
  new DataView(f.buffer).setUint32(0, p.length);
  f.set(p, 4);
  return f;
}

const concat = (...parts: Uint8Array[]) => new Uint8Array(parts.flatMap((p) => [...p]));

/**
 * Round-trips a byte through a listener of its own. Bytes a client wrote before this was called
 * are already readable on the source's sockets, so a source that reads would have had them first.
 */
async function marker(): Promise<void> {
  let got = false;
  const l: TCPSocketListener<undefined> = Bun.listen({
    hostname: HOST,
    port: 0,
    socket: {
      data() {
        got = true;
        changes.note();
      },
    },
  });
  let s: Socket<undefined> | undefined;
  try {
    s = await Bun.connect({ hostname: HOST, port: l.port, socket: { data() {} } });
    s.write(new Uint8Array([1]));
    await changes.until("the marker byte", () => got);
  } finally {
    s?.end();
    l.stop(true);
  }
}

describe("mute until ready", () => {
  test("connections are accepted while muted but nothing is read until unmute()", async () => {
    const s = await source();
    const c = await client(s.src.port);
    c.write(concat(frame("a"), frame("b")));
    await marker();
    expect(s.texts()).toEqual([]);
    expect(s.chunks()).toBe(0);
    s.src.unmute();
    await changes.until("both frames", () => s.frames.length === 2);
    expect(s.texts()).toEqual(["a", "b"]);
  });

  test("mute() after unmute() stops reading again", async () => {
    const s = await source();
    s.src.unmute();
    const c = await client(s.src.port);
    c.write(frame("first"));
    await changes.until("the first frame", () => s.frames.length === 1);
    s.src.mute();
    c.write(frame("second"));
    await marker();
    expect(s.texts()).toEqual(["first"]);
    s.src.unmute();
    await changes.until("the second frame", () => s.frames.length === 2);
  });
});

describe("pause (backpressure)", () => {
  test("pause() stops every connection, resume() restarts them; nothing is lost", async () => {
    const s = await source();
    s.src.unmute();
    const a = await client(s.src.port);
    const b = await client(s.src.port);
    a.write(frame("a1"));
    b.write(frame("b1"));
    await changes.until("one frame from each", () => s.frames.length === 2);
    s.src.pause();
    expect(s.src.isPaused).toBe(true);
    a.write(frame("a2"));
    b.write(frame("b2"));
    await marker();
    expect(s.frames.length).toBe(2);
    s.src.resume();
    expect(s.src.isPaused).toBe(false);
    await changes.until("the held frames", () => s.frames.length === 4);
    expect(s.texts().sort()).toEqual(["a1", "a2", "b1", "b2"]);
  });

  // A frame on a connection made after `before`; `meanwhile` must not start reading it, `release` must.
  const held: Array<{ name: string; before: (s: Source) => void; meanwhile: (s: Source) => void; release: (s: Source) => void }> = [
    {
      name: "a connection accepted while paused and muted stays paused through unmute(), until resume()",
      before: (s) => s.pause(),
      meanwhile: (s) => s.unmute(),
      release: (s) => s.resume(),
    },
    {
      name: "a connection accepted while paused after unmute() is not read until resume()",
      before: (s) => (s.unmute(), s.pause()),
      meanwhile: () => {},
      release: (s) => s.resume(),
    },
    {
      name: "resume() while muted does not start reading; unmute() does",
      before: (s) => s.pause(),
      meanwhile: (s) => s.resume(),
      release: (s) => s.unmute(),
    },
  ];
  for (const h of held)
    test(h.name, async () => {
      const s = await source();
      h.before(s.src);
      const c = await client(s.src.port);
      c.write(frame("x"));
      h.meanwhile(s.src);
      await marker();
      expect(s.frames.length).toBe(0);
      h.release(s.src);
      await changes.until("the frame", () => s.frames.length === 1);
    });
});

describe("framing", () => {
  test("a frame split over many chunks is delivered once, whole", async () => {
    const s = await source();
    s.src.unmute();
    const c = await client(s.src.port);
    const bytes = frame("split-across-chunks");
    // One byte per chunk: the next byte goes only after the source was handed the previous one.
    for (let i = 0; i < bytes.length; i++) {
      c.write(bytes.subarray(i, i + 1));
      await changes.until(`chunk ${i + 1}`, () => s.chunks() === i + 1);
    }
    expect(s.texts()).toEqual(["split-across-chunks"]);
  });

  test("many frames in one chunk are delivered in order, with the connection they came from", async () => {
    const s = await source();
    s.src.unmute();
    const c = await client(s.src.port);
    const texts = Array.from({ length: 200 }, (_, i) => `m${i}`);
    c.write(concat(...texts.map(frame)));
    await changes.until("200 frames", () => s.frames.length === 200);
    expect(s.texts()).toEqual(texts);
    expect(new Set(s.frames.map((f) => f.conn)).size).toBe(1);
  });

  test("with an input log, each chunk's whole frames are logged (as they came) before any of them is processed", async () => {
    const logged: Uint8Array[] = [];
    const s = await source(1024, logged);
    s.src.unmute();
    const c = await client(s.src.port);
    const texts = Array.from({ length: 50 }, (_, i) => `m${i}`);
    const bytes = concat(...texts.map(frame));
    // Split inside a frame: the partial frame is logged with the chunk that completes it.
    c.write(bytes.subarray(0, 17));
    await changes.until("the first frames", () => s.frames.length >= 1);
    c.write(bytes.subarray(17));
    await changes.until("50 frames", () => s.frames.length === 50);
    expect(s.texts()).toEqual(texts);
    expect(Buffer.concat(logged)).toEqual(Buffer.from(bytes));
    // Every log batch comes before the frames it holds are processed.
    let logged_ = 0;
    let ingested = 0;
    for (const e of s.order) {
      if (e === "ingest") expect(++ingested).toBeLessThanOrEqual(logged_);
      else logged_ += Number(e.split(" ")[1]);
    }
  });

  test("a zero-length frame is handed over as an empty payload and the connection carries on", async () => {
    // The decoder decides what an empty payload means (operators.md; the original did the same).
    const s = await source();
    s.src.unmute();
    const c = await client(s.src.port);
    c.write(concat(frame(""), frame("after")));
    await changes.until("both frames", () => s.frames.length === 2);
    expect(s.texts()).toEqual(["", "after"]);
    expect(c.closed).toBe(false);
    expect(logged).toEqual([]);
  });
});

describe("bad input closes only that connection", () => {
  test("an oversized frame: logged error, connection closed, nothing of it read; frames before it and other connections carry on", async () => {
    const s = await source(16);
    s.src.unmute();
    const good = await client(s.src.port);
    const bad = await client(s.src.port);
    // A frame the source accepts, then a header claiming 2 GiB: never allocated, never waited for.
    bad.write(concat(frame("ok"), new Uint8Array([0x7f, 0xff, 0xff, 0xff, 1, 2, 3])));
    await changes.until("the bad connection to be closed", () => bad.closed);
    expect(s.texts()).toEqual(["ok"]);
    expect(s.src.rejectedConnections).toBe(1);
    expect(logged.length).toBe(1);
    expect(logged[0]!.level).toBe("error");
    expect(logged[0]!.event).toBe("source_frame_oversized");
    expect(logged[0]!.msg).toBe("votes source: frame of 2147483647 bytes from 127.0.0.1 exceeds max 16. Closed connection.");
    good.write(frame("still-here"));
    await changes.until("the good connection's frame", () => s.frames.length === 2);
    expect(s.texts()).toEqual(["ok", "still-here"]);
    expect(good.closed).toBe(false);
  });

  test("a frame exactly at the limit is accepted, one byte over is not", async () => {
    const s = await source(16);
    s.src.unmute();
    const c = await client(s.src.port);
    c.write(frame("x".repeat(16)));
    await changes.until("the 16-byte frame", () => s.frames.length === 1);
    c.write(frame("y".repeat(17)));
    await changes.until("the connection to be closed", () => c.closed);
    expect(s.frames.length).toBe(1);
    expect(logged.map((l) => l.event)).toEqual(["source_frame_oversized"]);
  });

  test("a connection closed inside a frame: logged with the bytes dropped, nothing ingested, others carry on", async () => {
    const s = await source();
    s.src.unmute();
    const good = await client(s.src.port);
    const trunc = await client(s.src.port);
    trunc.write(concat(frame("whole"), new Uint8Array([0, 0, 0, 9, 0x62, 0x63])));
    trunc.end();
    await changes.until("the truncation warning", () => logged.length === 1);
    expect(logged[0]!).toEqual({
      level: "warn",
      event: "source_truncated",
      msg: "votes source: connection from 127.0.0.1 closed inside a frame (6 bytes dropped)",
    });
    expect(s.texts()).toEqual(["whole"]);
    good.write(frame("next"));
    await changes.until("the good connection's frame", () => s.frames.length === 2);
  });

  test("a connection closed between frames logs nothing", async () => {
    const s = await source();
    s.src.unmute();
    const c = await client(s.src.port);
    c.write(frame("done"));
    c.end();
    await changes.until("the frame", () => s.frames.length === 1);
    await changes.until("the close", () => c.closed);
    await marker();
    expect(logged).toEqual([]);
  });
});

test("stop() closes the listener and every connection", async () => {
  const s = await source();
  const c = await client(s.src.port);
  const port = s.src.port;
  s.src.stop();
  await changes.until("the client to see the close", () => c.closed);
  await expect(Bun.connect({ hostname: HOST, port, socket: { data() {} } })).rejects.toBeDefined();
});
