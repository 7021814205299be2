// What one worker says about itself: the JSON of `/status`, and what every member hands the
// worker that `wallaroo top` asks (over the control channel, then the external one). One schema
// for all three, checked wherever it is received.
import * as v from "valibot";

const count = v.pipe(v.number(), v.minValue(0));
const names = v.array(v.string());

export const AUTOSCALE_PHASE = {
  idle: "idle",
  /** Initializer: a multi-join waits for the rest of its joiners. */
  waitingForJoiners: "waitingForJoiners",
  /** Initializer: joiners and members connect to each other. */
  connecting: "connecting",
  /** Slots move (initializer: the event's rounds; a member: slots in transit to or from it). */
  migrating: "migrating",
  /** Initializer, with resilience: every slot moved, the outcome is being checkpointed. */
  committing: "committing",
  /** A joiner not yet a member. */
  joining: "joining",
  /** A member that a shrink removes: it hands its slots over and exits. */
  leaving: "leaving",
} as const;

export const AutoscaleSchema = v.object({
  phase: v.picklist(Object.values(AUTOSCALE_PHASE)),
  what: v.optional(v.picklist(["grow", "shrink"])),
  joiners: v.optional(names),
  leaving: v.optional(names),
  /** waitingForJoiners: how many arrived of how many announced. */
  joiners_arrived: v.optional(count),
  joiners_expected: v.optional(count),
  /** connecting: who has not yet connected to every member. */
  waiting_for: v.optional(names),
  /** migrating: slots moved of the slots the event moves, keys and bytes moved so far. */
  slots_moved: v.optional(count),
  slots_total: v.optional(count),
  keys_moved: v.optional(count),
  bytes_moved: v.optional(count),
  rounds: v.optional(count),
  elapsed_seconds: v.optional(count),
});
export type Autoscale = v.InferOutput<typeof AutoscaleSchema>;

export const CheckpointStatusSchema = v.object({
  last_committed: count,
  in_flight: v.optional(count),
  abandoned: count,
  rollbacks: count,
});

/** A histogram in the compact form: [bucket index, count] for non-empty buckets (src/metrics/histogram.ts). */
export const SparseHistogramSchema = v.object({
  count,
  sum: count,
  buckets: v.array(v.tuple([v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(64)), count])),
});

export const WorkerStatusSchema = v.object({
  name: v.string(),
  role: v.picklist(["initializer", "worker", "joiner"]),
  /** What /readyz answers: a member of a formed cluster, not leaving, not stopping. */
  ready: v.boolean(),
  not_ready: v.optional(v.string()),
  epoch: count,
  /** The committed membership as this worker knows it, in cluster order. */
  members: names,
  down: names,
  slots: count,
  keys: count,
  /** Messages waiting for a slot whose state is in transit to this worker. */
  held: count,
  slots_in_transit: count,
  /** Messages read here (source frames, records from peers) and outputs written to the sink. */
  messages_in: count,
  messages_out: count,
  sources_paused: v.boolean(),
  /** Output latency from source ingest to this worker's sink (seconds). */
  latency: SparseHistogramSchema,
  autoscale: AutoscaleSchema,
  checkpoint: v.optional(CheckpointStatusSchema),
});
export type WorkerStatus = v.InferOutput<typeof WorkerStatusSchema>;

/** The answer to `wallaroo top`'s question: every member's status, and who did not answer in time. */
export const ClusterStatusesSchema = v.object({
  workers: v.array(WorkerStatusSchema),
  missing: names,
  /** Set when the answer had to leave out latency buckets to fit the external channel's 16 KiB. */
  trimmed: v.optional(v.boolean()),
  /** Workers (answering or not) left out whole to fit it. */
  omitted: v.optional(count),
});
export type ClusterStatuses = v.InferOutput<typeof ClusterStatusesSchema>;
