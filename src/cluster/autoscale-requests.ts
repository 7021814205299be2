// Join and shrink requests as they arrive at any member: a joiner's `join` on a control link, a
// shrink from the external channel, and the same requests other members relay here. The
// initializer's coordinator answers; any other member forwards the request to it and relays the
// answer back, with a deadline. Refusals are sent here too, in the original's words.
import { encodeControl, type ControlBody, type Member, type Topology } from "../codec/control.ts";
import { EXTERNAL_MSG, encodeShrinkQueryResponse } from "../codec/external.ts";
import { log } from "../log.ts";
import { NonceWindow } from "../security/nonce-window.ts";
import type { Link } from "../net/transport.ts";
import { COORDINATOR_LIMITS, type Coordinator } from "./coordinator.ts";
import type { ShrinkAsk } from "./external-requests.ts";
import { INITIALIZER_NAME } from "./membership.ts";
import type { Peers } from "./peers.ts";
import { RELAY_LIMITS, type Relays } from "./relays.ts";

export interface AutoscaleRequestsHost {
  readonly peers: Peers;
  readonly relays: Relays;
  /** The initializer's; undefined on other workers. */
  coordinator(): Coordinator | undefined;
  initializerId(): number;
  isReady(): boolean;
  committed(): readonly Member[];
}

export type ShrinkAnswer = { type: number; payload: string };

export const isWildcard = (host: string) => host === "0.0.0.0" || host === "::" || host === "";

/** A member announced `0.0.0.0` or `::`: it is reachable where its connection came from. */
export function reachableHost(link: Link, announced: string): string {
  if (!isWildcard(announced)) return announced;
  // `remote` is a bare address over TCP (IPv6 has colons of its own), `host:port` in the simulation.
  const r = link.remote.replace(/^::ffff:/, "");
  return r.split(":").length === 2 ? r.slice(0, r.lastIndexOf(":")) : r;
}

/** Refuses whoever is at the other end of `link` (a registration or a join) and closes it. */
export function refuseLink(link: Link, reason: string): void {
  link.write(encodeControl("refused", { reason }));
  link.end();
}

export class AutoscaleRequests {
  /** Nonces of signed shrinks this coordinator carried out (replays through other members). */
  private readonly shrinkNonces = new NonceWindow();
  private latestProofTs = 0;

  constructor(private readonly host: AutoscaleRequestsHost) {}

  /** A joiner asked this member to join: answered on its link with a topology or a refusal. */
  join(link: Link, body: ControlBody<"join">): void {
    const h = this.host;
    const req = { ...body, host: reachableHost(link, body.host) };
    const answer = (ok: boolean, reason: string | undefined, topology: Topology | undefined) => {
      if (link.closed) return;
      if (ok && topology) link.write(encodeControl("topology", topology));
      else refuseLink(link, reason ?? "Join refused.");
    };
    if (!h.isReady()) return answer(false, "Contacted worker has not yet joined the cluster, cannot autoscale.", undefined);
    const c = h.coordinator();
    if (c) return c.onJoin(req, answer);
    // A multi-join is answered once all its joiners arrived: wait as long as the coordinator does.
    const deadlineMs = COORDINATOR_LIMITS.joinersWaitMs + RELAY_LIMITS.deadlineMs;
    void h.relays
      .ask<ControlBody<"joinReply">>((reqId) => h.peers.sendTo(h.initializerId(), "tryJoin", { ...req, reqId }), deadlineMs)
      .then(
        (r) => answer(r.ok, r.reason, r.topology),
        (err: Error) => answer(false, err.message, undefined),
      );
  }

  /** Coordinator: a join another member relayed; the answer goes back to it. */
  relayedJoin(from: Member, { reqId, ...req }: ControlBody<"tryJoin">): void {
    const h = this.host;
    h.coordinator()!.onJoin(req, (ok, reason, topology) => h.peers.sendTo(from.id, "joinReply", { reqId, ok, reason, topology }));
  }

  /** Answers a shrink here: a query anywhere, a shrink on the coordinator. */
  shrink(req: ShrinkAsk): ShrinkAnswer {
    const committed = this.host.committed();
    if (req.query) {
      const names = committed.filter((m) => m.name !== INITIALIZER_NAME).map((m) => m.name);
      return { type: EXTERNAL_MSG.ShrinkQueryResponse, payload: encodeShrinkQueryResponse({ node_names: names, node_count: names.length }) };
    }
    // Each member remembers the nonces it was sent; a signed shrink captured and sent again to
    // another member is caught here, where every shrink ends up. The member already judged its
    // time against its clock: this window is measured on the requests' own times.
    if (req.proof) {
      this.latestProofTs = Math.max(this.latestProofTs, req.proof.ts);
      const why = this.shrinkNonces.admit(req.proof.nonce, req.proof.ts, this.latestProofTs);
      if (why) {
        log.warn("external_refused", `Refused a signed shrink: ${why}`);
        return { type: EXTERNAL_MSG.ShrinkErrorResponse, payload: `Refused: ${why}.` };
      }
    }
    const r = this.host.coordinator()!.onShrink(req, committed);
    if (r.ok) log.info("shrink_accepted", `Cluster shrink: ${r.text}`);
    return { type: EXTERNAL_MSG.ShrinkErrorResponse, payload: r.text };
  }

  /** Coordinator: a shrink another member relayed; the answer goes back to it. */
  relayedShrink(from: Member, b: ControlBody<"tryShrink">): void {
    const r = this.shrink({ query: b.query, names: b.names, count: b.count, ...(b.nonce !== undefined && b.ts !== undefined ? { proof: { nonce: b.nonce, ts: b.ts } } : {}) });
    this.host.peers.sendTo(from.id, "shrinkReply", { reqId: b.reqId, type: r.type, payload: r.payload });
  }

  /** Any other member: forwards a shrink to the coordinator. */
  relayShrink(req: ShrinkAsk): Promise<ControlBody<"shrinkReply">> {
    const h = this.host;
    return h.relays.ask(
      (reqId) => h.peers.sendTo(h.initializerId(), "tryShrink", { reqId, query: req.query, names: [...req.names], count: req.count, ...(req.proof ? { nonce: req.proof.nonce, ts: req.proof.ts } : {}) }),
      RELAY_LIMITS.shrinkDeadlineMs,
    );
  }
}
