// The other workers as connections: one Peer per member, the control and data links this worker
// dialed to it, dialing with bounded retries, control sends, and data records routed to a peer
// (dropped and counted, loudly, when the peer is gone). Decides nothing about membership: a link
// that closes is reported to the owner through `lost`.
import type { Clock } from "../clock.ts";
import { encodeControl, type ControlBody, type ControlName, type Member } from "../codec/control.ts";
import { log } from "../log.ts";
import type { Link, LinkHandlers, Transport } from "../net/transport.ts";
import { Peer } from "./peer.ts";

export const DIAL_LIMITS = {
  /** One connection attempt. */
  timeoutMs: 2000,
  /** Attempts per link before the member counts as unreachable. */
  attempts: 5,
  /** Wait before attempt i+1 is i+1 times this. */
  backoffMs: 100,
} as const;

export interface PeersHost {
  readonly name: string;
  /** This worker's member id (its data hello says it, so an earlier incarnation is told apart). */
  selfId(): number;
  readonly controlTransport: Transport;
  readonly dataTransport: Transport;
  readonly clock: Clock;
  epoch(): number;
  /** When the input being processed now was ingested (a data batch carries it to the peer). */
  ingestAt(): number;
  /** Handlers for a control link this worker dials to member `id`; its close counts only while `current()`. */
  controlHandlers(id: number, current: () => boolean): LinkHandlers;
  /** A control link this worker dialed to member `name`: what comes back on it speaks for that member. */
  dialedControl(link: Link, name: string): void;
  /** A data link's queue drained below its low-water mark. */
  drained(): void;
  /** A link to member `id` closed or could not be opened. */
  lost(id: number, why: string): void;
}

export class Peers {
  private readonly byId = new Map<number, Peer>();
  /** Records routed to a member that is gone. */
  droppedToGone = 0;

  constructor(private readonly host: PeersHost) {}

  get(id: number): Peer | undefined {
    return this.byId.get(id);
  }

  /** Live peers. */
  *live(): IterableIterator<Peer> {
    for (const p of this.byId.values()) if (p.alive) yield p;
  }

  /** The peer for a member, created (without links) when new. */
  ensure(m: Member): Peer {
    let p = this.byId.get(m.id);
    if (!p) {
      const clock = this.host.clock;
      p = new Peer(m, () => this.host.epoch(), () => this.host.ingestAt(), () => clock.now());
      this.byId.set(m.id, p);
    }
    return p;
  }

  /** A fresh peer for `m` (it came back at new addresses, or its links died): the old one's links close. */
  replace(m: Member): Peer {
    const old = this.byId.get(m.id);
    if (old) {
      this.byId.delete(m.id);
      old.alive = false;
      old.close();
    }
    return this.ensure(m);
  }

  /** Dials control and data to every member given that is not yet connected. */
  async dialAll(members: readonly Member[]): Promise<void> {
    await Promise.all(members.map((m) => this.dial(m)));
  }

  private async dial(m: Member): Promise<void> {
    const p = this.ensure(m);
    const h = this.host;
    const attempt = async (t: Transport, port: number, handlers: LinkHandlers) => {
      let last: unknown;
      for (let i = 0; i < DIAL_LIMITS.attempts; i++) {
        try {
          return await t.connect(m.host, port, handlers, DIAL_LIMITS.timeoutMs);
        } catch (err) {
          last = err;
          await h.clock.sleep(DIAL_LIMITS.backoffMs * (i + 1));
        }
      }
      throw last;
    };
    // The member may be dropped while a dial is under way: its late link is closed, not kept.
    const dropped = () => this.byId.get(m.id) !== p || !p.alive;
    // A peer replaced (its member came back after a crash) closes its links: that is no one's loss.
    const current = () => this.byId.get(m.id) === p;
    try {
      if (!p.control) {
        const link = await attempt(h.controlTransport, m.controlPort, h.controlHandlers(m.id, current));
        if (dropped()) return link.end();
        p.control = link;
        h.dialedControl(link, m.name);
        link.write(encodeControl("hello", { name: h.name }));
      }
      if (!p.data) {
        const link = await attempt(h.dataTransport, m.dataPort, {
          data() {},
          drain: () => h.drained(),
          close: () => {
            if (current()) h.lost(m.id, "data connection closed");
          },
        });
        if (dropped()) return link.end();
        p.data = link;
        p.helloData(h.name, h.selfId());
      }
    } catch (err) {
      if (dropped()) return;
      log.error("dial_failed", `Could not connect to worker ${m.name} at ${m.host}: ${(err as Error).message}`);
      h.lost(m.id, "unreachable");
    }
  }

  sendTo<N extends ControlName>(id: number, type: N, body: ControlBody<N>): boolean {
    const p = this.byId.get(id);
    if (!p || !p.alive) return false;
    return p.sendControl(type, body);
  }

  flushAll(): void {
    for (const p of this.byId.values()) p.flushBatch();
  }

  anyCongested(): boolean {
    for (const p of this.live()) if (p.congested) return true;
    return false;
  }

  forward(peerId: number, stage: number, raw: boolean, slot: number, key: string, payload: Uint8Array, start: number, end: number): void {
    const p = this.byId.get(peerId);
    if (!p || !p.alive) {
      this.droppedToGone++;
      if (this.droppedToGone === 1 || this.droppedToGone % 10000 === 0)
        log.error("peer_gone", `messages for slot ${slot} route to worker ${peerId}, which is gone: ${this.droppedToGone} dropped so far`);
      return;
    }
    p.record(stage, raw, slot, key, payload, start, end);
  }

  /** Marks a peer dead and returns it (once): its links are closed by the caller's policy. */
  markDead(id: number): Peer | undefined {
    const p = this.byId.get(id);
    if (!p || !p.alive) return undefined;
    p.alive = false;
    return p;
  }

  /** Forgets a peer; its links close now, or after `lingerMs` so a leaver finishes first. */
  drop(id: number, lingerMs = 0): void {
    const p = this.byId.get(id);
    if (!p) return;
    this.byId.delete(id);
    p.flushBatch();
    p.alive = false;
    if (lingerMs > 0) this.host.clock.setTimeout(() => p.close(), lingerMs);
    else p.close();
  }

  closeAll(): void {
    for (const p of this.byId.values()) p.close();
  }

  dropped(): number {
    let n = this.droppedToGone;
    for (const p of this.byId.values()) n += p.dropped;
    return n;
  }
}
