// The initializer forming a cluster: it counts registrations up to --worker-count - 1, refuses
// taken names and late comers, frees the place of a registration lost before the topology went
// out, aborts on a member lost after it, and starts only once every member has connected.
import { describe, expect, test } from "bun:test";
import { FORMATION_CONNECT_MS, Formation, type FormationHost } from "../../../src/cluster/formation.ts";
import { INITIALIZER_NAME } from "../../../src/cluster/membership.ts";
import { initialOwners } from "../../../src/cluster/slots.ts";
import type { Member, Topology } from "../../../src/codec/control.ts";
import type { Link } from "../../../src/net/transport.ts";
import { ManualClock } from "../../sim/manual-clock.ts";
import { FakeLink, logEvents, member } from "./support.ts";

const logs = logEvents();

const INIT = member(0, INITIALIZER_NAME);

function setup(workerCount: number) {
  let nextId = 1;
  const refused: Array<{ link: Link; reason: string }> = [];
  const formed: Array<{ topology: Topology; links: ReadonlyMap<number, Link> }> = [];
  const started: Array<readonly Member[]> = [];
  const aborted: string[] = [];
  const clock = new ManualClock();
  const host: FormationHost = {
    workerCount,
    clock,
    self: () => INIT,
    allocateId: () => nextId++,
    refuse: (link, reason) => void refused.push({ link, reason }),
    form: (topology, links) => void formed.push({ topology, links }),
    start: (members) => void started.push(members),
    abort: (reason) => void aborted.push(reason),
  };
  const f = new Formation(host);
  /** Registers worker `name` on a new link; the worker resolved its reachable host to "<name>.lan". */
  const register = (name: string, link: Link = new FakeLink(name)) => {
    f.onRegister(link, { name, host: "claimed.lan", controlPort: 100, dataPort: 200 }, `${name}.lan`);
    return link;
  };
  /** The member a registration makes: its host is the resolved one handed in, not the body's. */
  const reg = (id: number, name: string): Member => ({ id, name, host: `${name}.lan`, controlPort: 100, dataPort: 200 });
  return { f, refused, formed, started, aborted, register, reg, clock };
}

describe("Formation: registrations", () => {
  test("a cluster of one forms at once and starts when the initializer is connected", () => {
    const s = setup(1);
    s.f.begin();
    expect(s.formed.map((x) => x.topology)).toEqual([{ members: [INIT], epoch: 1, owners: initialOwners([0]) }]);
    expect(s.formed[0]!.links.size).toBe(0);
    expect(s.f.formed).toBe(false);
    s.f.onConnected(INITIALIZER_NAME);
    expect(s.started).toEqual([[INIT]]);
    expect(s.f.formed).toBe(true);
  });

  test("the topology goes out when worker-count - 1 workers registered, with each one's link", () => {
    const s = setup(3);
    s.f.begin();
    expect(s.formed).toEqual([]);
    const l1 = s.register("w1");
    expect(s.formed).toEqual([]);
    const l2 = s.register("w2");
    const members = [INIT, s.reg(1, "w1"), s.reg(2, "w2")];
    expect(s.formed.map((x) => x.topology)).toEqual([{ members, epoch: 1, owners: initialOwners([0, 1, 2]) }]);
    expect([...s.formed[0]!.links]).toEqual([
      [1, l1],
      [2, l2],
    ]);
    expect(s.refused).toEqual([]);
  });

  test("a taken name and the initializer's name are refused and hold no place", () => {
    const s = setup(3);
    s.register("w1");
    const dup = s.register("w1");
    const init = s.register(INITIALIZER_NAME);
    expect(s.refused.map((r) => r.link)).toEqual([dup, init]);
    expect(s.refused.map((r) => r.reason)).toEqual([
      "Worker name w1 is already registered with the cluster.",
      "Worker name initializer is already registered with the cluster.",
    ]);
    expect(logs.events.filter((e) => e === "warn register_refused").length).toBe(2);
    expect(s.formed).toEqual([]);
    s.register("w2");
    expect(s.formed.map((x) => x.topology.members.map((m) => m.name))).toEqual([[INITIALIZER_NAME, "w1", "w2"]]);
  });

  test("a registration after the topology went out, or after the start, is refused", () => {
    const s = setup(2);
    s.register("w1");
    const late = s.register("w2");
    s.f.onConnected(INITIALIZER_NAME);
    s.f.onConnected("w1");
    const later = s.register("w3");
    expect(s.refused.map((r) => r.link)).toEqual([late, later]);
    expect(s.refused[0]!.reason).toContain("--join");
    expect(s.formed.length).toBe(1);
    expect(s.started.length).toBe(1);
  });

  test("a registration lost before the topology frees its place; the name may register again", () => {
    const s = setup(3);
    const l1 = s.register("w1");
    s.f.linkClosed(new FakeLink("unregistered"));
    s.f.linkClosed(l1);
    expect(logs.events).toContain("warn registration_lost");
    s.register("w2");
    expect(s.formed).toEqual([]);
    const again = s.register("w1");
    expect(s.refused).toEqual([]);
    const { topology, links } = s.formed[0]!;
    // The lost registration is not in the topology; the new one has a fresh id and its own link.
    expect(topology.members.map((m) => [m.id, m.name])).toEqual([
      [0, INITIALIZER_NAME],
      [2, "w2"],
      [3, "w1"],
    ]);
    expect(links.get(3)).toBe(again);
    expect([...links.values()]).not.toContain(l1);
  });
});

