// What a worker does when another member fails: the fail-stop policy (docs/design-decisions.md,
// "Failures"). A link is never reconnected, so a link that closes is a failure of one of its two
// ends; the coordinator (the initializer) alone decides which member is out, and makes it true by
// cutting that member off, so a process still running cannot go on as a member the others have
// removed. A worker that loses the initializer stops (with resilience it waits for it to come
// back, and comes back itself as a new incarnation: src/cluster/recovery.ts); any other loss is
// reported to the coordinator.
import type { Clock } from "../clock.ts";
import type { Member } from "../codec/control.ts";
import { UnreachableError, type WallarooError } from "../errors.ts";
import { log } from "../log.ts";
import type { ControlLinks } from "./control-dispatch.ts";
import type { Coordinator } from "./coordinator.ts";
import type { Formation } from "./formation.ts";
import type { InboundData } from "./inbound-data.ts";
import type { Membership } from "./membership.ts";
import type { Migration } from "./migration.ts";
import type { Peers } from "./peers.ts";
import type { Pressure } from "./pressure.ts";
import type { Link } from "../net/transport.ts";

/**
 * A joiner whose report names an established member may only have seen that member die first:
 * the coordinator waits this long (one dial) for the member's own links to tell before it
 * blames the join.
 */
export const JOINER_REPORT_GRACE_MS = 2000;
/** Links of a joiner told to stop close this long after, so it reads why before they close. */
export const DROPPED_JOINER_LINGER_MS = 2000;

export interface FailuresHost {
  readonly clock: Clock;
  readonly membership: Membership;
  readonly peers: Peers;
  readonly pressure: Pressure;
  readonly control: ControlLinks;
  readonly migration: Migration;
  readonly inbound: ReadonlySet<InboundData>;
  /** The initializer's; undefined on other workers. */
  coordinator(): Coordinator | undefined;
  formation(): Formation | undefined;
  initializerId(): number;
  stopping(): boolean;
  fatal(err: WallarooError): void;
  /** Coordinator: member `id` is lost (again, perhaps): a recovery under way is moot. */
  memberLost(id: number): void;
  /** The epoch of this worker's table (a report says when it saw the loss). */
  epoch(): number;
  /** With resilience a member outlives the initializer: it waits for it to come back. Returns false without. */
  initializerLost(why: string): boolean;
}

export class Failures {
  /** name → id of members cut off, so a data link whose hello arrives late is refused too. */
  private readonly cut = new Map<string, number>();

  constructor(private readonly host: FailuresHost) {}

  /**
   * True when `name` is a member this worker cut off (and not a new worker that joined under
   * that name since): a data connection from it is closed unread.
   */
  refuses(name: string, id: number): boolean {
    return this.cut.get(name) === id;
  }

  /** name → epoch of the rollback that took it back after a crash: links it opened before are its earlier self's. */
  private readonly admitted = new Map<string, number>();

  /**
   * A rollback keeps member `name`. If it came back after a crash (`sinceEpoch`), its earlier
   * incarnation's links speak for nobody: the name is free for its new links, and the late close
   * of an old one is no one's loss.
   */
  readmit(name: string, sinceEpoch?: number, keep?: Link): void {
    this.cut.delete(name);
    if (sinceEpoch === undefined) return;
    this.admitted.set(name, sinceEpoch);
    // The link it came back on is its own already.
    if (this.host.control.linkOf(name) !== keep) this.host.control.release(name);
  }

  admittedAt(name: string): number {
    return this.admitted.get(name) ?? 0;
  }

  /**
   * A link to member `id` closed or could not be opened. The coordinator removes that member; a
   * worker that lost the initializer stops; any other worker reports the loss to the coordinator.
   */
  linkLost(id: number, why: string): void {
    const h = this.host;
    const p = h.peers.markDead(id);
    if (!p) return;
    h.pressure.forget(id);
    if (h.stopping() || h.membership.hasDeparted(p.name)) return;
    log.warn("worker_lost", `Lost connection to worker ${p.name} (${why})`);
    if (h.coordinator()) return this.memberGone(id);
    if (id === h.initializerId() && h.initializerLost(why)) {
      // What the lost initializer still has in flight to us (frames a partition held back, sent
      // before it died) belongs to the time the coming rollback undoes: read none of it. Acted
      // on, a stale plan made a member start leaving and apply records against state the
      // rollback had reset (sim seed 9183, crash faults).
      this.silence(id);
      return;
    }
    if (id === h.initializerId())
      return h.fatal(new UnreachableError(`Lost the connection to the initializer (${why}); without it this worker cannot go on, so it stops.`));
    h.peers.sendTo(h.initializerId(), "linkLost", { id, epoch: h.epoch() });
  }

