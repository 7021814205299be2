// What a worker answers on the external channel (reference §3): status, shrink, slot and key
// queries, the cluster-wide key count gathered from every member, shutdown. The worker hands
// in what it knows through ExternalHost; this file never touches a connection.
import type { ControlBody, Member } from "../codec/control.ts";
import { EXTERNAL_MAX_FRAME, EXTERNAL_MSG, encodeClusterStatus, externalBodyBytes, parseShrinkRequest, type ExternalMsgType } from "../codec/external.ts";
import type { ClusterStatuses, WorkerStatus } from "../metrics/status.ts";
import type { Clock } from "../clock.ts";
import { log } from "../log.ts";
import { GATHER_DEADLINE_MS, Gathering } from "./gathering.ts";
import type { Dataflow } from "../runtime/dataflow.ts";
import type { ExternalReply } from "../runtime/external-server.ts";

export type ShrinkAsk = { query: boolean; names: readonly string[]; count: number };

export interface ExternalHost {
  readonly name: string;
  readonly dataflow: Dataflow;
  /** Names of the stateful stages, in pipeline order. */
  readonly stageNames: readonly string[];
  sourceNames(): readonly string[];
  isReady(): boolean;
  isStopping(): boolean;
  /** Members the coordinator says are down. */
  down(): readonly string[];
  /** The committed membership, in cluster order. */
  committed(): readonly Member[];
  /** This worker coordinates (it is the initializer). */
  coordinates(): boolean;
  ownedSlots(): number[];
  /** Answers a shrink request on the coordinator (or a query anywhere). */
  shrinkHere(req: ShrinkAsk): { type: number; payload: string };
  /** Forwards a shrink to the coordinator. */
  relayShrink(req: ShrinkAsk): Promise<ControlBody<"shrinkReply">>;
  clusterKeyCounts(reply: ExternalReply): void;
  /** Every member's status (this worker's first), and the members that did not answer in time. */
  workersStatus(finish: (statuses: WorkerStatus[], missing: string[]) => void): void;
  shutdown(reason: string | undefined): void;
}

export function answerExternal(h: ExternalHost, type: ExternalMsgType, payload: string, reply: ExternalReply): void {
  switch (type) {
    case EXTERNAL_MSG.ClusterStatusQuery: {
      if (!h.isReady()) return reply(EXTERNAL_MSG.ClusterStatusQueryResponseNotInitialized, "");
      const committed = h.committed();
      return reply(
        EXTERNAL_MSG.ClusterStatusQueryResponse,
        encodeClusterStatus({
          worker_count: committed.length,
          worker_names: committed.map((m) => m.name),
          processing_messages: !h.isStopping() && h.down().length === 0,
          down_workers: [...h.down()],
        }),
      );
    }
    case EXTERNAL_MSG.ShrinkRequest: {
      const req = parseShrinkRequest(payload);
      if (!req) return void log.warn("external_undecodable", "Error decoding External Message on external channel. (malformed shrink request)");
      const r = { query: req.query, names: req.node_names, count: req.node_count };
      if (!r.query && !h.isReady()) return reply(EXTERNAL_MSG.ShrinkErrorResponse, "Cluster is not yet initialized, cannot shrink at this time");
      if (r.query || h.coordinates()) {
        const a = h.shrinkHere(r);
        return reply(a.type as ExternalMsgType, a.payload);
      }
      void h.relayShrink(r).then(
        (b) => reply(b.type as ExternalMsgType, b.payload),
        (err: Error) => reply(EXTERNAL_MSG.ShrinkErrorResponse, err.message),
      );
      return;
    }
    case EXTERNAL_MSG.PartitionQuery:
    case EXTERNAL_MSG.PartitionCountQuery: {
      const slots = h.ownedSlots();
      const byStage: Record<string, Record<string, number[] | number>> = {};
      for (const n of h.stageNames) byStage[n] = { [h.name]: type === EXTERNAL_MSG.PartitionQuery ? slots : slots.length };
      return reply(
        type === EXTERNAL_MSG.PartitionQuery ? EXTERNAL_MSG.PartitionQueryResponse : EXTERNAL_MSG.PartitionCountQueryResponse,
        JSON.stringify({ state_partitions: byStage, stateless_partitions: {} }),
      );
    }
    case EXTERNAL_MSG.SourceIdsQuery:
      return reply(EXTERNAL_MSG.SourceIdsQueryResponse, JSON.stringify({ source_ids: h.sourceNames() }));
    case EXTERNAL_MSG.StateEntityQuery:
      return reply(EXTERNAL_MSG.StateEntityQueryResponse, JSON.stringify(h.dataflow.state.keys()));
    case EXTERNAL_MSG.StateEntityCountQuery:
      return reply(EXTERNAL_MSG.StateEntityCountQueryResponse, JSON.stringify(h.dataflow.state.counts()));
    case EXTERNAL_MSG.ClusterStateEntityCountQuery:
      return h.clusterKeyCounts(reply);
    case EXTERNAL_MSG.WorkersStatusQuery:
      return h.workersStatus((workers, missing) => reply(EXTERNAL_MSG.WorkersStatusQueryResponse, fitExternal({ workers, missing })));
    case EXTERNAL_MSG.CleanShutdown:
      log.info("external_shutdown", `External Clean Shutdown received${payload ? `: ${payload}` : "."}`);
      return h.shutdown(payload || undefined);
    case EXTERNAL_MSG.Print:
      return void log.info("external_print", `$$$ ExternalPrint: ${payload} $$$`);
    default:
      log.warn("external_unhandled", `Incoming External Message type not handled by external channel. (type ${type})`);
  }
}

