// The coordinator on its own, behind a fake host and a virtual clock: the rounds it plans for a
// grow, and how their size follows the time each round takes.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { ControlBody, Member } from "../../../src/codec/control.ts";
import { Coordinator, COORDINATOR_LIMITS, type CoordinatorHost } from "../../../src/cluster/coordinator.ts";
import { initialOwners, ROUND_SLOTS, slotCounts } from "../../../src/cluster/slots.ts";
import { configureLog, tapLog } from "../../../src/log.ts";
import { ManualClock } from "../../sim/manual-clock.ts";

beforeAll(() => configureLog({ level: "silent" }));
afterAll(() => configureLog({ level: "info" }));

const member = (id: number, name: string): Member => ({ id, name, host: "h", controlPort: 1000 + id, dataPort: 2000 + id });

class FakeHost implements CoordinatorHost {
  readonly self = member(0, "initializer");
  readonly owners: Int32Array;
  private ms: Member[];
  private e = 1;
  readonly plans: ControlBody<"plan">[] = [];
  completed: string[] | undefined;

  constructor(n: number) {
    this.ms = [this.self, ...Array.from({ length: n - 1 }, (_, i) => member(i + 1, `w${i + 1}`))];
    this.owners = Int32Array.from(initialOwners(this.ms.map((m) => m.id)));
  }
  epoch = () => this.e;
  members = () => this.ms;
  addMembers(ms: readonly Member[]) {
    this.ms = [...this.ms, ...ms];
  }
  send = () => true;
  readonly fenced: number[] = [];
  fence(id: number) {
    this.fenced.push(id);
  }
  applyPlan(plan: ControlBody<"plan">) {
    for (const [slot, from, to] of plan.moves) {
      expect(this.owners[slot]).toBe(from);
      this.owners[slot] = to;
    }
    this.e = plan.epoch;
    this.plans.push(plan);
  }
  complete(members: readonly Member[]) {
    this.completed = members.map((m) => m.name);
  }
  dropJoiners() {}
  lost() {}
  /** Every downChanged call, in order. */
  readonly downs: number[][] = [];
  downChanged(ids: readonly number[]) {
    this.downs.push([...ids]);
  }
  keysOf = (id: number) => (id === 1 ? 7 : undefined);
  migrationStarts() {}
  checkpointNow() {}
  undone() {}
  rollBackNow() {}
  recovering = () => false;
  readonly givenUp: number[] = [];
  giveUp(ids: readonly number[]) {
    this.givenUp.push(...ids);
  }
}

/** Grows a 2-worker cluster by one; each round is installed `roundMs(i)` after its plan. */
function grow(roundMs: (round: number) => number): { sizes: number[]; host: FakeHost } {
  const clock = new ManualClock();
  const host = new FakeHost(2);
  const c = new Coordinator(host, clock);
  c.formed = true;
  let answer: boolean | undefined;
  c.onJoin({ name: "j", count: 1, host: "h", controlPort: 1, dataPort: 2 }, (ok) => (answer = ok));
  expect(answer).toBe(true);
  for (const m of host.members()) c.onConnected(m.name);
  for (let i = 0; i < 1000 && c.busy; i++) {
    const plan = host.plans[host.plans.length - 1]!;
    clock.advance(roundMs(i));
    c.onInstalled({ epoch: plan.epoch, slots: plan.moves.map((m) => m[0]), keys: 0, bytes: 0 });
  }
  expect(c.busy).toBe(false);
  return { sizes: host.plans.map((p) => p.moves.length), host };
}

