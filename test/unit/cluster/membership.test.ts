// Who is in the cluster as this worker knows it: the member list in cluster order, this worker's
// own entry, the committed membership, and the names that departed (whose connections closing is
// expected, not a failure).
import { describe, expect, test } from "bun:test";
import { InvariantError } from "../../../src/assert.ts";
import { INITIALIZER_NAME, Membership } from "../../../src/cluster/membership.ts";
import { member } from "./support.ts";

const INIT = member(0, INITIALIZER_NAME);
const W1 = member(1, "w1");
const W2 = member(2, "w2");
const W3 = member(3, "w3");

/** Worker w1 (not yet numbered) that adopted the cluster [initializer, w1, w2]. */
function joined(): Membership {
  const m = new Membership({ id: -1, name: "w1", host: "", controlPort: 0, dataPort: 0 });
  m.adopt([INIT, W1, W2]);
  return m;
}

describe("Membership", () => {
  test("before a topology it knows only itself as given", () => {
    const m = new Membership(W1);
    expect(m.self).toEqual(W1);
    expect(m.selfId).toBe(1);
    expect(m.members).toEqual([]);
    expect(m.committed).toEqual([]);
    expect(m.initializerId).toBe(0);
  });

  test("adopt takes the member list and this worker's entry (its id) from it", () => {
    const m = joined();
    expect(m.members).toEqual([INIT, W1, W2]);
    expect(m.self).toEqual(W1);
    expect(m.selfId).toBe(1);
    expect(m.others()).toEqual([INIT, W2]);
  });

  test("a topology that does not name this worker is an invariant error", () => {
    const m = new Membership(W3);
    expect(() => m.adopt([INIT, W1])).toThrow(InvariantError);
    expect(m.members).toEqual([]);
  });

  test("byId and byName find known members only", () => {
    const m = joined();
    expect(m.byId(2)).toEqual(W2);
    expect(m.byName("w2")).toEqual(W2);
    expect(m.byId(3)).toBeUndefined();
    expect(m.byName("w3")).toBeUndefined();
  });

  test("initializerId is the id of the member named initializer", () => {
    const m = new Membership(W1);
    m.adopt([member(7, INITIALIZER_NAME), W1]);
    expect(m.initializerId).toBe(7);
  });

  test("add appends new members in order and ignores ids already known", () => {
    const m = joined();
    m.add([W3, W2, { ...W3, name: "other" }]);
    expect(m.members).toEqual([INIT, W1, W2, W3]);
  });

  test("remove forgets matching members other than this worker and marks them departed", () => {
    const m = joined();
    m.add([W3]);
    const gone = m.remove((x) => x.name !== "initializer");
    expect(gone).toEqual([W2, W3]);
    expect(m.members).toEqual([INIT, W1]);
    expect(m.hasDeparted("w2")).toBe(true);
    expect(m.hasDeparted("w3")).toBe(true);
    expect(m.hasDeparted("w1")).toBe(false);
    expect(m.hasDeparted("initializer")).toBe(false);
    expect(m.remove(() => false)).toEqual([]);
  });

  test("a departed name that is added again is no longer departed", () => {
    const m = joined();
    m.remove((x) => x.id === 2);
    m.add([member(4, "w2")]);
    expect(m.hasDeparted("w2")).toBe(false);
    expect(m.byName("w2")?.id).toBe(4);
  });

  test("commit records the committed membership apart from the known one", () => {
    const m = joined();
    m.commit([INIT, W1]);
    m.add([W3]);
    expect(m.committed).toEqual([INIT, W1]);
    expect(m.members).toEqual([INIT, W1, W2, W3]);
    const list = [INIT, W1, W2];
    m.commit(list);
    list.pop();
    // A copy: the caller's array changing later does not change it.
    expect(m.committed).toEqual([INIT, W1, W2]);
  });
});
