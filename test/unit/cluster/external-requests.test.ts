// What a worker answers on the external channel: every request an answer or a closed connection.
// The cluster-wide key count (external 25 → 26) answers once every member has, or at the
// deadline without the silent ones, never twice.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Member } from "../../../src/codec/control.ts";
import { answerExternal, ClusterKeyCounts, fitExternal, KEY_COUNT_DEADLINE_MS, statusLine, type ExternalHost } from "../../../src/cluster/external-requests.ts";
import { EXTERNAL_MAX_REQUEST, EXTERNAL_MSG, externalBodyBytes, type ExternalMsgType } from "../../../src/codec/external.ts";
import { configureLog, tapLog } from "../../../src/log.ts";
import type { InputLog } from "../../../src/resilience/input-log.ts";
import type { Dataflow } from "../../../src/runtime/dataflow.ts";
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

describe("ClusterKeyCounts takes only the answers it asked for", () => {
  test("a name not asked, or asked and already answered, is ignored", () => {
    const s = setup(() => true);
    s.k.gather("initializer", own, [member(1, "w1")], s.reply);
    const reqId = s.asked[0]![1];
    s.k.collect({ reqId, name: "intruder", counts: { counter: { "9": 9 } } });
    expect(s.replies).toEqual([]);
    s.k.collect({ reqId, name: "w1", counts: { counter: {} } });
    expect(s.replies).toEqual([[EXTERNAL_MSG.ClusterStateEntityCountQueryResponse, { initializer: own, w1: { counter: {} } }]]);
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
      expect(externalBodyBytes(text)).toBeLessThanOrEqual(EXTERNAL_MAX_REQUEST);
      const got = JSON.parse(text) as { workers: { name: string }[]; missing: string[]; trimmed?: boolean; omitted?: number };
      expect(got.trimmed).toBe(true);
      // Nobody is lost without a trace: who is not in the answer is counted.
      expect(got.workers.length + got.missing.length + (got.omitted ?? 0)).toBe(n);
      expect(got.workers[0]!.name).toBe(names[0]);
    }
  });
});

// ---- answerExternal: every request gets an answer or a closed connection ----------------------

type Logged = { level: string; event: string; msg: string };

function host(over: Partial<ExternalHost> = {}) {
  const calls: string[] = [];
  const rotated: number[] = [];
  const input = { end: 42, bytes: 900, rotate: () => rotated.push(1) } as unknown as InputLog;
  const h: ExternalHost = {
    name: "w1",
    dataflow: { state: { keys: () => ({ count: ["a", "b"] }), counts: () => ({ count: 2 }) } } as unknown as Dataflow,
    stageNames: ["count"],
    parallelStages: [],
    selfId: () => 1,
    sourceNames: () => [],
    isReady: () => true,
    isStopping: () => false,
    down: () => [],
    committed: () => [member(0, "initializer"), member(1, "w1"), member(2, "w2")],
    coordinates: () => false,
    ownedSlots: () => [1, 3],
    shrinkHere: (r) => (calls.push(`shrinkHere ${JSON.stringify(r)}`), { type: EXTERNAL_MSG.ShrinkErrorResponse, payload: "Shrinking by 1 workers!" }),
    relayShrink: (r) => (calls.push(`relayShrink ${JSON.stringify(r)}`), Promise.resolve({ reqId: 1, type: EXTERNAL_MSG.ShrinkErrorResponse, payload: "relayed" })),
    clusterKeyCounts: (reply) => reply(EXTERNAL_MSG.ClusterStateEntityCountQueryResponse, "{}"),
    inputLog: () => undefined,
    forwardRotate: (name) => (calls.push(`forwardRotate ${name}`), true),
    workersStatus: () => {},
    status: () => ({ name: "w1", processing: true, members: ["initializer", "w1", "w2"], down: [], slots: 2, keys: 2, epoch: 3, connected: 2 }),
    shutdown: (why) => void calls.push(`shutdown ${why}`),
    secured: false,
    ...over,
  };
  const replies: Array<[number, string]> = [];
  let closed = 0;
  const logged: Logged[] = [];
  const ask = async (type: number, payload = "") => {
    tapLog((level, event, msg) => void logged.push({ level, event, msg }));
    try {
      answerExternal(h, type as ExternalMsgType, payload, (t, p) => replies.push([t, p]), () => closed++);
      await Promise.resolve();
    } finally {
      tapLog(undefined);
    }
  };
  return { h, calls, rotated, input, replies, logged, ask, closed: () => closed };
}