  /** Coordinator: `from` reports that its link to member `id` broke. */
  reported(from: Member, id: number): void {
    const h = this.host;
    // A stopping cluster's members close their links to each other in no set order.
    if (h.stopping()) return;
    const m = h.membership.byId(id);
    if (!m || m.id === h.membership.selfId || !h.peers.get(m.id)?.alive) return;
    // A joiner that cannot reach a member (or that a member cannot reach) costs its join, never
    // an established member.
    const c = h.coordinator()!;
    const abandon = (joiner: Member) => {
      log.warn("worker_lost", `Lost connection to worker ${joiner.name} (the link between ${from.name} and ${m.name}, reported by ${from.name}); abandoning its join`);
      c.abandonJoin(joiner.id, `the link between ${from.name} and ${m.name} broke while ${joiner.name} joined`, `the connection between ${from.name} and ${m.name} broke`);
    };
    if (c.isJoining(m.id)) return abandon(m);
    if (c.isJoining(from.id)) {
      // The member may have died: then its own links tell within a dial, and the grow goes on
      // without it; only a member still alive after that makes this joiner the suspect.
      h.clock.setTimeout(() => {
        if (c.isJoining(from.id) && h.peers.get(m.id)?.alive) abandon(from);
      }, JOINER_REPORT_GRACE_MS);
      return;
    }
    log.warn("worker_lost", `Lost connection to worker ${m.name} (reported by ${from.name}); counting ${m.name} as failed`);
    this.memberGone(m.id);
  }

  /** Coordinator: member `id` is out, by its own failure or by a report; the coordinator decides the rest. */
  private memberGone(id: number): void {
    const h = this.host;
    const c = h.coordinator()!;
    h.memberLost(id);
    // A joiner is dropped by the coordinator, which first tells it why (over links still alive).
    if (c.isJoining(id)) return c.onWorkerLost(id);
    h.peers.markDead(id);
    h.pressure.forget(id);
    // A restarted initializer has no formation: its cluster formed long ago.
    const formation = h.formation();
    if (formation && !formation.formed) return formation.memberLost(id);
    c.onWorkerLost(id);
    this.fence(id);
  }

  /** Closes every link to member `id`: if it is still running, losing the initializer stops it. */
  fence(id: number): void {
    const h = this.host;
    if (!h.peers.get(id)) return;
    log.warn("member_fenced", `Closed every connection to worker ${h.membership.byId(id)?.name ?? id}`);
    this.cutOff(id);
  }

  /**
   * Nothing more goes to or comes from member `id`: it was declared dead, and the decisions
   * taken since (repair rounds, slots started empty) assume that whatever it still had in flight
   * never arrives.
   */
  private cutOff(id: number): void {
    const h = this.host;
    const member = h.membership.byId(id);
    if (member) this.cut.set(member.name, id);
    h.peers.drop(id);
    this.silence(id);
  }

  /** Closes the links member `id` sends on to us (data, and its control link): nothing more is read from them. */
  private silence(id: number): void {
    const h = this.host;
    for (const inb of [...h.inbound]) if (inb.sender() === id) inb.link.destroy();
    const m = h.membership.byId(id);
    if (m) h.control.linkOf(m.name)?.destroy();
  }

  /** Coordinator: joiners that will never join are told to stop, the others to forget them. */
  dropJoiners(names: readonly string[], reason: string): void {
    const h = this.host;
    for (const m of h.membership.members) if (names.includes(m.name)) h.peers.sendTo(m.id, "shutdown", { reason });
    for (const m of h.membership.others()) if (!names.includes(m.name)) h.peers.sendTo(m.id, "abortJoin", { names: [...names] });
    this.forget(names);
  }

  /**
   * Joiners that will never join: forgotten. They hold no slot, so nothing they still send
   * matters; their links close after a linger, so one told to stop reads why first.
   */
  forget(names: readonly string[]): void {
    const h = this.host;
    for (const m of h.membership.remove((x) => names.includes(x.name))) this.letGo(m, DROPPED_JOINER_LINGER_MS);
  }

  /**
   * A member that left (or never finished joining) speaks for nobody any more: its name is free
   * for a new worker, its links' closes are no one's, and ours to it close after `lingerMs`.
   */
  letGo(m: Member, lingerMs: number): void {
    const h = this.host;
    const control = h.control.linkOf(m.name);
    if (control) h.clock.setTimeout(() => control.end(), lingerMs);
    h.control.release(m.name);
    h.pressure.forget(m.id);
    h.peers.drop(m.id, lingerMs);
    for (const inb of h.inbound) {
      // By id: a new worker of the same name (joined since) keeps its links.
      if (inb.senderName !== m.name || inb.sender() !== m.id) continue;
      inb.forgetSender();
      h.clock.setTimeout(() => inb.link.end(), lingerMs);
    }
  }

  /**
   * Member `id` is no member any more (a down member given up, with resilience; a participant
   * lost mid-migration): cut off, forgotten, its name free. Returns it, if it was known.
   */
  giveUp(id: number): Member | undefined {
    const h = this.host;
    this.cutOff(id);
    const [m] = h.membership.remove((x) => x.id === id);
    if (m) h.control.release(m.name);
    h.pressure.forget(id);
    return m;
  }

  /** A participant died mid-migration (the coordinator says so): forget it, keep what we can. */
  lost(id: number): void {
    const h = this.host;
    const m = this.giveUp(id);
    const { kept, lost } = h.migration.onLost(id);
    // Slots it owed here start from what arrived: what waited for them ran, the held queue shrank.
    h.pressure.check();
    log.warn("participant_lost", `Worker ${m?.name ?? id} is gone: ${kept} slots bound for it stay here, ${lost} slots it owed here start from what arrived`);
  }
}
