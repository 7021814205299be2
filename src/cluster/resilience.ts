// A worker's durable side (`--resilience-dir`, docs/resilience.md): its checkpoint store and, on
// the initializer, the input log; this member's part of each checkpoint (barriers, writing what
// changed, flushing its sink) and, on the initializer, the checkpointer and the commit record.
// Rolling back to a committed checkpoint is src/cluster/recovery.ts.
import { join } from "node:path";
import { assert } from "../assert.ts";
import type { Clock } from "../clock.ts";
import type { Member } from "../codec/control.ts";
import { log } from "../log.ts";
import type { Dataflow } from "../runtime/dataflow.ts";
import { SLOT_COUNT } from "../runtime/slot-hash.ts";
import { openCheckpointStore, ResilienceError, type CheckpointStore } from "../resilience/checkpoint-store.ts";
import { openInputLog, type InputLog } from "../resilience/input-log.ts";
import { Barriers } from "./barriers.ts";
import { Checkpointer } from "./checkpointer.ts";

export interface ResilienceConfig {
  /** Where this worker keeps its files (a directory of its own is made inside). */
  dir?: string;
  /** Given instead of `dir` by the simulation: stores that survive a simulated crash. */
  store?: CheckpointStore;
  inputLog?: InputLog;
  /** `--time-between-checkpoints` */
  intervalMs: number;
  /** Sync every checkpoint and input-log write to the disk (survives a machine crash). */
  fsync: boolean;
  /**
   * A restore yields to the event loop after this many bytes of images (default
   * CHECKPOINT_YIELD_BYTES), for `ms` (default 0). The simulation, whose clock does not move
   * while code runs, sets small figures so that its small states are restored over a few
   * milliseconds with deliveries in between, as large ones are on a real machine.
   */
  restoreYield?: { bytes: number; ms: number };
}

export const DEFAULT_CHECKPOINT_INTERVAL_MS = 1000;
/** What `--run-with-resilience` alone uses. */
export const DEFAULT_RESILIENCE_DIR = "/tmp/wallaroo";
/** A member waits this long for its sink to take a checkpoint's outputs before it says written. */
const SINK_FLUSH_MS = 10_000;
/** Slots encoded per part of a checkpoint. */
export const CHECKPOINT_PART_SLOTS = 64;
/** A checkpoint yields to the event loop (heartbeats, the data) after about this much encoding or writing… */
export const CHECKPOINT_YIELD_BYTES = 4 * 1024 * 1024;
/**
 * …or this much time, whichever comes first. Bytes alone were not a bound on time: a worker just
 * started again restores with code the JIT has not compiled yet, and at a million keys it held
 * its loop past the 1 s failure timeout between two yields (bench/resilience.ts --keys 1000000).
 */
export const CHECKPOINT_YIELD_MS = 50;

/** What the initializer records with each commit: all a recovery needs besides the stores. */
export interface CommitBody {
  k: number;
  /** Input-log position: frames before it are in the checkpoint, frames from it are replayed. */
  position: number;
  epoch: number;
  owners: number[];
  members: Member[];
  nextId: number;
  cluster: string;
}

/** The directory of one worker's files inside `--resilience-dir`. */
export function workerDir(dir: string, app: string, worker: string): string {
  return join(dir, `wallaroo-${app}-${worker}`);
}

export interface ResilienceHost {
  readonly clock: Clock;
  readonly name: string;
  readonly app: string;
  readonly dataflow: Dataflow;
  selfId(): number;
  initializerId(): number;
  /** Every other member taking part in a checkpoint (every member known here). */
  others(): readonly number[];
  owns(slot: number): boolean;
  /** BARRIER(k, round) on every data link. */
  relayBarrier(k: number, round: number): void;
  /** This member has barrier round `round` of `k` from everyone: tell the coordinator. */
  roundDone(k: number, round: number): void;
  /** Checkpoint `k`'s images are taken here: the coordinator may let the sources go on. */
  captured(k: number): void;
  /** Checkpoint `k` is written here and the sink flushed (or, `failed`, why not): tell the coordinator. */
  written(k: number, slots: number, bytes: number, failed?: string): void;
  /** A mark of the sink's output so far, and whether all of it has left the process. */
  sinkMark(): unknown;
  sinkHandedOver(mark: unknown): boolean;
}

export class Resilience {
  readonly store: CheckpointStore;
  /** The initializer's; undefined elsewhere. */
  readonly inputLog: InputLog | undefined;
  readonly barriers: Barriers;
  checkpointer: Checkpointer | undefined;
  private readonly ownDir: string | undefined;
  /** Rollbacks applied here: a checkpoint written in parts stops when one happens meanwhile. */
  rollbacks = 0;
  /** Checkpoints this member wrote, and their bytes, for status and benchmarks. */
  written = 0;
  writtenBytes = 0;
  /** Settles once the last checkpoint asked here is taken and written (see `idle`); `takes` are not yet. */
  private taking: Promise<void> = Promise.resolve();
  private takes = 0;

