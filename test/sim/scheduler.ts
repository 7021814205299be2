// The one source of time and order in a simulated run (the TigerBeetle VOPR / FoundationDB
// model): a seeded queue of events ordered by virtual time, then by the order they were
// scheduled. Timers, deliveries, load and faults are all events; nothing in a run reads the wall
// clock or sets a real timer, so a seed replays the same run byte for byte.
//
// Every event belongs to a process (one incarnation of a node) or to the simulator itself. An
// event of a killed process is dropped; one of a paused process waits until it is resumed (a
// stopped process: nothing of it runs meanwhile, then its overdue work runs in order).
import type { Clock, Timer } from "../../src/clock.ts";
import type { NetScheduler, SimProcess } from "../../src/net/memory.ts";
import { createUnitRng } from "../../src/tools/generators.ts";
import { Trace } from "./trace.ts";

export const PROC_STATE = { live: "live", paused: "paused", dead: "dead" } as const;
export type ProcState = (typeof PROC_STATE)[keyof typeof PROC_STATE];

export class Proc implements SimProcess {
  state: ProcState = PROC_STATE.live;
  constructor(
    readonly name: string,
    /** 1 for the first process of this name; a restart gets the next number. */
    readonly incarnation: number,
  ) {}
  get alive(): boolean {
    return this.state !== PROC_STATE.dead;
  }
}

interface Event {
  at: number;
  seq: number;
  proc: Proc | undefined;
  kind: string;
  fn: () => void;
  cancelled: boolean;
}

/** Independent random streams, all derived from the seed (a change in one leaves the others). */
export interface SimRandom {
  scenario: () => number;
  network: () => number;
  load: () => number;
}

export function deriveRandom(seed: number): SimRandom {
  // Distinct odd multipliers keep the three mulberry32 states far apart for nearby seeds.
  const mix = (k: number) => (Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(k, 0x85ebca6b)) >>> 0;
  return { scenario: createUnitRng(mix(1)), network: createUnitRng(mix(2)), load: createUnitRng(mix(3)) };
}

/** An exception thrown by a process's code: each one is a broken invariant. */
export interface Failure {
  node: string;
  at: number;
  error: unknown;
}

