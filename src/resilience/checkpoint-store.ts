// The durable checkpoint store of one worker (DESIGN §5): per slot, the image of its keyed state at
// each checkpoint it changed in (src/codec/slot-image.ts), the commit records, and a few durable
// facts (meta). Two implementations with the same behaviour: a SQLite file under
// `--resilience-dir`, and one in memory for the simulation, where a crash keeps the object.
//
// Each write is one transaction, so after a crash a checkpoint is either wholly there or absent:
// recovery never sees half of one. Images are kept per (slot, k) because a checkpoint writes only
// the slots that changed since the previous one; the state at k is, per slot, its latest image ≤ k.
import { Database, type Statement } from "bun:sqlite";
import { existsSync, mkdirSync, readdirSync, rmdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { assert } from "../assert.ts";
import { EXIT, WallarooError } from "../errors.ts";
import { SLOT_COUNT } from "../runtime/slot-hash.ts";

/** The resilience directory cannot be used: it holds something that is not our store. */
export class ResilienceError extends WallarooError {
  constructor(message: string) {
    super(message, EXIT.runtime);
    this.name = "ResilienceError";
  }
}

export interface SlotImage {
  readonly slot: number;
  readonly image: Uint8Array;
}

export interface CommitRecord {
  readonly k: number;
  readonly record: string;
}

export interface CheckpointStore {
  /** Small durable key/value facts (cluster id, app name, worker name, member id…). */
  getMeta(key: string): string | undefined;
  /** Writes every entry in one transaction. */
  setMeta(entries: Record<string, string>): void;
  /**
   * Checkpoint k's images of the slots that changed here since the last one, written in ONE
   * transaction. An image of length 0 means "this slot holds nothing here".
   */
  writeCheckpoint(k: number, images: ReadonlyArray<SlotImage>): void;
  /**
   * More images of checkpoint k, the last one written (a large checkpoint is written in parts,
   * each its own transaction, so that the worker answers heartbeats between them: a checkpoint
   * counts only once committed, and a rollback discards every part of one that was not).
   */
  appendImages(k: number, images: ReadonlyArray<SlotImage>): void;
  /** For every slot ever written at or before k: its latest image at or before k. */
  slotsAt(k: number): Map<number, Uint8Array>;
  /** Highest k passed to writeCheckpoint and not discarded (0 when none). */
  readonly lastWritten: number;
  /** Durably records checkpoint k as committed, with an opaque record (JSON text from the caller). Commits only increase. */
  commit(k: number, record: string): void;
  lastCommit(): CommitRecord | undefined;
  /** k is committed: forget every image superseded at or before k (keep, per slot, the latest image ≤ k and everything > k), and commit records before k. */
  prune(k: number): void;
  /** Roll back: forget every image written after k (a checkpoint that never committed). */
  discardAfter(k: number): void;
  /** Bytes of images currently kept (for logs and benchmarks). */
  readonly bytes: number;
  close(): void;
  /** Clean shutdown: close and delete everything this store wrote (the directory too if it is then empty). */
  destroy(): void;
}

export const CHECKPOINT_DB_FILE = "checkpoints.sqlite";
/** SQLite writes these beside the database (WAL mode, or a rollback journal during creation). */
const DB_SIDE_FILES = ["-wal", "-shm", "-journal"] as const;

/** 'WALL' in the SQLite header: what tells our file from any other SQLite database. */
const APPLICATION_ID = 0x57414c4c;
/** Bumped with any change to the tables or to the image format. */
const SCHEMA_VERSION = 1;

const SCHEMA = [
  "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
  // Every k written and not discarded, even with no image, so lastWritten survives a reopen.
  "CREATE TABLE checkpoints (k INTEGER PRIMARY KEY)",
  // A rowid table with the (slot, k) index beside it: images may be large, and SQLite keeps small
  // rows in WITHOUT ROWID tables only.
  "CREATE TABLE images (slot INTEGER NOT NULL, k INTEGER NOT NULL, image BLOB NOT NULL, PRIMARY KEY (slot, k))",
  "CREATE TABLE commits (k INTEGER PRIMARY KEY, record TEXT NOT NULL)",
] as const;
const TABLES = ["checkpoints", "commits", "images", "meta"] as const;

function checkK(k: number, what: string): void {
  assert(Number.isSafeInteger(k) && k > 0, `${what}: checkpoint ${k} is a positive integer`);
}

function checkBound(k: number, what: string): void {
  assert(Number.isSafeInteger(k) && k >= 0, `${what}: checkpoint ${k} is a non-negative integer`);
}

function checkImages(k: number, lastWritten: number, images: ReadonlyArray<SlotImage>, append = false): void {
  checkK(k, "writeCheckpoint");
  if (append) assert(k === lastWritten, `images appended to checkpoint ${k}, but the last one written is ${lastWritten}`);
  else assert(k > lastWritten, `checkpoint ${k} written after ${lastWritten}: checkpoints only increase`);
  const seen = new Set<number>();
  for (const { slot } of images) {
    assert(Number.isInteger(slot) && slot >= 0 && slot < SLOT_COUNT, `slot ${slot} in 0..${SLOT_COUNT - 1}`);
    assert(!seen.has(slot), `checkpoint ${k} has one image of slot ${slot}, not two`);
    seen.add(slot);
  }
}

function checkCommit(k: number, last: CommitRecord | undefined): void {
  checkK(k, "commit");
  assert(last === undefined || k > last.k, `commit ${k} after commit ${last?.k}: commits only increase`);
}

/** Rolling back past a commit would lose state that was promised to be recoverable. */
function checkDiscard(k: number, last: CommitRecord | undefined): void {
  checkBound(k, "discardAfter");
  assert(last === undefined || k >= last.k, `discard after ${k} would drop committed checkpoint ${last?.k}`);
}

function refuse(dir: string, why: string): ResilienceError {
  return new ResilienceError(
    `${join(dir, CHECKPOINT_DB_FILE)} is not a wallaroo checkpoint store (${why}): the directory holds something else. ` +
      `Remove it or choose another --resilience-dir.`,
  );
}

export function openCheckpointStore(dir: string, opts: { fsync: boolean }): CheckpointStore {
  try {
    mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw new ResilienceError(`Cannot create the resilience directory ${dir}: ${(e as Error).message}. Choose another --resilience-dir.`);
  }
  const path = join(dir, CHECKPOINT_DB_FILE);
  let db: Database;
  try {
    db = new Database(path, { create: true, strict: true });
  } catch (e) {
    throw refuse(dir, (e as Error).message);
  }
  try {
    prepareSchema(db, dir);
    // WAL: a commit appends to one file, and a process crash loses nothing committed. FULL also
    // syncs each commit, for a machine that may lose power.
    db.exec("PRAGMA journal_mode = WAL");
    db.exec(`PRAGMA synchronous = ${opts.fsync ? "FULL" : "NORMAL"}`);
    return new SqliteCheckpointStore(db, dir);
  } catch (e) {
    db.close();
    if (e instanceof ResilienceError) throw e;
    throw refuse(dir, (e as Error).message);
  }
}

/**
 * Creates the tables in a new (empty) file, or checks an existing file is ours. Reads before it
 * writes anything, so a file that is not ours is left exactly as it was.
 */
function prepareSchema(db: Database, dir: string): void {
  const appId = (db.query("PRAGMA application_id").get() as { application_id: number }).application_id;
  const version = (db.query("PRAGMA user_version").get() as { user_version: number }).user_version;
  const tables = (db.query("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as { name: string }[]).map(
    (r) => r.name,
  );
  if (appId === 0 && version === 0 && tables.length === 0) {
    // One transaction: a crash while creating leaves an empty database, created again next time.
    db.transaction(() => {
      for (const sql of SCHEMA) db.exec(sql);
      db.exec(`PRAGMA application_id = ${APPLICATION_ID}`);
      db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`);
    })();
    return;
  }
  if (appId !== APPLICATION_ID) throw refuse(dir, "a SQLite database of another program");
  if (version !== SCHEMA_VERSION) throw refuse(dir, `format version ${version}, this wallaroo reads ${SCHEMA_VERSION}`);
  if (tables.join() !== TABLES.join()) throw refuse(dir, `tables ${tables.join(", ")}, expected ${TABLES.join(", ")}`);
}

class SqliteCheckpointStore implements CheckpointStore {
  private closed = false;
  private written: number;
  private imageBytes: number;
  private readonly q: {
    getMeta: Statement;
    setMeta: Statement;
    addCheckpoint: Statement;
    addImage: Statement;
    slotsAt: Statement;
    commit: Statement;
    lastCommit: Statement;
    pruneImages: Statement;
    pruneCheckpoints: Statement;
    pruneCommits: Statement;
    discardImages: Statement;
    discardCheckpoints: Statement;
    lastWritten: Statement;
    bytes: Statement;
  };

  constructor(
    private readonly db: Database,
    private readonly dir: string,
  ) {
    this.q = {
      getMeta: db.prepare("SELECT value FROM meta WHERE key = ?"),
      setMeta: db.prepare("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)"),
      addCheckpoint: db.prepare("INSERT INTO checkpoints (k) VALUES (?)"),
      addImage: db.prepare("INSERT INTO images (slot, k, image) VALUES (?, ?, ?)"),
      slotsAt: db.prepare(
        "SELECT i.slot, i.image FROM images i WHERE i.k = (SELECT MAX(j.k) FROM images j WHERE j.slot = i.slot AND j.k <= ?1)",
      ),
      commit: db.prepare("INSERT INTO commits (k, record) VALUES (?, ?)"),
      lastCommit: db.prepare("SELECT k, record FROM commits ORDER BY k DESC LIMIT 1"),
      pruneImages: db.prepare(
        "DELETE FROM images WHERE k < (SELECT MAX(j.k) FROM images j WHERE j.slot = images.slot AND j.k <= ?1)",
      ),
      // Keeps the latest k ≤ the pruned one, so lastWritten never goes down.
      pruneCheckpoints: db.prepare("DELETE FROM checkpoints WHERE k < (SELECT MAX(k) FROM checkpoints WHERE k <= ?1)"),
      pruneCommits: db.prepare("DELETE FROM commits WHERE k < ?"),
      discardImages: db.prepare("DELETE FROM images WHERE k > ?"),
      discardCheckpoints: db.prepare("DELETE FROM checkpoints WHERE k > ?"),
      lastWritten: db.prepare("SELECT COALESCE(MAX(k), 0) FROM checkpoints"),
      bytes: db.prepare("SELECT COALESCE(SUM(LENGTH(image)), 0) FROM images"),
    };
    this.written = this.scalar(this.q.lastWritten);
    this.imageBytes = this.scalar(this.q.bytes);
  }

  get lastWritten(): number {
    return this.written;
  }

  get bytes(): number {
    return this.imageBytes;
  }

  getMeta(key: string): string | undefined {
    this.checkOpen();
    const row = this.q.getMeta.values(key)[0];
    return row === undefined ? undefined : (row[0] as string);
  }

  setMeta(entries: Record<string, string>): void {
    this.checkOpen();
    this.db.transaction(() => {
      for (const [key, value] of Object.entries(entries)) this.q.setMeta.run(key, value);
    })();
  }

  writeCheckpoint(k: number, images: ReadonlyArray<SlotImage>): void {
    this.checkOpen();
    checkImages(k, this.written, images);
    let added = 0;
    this.db.transaction(() => {
      this.q.addCheckpoint.run(k);
      for (const { slot, image } of images) {
        this.q.addImage.run(slot, k, image);
        added += image.length;
      }
    })();
    this.written = k;
    this.imageBytes += added;
  }

  appendImages(k: number, images: ReadonlyArray<SlotImage>): void {
    this.checkOpen();
    checkImages(k, this.written, images, true);
    let added = 0;
    this.db.transaction(() => {
      for (const { slot, image } of images) {
        this.q.addImage.run(slot, k, image);
        added += image.length;
      }
    })();
    this.imageBytes += added;
  }

  slotsAt(k: number): Map<number, Uint8Array> {
    this.checkOpen();
    checkBound(k, "slotsAt");
    const out = new Map<number, Uint8Array>();
    for (const [slot, image] of this.q.slotsAt.values(k)) out.set(slot as number, image as Uint8Array);
    return out;
  }

  commit(k: number, record: string): void {
    this.checkOpen();
    checkCommit(k, this.lastCommit());
    this.q.commit.run(k, record);
  }

  lastCommit(): CommitRecord | undefined {
    this.checkOpen();
    const row = this.q.lastCommit.values()[0];
    return row === undefined ? undefined : { k: row[0] as number, record: row[1] as string };
  }

  prune(k: number): void {
    this.checkOpen();
    checkK(k, "prune");
    this.db.transaction(() => {
      this.q.pruneImages.run(k);
      this.q.pruneCheckpoints.run(k);
      this.q.pruneCommits.run(k);
    })();
    this.imageBytes = this.scalar(this.q.bytes);
  }

  discardAfter(k: number): void {
    this.checkOpen();
    checkDiscard(k, this.lastCommit());
    this.db.transaction(() => {
      this.q.discardImages.run(k);
      this.q.discardCheckpoints.run(k);
    })();
    this.written = this.scalar(this.q.lastWritten);
    this.imageBytes = this.scalar(this.q.bytes);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const s of Object.values(this.q)) s.finalize();
    this.db.close();
  }

  destroy(): void {
    this.close();
    const path = join(this.dir, CHECKPOINT_DB_FILE);
    for (const suffix of ["", ...DB_SIDE_FILES]) rmSync(path + suffix, { force: true });
    if (existsSync(this.dir) && readdirSync(this.dir).length === 0) rmdirSync(this.dir);
  }

  private scalar(s: Statement): number {
    return s.values()[0]![0] as number;
  }

  private checkOpen(): void {
    assert(!this.closed, `checkpoint store in ${this.dir} used after close`);
  }
}

interface KeptImage {
  readonly k: number;
  readonly image: Uint8Array;
}

/**
 * The same behaviour in memory. The object is the disk: the simulation hands it to the worker that
 * restarts after a crash, so close() loses nothing and the store stays usable after it. Images are
 * copied in and out, as a file would, so no caller can change what was written.
 */
export class MemoryCheckpointStore implements CheckpointStore {
  private readonly meta = new Map<string, string>();
  /** slot → its images in increasing k. */
  private readonly images = new Map<number, KeptImage[]>();
  /** Checkpoints written and not discarded, increasing. */
  private checkpoints: number[] = [];
  private commits: CommitRecord[] = [];
  private imageBytes = 0;

  get lastWritten(): number {
    return this.checkpoints.at(-1) ?? 0;
  }

  get bytes(): number {
    return this.imageBytes;
  }

  getMeta(key: string): string | undefined {
    return this.meta.get(key);
  }

  setMeta(entries: Record<string, string>): void {
    for (const [key, value] of Object.entries(entries)) this.meta.set(key, value);
  }

  writeCheckpoint(k: number, images: ReadonlyArray<SlotImage>): void {
    checkImages(k, this.lastWritten, images);
    this.checkpoints.push(k);
    this.keep(k, images);
  }

  appendImages(k: number, images: ReadonlyArray<SlotImage>): void {
    checkImages(k, this.lastWritten, images, true);
    this.keep(k, images);
  }

  private keep(k: number, images: ReadonlyArray<SlotImage>): void {
    for (const { slot, image } of images) {
      let kept = this.images.get(slot);
      if (kept === undefined) {
        kept = [];
        this.images.set(slot, kept);
      }
      kept.push({ k, image: image.slice() });
      this.imageBytes += image.length;
    }
  }

  slotsAt(k: number): Map<number, Uint8Array> {
    checkBound(k, "slotsAt");
    const out = new Map<number, Uint8Array>();
    for (const [slot, kept] of this.images) {
      const i = kept.findLastIndex((e) => e.k <= k);
      if (i >= 0) out.set(slot, kept[i]!.image.slice());
    }
    return out;
  }

  commit(k: number, record: string): void {
    checkCommit(k, this.lastCommit());
    this.commits.push({ k, record });
  }

  lastCommit(): CommitRecord | undefined {
    return this.commits.at(-1);
  }

  prune(k: number): void {
    checkK(k, "prune");
    for (const kept of this.images.values()) {
      const latest = kept.findLastIndex((e) => e.k <= k);
      for (const dropped of kept.splice(0, Math.max(latest, 0))) this.imageBytes -= dropped.image.length;
    }
    // Keeps the latest k ≤ the pruned one, so lastWritten never goes down.
    const latest = this.checkpoints.findLastIndex((c) => c <= k);
    if (latest > 0) this.checkpoints = this.checkpoints.slice(latest);
    this.commits = this.commits.filter((r) => r.k >= k);
  }

  discardAfter(k: number): void {
    checkDiscard(k, this.lastCommit());
    for (const [slot, kept] of this.images) {
      for (const dropped of kept.splice(kept.findLastIndex((e) => e.k <= k) + 1)) this.imageBytes -= dropped.image.length;
      if (kept.length === 0) this.images.delete(slot);
    }
    this.checkpoints = this.checkpoints.filter((c) => c <= k);
  }

  close(): void {}

  destroy(): void {
    this.meta.clear();
    this.images.clear();
    this.checkpoints = [];
    this.commits = [];
    this.imageBytes = 0;
  }
}