describe("Formation: after the topology", () => {
  test("a member lost after the topology went out aborts formation, naming it", () => {
    const s = setup(3);
    s.register("w1");
    s.register("w2");
    s.f.onConnected("w1");
    s.f.memberLost(2);
    expect(s.aborted).toEqual(["Formation failed: worker w2 was lost before the cluster formed."]);
  });

  test("a link closing after the topology went out frees nothing", () => {
    const s = setup(2);
    const l1 = s.register("w1");
    s.f.linkClosed(l1);
    expect(logs.events).not.toContain("warn registration_lost");
    s.f.onConnected(INITIALIZER_NAME);
    s.f.onConnected("w1");
    expect(s.started.map((m) => m.map((x) => x.name))).toEqual([[INITIALIZER_NAME, "w1"]]);
  });

  test("a member lost before the topology or after the start aborts nothing", () => {
    const s = setup(2);
    s.f.memberLost(1);
    s.register("w1");
    s.f.onConnected(INITIALIZER_NAME);
    s.f.onConnected("w1");
    s.f.memberLost(1);
    expect(s.aborted).toEqual([]);
    expect(s.started.length).toBe(1);
  });

  test("the cluster starts only once every member connected, once", () => {
    const s = setup(3);
    // Reports before the topology do not count.
    s.f.onConnected("w1");
    s.register("w1");
    s.register("w2");
    s.f.onConnected(INITIALIZER_NAME);
    s.f.onConnected("w2");
    s.f.onConnected("w2");
    s.f.onConnected("stranger");
    expect(s.started).toEqual([]);
    expect(s.f.formed).toBe(false);
    s.f.onConnected("w1");
    expect(s.started).toEqual([s.formed[0]!.topology.members]);
    expect(s.f.formed).toBe(true);
    expect(logs.events).toContain("info topology_ready");
    s.f.onConnected("w1");
    expect(s.started.length).toBe(1);
  });
});

describe("Formation: deadline", () => {
  test("workers that do not all connect within the deadline abort formation, once", () => {
    const s = setup(3);
    s.f.begin();
    s.register("w1");
    s.register("w2");
    s.f.onConnected(INITIALIZER_NAME);
    s.f.onConnected("w1");
    s.clock.advance(FORMATION_CONNECT_MS - 1);
    expect(s.aborted).toEqual([]);
    s.clock.advance(1);
    expect(s.aborted).toEqual([`Formation failed: w2 did not connect to every worker within ${FORMATION_CONNECT_MS / 1000} s.`]);
    s.f.memberLost(2);
    s.f.onConnected("w2");
    expect(s.aborted.length).toBe(1);
    expect(s.started).toEqual([]);
  });

  test("a formation that completes in time is never aborted", () => {
    const s = setup(2);
    s.f.begin();
    s.register("w1");
    s.f.onConnected(INITIALIZER_NAME);
    s.f.onConnected("w1");
    s.clock.advance(FORMATION_CONNECT_MS * 2);
    expect(s.aborted).toEqual([]);
    expect(s.started.length).toBe(1);
  });
});