/**
 * The statuses as one external reply: the channel carries at most 16 KiB, so a large cluster's
 * answer leaves out the latency buckets first (`trimmed`), then the other members' membership
 * lists, then the names of the silent, then whole workers (counted in `omitted`).
 */
export function fitExternal(s: ClusterStatuses): string {
  const fits = (x: ClusterStatuses) => externalBodyBytes(JSON.stringify(x)) <= EXTERNAL_MAX_FRAME;
  if (fits(s)) return JSON.stringify(s);
  let t: ClusterStatuses = { ...s, trimmed: true, workers: s.workers.map((w) => ({ ...w, latency: { ...w.latency, buckets: [] } })) };
  if (!fits(t)) t = { ...t, workers: t.workers.map((w, i) => (i === 0 ? w : { ...w, members: [] })) };
  if (!fits(t)) t = { ...t, missing: [], omitted: t.missing.length };
  while (!fits(t) && t.workers.length > 1) t = { ...t, workers: t.workers.slice(0, -1), omitted: (t.omitted ?? 0) + 1 };
  return JSON.stringify(t);
}

/** Per stage, slot → keys for the slots this worker owns that hold keys (the 25/26 shape). */
export function slotKeyCounts(dataflow: Dataflow, owned: readonly number[]): Record<string, Record<string, number>> {
  const out: Record<string, Record<string, number>> = {};
  const counts = dataflow.state.counts();
  for (const stage of Object.keys(counts)) out[stage] = {};
  for (const s of owned) {
    const n = dataflow.state.slotKeyCount(s);
    if (n > 0) for (const stage of Object.keys(counts)) out[stage]![String(s)] = n;
  }
  return out;
}

/** How long the cluster-wide key count waits for members before answering without them. */
export const KEY_COUNT_DEADLINE_MS = GATHER_DEADLINE_MS;

/** The cluster-wide key count: this worker's own counts plus every member's answer. */
export class ClusterKeyCounts {
  private readonly gathering: Gathering<unknown>;

  constructor(clock: Clock, ask: (id: number, reqId: number) => boolean) {
    this.gathering = new Gathering(clock, ask, "Cluster state entity count", "key_count_partial");
  }

  gather(selfName: string, own: Record<string, unknown>, others: readonly Member[], reply: ExternalReply): void {
    this.gathering.gather(selfName, own, others, (answers) => reply(EXTERNAL_MSG.ClusterStateEntityCountQueryResponse, JSON.stringify(Object.fromEntries(answers))));
  }

  collect(body: ControlBody<"keyCountReply">): void {
    this.gathering.collect(body.reqId, body.name, body.counts);
  }
}
