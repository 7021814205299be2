// Who a simulated cluster lost, and which keys may have lost messages with them. The checks
// hold a key to "no loss" only if no worker that died (killed, or stopped on an error) or that
// the initializer gave up on ever held, sent, received or was routed its slot. Everything here
// is read from the workers' public surface and from their log lines.
import type { Worker } from "../../src/cluster/worker.ts";
import { SLOT_STATUS } from "../../src/runtime/router.ts";
import { slotOf } from "../../src/runtime/slot-hash.ts";

export const INIT = "initializer";

/** The initializer's log events that declare a worker dead (the line names it). */
export const DECLARED_DEAD = ["participant_lost", "dead_member", "member_fenced", "migration_stalled"] as const;

/** Log events that say messages were lost (the only excuse for a missing output). */
export const LOSS_EVENTS = ["participant_lost", "dead_member", "peer_gone", "worker_lost", "joiner_lost", "state_lost", "member_fenced"] as const;

/** Slot statuses on a worker (DESIGN §4). */
export const STATUS = SLOT_STATUS;

/** What this needs of the cluster around it. */
export interface Roster {
  readonly workers: ReadonlyMap<string, Worker>;
  readonly initializer: Worker | undefined;
  live(): Worker[];
  isAlive(name: string): boolean;
  /** 1 for the first process of a name, 2 for its first restart… */
  incarnation(w: Worker): number;
  /** Every worker runs with resilience: nothing may be lost, whoever dies. */
  readonly resilient: boolean;
}

export class Casualties {
  /** Slots whose messages may have been lost. */
  readonly tainted = new Set<number>();
  initializerDied = false;
  /** Workers the initializer declared dead (from its log lines), whether they know or not. */
  readonly fenced = new Set<Worker>();
  /** Workers that have been in the initializer's membership (the checks keep it). */
  readonly everMember = new Set<Worker>();
  /** Member ids of processes that ended (killed or exited): a table may still name them. */
  readonly deadIds = new Set<number>();
  /** Log lines that announce lost messages, by event. */
  readonly lossLines = new Map<string, number>();
  /** Ids of dead workers the cluster may not have noticed yet. */
  private readonly watching = new Set<number>();

  constructor(private readonly roster: Roster) {}

  /** One log line of the process `node` (undefined: the simulator). */
  onLog(node: string | undefined, event: string, msg: string): void {
    if ((LOSS_EVENTS as readonly string[]).includes(event)) this.lossLines.set(event, (this.lossLines.get(event) ?? 0) + 1);
    // With resilience only a member given up loses anything: its slots, named in the line.
    if (this.roster.resilient) {
      if (event === "state_lost") for (const m of msg.matchAll(/slot (\d+)/g)) this.tainted.add(Number(m[1]));
      return;
    }
    if (node === INIT && (DECLARED_DEAD as readonly string[]).includes(event)) this.declaredDead(msg);
    // A worker stopping on an error, or a slot whose state a worker says was lost: taint now,
    // not at the exit (the cluster may have moved the slots on by then).
    const w = node === undefined ? undefined : this.roster.workers.get(node);
    if (event === "fatal" && w) this.taint(w);
    if (event === "state_lost") for (const m of msg.matchAll(/slot (\d+)/g)) this.tainted.add(Number(m[1]));
  }

  /** The process of `w` ended (killed, or exited with `code`). */
  ended(w: Worker, code: number | "killed"): void {
    // With resilience a death loses nothing: the worker comes back and the cluster rolls back.
    if (this.roster.resilient) return;
    if (code !== 0) {
      // Killed, or stopped on an error: its slots' state went with it. A clean leaver held nothing.
      this.taint(w);
      if (w.name === INIT) this.initializerDied = true;
    }
    if (w.selfId >= 0) this.deadIds.add(w.selfId);
  }

  /** After every step: slots that move while a death is unnoticed. */
  afterStep(): void {
    if (this.watching.size > 0) this.taintMoving();
  }

  keyTainted(key: string): boolean {
    if (this.roster.resilient) return this.tainted.has(slotOf(key));
    return this.initializerDied || this.tainted.has(slotOf(key));
  }

  /**
   * Every worker a line of the initializer names is out of the cluster. A restarted worker that
   * has no place in the cluster yet (no id) is not the one meant: its dead predecessor is.
   */
  private declaredDead(msg: string): void {
    for (const [name, w] of this.roster.workers) {
      if (name === INIT || !new RegExp(`\\b${name}\\b`).test(msg) || this.fenced.has(w)) continue;
      if (this.roster.incarnation(w) > 1 && w.selfId < 0) continue;
      this.fenced.add(w);
      this.taint(w);
    }
  }

  /**
   * Messages of a slot may be lost when a worker dies holding its state, receiving it or
   * sending it, when its state is on the wire from the dead worker, or when a table routes the
   * slot to the dead worker before the cluster has noticed. So at the death, and after every
   * step until the cluster is at rest without the dead worker in any table: every slot a table
   * gives a dead worker, and every slot on the move anywhere, is tainted. (An over-estimate: a
   * tainted key is still checked for duplicates and order, only not for loss.)
   */
  private taint(dead: Worker): void {
    const status = dead.dataflow.status;
    for (let s = 0; s < status.length; s++) if (status[s] !== STATUS.none) this.tainted.add(s);
    if (dead.selfId >= 0) this.watching.add(dead.selfId);
    this.taintMoving();
  }

  private taintMoving(): void {
    let referenced = false;
    for (const w of this.roster.live()) {
      const st = w.dataflow.status;
      for (let s = 0; s < st.length; s++) {
        if (st[s] === STATUS.outgoing || st[s] === STATUS.incoming) this.tainted.add(s);
        if (this.watching.has(w.owners[s]!)) {
          this.tainted.add(s);
          referenced = true;
        }
      }
    }
    const init = this.roster.initializer;
    if (!referenced && init && this.roster.isAlive(INIT) && !init.autoscaling) this.watching.clear();
  }
}

