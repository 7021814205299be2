// Control links: frames cut from chunks however they were split or merged, decoded, validated and
// handed to the one handler their type names. Anything malformed (bad JSON, unknown type, wrong
// shape, oversized) closes that link with a log line and reaches no handler.
import { describe, expect, test } from "bun:test";
import { ControlLinks, type ControlTable } from "../../../src/cluster/control-dispatch.ts";
import { CONTROL, CONTROL_MAX_FRAME, encodeControl } from "../../../src/codec/control.ts";
import { writeU16 } from "../../../src/codec/data.ts";
import { writeU32 } from "../../../src/codec/frame.ts";
import type { Link } from "../../../src/net/transport.ts";
import { FakeLink, logEvents } from "./support.ts";

const logs = logEvents();

function setup() {
  const calls: Array<[string, Link, unknown]> = [];
  const table = Object.fromEntries(
    Object.keys(CONTROL).map((type) => [type, (link: Link, body: unknown) => void calls.push([type, link, body])]),
  ) as unknown as ControlTable;
  const control = new ControlLinks(table);
  const closed: Link[] = [];
  /** A link with its own handlers, as a server or a dialer would set it up. */
  const open = () => {
    const link = new FakeLink();
    const h = control.handlers((l) => void closed.push(l));
    return { link, feed: (chunk: Uint8Array) => h.data(link, chunk), close: () => h.close(link) };
  };
  /** What the handlers received, without the link. */
  const received = () => calls.map(([type, , body]) => [type, body]);
  return { control, calls, closed, open, received };
}

const concat = (...parts: Uint8Array[]) => new Uint8Array(Buffer.concat(parts));

/** A control frame of type `typeId` whose body is `json` as given (valid or not). */
function rawControl(typeId: number, json: string): Uint8Array {
  const j = new TextEncoder().encode(json);
  const out = new Uint8Array(6 + j.length);
  writeU32(out, 0, 2 + j.length);
  writeU16(out, 4, typeId);
  out.set(j, 6);
  return out;
}

const HELLO = encodeControl("hello", { name: "w1" });
const PLAN = encodeControl("plan", { epoch: 3, moves: [[5, 1, 2]], participants: [0, 1, 2] });
const LOST = encodeControl("lost", { id: 4 });

describe("ControlLinks dispatch", () => {
  test("frames reach the handler of their type, with their link and validated body", () => {
    const s = setup();
    const a = s.open();
    a.feed(concat(HELLO, PLAN, LOST));
    expect(s.received()).toEqual([
      ["hello", { name: "w1" }],
      ["plan", { epoch: 3, moves: [[5, 1, 2]], participants: [0, 1, 2] }],
      ["lost", { id: 4 }],
    ]);
    expect(s.calls.every(([, link]) => link === a.link)).toBe(true);
    expect(a.link.calls).toEqual([]);
  });

  test("frames split anywhere across chunks arrive whole and in order", () => {
    const all = concat(HELLO, PLAN, LOST);
    // Every cut point, and byte by byte.
    for (let cut = 1; cut < all.length; cut++) {
      const s = setup();
      const a = s.open();
      a.feed(all.subarray(0, cut));
      a.feed(all.subarray(cut));
      expect(s.received().map(([type]) => type)).toEqual(["hello", "plan", "lost"]);
    }
    const s = setup();
    const a = s.open();
    for (let i = 0; i < all.length; i++) a.feed(all.subarray(i, i + 1));
    expect(s.received()).toEqual([
      ["hello", { name: "w1" }],
      ["plan", { epoch: 3, moves: [[5, 1, 2]], participants: [0, 1, 2] }],
      ["lost", { id: 4 }],
    ]);
  });

  test("each link cuts its own frames: a half frame on one does not mix with another's", () => {
    const s = setup();
    const a = s.open();
    const b = s.open();
    a.feed(PLAN.subarray(0, 9));
    b.feed(HELLO);
    a.feed(PLAN.subarray(9));
    expect(s.calls.map(([type, link]) => [type, link])).toEqual([
      ["hello", b.link],
      ["plan", a.link],
    ]);
  });

  test("close runs the link's closed callback with that link", () => {
    const s = setup();
    const a = s.open();
    s.open();
    a.close();
    expect(s.closed).toEqual([a.link]);
  });
});

