// The cluster-wide key count (external 25 → 26): answers once every member has, or at the
// deadline without the silent ones, never twice.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Member } from "../../../src/codec/control.ts";
import { ClusterKeyCounts, fitExternal, KEY_COUNT_DEADLINE_MS } from "../../../src/cluster/external-requests.ts";
import { EXTERNAL_MAX_FRAME, EXTERNAL_MSG, externalBodyBytes } from "../../../src/codec/external.ts";
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

describe("fitExternal", () => {
  const status = (name: string, members: string[]) => ({
    name,
    role: "worker" as const,
    ready: true,
    epoch: 1,
    members,
    down: [],
    slots: 10,
    keys: 1000,
    held: 0,
    slots_in_transit: 0,
    messages_in: 123456789,
    messages_out: 123456789,
    sources_paused: false,
    latency: { count: 5, sum: 0.1, buckets: Array.from({ length: 23 }, (_, i) => [i, 1000 + i] as [number, number]) },
    autoscale: { phase: "idle" as const },
  });

  test("a small cluster's answer is whole", () => {
    const s = { workers: [status("initializer", ["initializer"])], missing: [] };
    expect(JSON.parse(fitExternal(s))).toEqual(s);
  });

  test("a large one leaves out latency buckets, then membership lists, then workers, and fits 16 KiB", () => {
    for (const n of [20, 60, 400]) {
      const names = Array.from({ length: n }, (_, i) => `worker-with-a-long-name-${i}`);
      const text = fitExternal({ workers: names.map((m) => status(m, names)), missing: [] });
      expect(externalBodyBytes(text)).toBeLessThanOrEqual(EXTERNAL_MAX_FRAME);
      const got = JSON.parse(text) as { workers: { name: string }[]; missing: string[]; trimmed?: boolean; omitted?: number };
      expect(got.trimmed).toBe(true);
      // Nobody is lost without a trace: who is not in the answer is counted.
      expect(got.workers.length + got.missing.length + (got.omitted ?? 0)).toBe(n);
      expect(got.workers[0]!.name).toBe(names[0]);
    }
  });
});