  constructor(
    private readonly host: ResilienceHost,
    readonly cfg: ResilienceConfig,
    isInitializer: boolean,
  ) {
    if (cfg.store) {
      this.store = cfg.store;
      this.inputLog = isInitializer ? cfg.inputLog : undefined;
    } else {
      assert(cfg.dir !== undefined, "resilience needs a directory or stores");
      this.ownDir = workerDir(cfg.dir, host.app, host.name);
      this.store = openCheckpointStore(this.ownDir, { fsync: cfg.fsync });
      this.inputLog = isInitializer ? openInputLog(join(this.ownDir, "input"), { fsync: cfg.fsync }) : undefined;
    }
    assert(!isInitializer || this.inputLog !== undefined, "the initializer keeps an input log");
    this.checkIdentity();
    this.barriers = new Barriers({
      initializerId: () => host.initializerId(),
      others: () => host.others(),
      relay: (k, round) => host.relayBarrier(k, round),
      done: (k, round) => host.roundDone(k, round),
    });
  }

  /** A directory of another application or worker is refused before anything is read from it. */
  private checkIdentity(): void {
    const s = this.store;
    const app = s.getMeta("app");
    const worker = s.getMeta("worker");
    const where = this.ownDir ?? "the given store";
    if (app !== undefined && app !== this.host.app)
      throw new ResilienceError(`${where} holds the checkpoints of application ${app}, not ${this.host.app}: remove it or choose another --resilience-dir.`);
    if (worker !== undefined && worker !== this.host.name)
      throw new ResilienceError(`${where} holds the checkpoints of worker ${worker}, not ${this.host.name}: remove it or choose another --resilience-dir.`);
    if (app === undefined) s.setMeta({ app: this.host.app, worker: this.host.name });
  }

  /** The cluster this worker's files belong to, once it was a member of one. */
  get clusterId(): string | undefined {
    return this.store.getMeta("cluster");
  }

  /** The member id recorded when this worker became a member (a restart is that member again). */
  get memberId(): number | undefined {
    const v = this.store.getMeta("member");
    return v === undefined ? undefined : Number(v);
  }

  /** Where the initializer's control channel was, for a member that restarts. */
  get initializerAddress(): { host: string; port: number } | undefined {
    const h = this.store.getMeta("initHost");
    const p = this.store.getMeta("initPort");
    return h !== undefined && p !== undefined ? { host: h, port: Number(p) } : undefined;
  }

  /** Records the cluster these files belong to and where its initializer is. */
  rememberCluster(cluster: string, initializer: Member): void {
    this.store.setMeta({ cluster, initHost: initializer.host, initPort: String(initializer.controlPort) });
  }

  /** Records this worker's member id: a restart with these files rejoins as this member. */
  rememberMember(memberId: number): void {
    this.store.setMeta({ member: String(memberId) });
  }

  /**
   * Checkpoint 0: the cluster as formed (the members and the first table, nothing processed),
   * what a recovery rolls back to before the first checkpoint commits.
   */
  recordFormation(body: CommitBody): void {
    assert(body.k === 0 && body.position === 0, "checkpoint 0 is the cluster as formed, before any input");
    this.store.setMeta({ formation: JSON.stringify(body) });
  }

  /** The commit record of the last committed checkpoint (checkpoint 0 before any), if any. */
  lastCommit(): CommitBody | undefined {
    const c = this.store.lastCommit();
    if (!c) {
      const formed = this.store.getMeta("formation");
      return formed === undefined ? undefined : (JSON.parse(formed) as CommitBody);
    }
    const body = JSON.parse(c.record) as CommitBody;
    assert(body.k === c.k, `commit record ${body.k} is stored as checkpoint ${c.k}`);
    return body;
  }

  // ------------------------------------------------------------------ a member's checkpoint

  /** Checkpoint `k`: every barrier round is done, nothing is in flight. Write what changed, then flush the sink. */
  async snapshot(k: number, onCaptured?: () => void): Promise<void> {
    const h = this.host;
    // One at a time, in the order asked: after a local recovery a survivor may read the barrier
    // of the checkpoint the crash abandoned only then, right before the next one's.
    const rollbacks = this.rollbacks;
    const take = () => this.take(k, rollbacks, onCaptured);
    const taking = this.takes > 0 ? this.taking.then(take) : take();
    this.takes++;
    const settled = () => void this.takes--;
    this.taking = taking.then(settled, settled);
    const taken = await taking;
    if (!taken) return;
    const { slots, bytes, mark } = taken;
    const until = h.clock.now() + SINK_FLUSH_MS;
    while (!h.sinkHandedOver(mark) && h.clock.now() < until) await h.clock.sleep(1);
    if (!h.sinkHandedOver(mark)) {
      // The checkpoint cannot cover outputs still here: it is abandoned, and the next one tries again.
      const why = `the sink of ${h.name} did not take its output within ${SINK_FLUSH_MS} ms`;
      log.warn("checkpoint_sink_slow", `Checkpoint ${k}: ${why}`);
      return h.written(k, slots, bytes, why);
    }
    h.written(k, slots, bytes);
  }

