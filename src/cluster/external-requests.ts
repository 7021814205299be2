// What a worker answers on the external channel (reference §3): status, shrink, slot and key
// queries, the cluster-wide key count gathered from every member, log rotation, a status report,
// shutdown. The worker hands in what it knows through ExternalHost; this file never touches a
// connection. A request it cannot make sense of gets an answer (a shrink) or a closed connection
// (anything else), never silence: a client waiting for an answer must not wait for ever.
import type { ControlBody, Member } from "../codec/control.ts";
import { EXTERNAL_MAX_REQUEST, EXTERNAL_MSG, decodeShrinkRequest, encodeClusterStatus, externalBodyBytes, shrinkCount, type ExternalMsgType } from "../codec/external.ts";
import type { ClusterStatuses, WorkerStatus as MemberStatus } from "../metrics/status.ts";
import {
  encodeClusterStateEntityCounts,
  encodePartitionCounts,
  encodePartitions,
  encodeStateEntities,
  encodeStateEntityCounts,
  encodeStatelessPartitionCounts,
  encodeStatelessPartitions,
  statelessStepId,
  type LocalSteps,
  type SlotKeyCounts,
} from "../codec/external-answers.ts";
import type { Clock } from "../clock.ts";
import { log } from "../log.ts";
import { refusedUnproven } from "./external-gate.ts";
import { GATHER_DEADLINE_MS, Gathering } from "./gathering.ts";
import type { Dataflow } from "../runtime/dataflow.ts";
import type { ExternalClose, ExternalReply, Proof } from "../runtime/external-server.ts";
import type { InputLog } from "../resilience/input-log.ts";

/** `proof`: a signed shrink's nonce and time, so the coordinator can refuse it if sent again anywhere. */
export type ShrinkAsk = { query: boolean; names: readonly string[]; count: number; proof?: Proof };

/** ReportStatus codes the original knew (reference §3.2); each logs this worker's status line. */
export const REPORT_STATUS_CODES: readonly string[] = ["boundary-count-status"] as const;

/** What a worker reports about itself when asked with ReportStatus. */
export interface WorkerStatus {
  readonly name: string;
  readonly processing: boolean;
  readonly members: readonly string[];
  readonly down: readonly string[];
  readonly slots: number;
  readonly keys: number;
  readonly epoch: number;
  /** Members this worker has live connections to (the original reported its boundary count). */
  readonly connected: number;
  /** The initializer's: the coordinator's phase. */
  readonly autoscale?: string;
  /** With resilience, on the initializer: the last committed checkpoint. */
  readonly checkpoint?: number;
}

export interface ExternalHost {
  readonly name: string;
  readonly dataflow: Dataflow;
  /** Names of the stateful stages, in pipeline order. */
  readonly stageNames: readonly string[];
  /** Parallel stateless stages in pipeline order: [name, stage index]. */
  readonly parallelStages: ReadonlyArray<readonly [string, number]>;
  /** This worker's member id; negative until it has one. */
  selfId(): number;
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
  /** This worker's input log while it may be written (the initializer's, with resilience). */
  inputLog(): InputLog | undefined;
  /** Asks member `name` to rotate its logs; false when it cannot be reached. */
  forwardRotate(name: string): boolean;
  status(): WorkerStatus;
  /** Every member's status (this worker's first), and the members that did not answer in time. */
  workersStatus(finish: (statuses: MemberStatus[], missing: string[]) => void): void;
  shutdown(reason: string | undefined): void;
  /** The cluster has a secret: requests that change it must be signed (src/cluster/external-gate.ts). */
  readonly secured: boolean;
}

/** The steps this worker holds: its slots per stateful step, its instance of each parallel step. */
export function localSteps(h: ExternalHost): LocalSteps {
  const slots = h.ownedSlots();
  const id = h.selfId();
  return {
    worker: h.name,
    state: h.stageNames.map((n) => [n, slots] as const),
    // Before it is a member a worker runs no step at all.
    stateless: id < 0 ? [] : h.parallelStages.map(([n, i]) => [n, [statelessStepId(id, i)]] as const),
  };
}

