// The read side of a data connection: frames of a later epoch wait (and reading stops) until the
// table reaches it; a sequence gap or an oversized frame closes the connection; the sender is
// named by its hello.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { encodeBarrier, encodeHello, encodeMarker, encodeStateEnd } from "../../../src/codec/data.ts";
import { InboundData, newInboundStats, type InboundHost } from "../../../src/cluster/inbound-data.ts";
import { systemClock } from "../../../src/clock.ts";
import { configureLog } from "../../../src/log.ts";
import type { Link } from "../../../src/net/transport.ts";

beforeAll(() => configureLog({ level: "silent" }));
afterAll(() => configureLog({ level: "info" }));

function fakeLink() {
  const events: string[] = [];
  const link = {
    id: 1,
    remote: "peer",
    closed: false,
    pause: () => events.push("pause"),
    resume: () => events.push("resume"),
    destroy: () => events.push("destroy"),
  } as unknown as Link;
  return { link, events };
}

function setup(epoch = 1, floor = 0, mayClaim = true) {
  const seen: string[] = [];
  const { link, events } = fakeLink();
  let lost = -1;
  const migration = {
    epoch,
    onMarker: (from: number, e: number, slots: readonly number[]) => seen.push(`marker from ${from} epoch ${e} [${slots}]`),
    onStateEnd: (slot: number, keys: number) => seen.push(`end ${slot} ${keys}`),
  };
  const host = {
    clock: systemClock,
    statsOf: () => stats,
    dataflow: { latency: { from: () => {} }, chunkStart: () => {}, chunkEnd: () => {} },
    migration,
    pausedForSink: () => false,
    afterChunk: () => {},
    lost: (id: number) => (lost = id),
    refused: (name: string) => name === "gone",
    barrier: (from: number, k: number, round: number) => seen.push(`barrier from ${from} k ${k} round ${round}`),
    floor: () => floor,
    admittedAt: () => 0,
    mayClaim: () => mayClaim,
    isMember: (_id: number, name: string) => name !== "stranger",
  } as unknown as InboundHost;
  const stats = newInboundStats();
  const inb = new InboundData(link, host);
  return { inb, seen, events, migration, stats, lostId: () => lost };
}

const concat = (...parts: Uint8Array[]) => new Uint8Array(Buffer.concat(parts));

describe("InboundData", () => {
  test("frames of a later epoch wait, in order, until the table reaches it", () => {
    const s = setup(1);
    s.inb.onChunk(concat(encodeHello(0, 1, "w1", 7), encodeMarker(1, 1, [3]), encodeMarker(2, 2, [4]), encodeStateEnd(3, 1, 9, 0)));
    // The epoch-2 marker and everything after it wait, even the epoch-1 frame behind it.
    expect(s.seen).toEqual(["marker from 7 epoch 1 [3]"]);
    expect(s.events).toEqual(["pause"]);
    s.inb.release(1);
    expect(s.seen.length).toBe(1);
    s.migration.epoch = 2;
    s.inb.release(2);
    expect(s.seen).toEqual(["marker from 7 epoch 1 [3]", "marker from 7 epoch 2 [4]", "end 9 0"]);
    expect(s.events).toEqual(["pause", "resume"]);
    s.inb.onClose();
    expect(s.lostId()).toBe(7);
  });

  test("frames of an epoch below the rollback's floor were in flight before it: dropped, their sequence counted", () => {
    const s = setup(5, 5);
    s.inb.onChunk(concat(encodeHello(0, 4, "w1", 7), encodeMarker(1, 4, [3]), encodeBarrier(2, 4, 9, 1), encodeBarrier(3, 5, 10, 1), encodeStateEnd(4, 5, 9, 0)));
    expect(s.seen).toEqual(["barrier from 7 k 10 round 1", "end 9 0"]);
    expect(s.events).not.toContain("destroy");
  });

  test("a sequence gap closes the connection and nothing after it is applied", () => {
    const s = setup(1);
    s.inb.onChunk(concat(encodeHello(0, 1, "w1", 7), encodeMarker(2, 1, [3])));
    expect(s.seen).toEqual([]);
    expect(s.events).toEqual(["destroy"]);
  });

  test("an oversized frame closes the connection without allocating it", () => {
    const s = setup(1);
    s.inb.onChunk(new Uint8Array([0x7f, 0xff, 0xff, 0xff, 1]));
    expect(s.events).toEqual(["destroy"]);
  });

  test("a connection that closes before its hello loses nobody", () => {
    const s = setup(1);
    s.inb.onClose();
    expect(s.lostId()).toBe(-1);
  });

  test("a hello from a member that was cut off closes the connection; nothing after it is applied and its close loses nobody", () => {
    const s = setup(1);
    s.inb.onChunk(concat(encodeHello(0, 1, "gone", 5), encodeMarker(1, 1, [3]), encodeStateEnd(2, 1, 9, 0)));
    expect(s.seen).toEqual([]);
    expect(s.events).toEqual(["destroy"]);
    s.inb.onClose();
    expect(s.lostId()).toBe(-1);
  });

  test("a frame before the hello closes the connection: nothing is applied from a sender that did not say who it is", () => {
    const s = setup(1);
    s.inb.onChunk(concat(encodeMarker(0, 1, [3]), encodeHello(1, 1, "w1", 7)));
    expect(s.seen).toEqual([]);
    expect(s.events).toEqual(["destroy"]);
    s.inb.onClose();
    expect(s.lostId()).toBe(-1);
  });

  test("a second hello closes the connection: one connection speaks for one member", () => {
    const s = setup(1);
    s.inb.onChunk(concat(encodeHello(0, 1, "w1", 7), encodeHello(1, 1, "w2", 8), encodeMarker(2, 1, [3])));
    expect(s.seen).toEqual([]);
    expect(s.events).toEqual(["destroy"]);
    expect(s.inb.sender()).toBe(7);
  });

  test("a hello claiming a member that already speaks on another connection is refused, and its close loses nobody", () => {
    const s = setup(1, 0, false);
    s.inb.onChunk(concat(encodeHello(0, 1, "w1", 7), encodeMarker(1, 1, [3])));
    expect(s.seen).toEqual([]);
    expect(s.events).toEqual(["destroy"]);
    s.inb.onClose();
    expect(s.lostId()).toBe(-1);
  });

  test("frames from a sender that is no member here close the connection before anything is applied", () => {
    const s = setup(1);
    s.inb.onChunk(concat(encodeHello(0, 1, "stranger", 99), encodeMarker(1, 1, [3])));
    expect(s.seen).toEqual([]);
    expect(s.events).toEqual(["destroy"]);
    s.inb.onClose();
    expect(s.lostId()).toBe(-1);
  });
});
