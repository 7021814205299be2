// The checkpoint store: one behaviour suite run against the SQLite file and the in-memory store,
// then what only a file can do (survive close, refuse a foreign file, be deleted).
import { Database } from "bun:sqlite";
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { InvariantError } from "../../../src/assert.ts";
import {
  CHECKPOINT_DB_FILE,
  type CheckpointStore,
  MemoryCheckpointStore,
  openCheckpointStore,
  ResilienceError,
} from "../../../src/resilience/checkpoint-store.ts";

const bytes = (...b: number[]) => new Uint8Array(b);
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

/** slotsAt as plain data, slots in order, so expect() compares contents. */
function at(store: CheckpointStore, k: number): Record<number, string> {
  const out: Record<number, string> = {};
  for (const [slot, image] of [...store.slotsAt(k)].sort((a, b) => a[0] - b[0])) out[slot] = hex(image);
  return out;
}

/** How a suite gets a store: `open` the first handle, `crashReopen` another one as a restarted process would. */
interface Harness {
  open(): CheckpointStore;
  crashReopen(): CheckpointStore;
}

const dirs: string[] = [];
const handles: CheckpointStore[] = [];

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "wallaroo-checkpoint-store-"));
  dirs.push(dir);
  return dir;
}

afterEach(() => {
  for (const h of handles.splice(0)) h.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function fileHarness(fsync = false): Harness {
  const dir = join(tempDir(), "resilience");
  const open = () => {
    const s = openCheckpointStore(dir, { fsync });
    handles.push(s);
    return s;
  };
  return { open, crashReopen: open };
}

function memoryHarness(): Harness {
  const s = new MemoryCheckpointStore();
  return { open: () => s, crashReopen: () => s };
}

function behaves(name: string, harness: () => Harness): void {
  describe(`${name}: checkpoint store behaviour`, () => {
    test("a new store holds nothing", () => {
      const s = harness().open();
      expect(s.lastWritten).toBe(0);
      expect(s.lastCommit()).toBeUndefined();
      expect(s.slotsAt(7).size).toBe(0);
      expect(s.bytes).toBe(0);
      expect(s.getMeta("cluster")).toBeUndefined();
    });

    test("slotsAt(k) picks, per slot, its latest image at or before k", () => {
      const s = harness().open();
      s.writeCheckpoint(1, [
        { slot: 0, image: bytes(0xa1) },
        { slot: 1, image: bytes(0xb1, 0xb1) },
      ]);
      s.writeCheckpoint(2, [{ slot: 1, image: bytes(0xb2) }]);
      s.writeCheckpoint(4, [
        { slot: 0, image: bytes(0xa4) },
        { slot: 1023, image: bytes() },
      ]);
      expect(s.lastWritten).toBe(4);
      expect(at(s, 0)).toEqual({});
      expect(at(s, 1)).toEqual({ 0: "a1", 1: "b1b1" });
      expect(at(s, 2)).toEqual({ 0: "a1", 1: "b2" });
      expect(at(s, 3)).toEqual({ 0: "a1", 1: "b2" });
      expect(at(s, 4)).toEqual({ 0: "a4", 1: "b2", 1023: "" });
      expect(at(s, 99)).toEqual(at(s, 4));
      expect(s.bytes).toBe(5);
    });

    test("a checkpoint written in parts: images appended to the last one written count as its own; to another, refused", () => {
      const s = harness().open();
      s.writeCheckpoint(1, [{ slot: 0, image: bytes(0xa1) }]);
      s.writeCheckpoint(2, [{ slot: 0, image: bytes(0xa2) }]);
      s.appendImages(2, [{ slot: 700, image: bytes(0xc2) }]);
      expect(at(s, 2)).toEqual({ 0: "a2", 700: "c2" });
      expect(at(s, 1)).toEqual({ 0: "a1" });
      expect(() => s.appendImages(1, [{ slot: 5, image: bytes() }])).toThrow(InvariantError);
      expect(() => s.appendImages(3, [{ slot: 5, image: bytes() }])).toThrow(InvariantError);
      s.discardAfter(1);
      expect(at(s, 2)).toEqual({ 0: "a1" });
    });

    test("a checkpoint with no changed slot still counts as written", () => {
      const s = harness().open();
      s.writeCheckpoint(3, []);
      expect(s.lastWritten).toBe(3);
      expect(() => s.writeCheckpoint(3, [])).toThrow(InvariantError);
    });

    test("images are copied: changing the caller's buffer later changes nothing", () => {
      const s = harness().open();
      const image = bytes(1, 2, 3);
      s.writeCheckpoint(1, [{ slot: 5, image }]);
      image[0] = 9;
      s.slotsAt(1).get(5)![1] = 9;
      expect(at(s, 1)).toEqual({ 5: "010203" });
    });

    test("broken invariants are refused and write nothing", () => {
      const s = harness().open();
      s.writeCheckpoint(2, [{ slot: 0, image: bytes(1) }]);
      const bad: [number, { slot: number; image: Uint8Array }[]][] = [
        [2, []], // not after lastWritten
        [1, []],
        [0, []],
        [3.5, []],
        [3, [{ slot: 1024, image: bytes() }]],
        [3, [{ slot: -1, image: bytes() }]],
        [3, [{ slot: 1.5, image: bytes() }]],
        [
          3,
          [
            { slot: 7, image: bytes(1) },
            { slot: 7, image: bytes(2) },
          ],
        ],
      ];
      for (const [k, images] of bad) expect(() => s.writeCheckpoint(k, images)).toThrow(InvariantError);
      expect(s.lastWritten).toBe(2);
      expect(at(s, 9)).toEqual({ 0: "01" });
      expect(() => s.commit(0, "{}")).toThrow(InvariantError);
      expect(() => s.prune(-1)).toThrow(InvariantError);
      expect(() => s.slotsAt(Number.NaN)).toThrow(InvariantError);
    });

    test("commits only increase; lastCommit is the latest", () => {
      const s = harness().open();
      s.commit(2, '{"offset":10}');
      s.commit(5, '{"offset":50}');
      expect(s.lastCommit()).toEqual({ k: 5, record: '{"offset":50}' });
      expect(() => s.commit(5, "{}")).toThrow(InvariantError);
      expect(() => s.commit(3, "{}")).toThrow(InvariantError);
      expect(s.lastCommit()).toEqual({ k: 5, record: '{"offset":50}' });
    });

    test("meta: set in one call, overwritten by key", () => {
      const s = harness().open();
      s.setMeta({ cluster: "c1", worker: "w2" });
      s.setMeta({ worker: "w3", app: "alphabet" });
      expect([s.getMeta("cluster"), s.getMeta("worker"), s.getMeta("app"), s.getMeta("none")]).toEqual([
        "c1",
        "w3",
        "alphabet",
        undefined,
      ]);
    });

    test("prune(k) keeps what a rollback to k or later needs, and drops only superseded images", () => {
      const s = harness().open();
      s.writeCheckpoint(1, [
        { slot: 0, image: bytes(0xa1, 0xa1, 0xa1) },
        { slot: 1, image: bytes(0xb1) },
      ]);
      s.writeCheckpoint(2, [{ slot: 0, image: bytes(0xa2) }]);
      s.writeCheckpoint(3, [
        { slot: 0, image: bytes(0xa3) },
        { slot: 1, image: bytes(0xb3) },
      ]);
      s.commit(1, "one");
      s.commit(2, "two");
      const before = { at2: at(s, 2), at3: at(s, 3), bytes: s.bytes };
      s.prune(2);
      expect(at(s, 2)).toEqual(before.at2);
      expect(at(s, 3)).toEqual(before.at3);
      expect(s.bytes).toBe(before.bytes - 3); // slot 0's image at 1 only
      expect(at(s, 1)).toEqual({ 1: "b1" }); // no longer answerable for slot 0, as intended
      expect(s.lastCommit()).toEqual({ k: 2, record: "two" });
      expect(s.lastWritten).toBe(3);
      // The rollback prune made room for: back to 2, and everything at 2 is there.
      s.discardAfter(2);
      expect(at(s, s.lastWritten)).toEqual(before.at2);
    });

    test("prune never lowers lastWritten, even past the last checkpoint written here", () => {
      const s = harness().open();
      s.writeCheckpoint(1, [{ slot: 3, image: bytes(1) }]);
      s.writeCheckpoint(2, []);
      s.prune(2);
      expect(s.lastWritten).toBe(2);
      s.prune(9);
      expect(s.lastWritten).toBe(2);
      expect(at(s, 9)).toEqual({ 3: "01" });
    });

    test("discardAfter(k) forgets every checkpoint after k, and writing may go on from k", () => {
      const s = harness().open();
      s.writeCheckpoint(1, [{ slot: 0, image: bytes(0xa1) }]);
      s.writeCheckpoint(3, [
        { slot: 0, image: bytes(0xa3) },
        { slot: 9, image: bytes(0x93, 0x93) },
      ]);
      s.writeCheckpoint(4, []);
      s.commit(1, "{}");
      s.discardAfter(2);
      expect(s.lastWritten).toBe(1);
      expect(at(s, 4)).toEqual({ 0: "a1" });
      expect(s.bytes).toBe(1);
      s.writeCheckpoint(2, [{ slot: 9, image: bytes(0x92) }]);
      expect(at(s, 2)).toEqual({ 0: "a1", 9: "92" });
      s.discardAfter(1);
      s.discardAfter(1);
      expect(at(s, 5)).toEqual({ 0: "a1" });
    });

    test("discardAfter before the last commit is refused: a commit is a promise", () => {
      const s = harness().open();
      s.writeCheckpoint(1, [{ slot: 0, image: bytes(1) }]);
      s.writeCheckpoint(2, [{ slot: 0, image: bytes(2) }]);
      s.commit(2, "{}");
      expect(() => s.discardAfter(1)).toThrow(InvariantError);
      expect(at(s, 2)).toEqual({ 0: "02" });
    });

    test("a store reopened after a crash (no close) reads everything written", () => {
      const h = harness();
      const s = h.open();
      s.setMeta({ cluster: "c1", member: "3" });
      s.writeCheckpoint(1, [{ slot: 0, image: bytes(0xa1) }]);
      s.writeCheckpoint(2, [{ slot: 512, image: bytes(0xb2, 0xb2) }]);
      s.commit(1, '{"k":1}');
      s.writeCheckpoint(3, []);
      const again = h.crashReopen();
      expect(again.lastWritten).toBe(3);
      expect(at(again, 3)).toEqual({ 0: "a1", 512: "b2b2" });
      expect(again.lastCommit()).toEqual({ k: 1, record: '{"k":1}' });
      expect(again.getMeta("member")).toBe("3");
      expect(again.bytes).toBe(3);
      // The restarted worker rolls back to the commit and goes on.
      again.discardAfter(1);
      again.writeCheckpoint(2, [{ slot: 0, image: bytes(0xa2) }]);
      expect(at(again, 2)).toEqual({ 0: "a2" });
    });

    test("destroy deletes everything: opened again, the store is new", () => {
      const h = harness();
      const s = h.open();
      s.setMeta({ cluster: "c1" });
      s.writeCheckpoint(1, [{ slot: 0, image: bytes(1) }]);
      s.commit(1, "{}");
      s.destroy();
      const again = h.crashReopen();
      expect([again.lastWritten, again.bytes, again.slotsAt(1).size]).toEqual([0, 0, 0]);
      expect(again.lastCommit()).toBeUndefined();
      expect(again.getMeta("cluster")).toBeUndefined();
    });
  });
}

behaves("file", () => fileHarness());
behaves("file with fsync", () => fileHarness(true));
behaves("memory", memoryHarness);

describe("file-backed store", () => {
  test("commits, images and meta survive close and reopen", () => {
    const dir = join(tempDir(), "a", "b");
    const s = openCheckpointStore(dir, { fsync: false });
    s.setMeta({ app: "alphabet" });
    s.writeCheckpoint(1, [{ slot: 7, image: bytes(7) }]);
    s.commit(1, '{"offset":3}');
    s.close();
    s.close(); // idempotent
    expect(() => s.lastCommit()).toThrow(InvariantError);
    const again = openCheckpointStore(dir, { fsync: false });
    handles.push(again);
    expect(again.lastCommit()).toEqual({ k: 1, record: '{"offset":3}' });
    expect(again.getMeta("app")).toBe("alphabet");
    expect(at(again, 1)).toEqual({ 7: "07" });
    expect(again.lastWritten).toBe(1);
  });

  test("the database is dir/checkpoints.sqlite, in WAL mode", () => {
    const dir = tempDir();
    const s = openCheckpointStore(dir, { fsync: false });
    s.writeCheckpoint(1, []);
    expect(existsSync(join(dir, CHECKPOINT_DB_FILE))).toBe(true);
    expect(existsSync(join(dir, `${CHECKPOINT_DB_FILE}-wal`))).toBe(true);
    s.close();
  });

  test("destroy removes its files and the directory it leaves empty", () => {
    const parent = tempDir();
    const dir = join(parent, "resilience");
    const s = openCheckpointStore(dir, { fsync: false });
    s.writeCheckpoint(1, [{ slot: 0, image: bytes(1) }]);
    s.destroy();
    expect(existsSync(dir)).toBe(false);
    expect(existsSync(parent)).toBe(true);
  });

  test("destroy keeps the directory and what others wrote in it", () => {
    const dir = tempDir();
    writeFileSync(join(dir, "input.log"), "not ours");
    const s = openCheckpointStore(dir, { fsync: false });
    s.writeCheckpoint(1, []);
    s.destroy();
    expect(readdirSync(dir)).toEqual(["input.log"]);
  });

  const refused: [string, (path: string) => void][] = [
    ["a file that is not SQLite", (p) => writeFileSync(p, "these are the notes of somebody else, kept here ".repeat(40))],
    [
      "another program's SQLite database",
      (p) => {
        const db = new Database(p);
        db.exec("CREATE TABLE notes (t TEXT)");
        db.close();
      },
    ],
    [
      "our database in a format version this build does not read",
      (p) => {
        const s = openCheckpointStore(join(p, ".."), { fsync: false });
        s.close();
        const db = new Database(p);
        db.exec("PRAGMA user_version = 99");
        db.close();
      },
    ],
    ["a directory where the file should be", (p) => mkdirSync(p)],
  ];
  for (const [name, make] of refused) {
    test(`refuses ${name} with a ResilienceError, and leaves it as it was`, () => {
      const dir = tempDir();
      const path = join(dir, CHECKPOINT_DB_FILE);
      make(path);
      const before = statSync(path).isFile() ? readFileSync(path) : null;
      let caught: unknown;
      try {
        handles.push(openCheckpointStore(dir, { fsync: false }));
      } catch (e) {
        caught = e;
      }
      expect(caught).toBeInstanceOf(ResilienceError);
      const err = caught as ResilienceError;
      expect(err.exitCode).toBe(1);
      expect(err.message).toContain(dir);
      expect(err.message).toContain("holds something else");
      expect(err.message).toContain("--resilience-dir");
      if (before) expect(readFileSync(path).equals(before)).toBe(true);
    });
  }

  test("a directory that cannot be created is a ResilienceError", () => {
    const file = join(tempDir(), "plain-file");
    writeFileSync(file, "x");
    expect(() => openCheckpointStore(join(file, "sub"), { fsync: false })).toThrow(ResilienceError);
  });
});

describe("memory store", () => {
  test("close loses nothing: the object is the disk", () => {
    const s = new MemoryCheckpointStore();
    s.writeCheckpoint(1, [{ slot: 0, image: bytes(1) }]);
    s.close();
    expect(at(s, 1)).toEqual({ 0: "01" });
    s.writeCheckpoint(2, []);
    expect(s.lastWritten).toBe(2);
  });
});
