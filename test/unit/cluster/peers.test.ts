// The links to the other members: dialing control then data with a hello on each, a member that
// cannot be reached reported lost, a member dropped while its dial is under way (its late links
// are closed, never kept), and records for a member that is gone dropped and counted.
import { describe, expect, test } from "bun:test";
import { CONTROL } from "../../../src/codec/control.ts";
import { readU16 } from "../../../src/codec/data.ts";
import type { LinkHandlers, Transport } from "../../../src/net/transport.ts";
import { Peers } from "../../../src/cluster/peers.ts";
import { ManualClock } from "../../sim/manual-clock.ts";
import { FakeLink, logEvents, member } from "./support.ts";

const logs = logEvents();

/** A transport whose connects wait until the test settles them, in order. */
function pendingTransport() {
  const dials: Array<{ port: number; handlers: LinkHandlers; resolve: (l: FakeLink) => void; reject: (e: Error) => void }> = [];
  const transport: Transport = {
    listen: () => Promise.reject(new Error("not here")),
    connect: (_host, port, handlers) => new Promise((resolve, reject) => dials.push({ port, handlers, resolve: resolve as (l: FakeLink) => void, reject })),
  };
  return { transport, dials };
}

function setup() {
  const { transport, dials } = pendingTransport();
  const clock = new ManualClock();
  const lost: string[] = [];
  const peers = new Peers({
    name: "me",
    selfId: () => 0,
    controlTransport: transport,
    dataTransport: transport,
    clock,
    epoch: () => 1,
    ingestAt: () => 0,
    controlHandlers: () => ({ data() {}, close() {} }),
    dialedControl: () => {},
    drained: () => {},
    lost: (id, why) => void lost.push(`${id} ${why}`),
  });
  return { peers, dials, clock, lost };
}

const turn = () => Promise.resolve().then(() => Promise.resolve());

describe("Peers", () => {
  test("dials control, then data, and says hello on each", async () => {
    const t = setup();
    const done = t.peers.dialAll([member(3, "w3")]);
    expect(t.dials.map((d) => d.port)).toEqual([1]);
    const control = new FakeLink();
    t.dials[0]!.resolve(control);
    await turn();
    expect(readU16(control.bytes(), 4)).toBe(CONTROL.hello.id);
    expect(t.dials.map((d) => d.port)).toEqual([1, 2]);
    const data = new FakeLink();
    t.dials[1]!.resolve(data);
    await done;
    expect(t.peers.get(3)!.control).toBe(control);
    expect(t.peers.get(3)!.data).toBe(data);
    expect(data.out.len).toBeGreaterThan(0);
    expect(t.lost).toEqual([]);
  });

  test("a member dropped while its dial is under way: the late link is closed, not kept, and nobody is reported lost", async () => {
    const t = setup();
    const done = t.peers.dialAll([member(3, "w3")]);
    t.peers.drop(3);
    const late = new FakeLink();
    t.dials[0]!.resolve(late);
    await done;
    expect(late.calls).toContain("end");
    expect(late.out.len).toBe(0);
    expect(t.peers.get(3)).toBeUndefined();
    expect(t.dials.length).toBe(1);
    expect(t.lost).toEqual([]);
  });

  test("a member that cannot be reached after every attempt is reported lost", async () => {
    const t = setup();
    const done = t.peers.dialAll([member(4, "w4")]);
    for (let i = 0; i < 5; i++) {
      t.dials[i]!.reject(new Error("ECONNREFUSED"));
      await turn();
      t.clock.advance(1000);
      await turn();
    }
    await done;
    expect(t.lost).toEqual(["4 unreachable"]);
    expect(logs.events).toContain("error dial_failed");
  });

  test("records for a member that is gone are dropped and counted", () => {
    const t = setup();
    const payload = new Uint8Array([1, 2, 3]);
    t.peers.forward(9, 1, true, 5, "k", payload, 0, 3);
    t.peers.ensure(member(3, "w3"));
    t.peers.markDead(3);
    t.peers.forward(3, 1, true, 5, "k", payload, 0, 3);
    expect(t.peers.dropped()).toBe(2);
    expect(logs.events.filter((e) => e === "error peer_gone").length).toBe(1);
  });
});