describe("answerExternal", () => {
  test("stateless partition queries (19, 23) answer 20 and 24: {} without parallel steps", async () => {
    const t = host();
    await t.ask(EXTERNAL_MSG.StatelessPartitionQuery);
    await t.ask(EXTERNAL_MSG.StatelessPartitionCountQuery);
    expect(t.replies).toEqual([
      [EXTERNAL_MSG.StatelessPartitionQueryResponse, "{}"],
      [EXTERNAL_MSG.StatelessPartitionCountQueryResponse, "{}"],
    ]);
  });

  test("a parallel step is listed with this worker's step id; not before it is a member", async () => {
    const t = host({ parallelStages: [["split", 0]] });
    await t.ask(EXTERNAL_MSG.StatelessPartitionQuery);
    await t.ask(EXTERNAL_MSG.PartitionQuery);
    expect(t.replies).toEqual([
      [EXTERNAL_MSG.StatelessPartitionQueryResponse, `{"split":{"w1":["65536"]}}`],
      [EXTERNAL_MSG.PartitionQueryResponse, `{"state_partitions":{"count":{"w1":["1","3"]}},"stateless_partitions":{"split":{"w1":["65536"]}}}`],
    ]);
    const early = host({ parallelStages: [["split", 0]], selfId: () => -1, ownedSlots: () => [] });
    await early.ask(EXTERNAL_MSG.StatelessPartitionCountQuery);
    expect(early.replies).toEqual([[EXTERNAL_MSG.StatelessPartitionCountQueryResponse, "{}"]]);
  });

  test("every query is answered with its reply type", async () => {
    const t = host();
    const pairs = [
      [EXTERNAL_MSG.ClusterStatusQuery, EXTERNAL_MSG.ClusterStatusQueryResponse],
      [EXTERNAL_MSG.PartitionQuery, EXTERNAL_MSG.PartitionQueryResponse],
      [EXTERNAL_MSG.PartitionCountQuery, EXTERNAL_MSG.PartitionCountQueryResponse],
      [EXTERNAL_MSG.SourceIdsQuery, EXTERNAL_MSG.SourceIdsQueryResponse],
      [EXTERNAL_MSG.StateEntityQuery, EXTERNAL_MSG.StateEntityQueryResponse],
      [EXTERNAL_MSG.StatelessPartitionQuery, EXTERNAL_MSG.StatelessPartitionQueryResponse],
      [EXTERNAL_MSG.StateEntityCountQuery, EXTERNAL_MSG.StateEntityCountQueryResponse],
      [EXTERNAL_MSG.StatelessPartitionCountQuery, EXTERNAL_MSG.StatelessPartitionCountQueryResponse],
      [EXTERNAL_MSG.ClusterStateEntityCountQuery, EXTERNAL_MSG.ClusterStateEntityCountQueryResponse],
    ] as const;
    for (const [q] of pairs) await t.ask(q);
    expect(t.replies.map(([type]) => type)).toEqual(pairs.map(([, r]) => r));
    expect(t.closed()).toBe(0);
  });

  test("a reply type sent to a worker closes the connection, unanswered", async () => {
    for (const type of [5, 6, 8, 10, 11, 13, 15, 18, 20, 22, 24, 26]) {
      const t = host();
      await t.ask(type);
      expect({ type, replies: t.replies, closed: t.closed() }).toEqual({ type, replies: [], closed: 1 });
    }
  });

  describe("shrink requests", () => {
    test("a malformed one is answered with why, and nothing shrinks", async () => {
      for (const [payload, why] of [
        [`{"query":false,"node_names":[],"node_count":1e0}`, "node_count must be an integer, not 1e0"],
        [`{"query":false,"node_names":[],"node_count":0.0}`, "node_count must be an integer, not 0.0"],
        [`{"query":false,"node_names":[]}`, "node_count is missing"],
        ["shrink please", "the payload is not JSON"],
      ] as const) {
        const t = host({ coordinates: () => true });
        await t.ask(EXTERNAL_MSG.ShrinkRequest, payload);
        expect(t.replies).toEqual([[EXTERNAL_MSG.ShrinkErrorResponse, `Malformed shrink request: ${why}.`]]);
        expect(t.calls).toEqual([]);
      }
    });

    test("node_count -1 asks for every eligible worker, at the coordinator or relayed to it", async () => {
      const at = host({ coordinates: () => true });
      await at.ask(EXTERNAL_MSG.ShrinkRequest, `{"query":false,"node_names":[],"node_count":-1}`);
      expect(at.calls).toEqual([`shrinkHere {"query":false,"names":[],"count":${Number.MAX_SAFE_INTEGER}}`]);
      expect(at.replies).toEqual([[EXTERNAL_MSG.ShrinkErrorResponse, "Shrinking by 1 workers!"]]);
      const relayed = host();
      await relayed.ask(EXTERNAL_MSG.ShrinkRequest, `{"query":false,"node_names":[],"node_count":-1}`);
      expect(relayed.calls).toEqual([`relayShrink {"query":false,"names":[],"count":${Number.MAX_SAFE_INTEGER}}`]);
      expect(relayed.replies).toEqual([[EXTERNAL_MSG.ShrinkErrorResponse, "relayed"]]);
    });

    test("a relay that fails is answered with why", async () => {
      const t = host({ relayShrink: () => Promise.reject(new Error("The initializer is not reachable from this worker.")) });
      await t.ask(EXTERNAL_MSG.ShrinkRequest, `{"query":false,"node_names":["w2"],"node_count":0}`);
      await Promise.resolve();
      expect(t.replies).toEqual([[EXTERNAL_MSG.ShrinkErrorResponse, "The initializer is not reachable from this worker."]]);
    });
  });

  describe("RotateLog (2)", () => {
    test("naming this worker (or nobody) rotates its input log when it has one", async () => {
      const t = host({ name: "initializer" });
      t.h.inputLog = () => t.input;
      await t.ask(EXTERNAL_MSG.RotateLog, "initializer");
      await t.ask(EXTERNAL_MSG.RotateLog, "");
      expect(t.rotated.length).toBe(2);
      expect(t.logged.map((l) => l.event)).toEqual(["rotate_input_log", "rotate_input_log"]);
      expect(t.logged[0]!.msg).toBe("RotateLog: the input log goes on in a new segment from position 42 (900 bytes held)");
    });

    test("without an input log it says there is nothing to rotate, and why", async () => {
      const t = host();
      await t.ask(EXTERNAL_MSG.RotateLog, "w1");
      expect(t.logged.map((l) => `${l.level} ${l.event}`)).toEqual(["warn rotate_nothing"]);
      expect(t.logged[0]!.msg).toContain("stderr");
      expect(t.closed()).toBe(0);
    });

    test("naming another member forwards it; naming nobody known closes the connection", async () => {
      const t = host();
      await t.ask(EXTERNAL_MSG.RotateLog, "initializer");
      expect(t.calls).toEqual(["forwardRotate initializer"]);
      await t.ask(EXTERNAL_MSG.RotateLog, "ghost");
      expect(t.calls).toEqual(["forwardRotate initializer"]);
      expect(t.closed()).toBe(1);
      expect(t.logged.map((l) => l.event)).toEqual(["rotate_forwarded", "rotate_unknown"]);
    });
  });

  describe("ReportStatus (16)", () => {
    test("boundary-count-status logs this worker's status line, and answers nothing", async () => {
      const t = host();
      await t.ask(EXTERNAL_MSG.ReportStatus, "boundary-count-status");
      expect(t.replies).toEqual([]);
      expect(t.closed()).toBe(0);
      expect(t.logged).toEqual([
        {
          level: "info",
          event: "status_report",
          msg: "Status of w1: processing messages: true; members: 3 (initializer,w1,w2); down: none; slots: 2; keys: 2; table epoch: 3; connected to: 2 members",
        },
      ]);
    });

    test("an unknown code is logged as the original did, and the connection closed", async () => {
      const t = host();
      await t.ask(EXTERNAL_MSG.ReportStatus, "everything");
      expect(t.logged.map((l) => l.event)).toEqual(["report_status_unknown"]);
      expect(t.logged[0]!.msg).toStartWith(`Failed to parse ReportStatusCode "everything"`);
      expect(t.closed()).toBe(1);
    });
  });

  test("statusLine adds the coordinator's phase and the last checkpoint when there are some", () => {
    expect(
      statusLine({ name: "initializer", processing: false, members: ["initializer", "w1"], down: ["w1"], slots: 512, keys: 9, epoch: 7, connected: 0, autoscale: "idle", checkpoint: 12 }),
    ).toBe(
      "Status of initializer: processing messages: false; members: 2 (initializer,w1); down: w1; slots: 512; keys: 9; table epoch: 7; connected to: 0 members; autoscale: idle; last checkpoint: 12",
    );
  });
});
