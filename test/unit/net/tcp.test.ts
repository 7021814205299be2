// The TCP transport (src/net/tcp.ts) on real sockets on 127.0.0.1, ports from the OS. Reads are
// shown to have stopped by a later event that would have come after them (a marker on another
// connection of the same listener), never by a sleep. Every link and server is closed after each
// test, and the fault handler is put back.
import { afterEach, describe, expect, test } from "bun:test";
import { haltIo, setFaultHandler } from "../../../src/fault.ts";
import { tcpTransport } from "../../../src/net/tcp.ts";
import { LINK_LIMITS, type Link, type LinkHandlers, type Server } from "../../../src/net/transport.ts";
import { Changes, patternBytes, patternMismatch } from "./until.ts";

const HOST = "127.0.0.1";
const MiB = 1024 * 1024;

const changes = new Changes();
const servers: Server[] = [];
const links: Link[] = [];
const restores: Array<() => void> = [];
afterEach(() => {
  for (const l of links.splice(0)) l.destroy();
  for (const s of servers.splice(0)) s.stop();
  for (const r of restores.splice(0)) r();
});

/** One end of a connection and everything that happened to it. */
class End {
  link!: Link;
  bytes = 0;
  chunks = 0;
  /** First stream offset that broke the byte pattern, or -1. */
  badAt = -1;
  /** Received bytes, kept only when `keep`. */
  got: number[] = [];
  closes: Array<Error | undefined> = [];
  /** Bytes received when the close callback ran. */
  bytesAtClose = -1;
  drains: number[] = [];

  constructor(
    private readonly opts: { keep?: boolean; onData?: (e: End, chunk: Uint8Array) => void; onClose?: () => void; onDrain?: () => void } = {},
  ) {}

  handlers(): LinkHandlers {
    return {
      data: (_l, chunk) => {
        if (this.opts.keep) this.got.push(...chunk);
        else if (this.badAt < 0) {
          const bad = patternMismatch(chunk, this.bytes);
          if (bad >= 0) this.badAt = bad;
        }
        this.bytes += chunk.length;
        this.chunks++;
        changes.note();
        this.opts.onData?.(this, chunk);
      },
      drain: (l) => {
        this.drains.push(l.queuedBytes);
        changes.note();
        this.opts.onDrain?.();
      },
      close: (_l, err) => {
        this.closes.push(err);
        this.bytesAtClose = this.bytes;
        changes.note();
        this.opts.onClose?.();
      },
    };
  }
}

async function listen(accept: (link: Link) => LinkHandlers): Promise<Server> {
  const s = await tcpTransport.listen(HOST, 0, accept);
  servers.push(s);
  return s;
}

/** A connected pair: `client` dialled `server`'s listener. */
async function pair(server = new End(), client = new End(), listener?: { server: Server; accepted: End[] }) {
  const accepted: End[] = listener?.accepted ?? [];
  const srv =
    listener?.server ??
    (await listen((link) => {
      const end = accepted.shift()!;
      end.link = link;
      links.push(link);
      changes.note();
      return end.handlers();
    }));
  accepted.push(server);
  client.link = await tcpTransport.connect(HOST, srv.port, client.handlers(), 2000);
  links.push(client.link);
  await changes.until("the server to accept", () => server.link !== undefined);
  return { server, client, listener: { server: srv, accepted } };
}

/** Sends a byte over a second connection of the same listener and waits for it to arrive. */
async function marker(listener: { server: Server; accepted: End[] }): Promise<void> {
  const { server, client } = await pair(new End({ keep: true }), new End(), listener);
  client.link.write(new Uint8Array([42]));
  await changes.until("the marker byte", () => server.bytes === 1);
}

const turn = () => new Promise<void>((r) => setImmediate(r));