export function answerExternal(h: ExternalHost, type: ExternalMsgType, payload: string, reply: ExternalReply, close: ExternalClose, proof?: Proof): void {
  if (refusedUnproven(h.secured, type, payload, proof !== undefined, reply)) return;
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
    case EXTERNAL_MSG.ShrinkRequest:
      return answerShrink(h, payload, reply, proof);
    case EXTERNAL_MSG.PartitionQuery:
      return reply(EXTERNAL_MSG.PartitionQueryResponse, encodePartitions(localSteps(h)));
    case EXTERNAL_MSG.PartitionCountQuery:
      return reply(EXTERNAL_MSG.PartitionCountQueryResponse, encodePartitionCounts(localSteps(h)));
    case EXTERNAL_MSG.StatelessPartitionQuery:
      return reply(EXTERNAL_MSG.StatelessPartitionQueryResponse, encodeStatelessPartitions(localSteps(h)));
    case EXTERNAL_MSG.StatelessPartitionCountQuery:
      return reply(EXTERNAL_MSG.StatelessPartitionCountQueryResponse, encodeStatelessPartitionCounts(localSteps(h)));
    case EXTERNAL_MSG.SourceIdsQuery:
      return reply(EXTERNAL_MSG.SourceIdsQueryResponse, JSON.stringify({ source_ids: h.sourceNames() }));
    case EXTERNAL_MSG.StateEntityQuery:
      return reply(EXTERNAL_MSG.StateEntityQueryResponse, encodeStateEntities(h.dataflow.state.keys()));
    case EXTERNAL_MSG.StateEntityCountQuery:
      return reply(EXTERNAL_MSG.StateEntityCountQueryResponse, encodeStateEntityCounts(h.dataflow.state.counts()));
    case EXTERNAL_MSG.ClusterStateEntityCountQuery:
      return h.clusterKeyCounts(reply);
    case EXTERNAL_MSG.WorkersStatusQuery:
      return h.workersStatus((workers, missing) => reply(EXTERNAL_MSG.WorkersStatusQueryResponse, fitExternal({ workers, missing })));
    case EXTERNAL_MSG.RotateLog:
      return rotateLog(h, payload, close);
    case EXTERNAL_MSG.ReportStatus: {
      if (!REPORT_STATUS_CODES.includes(payload)) {
        log.warn("report_status_unknown", `Failed to parse ReportStatusCode "${payload.slice(0, 64)}" (known: ${REPORT_STATUS_CODES.join(", ")}). Closed connection.`);
        return close();
      }
      const s = h.status();
      return void log.info("status_report", statusLine(s), { ...s });
    }
    case EXTERNAL_MSG.CleanShutdown:
      log.info("external_shutdown", `External Clean Shutdown received${payload ? `: ${payload}` : "."}`);
      return h.shutdown(payload || undefined);
    case EXTERNAL_MSG.Print:
      return void log.info("external_print", `$$$ ExternalPrint: ${payload} $$$`);
    default:
      // A reply type sent to a worker: the client is confused, and would wait for nothing.
      log.warn("external_unhandled", `Incoming External Message type not handled by external channel. (type ${type}) Closed connection.`);
      return close();
  }
}

/** A malformed request is answered with why (the original dropped it, and its client waited for ever). */
function answerShrink(h: ExternalHost, payload: string, reply: ExternalReply, proof: Proof | undefined): void {
  const d = decodeShrinkRequest(payload);
  if (!d.ok) {
    log.warn("external_undecodable", `Error decoding External Message on external channel. (malformed shrink request: ${d.reason})`);
    return reply(EXTERNAL_MSG.ShrinkErrorResponse, `Malformed shrink request: ${d.reason}.`);
  }
  const r: ShrinkAsk = { query: d.value.query, names: d.value.node_names, count: shrinkCount(d.value.node_count), ...(proof ? { proof } : {}) };
  if (!r.query && !h.isReady()) return reply(EXTERNAL_MSG.ShrinkErrorResponse, "Cluster is not yet initialized, cannot shrink at this time");
  if (r.query || h.coordinates()) {
    const a = h.shrinkHere(r);
    return reply(a.type as ExternalMsgType, a.payload);
  }
  void h.relayShrink(r).then(
    (b) => reply(b.type as ExternalMsgType, b.payload),
    (err: Error) => reply(EXTERNAL_MSG.ShrinkErrorResponse, err.message),
  );
}

/**
 * RotateLog names the worker whose logs rotate (empty: the one asked); another member is asked
 * over the control channel, as the original forwarded it.
 */
