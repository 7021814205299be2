// Every series a worker exposes on /metrics (docs/metrics.md lists them with their meaning). Each is
// read from the worker's parts when scraped: the counts are the fields those parts kept anyway,
// so a worker nobody scrapes pays nothing for this file.
import type { Labels, ValueSample } from "../metrics/exposition.ts";
import { Registry } from "../metrics/registry.ts";
import { AUTOSCALE_PHASE } from "../metrics/status.ts";
import { messagesIn, readiness, workerStatus, type ObservedWorker } from "./worker-status.ts";

const bool = (b: boolean) => (b ? 1 : 0);

/** One sample per item of `xs`, labelled `label` = its name. */
function each<T>(xs: Iterable<T>, label: string, name: (x: T) => string, value: (x: T) => number): ValueSample[] {
  return [...xs].map((x) => ({ labels: { [label]: name(x) }, value: value(x) }));
}

export function workerMetrics(w: ObservedWorker): Registry {
  const r = new Registry({ worker: w.name });
  cluster(r, w);
  sources(r, w);
  steps(r, w);
  sink(r, w);
  data(r, w);
  autoscale(r, w);
  resilience(r, w);
  return r;
}

function cluster(r: Registry, w: ObservedWorker): void {
  r.gauge("wallaroo_ready", "1 while this worker is a member of a formed cluster, not leaving and not stopping (what /readyz answers).", () => bool(readiness(w).ready));
  r.gauge("wallaroo_leaving", "1 from the moment a shrink's plan names this worker until it exits.", () => bool(w.isLeaving()));
  r.gauge("wallaroo_members", "Members of the committed membership, as this worker knows it.", () => w.committed().length);
  r.gauge("wallaroo_members_down", "Members the coordinator counts as down (the sources pause while any is).", () => w.down().length);
  r.gauge("wallaroo_epoch", "Epoch of the routing table this worker has applied.", () => w.table.epoch);
  r.gauge("wallaroo_slots", "Slots this worker owns.", () => w.table.ownedSlots().length);
  r.gauge("wallaroo_keys", "Keys whose state this worker holds, per stateful step.", () =>
    Object.entries(w.dataflow.state.counts()).map(([step, n]) => ({ labels: { step }, value: n })),
  );
  r.gauge("wallaroo_held_messages", "Messages waiting for a slot whose state is in transit to this worker.", () => w.dataflow.heldCount);
  r.gauge("wallaroo_slots_in_transit", "Slots whose state is in transit to or from this worker.", () => w.migration.inFlight);
  r.counter("wallaroo_messages_in_total", "Messages read by this worker: source frames and records from peers.", () => messagesIn(w));
  r.counter("wallaroo_errors_total", "Messages dropped because a step, a keyBy or the sink's encoder threw or returned something unusable.", () => w.dataflow.errors);
  r.counter("wallaroo_misrouted_messages_total", "Messages that arrived for a slot this worker does not hold (forwarded to its owner).", () => w.dataflow.misrouted);
  r.untyped("wallaroo_app_counter", "The application's own counters() (name = its key), as it reports them.", () =>
    Object.entries(w.dataflow.appCounters())
      .filter(([, v]) => typeof v === "number")
      .map(([name, value]) => ({ labels: { name }, value })),
  );
}

function sources(r: Registry, w: ObservedWorker): void {
  const src = (label: (s: ReturnType<ObservedWorker["sources"]>[number]) => number) => () => each(w.sources(), "source", (s) => s.name, label);
  r.counter("wallaroo_source_messages_total", "Frames read from the source's connections.", src((s) => s.frames));
  r.counter("wallaroo_source_decode_failures_total", "Frames the application's decoder threw on or dropped (labelled with the decoder's source).", () =>
    w.sources().length === 0 ? [] : [{ labels: { source: w.app.source.name }, value: w.dataflow.decodeDrops }],
  );
  r.counter("wallaroo_source_connections_total", "Connections accepted on the source's port.", src((s) => s.connections));
  r.counter("wallaroo_source_connections_closed_total", "Source connections closed, by the client or by this worker.", src((s) => s.closedConnections));
  r.counter("wallaroo_source_oversized_frames_total", "Source connections closed because a frame exceeded the port's maximum size.", src((s) => s.rejectedConnections));
  r.gauge("wallaroo_source_paused", "1 while the source reads nothing (wallaroo_backpressure says why).", src((s) => bool(s.isPaused)));
  r.counter("wallaroo_source_pauses_total", "Times the source paused.", src((s) => s.pauses));
  r.counter("wallaroo_source_paused_seconds_total", "Time the source spent paused.", src((s) => s.pausedMs / 1000));
  r.gauge("wallaroo_backpressure", "1 for each reason the sources stand paused now (cause: sink, peers, held, down, checkpoint, recovery).", () =>
    Object.entries(w.pressure.causes()).map(([cause, on]) => ({ labels: { cause }, value: bool(on) })),
  );
  r.counter("wallaroo_held_pauses_total", "Times the sources paused because messages held for incoming slots passed their high mark.", () => w.pressure.heldPauses);
  r.histogram(
    "wallaroo_processing_seconds",
    "Time this worker spent per message read, measured per chunk (each message counts with its chunk's mean); _count is the messages read.",
    () => [
      ...w.sources().map((s) => ({ labels: { source: s.name } as Labels, histogram: s.seconds })),
      ...[...w.inbound()].map(([peer, st]) => ({ labels: { peer } as Labels, histogram: st.seconds })),
    ],
  );
}

