// Barriers: a member relays a round once it has the initializer's barrier, and is done with the
// round only when every other member's barrier of it arrived; older checkpoints are ignored.
import { describe, expect, test } from "bun:test";
import { Barriers } from "../../../src/cluster/barriers.ts";

function setup(self: number, others: number[]) {
  const relayed: string[] = [];
  const done: string[] = [];
  const b = new Barriers({
    initializerId: () => 0,
    others: () => others,
    relay: (k, r) => void relayed.push(`${k}/${r}`),
    done: (k, r) => void done.push(`${k}/${r}`),
  });
  return { b, relayed, done, self };
}

describe("barriers", () => {
  test("a member relays on the initializer's barrier and is done when every other member's arrived", () => {
    const { b, relayed, done } = setup(2, [0, 1, 3]);
    b.onBarrier(1, 5, 1); // a peer's relay may come first
    expect(relayed).toEqual([]);
    b.onBarrier(0, 5, 1);
    expect(relayed).toEqual(["5/1"]);
    expect(done).toEqual([]);
    b.onBarrier(3, 5, 1);
    expect(done).toEqual(["5/1"]);
    b.onBarrier(3, 5, 1); // a duplicate changes nothing
    expect(done).toEqual(["5/1"]);
  });

  test("the initializer begins a round by relaying it, and is done with every member's", () => {
    const { b, relayed, done } = setup(0, [1, 2]);
    b.begin(7, 1);
    expect(relayed).toEqual(["7/1"]);
    b.onBarrier(1, 7, 1);
    b.onBarrier(2, 7, 1);
    expect(done).toEqual(["7/1"]);
    b.begin(7, 2);
    b.onBarrier(2, 7, 2);
    expect(done).toEqual(["7/1"]);
    b.onBarrier(1, 7, 2);
    expect(done).toEqual(["7/1", "7/2"]);
  });

  test("alone, the initializer is done at once", () => {
    const { b, done } = setup(0, []);
    b.begin(1, 1);
    expect(done).toEqual(["1/1"]);
  });

  test("a newer checkpoint forgets the abandoned one; its late barriers are ignored", () => {
    const { b, relayed, done } = setup(2, [0, 1]);
    b.onBarrier(0, 3, 1);
    b.onBarrier(0, 4, 1);
    b.onBarrier(1, 3, 1); // from the abandoned checkpoint 3
    expect(done).toEqual([]);
    b.onBarrier(1, 4, 1);
    expect(relayed).toEqual(["3/1", "4/1"]);
    expect(done).toEqual(["4/1"]);
  });

  test("a barrier from a sender not yet known (-1) counts for nobody", () => {
    const { b, done } = setup(2, [0, 1]);
    b.onBarrier(0, 1, 1);
    b.onBarrier(-1, 1, 1);
    expect(done).toEqual([]);
  });
});
