// The handshake transport (src/net/handshake.ts) over real TCP on 127.0.0.1: members with the same
// secret get a link both ways; a wrong secret, no handshake, a stalled one or a replayed one never
// reach the layer above (`accept` is never called) and the connection is closed. Waits are on
// events (a close, a chunk), never on sleeps.
import { afterEach, describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import { systemClock } from "../../../src/clock.ts";
import { HELLO_BYTES, PROOF_BYTES } from "../../../src/codec/handshake.ts";
import { withHandshake } from "../../../src/net/handshake.ts";
import { tcpTransport } from "../../../src/net/tcp.ts";
import type { Link, LinkHandlers, Server, Transport } from "../../../src/net/transport.ts";
import { Changes } from "./until.ts";

const HOST = "127.0.0.1";
const enc = new TextEncoder();
const changes = new Changes();
const servers: Server[] = [];
const links: Link[] = [];
const raws: Socket<undefined>[] = [];
afterEach(() => {
  for (const l of links.splice(0)) l.destroy();
  for (const s of servers.splice(0)) s.stop();
  for (const r of raws.splice(0)) r.terminate();
});

const secured = (secret: string, deadlineMs = 5000): Transport =>
  withHandshake(tcpTransport, { secret: enc.encode(secret), channel: "control", clock: systemClock, deadlineMs });

/** A listener that records what reaches the layer above. */
async function listener(t: Transport) {
  const seen = { accepted: 0, bytes: [] as number[], closes: 0 };
  const server = await t.listen(HOST, 0, (link): LinkHandlers => {
    seen.accepted++;
    links.push(link);
    changes.note();
    return {
      data: (l, chunk) => {
        seen.bytes.push(...chunk);
        l.write(chunk); // echo
        changes.note();
      },
      close: () => {
        seen.closes++;
        changes.note();
      },
    };
  });
  servers.push(server);
  return { server, seen };
}

/** A raw client speaking whatever bytes the test writes; records what comes back and the close. */
async function raw(port: number) {
  const got = { bytes: [] as number[], closed: false };
  const s = await Bun.connect<undefined>({
    hostname: HOST,
    port,
    socket: {
      data(_s, chunk) {
        got.bytes.push(...chunk);
        changes.note();
      },
      close() {
        got.closed = true;
        changes.note();
      },
    },
  });
  raws.push(s);
  return { s, got };
}

const collector = () => {
  const got = { bytes: [] as number[], closed: false };
  const handlers: LinkHandlers = {
    data: (_l, c) => {
      got.bytes.push(...c);
      changes.note();
    },
    close: () => {
      got.closed = true;
      changes.note();
    },
  };
  return { got, handlers };
};

describe("cluster handshake transport", () => {
  test("the same secret on both sides: the link carries bytes both ways", async () => {
    const t = secured("s3cret-s3cret-s3cret");
    const { server, seen } = await listener(t);
    const c = collector();
    const link = await t.connect(HOST, server.port, c.handlers, 2000);
    links.push(link);
    link.write(enc.encode("hello"));
    await changes.until("the echo", () => c.got.bytes.length === 5);
    expect(Buffer.from(seen.bytes).toString()).toBe("hello");
    expect(Buffer.from(c.got.bytes).toString()).toBe("hello");
    expect(seen.accepted).toBe(1);
  });

  test("a wrong secret: connect fails, the listener never hands the connection up", async () => {
    const { server, seen } = await listener(secured("the-right-secret-1"));
    const err = await secured("a-wrong-secret-22").connect(HOST, server.port, collector().handlers, 2000).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toContain("does not hold this cluster's secret");
    expect(seen.accepted).toBe(0);
  });

  test("a dialler without a secret (a control frame first) is closed unheard", async () => {
    const { server, seen } = await listener(secured("the-right-secret-1"));
    const r = await raw(server.port);
    // A `hello` control frame as a worker without a secret would send it.
    const body = enc.encode('{"name":"w1"}');
    const frame = new Uint8Array(4 + 2 + body.length);
    new DataView(frame.buffer).setUint32(0, 2 + body.length);
    new DataView(frame.buffer).setUint16(4, 1);
    frame.set(body, 6);
    r.s.write(frame.subarray(0, HELLO_BYTES)); // at least a hello's worth, so the listener decides
    r.s.write(frame.subarray(HELLO_BYTES));
    await changes.until("the listener to close it", () => r.got.closed);
    expect(r.got.bytes).toEqual([]);
    expect(seen.accepted).toBe(0);
  });

  test("a dialler that stalls is closed at the deadline", async () => {
    const { server, seen } = await listener(secured("the-right-secret-1", 200));
    const r = await raw(server.port);
    r.s.write(new Uint8Array([0x57, 0x4c])); // two bytes of a hello, then nothing
    await changes.until("the deadline to close it", () => r.got.closed, 3000);
    expect(seen.accepted).toBe(0);
  });

  test("a recorded handshake replayed on a new connection is refused (fresh nonces)", async () => {
    const t = secured("the-right-secret-1");
    const { server, seen } = await listener(t);
    // A man in the middle records what a member sends: a relay between the member and the listener.
    const sent: number[] = [];
    const relay = await Bun.listen<{ up?: Socket<undefined>; early: Uint8Array[] }>({
      hostname: HOST,
      port: 0,
      socket: {
        async open(down) {
          down.data = { early: [] };
          const up = await Bun.connect<undefined>({
            hostname: HOST,
            port: server.port,
            socket: { data: (_s, c) => void down.write(c), close: () => void down.end() },
          });
          raws.push(up);
          for (const c of down.data.early) up.write(c);
          down.data.up = up;
        },
        data(down, c) {
          sent.push(...c);
          if (down.data.up) down.data.up.write(c);
          else down.data.early.push(c.slice());
        },
      },
    });
    try {
      const link = await t.connect(HOST, relay.port, collector().handlers, 2000);
      links.push(link);
      await changes.until("the member to be accepted", () => seen.accepted === 1);
      expect(sent.length).toBe(HELLO_BYTES + PROOF_BYTES);
      const r = await raw(server.port);
      r.s.write(new Uint8Array(sent));
      await changes.until("the replay to be closed", () => r.got.closed);
      expect(seen.accepted).toBe(1);
    } finally {
      relay.stop(true);
    }
  });

  test("a listener without the handshake: the dialler fails instead of speaking in clear", async () => {
    const { server } = await listener(tcpTransport);
    // The plain listener echoes the hello back: it is not a challenge.
    const err = await secured("the-right-secret-1").connect(HOST, server.port, collector().handlers, 2000).catch((e: Error) => e);
    expect((err as Error).message).toMatch(/handshake/);
  });
});