function steps(r: Registry, w: ObservedWorker): void {
  const df = w.dataflow;
  const indices = w.app.stages.flatMap((st, i) => (st.kind === "key" ? [] : [i]));
  const per = (value: (i: number) => number) => () => indices.map((i) => ({ labels: { step: w.app.stages[i]!.name }, value: value(i) }));
  r.counter("wallaroo_step_filtered_total", "Messages a step returned nothing for.", per((i) => df.stepFiltered[i]!));
  r.counter("wallaroo_step_errors_total", "Messages a step threw on (dropped).", per((i) => df.stepFailed[i]!));
  r.histogram("wallaroo_step_seconds", "Time of one run of the step, sampled: the first message of each chunk an input reads has every step it runs here timed.", () =>
    indices.map((i) => ({ labels: { step: w.app.stages[i]!.name }, histogram: df.stepSeconds[i]! })),
  );
}

function sink(r: Registry, w: ObservedWorker): void {
  const labels = { sink: w.app.sink.name };
  const one = (value: () => number) => () => [{ labels, value: value() }];
  r.counter("wallaroo_sink_messages_total", "Outputs written to this worker's sink connection (or held for it while it reconnects).", one(() => w.sink.written));
  r.counter("wallaroo_sink_bytes_total", "Output bytes the kernel took on the sink connection.", one(() => w.sink.sentBytes));
  r.gauge("wallaroo_sink_queued_bytes", "Output bytes waiting for the sink connection.", one(() => w.sink.queuedBytes));
  r.gauge("wallaroo_sink_connected", "1 while the sink connection is up.", one(() => bool(w.sink.connected)));
  r.counter("wallaroo_sink_reconnects_total", "Times the sink connection was made again after it closed.", one(() => w.sink.reconnects));
  r.histogram(
    "wallaroo_latency_seconds",
    "End-to-end latency: from the initializer reading a message from a source connection to its output in this worker's sink buffer, per batch; _count is the outputs written here.",
    () => [{ labels, histogram: w.dataflow.latency.histogram }],
  );
}

function data(r: Registry, w: ObservedWorker): void {
  const peers = () => [...w.peers.live()];
  const out = (value: (p: ReturnType<typeof peers>[number]) => number) => () => each(peers(), "peer", (p) => p.name, value);
  r.counter("wallaroo_data_sent_messages_total", "Records this worker routed to the peer.", out((p) => p.records));
  r.counter("wallaroo_data_sent_batches_total", "DATA frames (batches of records) written to the peer.", out((p) => p.batches));
  r.counter("wallaroo_data_sent_bytes_total", "Bytes the kernel took on the data connection to the peer (every frame).", out((p) => p.data?.sentBytes ?? 0));
  r.gauge("wallaroo_data_queued_bytes", "Bytes waiting for the data connection to the peer.", out((p) => p.data?.queuedBytes ?? 0));
  r.gauge("wallaroo_data_congested", "1 while the data connection to the peer is above its high-water mark (the sources pause).", out((p) => bool(p.congested)));
  r.counter("wallaroo_data_dropped_messages_total", "Records for a peer that was gone (peer=\"gone\": its member had left the table).", () => [
    ...each(peers(), "peer", (p) => p.name, (p) => p.dropped),
    { labels: { peer: "gone" }, value: w.peers.droppedToGone },
  ]);
  const inbound = (value: (st: ReturnType<ObservedWorker["inbound"]> extends ReadonlyMap<string, infer S> ? S : never) => number) => () =>
    [...w.inbound()].map(([peer, st]) => ({ labels: { peer }, value: value(st) }));
  r.counter("wallaroo_data_received_messages_total", "Records received from the peer.", inbound((st) => st.records));
  r.counter("wallaroo_data_received_batches_total", "DATA frames received from the peer.", inbound((st) => st.batches));
  r.counter("wallaroo_data_received_bytes_total", "Bytes read from the peer's data connections.", inbound((st) => st.bytes));
  r.counter("wallaroo_data_malformed_total", "Data connections from the peer closed for a malformed or oversized frame.", inbound((st) => st.malformed));
  r.counter("wallaroo_control_malformed_total", "Control connections closed for a malformed or oversized frame.", () => w.controlMalformed());
  r.counter("wallaroo_external_refused_total", "External-channel requests refused: undecodable (not answered) or oversized (connection closed).", () => {
    const x = w.external();
    return x ? [{ labels: { reason: "undecodable" }, value: x.undecodable }, { labels: { reason: "oversized" }, value: x.oversized }] : [];
  });
  r.gauge("wallaroo_data_inbound_paused", "1 while this worker reads no data connection because its sink is congested.", () => bool(w.pressure.inboundPausedForSink));
}

