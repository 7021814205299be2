// Port limits (src/net/port-limits.ts) on real sockets, with time moved by hand: a connection
// silent for the idle deadline is closed, one that spoke within it is kept, and the cap closes
// connections beyond it at once while the others stay open.
import { afterEach, describe, expect, test } from "bun:test";
import { withPortLimits } from "../../../src/net/port-limits.ts";
import { tcpTransport } from "../../../src/net/tcp.ts";
import type { Link, Server } from "../../../src/net/transport.ts";
import { ManualClock } from "../../sim/manual-clock.ts";
import { Changes } from "./until.ts";

const HOST = "127.0.0.1";
const changes = new Changes();
const servers: Server[] = [];
const links: Link[] = [];
afterEach(() => {
  for (const l of links.splice(0)) l.destroy();
  for (const s of servers.splice(0)) s.stop();
});

async function limited(maxConnections: number, idleMs: number, clock: ManualClock) {
  const got = { accepted: 0, bytes: 0 };
  const t = withPortLimits(tcpTransport, { name: "test", maxConnections, idleMs }, clock);
  const server = await t.listen(HOST, 0, () => {
    got.accepted++;
    changes.note();
    return { data: (_l, c) => ((got.bytes += c.length), changes.note()), close: () => changes.note() };
  });
  servers.push(server);
  return { server, got };
}

async function dial(port: number) {
  const end = { closed: false };
  const link = await tcpTransport.connect(HOST, port, { data() {}, close: () => ((end.closed = true), changes.note()) }, 2000);
  links.push(link);
  return { link, end };
}

describe("port limits", () => {
  test("idle: silent for the deadline is closed; one that spoke within it stays", async () => {
    const clock = new ManualClock();
    const { server, got } = await limited(10, 1000, clock);
    const quiet = await dial(server.port);
    const chatty = await dial(server.port);
    await changes.until("both accepted", () => got.accepted === 2);
    clock.advance(900);
    chatty.link.write(new Uint8Array([1]));
    await changes.until("the byte", () => got.bytes === 1);
    clock.advance(1000); // at 1900: quiet silent since 0, chatty since 900
    await changes.until("the quiet one closed", () => quiet.end.closed);
    chatty.link.write(new Uint8Array([2]));
    await changes.until("the second byte", () => got.bytes === 2);
    expect(chatty.end.closed).toBe(false);
  });

  test("the cap: the connection beyond it is closed at once; the others stay", async () => {
    const clock = new ManualClock();
    const { server, got } = await limited(2, 0, clock);
    const a = await dial(server.port);
    const b = await dial(server.port);
    const c = await dial(server.port);
    await changes.until("the third closed", () => c.end.closed);
    expect(got.accepted).toBe(2);
    a.link.write(new Uint8Array([1]));
    b.link.write(new Uint8Array([1]));
    await changes.until("both others speak", () => got.bytes === 2);
    expect(a.end.closed || b.end.closed).toBe(false);
  });
});