/** The microtasks an event started have all run once a setImmediate callback runs. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

let active: Scheduler | undefined;

// While an event runs, the real clock and real timers are off limits: a use is a failure of the
// process that made it (it would make the run depend on the machine). setImmediate stays: the
// scheduler itself waits on it between events.
const real = { setTimeout: globalThis.setTimeout, setInterval: globalThis.setInterval, dateNow: Date.now, perfNow: performance.now };
function fenceRealTime(on: boolean): void {
  if (!on) {
    globalThis.setTimeout = real.setTimeout;
    globalThis.setInterval = real.setInterval;
    Date.now = real.dateNow;
    performance.now = real.perfNow;
    return;
  }
  const refuse = (what: string) => active?.fail(active.current, new Error(`${what} during a simulated run: use the Clock`));
  globalThis.setTimeout = ((...a: Parameters<typeof setTimeout>) => (refuse("setTimeout"), real.setTimeout(...a))) as typeof setTimeout;
  globalThis.setInterval = ((...a: Parameters<typeof setInterval>) => (refuse("setInterval"), real.setInterval(...a))) as typeof setInterval;
  Date.now = () => (refuse("Date.now"), real.dateNow());
  performance.now = () => (refuse("performance.now"), real.perfNow.call(performance));
}
// A rejected promise nobody handles is reported after the microtasks of the event that caused
// it, before the next setImmediate: it belongs to the process whose event is running.
process.on("unhandledRejection", (error) => {
  if (active) active.fail(active.current, error);
  else throw error;
});

export class Scheduler implements NetScheduler {
  readonly random: SimRandom;
  readonly trace: Trace;
  readonly failures: Failure[] = [];
  /** The process whose event is running (undefined: the simulator's own). */
  current: Proc | undefined;
  steps = 0;
  private t = 0;
  private seq = 0;
  private readonly heap: Event[] = [];
  private readonly procs = new Map<string, Proc>();
  private readonly deferred = new Map<Proc, Event[]>();

  constructor(
    readonly seed: number,
    opts: { fullTrace?: boolean } = {},
  ) {
    this.random = deriveRandom(seed);
    this.trace = new Trace(opts.fullTrace ?? false);
  }

  now(): number {
    return this.t;
  }

  get pending(): number {
    return this.heap.length;
  }

  /** The current incarnation of `name` (created on first use). */
  process(name: string): Proc {
    let p = this.procs.get(name);
    if (!p) {
      p = new Proc(name, 1);
      this.procs.set(name, p);
    }
    return p;
  }

  /** A fresh incarnation of a killed node: the old one's events stay dropped. */
  revive(name: string): Proc {
    const old = this.procs.get(name);
    if (old && old.alive) throw new Error(`${name} is still running`);
    const p = new Proc(name, (old?.incarnation ?? 0) + 1);
    this.procs.set(name, p);
    this.note(undefined, "revive", `${name} incarnation ${p.incarnation}`);
    return p;
  }

  kill(name: string): void {
    const p = this.procs.get(name);
    if (!p || !p.alive) return;
    p.state = PROC_STATE.dead;
    this.deferred.delete(p);
  }

  pause(name: string): void {
    const p = this.procs.get(name);
    if (p && p.state === PROC_STATE.live) p.state = PROC_STATE.paused;
  }

  /** Runs what the process missed while paused, in its original order, from now on. */
  resume(name: string): void {
    const p = this.procs.get(name);
    if (!p || p.state !== PROC_STATE.paused) return;
    p.state = PROC_STATE.live;
    const missed = this.deferred.get(p) ?? [];
    this.deferred.delete(p);
    for (const ev of missed) this.push({ ...ev, at: this.t, seq: this.seq++ });
  }

  /** Schedules `fn` as an event of `proc` (undefined: the simulator's) `delayMs` from now. */
  schedule(proc: SimProcess | undefined, delayMs: number, kind: string, fn: () => void): Timer {
    // Every process handed out is one of ours (the network only passes back what it got).
    const ev: Event = { at: this.t + Math.max(0, delayMs), seq: this.seq++, proc: proc as Proc | undefined, kind, fn, cancelled: false };
    this.push(ev);
    return ev as unknown as Timer;
  }

  cancel(timer: Timer | undefined): void {
    if (timer !== undefined) (timer as unknown as Event).cancelled = true;
  }

  /** The Clock a process's code runs on: its timers are its events. */
  clockFor(proc: Proc): Clock {
    return {
      now: () => this.t,
      epochMs: () => this.t,
      setTimeout: (fn, ms) => this.schedule(proc, ms, "timer", fn),
      clearTimeout: (timer) => this.cancel(timer),
      sleep: (ms) => new Promise<void>((resolve) => this.schedule(proc, ms, "timer", resolve)),
    };
  }

  /** One line of the trace at the current virtual time. */
  note(proc: SimProcess | string | undefined, kind: string, detail: string): void {
    const who = proc === undefined ? "sim" : typeof proc === "string" ? proc : proc.name;
    this.trace.add(this.t, who, kind, detail);
  }

  fail(proc: Proc | undefined, error: unknown): void {
    const node = proc?.name ?? "sim";
    this.failures.push({ node, at: this.t, error });
    this.note(proc, "FAILURE", error instanceof Error ? error.message : String(error));
  }

  /**
   * Runs the next event and every microtask it started. Returns false when nothing is left.
   * Only one scheduler may step at a time (the unhandled-rejection hook needs to know which).
   */
  async step(): Promise<boolean> {
    const ev = this.pop();
    if (!ev) return false;
    if (ev.cancelled) return true;
    this.t = Math.max(this.t, ev.at);
    const p = ev.proc;
    if (p && p.state === PROC_STATE.dead) return true;
    if (p && p.state === PROC_STATE.paused) {
      const list = this.deferred.get(p) ?? [];
      list.push(ev);
      this.deferred.set(p, list);
      return true;
    }
    if (ev.kind === "timer" && p) this.note(p, "timer", "");
    this.current = p;
    active = this;
    fenceRealTime(true);
    try {
      ev.fn();
    } catch (error) {
      this.fail(p, error);
    }
    await settle();
    fenceRealTime(false);
    this.current = undefined;
    active = undefined;
    this.steps++;
    return true;
  }

  /** Time of the next live event, or undefined. */
  peekTime(): number | undefined {
    return this.heap[0]?.at;
  }

  // A binary heap on (at, seq): seq is unique, so the order is total and replayable.
  private push(ev: Event): void {
    const h = this.heap;
    h.push(ev);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(ev, h[parent]!)) break;
      h[i] = h[parent]!;
      i = parent;
    }
    h[i] = ev;
  }

  private pop(): Event | undefined {
    const h = this.heap;
    if (h.length === 0) return undefined;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= h.length) break;
        const r = l + 1;
        const c = r < h.length && before(h[r]!, h[l]!) ? r : l;
        if (!before(h[c]!, last)) break;
        h[i] = h[c]!;
        i = c;
      }
      h[i] = last;
    }
    return top;
  }
}

function before(a: Event, b: Event): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}
