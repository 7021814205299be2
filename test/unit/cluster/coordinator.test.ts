// The coordinator on its own, behind a fake host and a virtual clock: the rounds it plans for a
// grow, and how their size follows the time each round takes.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { ControlBody, Member } from "../../../src/codec/control.ts";
import { Coordinator, type CoordinatorHost } from "../../../src/cluster/coordinator.ts";
import { initialOwners, ROUND_SLOTS, slotCounts } from "../../../src/cluster/slots.ts";
import { configureLog } from "../../../src/log.ts";
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