describe("ControlLinks bad input", () => {
  const malformed: Array<[string, Uint8Array]> = [
    ["JSON that does not parse", rawControl(CONTROL.hello.id, '{"name": "w1"')],
    ["bytes that are not UTF-8", concat(rawControl(CONTROL.hello.id, ""), new Uint8Array([0xff]))],
    ["an unknown type", rawControl(999, '{"name":"w1"}')],
    ["a body of the wrong shape", rawControl(CONTROL.hello.id, '{"name": 5}')],
    ["a frame too short for its type", new Uint8Array([0, 0, 0, 1, 0])],
  ];

  test.each(malformed)("%s closes the link with a log line and reaches no handler, nor do the frames after it", (_what, frame) => {
    const s = setup();
    const a = s.open();
    a.feed(concat(HELLO, fixLength(frame), LOST));
    expect(s.received()).toEqual([["hello", { name: "w1" }]]);
    expect(a.link.calls).toEqual(["destroy"]);
    expect(logs.events).toEqual(["error control_malformed"]);
    // Other links carry on.
    const b = s.open();
    b.feed(LOST);
    expect(s.received()).toEqual([
      ["hello", { name: "w1" }],
      ["lost", { id: 4 }],
    ]);
  });

  test("an oversized frame closes the link with a log line, as soon as its length is read", () => {
    const s = setup();
    const a = s.open();
    const head = new Uint8Array(4);
    writeU32(head, 0, CONTROL_MAX_FRAME + 1);
    a.feed(concat(HELLO, head, new Uint8Array(10)));
    expect(s.received()).toEqual([["hello", { name: "w1" }]]);
    expect(a.link.calls).toEqual(["destroy"]);
    expect(logs.events).toEqual(["error control_oversized"]);
  });

  test("a frame of exactly the largest size is not oversized", () => {
    const s = setup();
    const a = s.open();
    const head = new Uint8Array(4);
    writeU32(head, 0, CONTROL_MAX_FRAME);
    a.feed(head);
    expect(a.link.calls).toEqual([]);
  });
});

describe("ControlLinks names", () => {
  test("identify names a link; nameOf answers per link, undefined for one never named", () => {
    const s = setup();
    const a = s.open().link;
    const b = s.open().link;
    expect(s.control.nameOf(a)).toBeUndefined();
    s.control.identify(a, "w1");
    s.control.identify(b, "w2");
    expect(s.control.nameOf(a)).toBe("w1");
    expect(s.control.nameOf(b)).toBe("w2");
    // One link speaks for one member: a second name is refused and the first kept.
    expect(s.control.identify(a, "w3")).toBe(false);
    expect(s.control.nameOf(a)).toBe("w1");
    expect(s.control.linkOf("w3")).toBeUndefined();
    expect(s.control.nameOf(new FakeLink())).toBeUndefined();
  });

  test("while one open link is bound to a name, a second one claiming it is refused and speaks for nobody", () => {
    const s = setup();
    const real = s.open().link;
    const other = s.open().link;
    expect(s.control.identify(real, "w1")).toBe(true);
    expect(s.control.identify(other, "w1")).toBe(false);
    expect(s.control.nameOf(other)).toBeUndefined();
    expect(s.control.isBound(real)).toBe(true);
    expect(s.control.isBound(other)).toBe(false);
    expect(s.control.linkOf("w1")).toBe(real);
  });

  test("once the bound link closes, a new link may take the name; the old one is no longer bound", () => {
    const s = setup();
    const old = s.open().link as FakeLink;
    s.control.identify(old, "w1");
    old.closed = true;
    expect(s.control.linkOf("w1")).toBeUndefined();
    const fresh = s.open().link;
    expect(s.control.identify(fresh, "w1")).toBe(true);
    expect(s.control.isBound(fresh)).toBe(true);
    expect(s.control.isBound(old)).toBe(false);
  });

  test("a released name is free at once, and its still-open link speaks for nobody", () => {
    const s = setup();
    const leaver = s.open().link;
    s.control.identify(leaver, "w2");
    s.control.release("w2");
    expect(s.control.isBound(leaver)).toBe(false);
    expect(s.control.linkOf("w2")).toBeUndefined();
    const fresh = s.open().link;
    expect(s.control.identify(fresh, "w2")).toBe(true);
    expect(s.control.isBound(leaver)).toBe(false);
  });
});

/** Sets a hand-built frame's length prefix to its actual body size. */
function fixLength(frame: Uint8Array): Uint8Array {
  const out = frame.slice();
  writeU32(out, 0, out.length - 4);
  return out;
}