function rotateLog(h: ExternalHost, payload: string, close: ExternalClose): void {
  const target = payload === "" ? h.name : payload;
  if (target === h.name) return rotateHere(h.name, h.inputLog());
  if (!h.committed().some((m) => m.name === target)) {
    log.warn("rotate_unknown", `RotateLog: no worker named "${target.slice(0, 64)}" in the cluster. Closed connection.`);
    return close();
  }
  if (h.forwardRotate(target)) log.info("rotate_forwarded", `RotateLog: asked ${target} to rotate its logs`);
  else log.warn("rotate_unreachable", `RotateLog: ${target} is not reachable from ${h.name}; nothing rotated`);
}

/**
 * The one log a worker writes itself is the initializer's input log (with resilience): it goes on
 * in a new segment. Log lines go to stderr, never to a file of ours: whoever keeps them rotates them.
 */
export function rotateHere(name: string, input: InputLog | undefined): void {
  if (!input) {
    log.warn("rotate_nothing", `RotateLog: nothing to rotate on ${name}: its log lines go to stderr (rotate the file they are redirected to), and only the initializer of a resilient cluster keeps an input log`);
    return;
  }
  input.rotate();
  log.info("rotate_input_log", `RotateLog: the input log goes on in a new segment from position ${input.end} (${input.bytes} bytes held)`);
}

/** One line that says how a worker is doing (ReportStatus). */
/**
 * The statuses as one external reply, kept within 16 KiB (what a client before answers of any
 * size could read): a large cluster's answer leaves out the latency buckets first (`trimmed`),
 * then the other members' membership lists, then the names of the silent, then whole workers
 * (counted in `omitted`).
 */
export function fitExternal(s: ClusterStatuses): string {
  const fits = (x: ClusterStatuses) => externalBodyBytes(JSON.stringify(x)) <= EXTERNAL_MAX_REQUEST;
  if (fits(s)) return JSON.stringify(s);
  let t: ClusterStatuses = { ...s, trimmed: true, workers: s.workers.map((w) => ({ ...w, latency: { ...w.latency, buckets: [] } })) };
  if (!fits(t)) t = { ...t, workers: t.workers.map((w, i) => (i === 0 ? w : { ...w, members: [] })) };
  if (!fits(t)) t = { ...t, missing: [], omitted: t.missing.length };
  while (!fits(t) && t.workers.length > 1) t = { ...t, workers: t.workers.slice(0, -1), omitted: (t.omitted ?? 0) + 1 };
  return JSON.stringify(t);
}

export function statusLine(s: WorkerStatus): string {
  const parts = [
    `processing messages: ${s.processing}`,
    `members: ${s.members.length} (${s.members.join(",")})`,
    `down: ${s.down.length > 0 ? s.down.join(",") : "none"}`,
    `slots: ${s.slots}`,
    `keys: ${s.keys}`,
    `table epoch: ${s.epoch}`,
    `connected to: ${s.connected} members`,
  ];
  if (s.autoscale !== undefined) parts.push(`autoscale: ${s.autoscale}`);
  if (s.checkpoint !== undefined) parts.push(`last checkpoint: ${s.checkpoint}`);
  return `Status of ${s.name}: ${parts.join("; ")}`;
}

/** How long the cluster-wide key count waits for members before answering without them. */
export const KEY_COUNT_DEADLINE_MS = GATHER_DEADLINE_MS;

/**
 * The cluster-wide key count: this worker's own counts plus every member's answer, sent when
 * all have answered or at the deadline (the original waited forever for a silent worker).
 */
export class ClusterKeyCounts {
  private readonly gathering: Gathering<SlotKeyCounts>;

  constructor(clock: Clock, ask: (id: number, reqId: number) => boolean) {
    this.gathering = new Gathering(clock, ask, "Cluster state entity count", "key_count_partial");
  }

  gather(selfName: string, own: SlotKeyCounts, others: readonly Member[], reply: ExternalReply): void {
    this.gathering.gather(selfName, own, others, (answers) => reply(EXTERNAL_MSG.ClusterStateEntityCountQueryResponse, encodeClusterStateEntityCounts([...answers])));
  }

  /** A member's counts; only those asked for, once each. */
  collect(body: ControlBody<"keyCountReply">): void {
    this.gathering.collect(body.reqId, body.name, body.counts);
  }
}