  /**
   * Resolves once the images of every checkpoint asked so far are taken and written here (or
   * moot). A member that keeps its state through a local recovery waits for this before it
   * answers: a checkpoint the crash abandoned goes on being written, and the next one's images
   * build on it.
   */
  idle(): Promise<void> {
    return this.taking;
  }

  /**
   * Takes checkpoint `k`'s images of what changed and writes them; resolves to what it wrote and
   * the sink's mark, or undefined when a rollback made it moot.
   */
  private async take(k: number, rollbacks: number, onCaptured?: () => void): Promise<{ slots: number; bytes: number; mark: unknown } | undefined> {
    const h = this.host;
    // A rollback since it was asked made it moot.
    if (this.rollbacks !== rollbacks) return;
    // Numbers only grow (a rollback discards what came after its checkpoint); an old request is
    // left unanswered, and the dirty marks stay for the next checkpoint.
    if (k <= this.store.lastWritten) return void log.warn("checkpoint_stale", `Checkpoint ${k} asked after ${this.store.lastWritten} was written here; ignored`);
    // In parts of a few slots, yielding between them: with many keys a checkpoint takes longer
    // than the failure timeout, and heartbeats must go out meanwhile. Nothing changes the state
    // in between: the sources are paused and every barrier round is done.
    let bytes = 0;
    let slots = 0;
    // First every image, in memory: then the sources may go on (what arrives next changes no
    // image taken), and the images are written while they do.
    const parts: Array<Array<{ slot: number; image: Uint8Array }>> = [];
    // The event loop gets a turn only after real work: a small state is taken in one go.
    let sinceYield = 0;
    let yieldedAt = h.clock.now();
    for (let from = 0; from < SLOT_COUNT; from += CHECKPOINT_PART_SLOTS) {
      // A rollback meanwhile made this checkpoint moot.
      if (this.rollbacks !== rollbacks) return;
      const images = h.dataflow.state.dirtyImages((s) => h.owns(s), from, from + CHECKPOINT_PART_SLOTS);
      for (const i of images) sinceYield += i.image.length;
      slots += images.length;
      parts.push(images);
      if ((sinceYield >= CHECKPOINT_YIELD_BYTES || h.clock.now() - yieldedAt >= CHECKPOINT_YIELD_MS) && from + CHECKPOINT_PART_SLOTS < SLOT_COUNT) {
        bytes += sinceYield;
        sinceYield = 0;
        await h.clock.sleep(0);
        yieldedAt = h.clock.now();
      }
    }
    bytes += sinceYield;
    if (this.rollbacks !== rollbacks) return;
    // Outputs of what the checkpoint covers must leave this process before it commits: after a
    // crash they are not produced again. Those written from now on are the next checkpoint's.
    const mark = h.sinkMark();
    onCaptured?.();
    h.captured(k);
    // Written in transactions of about CHECKPOINT_YIELD_BYTES, a turn of the event loop between them.
    let batch: Array<{ slot: number; image: Uint8Array }> = [];
    let batchBytes = 0;
    let first = true;
    const flush = () => {
      if (first) this.store.writeCheckpoint(k, batch);
      else if (batch.length > 0) this.store.appendImages(k, batch);
      first = false;
      batch = [];
      batchBytes = 0;
    };
    for (const part of parts) {
      for (const i of part) {
        batch.push(i);
        batchBytes += i.image.length;
      }
      if (batchBytes >= CHECKPOINT_YIELD_BYTES || h.clock.now() - yieldedAt >= CHECKPOINT_YIELD_MS) {
        if (this.rollbacks !== rollbacks) return;
        flush();
        await h.clock.sleep(0);
        yieldedAt = h.clock.now();
      }
    }
    if (this.rollbacks !== rollbacks) return;
    if (first || batch.length > 0) flush();
    this.written++;
    this.writtenBytes += bytes;
    return { slots, bytes, mark };
  }

  /** Checkpoint `k` is committed: older images and, on the initializer, the input before it may go. */
  committed(k: number, position?: number): void {
    this.store.prune(k);
    if (this.inputLog && position !== undefined) {
      this.inputLog.rotate();
      this.inputLog.truncateBefore(position);
    }
  }

  /** Clean shutdown: the files go (only a crash leaves them, for a recovery). */
  destroy(): void {
    this.checkpointer?.stop();
    // The input log lives inside the store's directory, which the store removes once empty.
    this.inputLog?.destroy();
    this.store.destroy();
  }

  close(): void {
    this.checkpointer?.stop();
    this.store.close();
    this.inputLog?.close();
  }
}