describe("rounds of a grow", () => {
  test("quick rounds stay at the minimum size and move exactly the planned slots", () => {
    const { sizes, host } = grow(() => 5);
    expect(sizes.every((n) => n <= ROUND_SLOTS.min)).toBe(true);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(341);
    expect(host.completed).toEqual(["initializer", "w1", "j"]);
    expect([...slotCounts(Array.from(host.owners)).values()].sort()).toEqual([341, 341, 342]);
  });

  test("slow rounds double the next one up to the maximum; quick ones halve it again", () => {
    const { sizes } = grow((i) => (i < 4 ? ROUND_SLOTS.targetMs + 1 : 1));
    expect(sizes).toEqual([8, 16, 32, 64, 128, 64, 29]);
    expect(Math.max(...sizes)).toBe(ROUND_SLOTS.max);
    const { sizes: inBetween } = grow(() => ROUND_SLOTS.targetMs * 0.75);
    expect(inBetween.length).toBe(Math.ceil(341 / ROUND_SLOTS.min));
    expect(inBetween.slice(0, -1).every((n) => n === ROUND_SLOTS.min)).toBe(true);
  });

  test("a migration longer than a second logs its progress at info level", () => {
    const lines: string[] = [];
    const write = process.stderr.write;
    process.stderr.write = ((chunk: string) => lines.push(String(chunk)) > 0) as typeof process.stderr.write;
    configureLog({ level: "info" });
    try {
      grow(() => 400);
    } finally {
      process.stderr.write = write;
      configureLog({ level: "silent" });
    }
    const progress = lines.filter((l) => l.includes("AUTOSCALE: migrated"));
    expect(progress.length).toBeGreaterThan(0);
    expect(progress[0]).toMatch(/migrated \d+ of 341 slots, 0 keys, 0 bytes in \d+ ms/);
  });
});

/** A formed cluster of `n` members behind the fake host, on a virtual clock. */
function formed(n: number): { clock: ManualClock; host: FakeHost; c: Coordinator } {
  const clock = new ManualClock();
  const host = new FakeHost(n);
  const c = new Coordinator(host, clock);
  c.formed = true;
  return { clock, host, c };
}

describe("a stalled round", () => {
  const started = () => formed(2);

  /** Installs every round the coordinator plans from now on, as live workers would. */
  function installRest(host: FakeHost, c: Coordinator, from: number): void {
    for (let i = from; i < host.plans.length && c.busy; i++) {
      const plan = host.plans[i]!;
      c.onInstalled({ epoch: plan.epoch, slots: plan.moves.map((m) => m[0]), keys: 0, bytes: 0 });
    }
  }

  test("a joiner that never installs is removed and fenced at the deadline; the grow completes without it", () => {
    const { clock, host, c } = started();
    c.onJoin({ name: "j", count: 1, host: "h", controlPort: 1, dataPort: 2 }, () => {});
    for (const m of host.members()) c.onConnected(m.name);
    expect(host.plans.length).toBe(1);
    const j = host.members().find((m) => m.name === "j")!;
    expect(host.plans[0]!.moves.every(([, , to]) => to === j.id)).toBe(true);
    clock.advance(COORDINATOR_LIMITS.roundStallMs - 1);
    expect(host.fenced).toEqual([]);
    expect(c.busy).toBe(true);
    clock.advance(1);
    expect(host.fenced).toEqual([j.id]);
    // The repair round gives its slots back; nothing is left at the dead joiner.
    expect(host.plans[1]!.dead).toEqual([j.id]);
    installRest(host, c, 1);
    expect(c.busy).toBe(false);
    expect(host.completed).toEqual(["initializer", "w1"]);
    expect(Array.from(host.owners).includes(j.id)).toBe(false);
    // And the coordinator takes the next event.
    let answer: boolean | undefined;
    c.onJoin({ name: "k", count: 1, host: "h", controlPort: 3, dataPort: 4 }, (ok) => (answer = ok));
    expect(answer).toBe(true);
  });

  test("a slot coming to the initializer that never arrives blames its old owner", () => {
    const { clock, host, c } = started();
    expect(c.onShrink({ names: ["w1"], count: 0 }, host.members()).ok).toBe(true);
    clock.advance(0);
    expect(host.plans.length).toBe(1);
    clock.advance(COORDINATOR_LIMITS.roundStallMs);
    expect(host.fenced).toEqual([1]);
    // The initializer's own migration takes the slots its dead source owed it (empty) and
    // reports them installed; then the repair round gives w1's other slots to the initializer.
    installRest(host, c, 0);
    expect(host.plans[1]!.dead).toEqual([1]);
    expect(c.busy).toBe(false);
    expect(host.completed).toEqual(["initializer"]);
    expect(new Set(host.owners)).toEqual(new Set([0]));
  });

  test("a round that completes in time blames nobody", () => {
    const { clock, host, c } = started();
    c.onJoin({ name: "j", count: 1, host: "h", controlPort: 1, dataPort: 2 }, () => {});
    for (const m of host.members()) c.onConnected(m.name);
    for (let i = 0; i < 100 && c.busy; i++) {
      const plan = host.plans[host.plans.length - 1]!;
      clock.advance(COORDINATOR_LIMITS.roundStallMs - 1);
      c.onInstalled({ epoch: plan.epoch, slots: plan.moves.map((m) => m[0]), keys: 0, bytes: 0 });
    }
    clock.advance(COORDINATOR_LIMITS.roundStallMs * 2);
    expect(host.fenced).toEqual([]);
    expect(host.completed).toEqual(["initializer", "w1", "j"]);
  });
});