function autoscale(r: Registry, w: ObservedWorker): void {
  const mig = w.migration.stats;
  const dir = (o: number, i: number) => () => [
    { labels: { direction: "out" }, value: o },
    { labels: { direction: "in" }, value: i },
  ];
  r.counter("wallaroo_migrated_slots_total", "Slots whose state left (out) or arrived at (in) this worker.", () => dir(mig.slotsOut, mig.slotsIn)());
  r.counter("wallaroo_migrated_keys_total", "Keys whose state left or arrived at this worker.", () => dir(mig.keysOut, mig.keysIn)());
  r.counter("wallaroo_migrated_bytes_total", "Bytes of state sent from or installed at this worker.", () => dir(mig.bytesOut, mig.bytesIn)());
  r.gauge("wallaroo_autoscale_phase", "1 for this worker's autoscale phase now (the coordinator's on the initializer).", () => {
    const phase = workerStatus(w).autoscale.phase;
    return Object.values(AUTOSCALE_PHASE).map((p) => ({ labels: { phase: p }, value: bool(p === phase) }));
  });
  const c = () => w.coordinator();
  // Only the initializer coordinates: elsewhere these families have no samples.
  const coord = (value: (s: NonNullable<ReturnType<typeof c>>) => ValueSample[]) => () => {
    const co = c();
    return co ? value(co) : [];
  };
  r.counter("wallaroo_autoscale_events_total", "Grows and shrinks completed (initializer).", coord((co) => [
    { labels: { kind: "grow" }, value: co.stats.grows },
    { labels: { kind: "shrink" }, value: co.stats.shrinks },
  ]));
  r.counter("wallaroo_autoscale_refusals_total", "Join and shrink requests refused (initializer).", coord((co) => [
    { labels: { kind: "join" }, value: co.stats.joinRefusals },
    { labels: { kind: "shrink" }, value: co.stats.shrinkRefusals },
  ]));
  r.counter("wallaroo_migration_rounds_total", "Rounds of slot moves of completed migrations (initializer).", coord((co) => [{ value: co.stats.rounds }]));
  r.gauge("wallaroo_autoscale_slots_moved", "Slots the event in flight has moved so far (initializer; 0 when idle).", coord((co) => [{ value: co.progress.slots_moved ?? 0 }]));
  r.gauge("wallaroo_autoscale_slots_to_move", "Slots the event in flight moves in all (initializer; 0 when idle).", coord((co) => [{ value: co.progress.slots_total ?? 0 }]));
  r.histogram("wallaroo_migration_duration_seconds", "From a grow's or shrink's first round to its last slot installed (initializer).", () => {
    const co = c();
    return co ? [{ histogram: co.stats.migrationSeconds }] : [];
  });
}

function resilience(r: Registry, w: ObservedWorker): void {
  const res = () => w.resilience();
  const cp = () => res()?.resilience.checkpointer;
  const when = <T>(get: () => T | undefined, value: (x: T) => number) => () => {
    const x = get();
    return x === undefined ? [] : [{ value: value(x) }];
  };
  r.counter("wallaroo_checkpoint_writes_total", "Checkpoints this worker wrote its part of.", when(res, (x) => x.resilience.written));
  r.counter("wallaroo_checkpoint_written_bytes_total", "Bytes of slot images this worker wrote.", when(res, (x) => x.resilience.writtenBytes));
  r.counter("wallaroo_rollbacks_total", "Rollbacks to a checkpoint applied here.", when(res, (x) => x.recovery.rollbacks));
  r.counter("wallaroo_replayed_messages_total", "Messages replayed from the input log (initializer).", when(cp, () => res()!.recovery.replayed));
  r.counter("wallaroo_checkpoints_abandoned_total", "Checkpoints abandoned before their commit (initializer).", when(cp, (x) => x.abandoned));
  r.gauge("wallaroo_checkpoint_last_committed", "Number of the last committed checkpoint (initializer).", when(cp, (x) => x.lastCommitted));
  r.histogram("wallaroo_checkpoint_duration_seconds", "From a checkpoint's start to its commit (initializer); the sources pause only while images are taken.", () => {
    const x = cp();
    return x ? [{ histogram: x.seconds }] : [];
  });
}
