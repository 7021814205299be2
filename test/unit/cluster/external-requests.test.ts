// The cluster-wide key count (external 25 → 26): answers once every member has, or at the
// deadline without the silent ones, never twice.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Member } from "../../../src/codec/control.ts";
import { ClusterKeyCounts, KEY_COUNT_DEADLINE_MS } from "../../../src/cluster/external-requests.ts";
import { EXTERNAL_MSG } from "../../../src/codec/external.ts";
import { configureLog } from "../../../src/log.ts";
import { ManualClock } from "../../sim/manual-clock.ts";

beforeAll(() => configureLog({ level: "silent" }));
afterAll(() => configureLog({ level: "info" }));

const member = (id: number, name: string): Member => ({ id, name, host: "h", controlPort: 1, dataPort: 2 });
const own = { counter: { "3": 2 } };

function setup(reachable: (id: number) => boolean) {
  const clock = new ManualClock();
  const asked: Array<[number, number]> = [];
  const k = new ClusterKeyCounts(clock, (id, reqId) => (asked.push([id, reqId]), reachable(id)));
  const replies: Array<[number, unknown]> = [];
  return { clock, asked, k, replies, reply: (type: number, payload: string) => replies.push([type, JSON.parse(payload)]) };
}

describe("ClusterKeyCounts", () => {
  test("answers once every member has answered", () => {
    const s = setup(() => true);
    s.k.gather("initializer", own, [member(1, "w1"), member(2, "w2")], s.reply);
    expect(s.asked.map(([id]) => id)).toEqual([1, 2]);
    const reqId = s.asked[0]![1];
    s.k.collect({ reqId, name: "w1", counts: { counter: { "5": 1 } } });
    expect(s.replies).toEqual([]);
    s.k.collect({ reqId, name: "w2", counts: { counter: {} } });
    expect(s.replies).toEqual([[EXTERNAL_MSG.ClusterStateEntityCountQueryResponse, { initializer: own, w1: { counter: { "5": 1 } }, w2: { counter: {} } }]]);
    s.clock.advance(KEY_COUNT_DEADLINE_MS * 2);
    s.k.collect({ reqId, name: "w2", counts: { counter: {} } });
    expect(s.replies.length).toBe(1);
  });

  test("answers at the deadline without a silent member, and at once without unreachable ones", () => {
    const s = setup((id) => id !== 2);
    s.k.gather("initializer", own, [member(1, "w1"), member(2, "w2")], s.reply);
    s.clock.advance(KEY_COUNT_DEADLINE_MS - 1);
    expect(s.replies).toEqual([]);
    s.clock.advance(1);
    expect(s.replies).toEqual([[EXTERNAL_MSG.ClusterStateEntityCountQueryResponse, { initializer: own }]]);

    const alone = setup(() => false);
    alone.k.gather("initializer", own, [member(1, "w1")], alone.reply);
    expect(alone.replies.length).toBe(1);
  });
});