describe("repair after a death mid-round", () => {
  test("slots a leaver was shipping to a worker that died go back to the leaver, which kept their state, then on to the rest", () => {
    const { clock, host, c } = formed(3);
    expect(c.onShrink({ names: ["w1"], count: 0 }, host.members()).ok).toBe(true);
    clock.advance(0);
    // Install rounds until one moves slots from w1 to w2, then w2 dies with it in flight.
    let round = host.plans[0]!;
    for (let i = 0; i < 100 && !round.moves.some(([, , to]) => to === 2); i++) {
      c.onInstalled({ epoch: round.epoch, slots: round.moves.map((m) => m[0]), keys: 0, bytes: 0 });
      round = host.plans[host.plans.length - 1]!;
    }
    const toW2 = round.moves.filter(([, from, to]) => from === 1 && to === 2).map(([s]) => s);
    expect(toW2.length).toBeGreaterThan(0);
    const installedElsewhere = round.moves.filter(([, , to]) => to !== 2).map((m) => m[0]);
    c.onInstalled({ epoch: round.epoch, slots: installedElsewhere, keys: 0, bytes: 0 });
    c.onWorkerLost(2);
    const repair = host.plans[host.plans.length - 1]!;
    expect(repair.dead).toEqual([2]);
    for (const s of toW2) expect(repair.moves.find((m) => m[0] === s)).toEqual([s, 2, 1]);
    // Every other slot of the dead w2 (it owned a third of the table) goes to the initializer.
    expect(repair.moves.filter(([s]) => !toW2.includes(s)).every(([, from, to]) => from === 2 && to === 0)).toBe(true);
    for (let i = host.plans.length - 1; i < host.plans.length && c.busy; i++) {
      const plan = host.plans[i]!;
      c.onInstalled({ epoch: plan.epoch, slots: plan.moves.map((m) => m[0]), keys: 0, bytes: 0 });
    }
    expect(c.busy).toBe(false);
    expect(host.completed).toEqual(["initializer"]);
    expect(new Set(host.owners)).toEqual(new Set([0]));
  });
});

test("a death noticed before a shrink's first round starts one round, not two", () => {
  const { clock, host, c } = formed(4);
  expect(c.onShrink({ names: ["w1"], count: 0 }, host.members()).ok).toBe(true);
  c.onWorkerLost(3);
  expect(host.plans.length).toBe(0);
  clock.advance(0);
  expect(host.plans.length).toBe(1);
  // The first round is the repair of the dead w3's slots, and it is the only one in flight.
  expect(host.plans[0]!.dead).toEqual([3]);
  expect(host.plans[0]!.moves.every(([, from]) => from === 3)).toBe(true);
});

