// One answer from every member, gathered for a question asked at one worker (the cluster-wide key
// count, every member's status for `wallaroo top`): asked over the control channel, answered when
// all have answered or at the deadline without the silent ones (the original waited for ever).
import type { Member } from "../codec/control.ts";
import type { Clock } from "../clock.ts";
import { log } from "../log.ts";

/** How long a gathering waits for members before answering without them. */
export const GATHER_DEADLINE_MS = 3000;

interface Pending<T> {
  answers: Map<string, T>;
  waiting: Set<string>;
  done: () => void;
}

export class Gathering<T> {
  private nextReqId = 1;
  private readonly pending = new Map<number, Pending<T>>();

  constructor(
    private readonly clock: Clock,
    /** Asks member `id`; false when it cannot be reached. */
    private readonly ask: (id: number, reqId: number) => boolean,
    /** What is gathered, and the event of the log line naming the silent members. */
    private readonly what: string,
    private readonly event: string,
  ) {}

  /** Gathers `others`' answers beside this worker's own; `finish` gets them in member order, and the silent. */
  gather(selfName: string, own: T, others: readonly Member[], finish: (answers: Map<string, T>, missing: string[]) => void): void {
    const reqId = this.nextReqId++;
    const answers = new Map<string, T>([[selfName, own]]);
    const waiting = new Set<string>();
    for (const m of others) if (this.ask(m.id, reqId)) waiting.add(m.name);
    let finished = false;
    const done = () => {
      if (finished) return;
      finished = true;
      this.clock.clearTimeout(timer);
      this.pending.delete(reqId);
      if (waiting.size > 0) log.warn(this.event, `${this.what}: no answer from ${[...waiting].join(", ")} within ${GATHER_DEADLINE_MS} ms`);
      const ordered = new Map<string, T>([[selfName, own]]);
      for (const m of others) if (answers.has(m.name)) ordered.set(m.name, answers.get(m.name)!);
      finish(ordered, others.filter((m) => !answers.has(m.name)).map((m) => m.name));
    };
    const timer = this.clock.setTimeout(done, GATHER_DEADLINE_MS);
    this.pending.set(reqId, { answers, waiting, done });
    if (waiting.size === 0) done();
  }

  collect(reqId: number, name: string, answer: T): void {
    const q = this.pending.get(reqId);
    if (!q || !q.waiting.delete(name)) return;
    q.answers.set(name, answer);
    if (q.waiting.size === 0) q.done();
  }
}
