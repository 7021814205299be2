// What a worker says about itself (`/status`, `/readyz`, and its line in `wallaroo top`), read from
// its parts at the moment of asking. The parts are handed in as an ObservedWorker, so this file
// (and worker-metrics.ts) sees them without the worker's wiring.
import type { AppSpec } from "../app/types.ts";
import type { Clock } from "../clock.ts";
import type { Member } from "../codec/control.ts";
import { sparse } from "../metrics/histogram.ts";
import type { Autoscale, WorkerStatus } from "../metrics/status.ts";
import type { Dataflow } from "../runtime/dataflow.ts";
import type { ExternalStats } from "../runtime/external-server.ts";
import type { Sink } from "../runtime/sink.ts";
import type { Source } from "../runtime/source.ts";
import type { Coordinator } from "./coordinator.ts";
import type { InboundStats } from "./inbound-data.ts";
import type { Migration } from "./migration.ts";
import type { Peers } from "./peers.ts";
import type { Pressure } from "./pressure.ts";
import type { Resilience } from "./resilience.ts";
import type { Recovery } from "./recovery.ts";
import type { RoutingTable } from "./routing-table.ts";

export interface ObservedWorker {
  readonly name: string;
  readonly role: WorkerStatus["role"];
  readonly app: AppSpec;
  readonly clock: Clock;
  readonly dataflow: Dataflow;
  readonly sink: Sink;
  readonly migration: Migration;
  readonly table: RoutingTable;
  readonly peers: Peers;
  readonly pressure: Pressure;
  sources(): readonly Source[];
  /** Per member name: what its data links brought in. */
  inbound(): ReadonlyMap<string, InboundStats>;
  /** Records from members no longer in `inbound()`. */
  recordsFromGone(): number;
  coordinator(): Coordinator | undefined;
  committed(): readonly Member[];
  down(): readonly string[];
  /** The cluster is formed (or this joiner admitted) and this worker processes. */
  isReady(): boolean;
  isStopping(): boolean;
  /** A shrink removes this worker: its plan said so. */
  isLeaving(): boolean;
  resilience(): { resilience: Resilience; recovery: Recovery } | undefined;
  /** Control connections closed for a malformed or oversized frame. */
  controlMalformed(): number;
  /** Requests refused on the external port (undefined without --external). */
  external(): ExternalStats | undefined;
}

/** What /readyz answers: a member of a formed cluster that is neither leaving nor stopping. */
export function readiness(w: ObservedWorker): { ready: boolean; why?: string } {
  if (w.isLeaving()) return { ready: false, why: "leaving the cluster (a shrink removes it)" };
  if (w.isStopping()) return { ready: false, why: "stopping" };
  if (!w.isReady()) return { ready: false, why: w.role === "joiner" ? "joining the cluster" : "the cluster is not formed yet" };
  return { ready: true };
}

/** Messages read here: source frames and records from peers. */
export function messagesIn(w: ObservedWorker): number {
  let n = w.recordsFromGone();
  for (const s of w.sources()) n += s.frames;
  for (const st of w.inbound().values()) n += st.records;
  return n;
}

/** This worker's part in the autoscale event: the coordinator's whole view on the initializer. */
function autoscale(w: ObservedWorker): Autoscale {
  const c = w.coordinator();
  if (c) return c.progress;
  if (w.isLeaving()) return { phase: "leaving" };
  if (w.role === "joiner" && !w.isReady()) return { phase: "joining" };
  if (w.migration.inFlight > 0) return { phase: "migrating" };
  return { phase: "idle" };
}

export function workerStatus(w: ObservedWorker): WorkerStatus {
  const r = readiness(w);
  const lat = w.dataflow.latency.histogram;
  const res = w.resilience();
  const cp = res?.resilience.checkpointer;
  return {
    name: w.name,
    role: w.role,
    ready: r.ready,
    ...(r.why ? { not_ready: r.why } : {}),
    epoch: w.table.epoch,
    members: w.committed().map((m) => m.name),
    down: [...w.down()],
    slots: w.table.ownedSlots().length,
    keys: w.dataflow.state.totalKeys(),
    held: w.dataflow.heldCount,
    slots_in_transit: w.migration.inFlight,
    messages_in: messagesIn(w),
    messages_out: w.sink.written,
    sources_paused: w.sources().some((s) => s.isPaused),
    latency: { count: lat.count, sum: lat.sum, buckets: sparse(lat.counts) },
    autoscale: autoscale(w),
    ...(res
      ? {
          checkpoint: {
            last_committed: cp?.lastCommitted ?? res.resilience.store.lastWritten,
            ...(cp?.inFlight !== undefined ? { in_flight: cp.inFlight } : {}),
            abandoned: cp?.abandoned ?? 0,
            rollbacks: res.recovery.rollbacks,
          },
        }
      : {}),
  };
}