describe("a member that dies while the cluster is idle", () => {
  test("is down (the host is told, so the sources pause) until a shrink of it completes; the log counts its keys lost", () => {
    const { clock, host, c } = formed(3);
    const lines: string[] = [];
    tapLog((_lvl, _ev, msg) => void lines.push(msg));
    try {
      c.onWorkerLost(1);
      expect(host.downs).toEqual([[1]]);
      expect(c.down).toEqual([1]);
      expect(lines.some((l) => l.includes("Worker w1 is down: the sources are paused"))).toBe(true);
      expect(c.onShrink({ names: ["w1"], count: 0 }, host.members()).ok).toBe(true);
      clock.advance(0);
      // Still down while its slots move: nothing may be routed to it yet.
      expect(c.down).toEqual([1]);
      for (let i = 0; i < host.plans.length && c.busy; i++) {
        const plan = host.plans[i]!;
        c.onInstalled({ epoch: plan.epoch, slots: plan.moves.map((m) => m[0]), keys: 0, bytes: 0 });
      }
      expect(c.busy).toBe(false);
      expect(host.downs.at(-1)).toEqual([]);
      expect(host.completed).toEqual(["initializer", "w2"]);
      expect(lines.some((l) => l.includes("its 7 keys (as of its last heartbeat) are lost"))).toBe(true);
    } finally {
      tapLog(undefined);
    }
  });
});

describe("with resilience", () => {
  /** A formed resilient coordinator (the host names a cluster). */
  function resilient(n: number) {
    const f = formed(n);
    (f.host as unknown as { cluster: string }).cluster = "c-1";
    return f;
  }

  test("a member that dies mid-shrink undoes it: it is down, and no shrink runs until a rollback brings it back", () => {
    const { clock, host, c } = resilient(4);
    expect(c.onShrink({ names: ["w1"], count: 0 }, host.members()).ok).toBe(true);
    clock.advance(0);
    expect(c.busy).toBe(true);
    c.onWorkerLost(2);
    expect(c.busy).toBe(false);
    expect(c.down).toEqual([2]);
    expect(host.completed).toBeUndefined();
    // Another shrink waits for the rollback of the undone event…
    expect(c.onShrink({ names: ["w1"], count: 0 }, host.members()).text).toMatch(/^Worker w2 is down: start it again/);
    c.recovered([2]);
    expect(c.down).toEqual([]);
    expect(c.onShrink({ names: ["w1"], count: 0 }, host.members()).ok).toBe(true);
  });

  test("a shrink naming down members gives them up (a rollback without them), and names nobody else", () => {
    const { host, c } = resilient(4);
    c.onWorkerLost(2);
    c.onWorkerLost(3);
    expect(c.onShrink({ names: ["w2", "w1"], count: 0 }, host.members()).text).toMatch(/^A shrink that gives up down workers names only them/);
    expect(c.onShrink({ names: [], count: 1 }, host.members()).ok).toBe(false);
    expect(c.onShrink({ names: ["w2"], count: 0 }, host.members())).toEqual({ ok: true, text: "Shrinking by 1 workers!" });
    expect(host.givenUp).toEqual([2]);
    expect(c.down).toEqual([3]);
    expect(c.busy).toBe(false);
  });

  test("a join is refused while a member is down, and from a worker without resilience", () => {
    const { host, c } = resilient(3);
    const answers: Array<string | undefined> = [];
    c.onJoin({ name: "j", count: 1, host: "h", controlPort: 1, dataPort: 2 }, (_ok, reason) => void answers.push(reason));
    expect(answers[0]).toMatch(/runs with resilience: start the joining worker with --resilience-dir/);
    c.onWorkerLost(1);
    c.onJoin({ name: "j", count: 1, host: "h", controlPort: 1, dataPort: 2, resilient: true }, (_ok, reason) => void answers.push(reason));
    expect(answers[1]).toMatch(/^Worker w1 is down: start it again/);
    expect(host.downs.at(-1)).toEqual([1]);
  });
});