describe("outbound", () => {
  test("writes of one turn are coalesced and go out after it, in order; no drain without congestion", async () => {
    const { server, client } = await pair(new End({ keep: true }));
    client.link.write(new Uint8Array([1, 2]));
    client.link.write(new Uint8Array([3]));
    // An encoder writing in place, as the data channel does.
    const out = client.link.out;
    out.ensure(2);
    out.buf[out.len++] = 4;
    out.buf[out.len++] = 5;
    client.link.flushSoon();
    // Nothing went out during the turn: all five bytes are still ours.
    expect(client.link.queuedBytes).toBe(5);
    await Promise.resolve();
    expect(client.link.queuedBytes).toBe(0);
    await changes.until("five bytes", () => server.bytes === 5);
    expect(server.got).toEqual([1, 2, 3, 4, 5]);
    expect(client.drains).toEqual([]);
  });

  test("congested above the high-water mark; drain fires once, below the low-water mark", async () => {
    const { server, client } = await pair();
    server.link.pause();
    const total = 6 * LINK_LIMITS.highWaterBytes;
    client.link.write(patternBytes(total));
    expect(client.link.congested).toBe(true);
    await turn();
    // The reader is paused: the kernel took at most its buffers, the rest waits with us.
    expect(client.link.queuedBytes).toBeGreaterThan(LINK_LIMITS.highWaterBytes);
    expect(client.link.congested).toBe(true);
    expect(client.drains).toEqual([]);
    server.link.resume();
    await changes.until("drain", () => client.drains.length > 0, 20_000);
    expect(client.drains[0]!).toBeLessThan(LINK_LIMITS.lowWaterBytes);
    expect(client.link.congested).toBe(false);
    await changes.until("every byte", () => server.bytes === total, 20_000);
    expect(server.badAt).toBe(-1);
    expect(client.drains.length).toBe(1);
  }, 30_000);

  test("end() flushes a backlog held up by a paused reader, then closes", async () => {
    const { server, client } = await pair();
    server.link.pause();
    const total = 8 * MiB;
    client.link.write(patternBytes(total));
    client.link.end();
    await turn();
    expect(client.link.queuedBytes).toBeGreaterThan(0);
    expect(server.closes).toEqual([]);
    server.link.resume();
    await changes.until("the server to see the close", () => server.closes.length === 1, 20_000);
    expect(server.bytesAtClose).toBe(total);
    expect(server.badAt).toBe(-1);
    await changes.until("the client's close", () => client.closes.length === 1);
  }, 30_000);

  test("destroy() drops what is queued and closes at once; the close callback fires once", async () => {
    const { server, client, listener } = await pair();
    server.link.pause();
    const total = 16 * MiB;
    client.link.write(patternBytes(total));
    await turn();
    const queued = client.link.queuedBytes;
    expect(queued).toBeGreaterThan(0);
    client.link.destroy();
    expect(client.link.queuedBytes).toBe(0);
    await changes.until("the client's close", () => client.closes.length === 1);
    client.link.destroy();
    client.link.end();
    client.link.write(new Uint8Array([1]));
    server.link.resume();
    await changes.until("the server to see the close", () => server.closes.length === 1, 10_000);
    expect(server.bytes).toBeLessThanOrEqual(total - queued);
    expect(server.badAt).toBe(-1);
    await marker(listener);
    expect(client.closes.length).toBe(1);
    expect(server.closes.length).toBe(1);
  }, 30_000);
});

describe("inbound", () => {
  test("pause() stops reads until resume(); nothing is lost", async () => {
    const { server, client, listener } = await pair();
    server.link.pause();
    client.link.write(patternBytes(64 * 1024));
    await Promise.resolve();
    expect(client.link.queuedBytes).toBe(0); // with the kernel, i.e. readable on the other side
    await marker(listener);
    expect(server.bytes).toBe(0);
    server.link.resume();
    await changes.until("the 64 KiB", () => server.bytes === 64 * 1024);
    expect(server.badAt).toBe(-1);
  });

  test("a pause() from a handler that used its time slice is not undone when the slice ends", async () => {
    const spin = (ms: number) => {
      const until = performance.now() + ms;
      while (performance.now() < until);
    };
    const server = new End({
      onData: (e) => {
        if (e.chunks !== 1) return;
        spin(5); // over YIELD_AFTER_MS: the link yields and schedules its own resume
        e.link.pause();
      },
    });
    const { client, listener } = await pair(server);
    client.link.write(patternBytes(10));
    await changes.until("the first chunk", () => server.chunks === 1);
    client.link.write(patternBytes(10, 10));
    await Promise.resolve();
    await turn();
    await marker(listener);
    expect(server.bytes).toBe(10);
    server.link.resume();
    await changes.until("the second write", () => server.bytes === 20);
    expect(server.badAt).toBe(-1);
  });

  test("the peer closing fires the close callback once, with no error", async () => {
    const { server, client, listener } = await pair();
    client.link.end();
    await changes.until("the server's close", () => server.closes.length === 1);
    expect(server.closes[0]).toBeUndefined();
    expect(server.link.closed).toBe(true);
    await marker(listener);
    expect(server.closes.length).toBe(1);
  });
});

