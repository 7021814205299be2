// Join and shrink requests at any member: refused before the member is ready, answered by the
// coordinator on the initializer, relayed by any other member with the coordinator's own wait as
// deadline, and a shrink query answered anywhere from the committed membership.
import { describe, expect, test } from "bun:test";
import { AutoscaleRequests, reachableHost } from "../../../src/cluster/autoscale-requests.ts";
import { COORDINATOR_LIMITS, type Coordinator } from "../../../src/cluster/coordinator.ts";
import { INITIALIZER_NAME } from "../../../src/cluster/membership.ts";
import type { Peers } from "../../../src/cluster/peers.ts";
import { RELAY_LIMITS, Relays } from "../../../src/cluster/relays.ts";
import { decodeControl, type ControlBody } from "../../../src/codec/control.ts";
import { EXTERNAL_MSG } from "../../../src/codec/external.ts";
import { ManualClock } from "../../sim/manual-clock.ts";
import { FakeLink, logEvents, member } from "./support.ts";

logEvents();

const JOIN: ControlBody<"join"> = { name: "j1", count: 1, host: "0.0.0.0", controlPort: 5, dataPort: 6 };
const topology = { members: [member(0, INITIALIZER_NAME)], epoch: 3, owners: [0] };

function setup(opts: { ready?: boolean; coordinator?: Partial<Coordinator> } = {}) {
  const clock = new ManualClock();
  const sent: Array<{ id: number; type: string; body: unknown }> = [];
  const peers = { sendTo: (id: number, type: string, body: unknown) => (sent.push({ id, type, body }), true) } as unknown as Peers;
  const relays = new Relays(clock);
  const r = new AutoscaleRequests({
    peers,
    relays,
    coordinator: () => opts.coordinator as Coordinator | undefined,
    initializerId: () => 0,
    isReady: () => opts.ready ?? true,
    committed: () => [member(0, INITIALIZER_NAME), member(1, "w1"), member(2, "w2")],
  });
  return { r, clock, sent, relays };
}

/** The one control message written on a link. */
function written(link: FakeLink) {
  const b = link.bytes();
  const d = decodeControl(b, 4, b.length);
  if (!d.ok) throw new Error(d.reason);
  return d.msg;
}

describe("AutoscaleRequests", () => {
  test("a join at a member that is not ready is refused on its link, which is closed", () => {
    const t = setup({ ready: false });
    const link = new FakeLink();
    t.r.join(link, JOIN);
    expect(written(link)).toEqual({ type: "refused", body: { reason: "Contacted worker has not yet joined the cluster, cannot autoscale." } });
    expect(link.calls).toContain("end");
  });

  test("on the initializer the coordinator answers, with the joiner's host taken from its connection", () => {
    const seen: unknown[] = [];
    const t = setup({ coordinator: { onJoin: (req, reply) => (seen.push(req), reply(true, undefined, topology)) } });
    const link = new FakeLink("10.1.2.3:4567");
    t.r.join(link, JOIN);
    expect(seen).toEqual([{ ...JOIN, host: "10.1.2.3" }]);
    expect(written(link)).toEqual({ type: "topology", body: topology });
  });

  test("elsewhere the join is relayed; the answer comes back on the joiner's link", async () => {
    const t = setup();
    const link = new FakeLink("h:1");
    t.r.join(link, JOIN);
    expect(t.sent.map((x) => x.type)).toEqual(["tryJoin"]);
    const reqId = (t.sent[0]!.body as { reqId: number }).reqId;
    t.relays.settle(reqId, { reqId, ok: true, topology });
    await Promise.resolve();
    expect(written(link)).toEqual({ type: "topology", body: topology });
  });

  test("a relayed join waits as long as the coordinator waits for a multi-join, then is refused", async () => {
    const t = setup();
    const link = new FakeLink("h:1");
    t.r.join(link, { ...JOIN, count: 2 });
    t.clock.advance(COORDINATOR_LIMITS.joinersWaitMs);
    await Promise.resolve();
    expect(link.out.len).toBe(0);
    t.clock.advance(RELAY_LIMITS.deadlineMs);
    await Promise.resolve();
    await Promise.resolve();
    expect(written(link).type).toBe("refused");
  });

  test("a shrink query is answered anywhere from the committed membership, without the initializer", () => {
    const t = setup();
    const a = t.r.shrink({ query: true, names: [], count: 0 });
    expect(a.type).toBe(EXTERNAL_MSG.ShrinkQueryResponse);
    expect(JSON.parse(a.payload)).toEqual({ node_names: ["w1", "w2"], node_count: 2 });
  });

  test("a relayed shrink is refused within the 10 s an operator's tool waits, when the initializer is silent", async () => {
    const t = setup();
    let answer: unknown;
    void t.r.relayShrink({ query: false, names: ["w1"], count: 0 }).catch((e: Error) => (answer = e.message));
    expect(t.sent.map((x) => x.type)).toEqual(["tryShrink"]);
    t.clock.advance(RELAY_LIMITS.shrinkDeadlineMs - 1);
    await Promise.resolve();
    expect(answer).toBeUndefined();
    t.clock.advance(1);
    await Promise.resolve();
    expect(answer).toBe(`The initializer did not answer within ${RELAY_LIMITS.shrinkDeadlineMs / 1000} s.`);
    expect(RELAY_LIMITS.shrinkDeadlineMs).toBeLessThan(10_000);
  });

  test("reachableHost keeps a named host and replaces a wildcard by the connection's address", () => {
    const link = new FakeLink("192.0.2.7:999");
    expect(reachableHost(link, "w.example")).toBe("w.example");
    expect(reachableHost(link, "0.0.0.0")).toBe("192.0.2.7");
    expect(reachableHost(link, "::")).toBe("192.0.2.7");
  });

  test("a signed shrink is carried out once: the same nonce again, through any member, is refused", () => {
    const shrinks: unknown[] = [];
    const t = setup({ coordinator: { onShrink: (req) => (shrinks.push(req), { ok: true, text: "Shrinking by 1 workers!" }) } as Partial<Coordinator> });
    const proof = { nonce: "0123456789abcdef0123456789abcdef", ts: 1_700_000_000_000 };
    expect(t.r.shrink({ query: false, names: [], count: 1, proof })).toEqual({ type: EXTERNAL_MSG.ShrinkErrorResponse, payload: "Shrinking by 1 workers!" });
    // Relayed by another member, as a replay sent there would be.
    t.r.relayedShrink(member(1, "w1"), { reqId: 7, query: false, names: [], count: 1, nonce: proof.nonce, ts: proof.ts });
    expect(shrinks.length).toBe(1);
    expect(t.sent).toEqual([{ id: 1, type: "shrinkReply", body: { reqId: 7, type: EXTERNAL_MSG.ShrinkErrorResponse, payload: "Refused: it was sent before (a replay)." } }]);
    // Another nonce is another request.
    t.r.shrink({ query: false, names: [], count: 1, proof: { ...proof, nonce: "f".repeat(32) } });
    expect(shrinks.length).toBe(2);
  });

  test("a member relays a signed shrink's nonce and time to the coordinator", () => {
    const t = setup();
    void t.r.relayShrink({ query: false, names: ["w2"], count: 0, proof: { nonce: "a".repeat(32), ts: 5 } }).catch(() => {});
    expect(t.sent[0]).toMatchObject({ id: 0, type: "tryShrink", body: { query: false, names: ["w2"], count: 0, nonce: "a".repeat(32), ts: 5 } });
  });
});