describe("a handler that throws", () => {
  const recordFaults = () => {
    const faults: Array<{ where: string; err: unknown }> = [];
    restores.push(setFaultHandler((where, err) => void faults.push({ where, err })));
    return faults;
  };

  test("in data: that link closes with the error and the fault is reported; other links carry on", async () => {
    const faults = recordFaults();
    const boom = new Error("handler bug");
    const bad = new End({
      onData: () => {
        throw boom;
      },
    });
    const { client, listener } = await pair(bad);
    client.link.write(new Uint8Array([1]));
    await changes.until("the fault", () => faults.length === 1);
    expect(faults[0]!.where).toBe("handling data from 127.0.0.1");
    expect(faults[0]!.err).toBe(boom);
    expect(bad.closes).toEqual([boom]);
    expect(bad.link.closed).toBe(true);
    await changes.until("the peer to see the close", () => client.closes.length === 1);
    client.link.write(new Uint8Array([2])); // closed: ignored, not delivered
    await marker(listener);
    expect(bad.chunks).toBe(1);
    expect(faults.length).toBe(1);
    expect(bad.closes.length).toBe(1);
  });

  test("in close, drain or accept: reported with where it happened", async () => {
    const faults = recordFaults();
    const closing = new End({
      onClose: () => {
        throw new Error("close bug");
      },
    });
    const { client } = await pair(new End(), closing);
    client.link.destroy();
    await changes.until("the close fault", () => faults.length === 1);
    expect(faults[0]!.where).toMatch(/^handling close of 127\.0\.0\.1:\d+$/);

    const draining = new End({
      onDrain: () => {
        throw new Error("drain bug");
      },
    });
    const p = await pair(new End(), draining);
    p.server.link.pause();
    p.client.link.write(patternBytes(2 * LINK_LIMITS.highWaterBytes));
    await turn();
    p.server.link.resume();
    await changes.until("the drain fault", () => faults.length === 2, 20_000);
    expect(faults[1]!.where).toMatch(/^handling drain of 127\.0\.0\.1:\d+$/);
    expect(p.client.link.closed).toBe(true);

    const srv = await listen(() => {
      throw new Error("accept bug");
    });
    const refused = new End();
    refused.link = await tcpTransport.connect(HOST, srv.port, refused.handlers(), 2000);
    links.push(refused.link);
    await changes.until("the accept fault", () => faults.length === 3);
    expect(faults[2]!.where).toBe("accepting a connection from 127.0.0.1");
    await changes.until("the refused client to be closed", () => refused.closes.length === 1);
  }, 30_000);
});

test("once I/O is halted (a worker stopping on a fault) nothing is written and nothing is handed up", async () => {
  const { server, client } = await pair(new End({ keep: true }));
  let handed = 0;
  const other = await listen(() => ({ data: () => void handed++, close() {} }));
  const lift = haltIo();
  restores.push(lift);
  client.link.write(new Uint8Array([1, 2, 3]));
  await turn();
  expect(client.link.queuedBytes).toBe(3);
  // A peer that is not halted writes to us; a round trip on plain Bun sockets (not halted
  // either) shows the loop has been past its bytes.
  const raw = await Bun.connect({ hostname: HOST, port: other.port, socket: { data() {} } });
  raw.write(new Uint8Array([9]));
  let marked = false;
  const ml = Bun.listen({ hostname: HOST, port: 0, socket: { data: () => void ((marked = true), changes.note()) } });
  const mc = await Bun.connect({ hostname: HOST, port: ml.port, socket: { data() {} } });
  mc.write(new Uint8Array([1]));
  try {
    await changes.until("the marker", () => marked);
  } finally {
    mc.end();
    raw.end();
    ml.stop(true);
  }
  expect(handed).toBe(0);
  lift();
  client.link.flushSoon();
  await changes.until("the held bytes once the halt is lifted", () => server.bytes === 3);
  expect(server.got).toEqual([1, 2, 3]);
});

describe("listen and connect", () => {
  test("an address in use is named in the error", async () => {
    const s = await listen(() => new End().handlers());
    await expect(tcpTransport.listen(HOST, s.port, () => new End().handlers())).rejects.toThrow(
      `cannot listen on 127.0.0.1:${s.port}: the address is already in use`,
    );
  });

  test("connect to a port nobody listens on rejects", async () => {
    const s = await listen(() => new End().handlers());
    const port = s.port;
    s.stop();
    await expect(tcpTransport.connect(HOST, port, new End().handlers(), 2000)).rejects.toBeDefined();
  });
});
