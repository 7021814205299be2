// The cost of one full checkpoint in the file-backed checkpoint store, and of loading it back:
// 100 000 keys (placed by the pinned slot hash, so spread over the 1024 slots) with ~20-byte
// states, all in one checkpoint, as after a migration or on the first checkpoint of a worker.
//
//   bun bench/checkpoint-store.ts [--keys 100000] [--state-bytes 20] [--repeat 5] [--dir DIR]
//
// Per durability setting (fsync off = SQLite synchronous NORMAL, on = FULL), the median of
// --repeat runs, each in a new store:
// - encode: the 1024 slot images built from the entries (src/codec/slot-image.ts);
// - write: writeCheckpoint(1, images), the one transaction;
// - bytes: the images kept (store.bytes); the files on disk after the write (database + WAL, which
//   SQLite folds into the database at 1000 pages, so a large write is briefly on disk twice) and
//   once the store is closed (the WAL folded in and removed);
// - open: openCheckpointStore on the closed directory (schema check, WAL recovery);
// - load: slotsAt(1), every slot's image read back;
// - decode: every image decoded to entries, and the key count checked against --keys.
// Images are in the page cache when read back: this is the cost after a process crash, not after
// a machine restart.
import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { StateEntry } from "../src/codec/data.ts";
import { decodeSlotImage, encodeSlotImage } from "../src/codec/slot-image.ts";
import { openCheckpointStore } from "../src/resilience/checkpoint-store.ts";
import { SLOT_COUNT, slotOf } from "../src/runtime/slot-hash.ts";
import { environment, fmtInt, fmtMs, numFlag, parseFlags, table } from "./lib.ts";

const flags = parseFlags(process.argv.slice(2), {
  keys: "keys in the checkpoint (default 100000)",
  "state-bytes": "bytes of each key's state (default 20)",
  repeat: "runs per setting; the median is reported (default 5)",
  dir: "where the stores are made (default: a new directory under the system temp dir, removed after)",
});
const keys = numFlag(flags, "keys", 100_000);
const stateBytes = numFlag(flags, "state-bytes", 20);
const repeat = Math.max(1, numFlag(flags, "repeat", 5));
const root = flags.dir ?? mkdtempSync(join(tmpdir(), "wallaroo-bench-checkpoint-"));

interface Run {
  encode_ms: number;
  write_ms: number;
  imageBytes: number;
  diskBytes: number;
  closedDiskBytes: number;
  open_ms: number;
  load_ms: number;
  decode_ms: number;
}

function entriesBySlot(): StateEntry[][] {
  const bySlot: StateEntry[][] = Array.from({ length: SLOT_COUNT }, () => []);
  for (let i = 0; i < keys; i++) {
    const key = `key-${i}`;
    const state = new Uint8Array(stateBytes);
    for (let b = 0; b < stateBytes; b++) state[b] = (i * 31 + b) & 0xff;
    bySlot[slotOf(key)]!.push({ stage: 1, key, state });
  }
  return bySlot;
}

function diskBytes(dir: string): number {
  let n = 0;
  for (const f of readdirSync(dir)) n += statSync(join(dir, f)).size;
  return n;
}

function once(bySlot: StateEntry[][], fsync: boolean, run: number): Run {
  const dir = join(root, `${fsync ? "fsync" : "nofsync"}-${run}`);
  let t = performance.now();
  const images = bySlot.map((entries, slot) => ({ slot, image: encodeSlotImage(entries) }));
  const encode_ms = performance.now() - t;

  const store = openCheckpointStore(dir, { fsync });
  t = performance.now();
  store.writeCheckpoint(1, images);
  const write_ms = performance.now() - t;
  const imageBytes = store.bytes;
  const disk = diskBytes(dir);
  store.close();
  const closedDisk = diskBytes(dir);

  t = performance.now();
  const again = openCheckpointStore(dir, { fsync });
  const open_ms = performance.now() - t;
  t = performance.now();
  const loaded = again.slotsAt(1);
  const load_ms = performance.now() - t;
  t = performance.now();
  let decoded = 0;
  for (const image of loaded.values()) {
    const d = decodeSlotImage(image);
    if (!d.ok) throw new Error(`an image read back does not decode: ${d.reason}`);
    decoded += d.entries.length;
  }
  const decode_ms = performance.now() - t;
  if (loaded.size !== SLOT_COUNT || decoded !== keys) throw new Error(`read back ${loaded.size} slots, ${decoded} keys`);
  again.destroy();
  return { encode_ms, write_ms, imageBytes, diskBytes: disk, closedDiskBytes: closedDisk, open_ms, load_ms, decode_ms };
}

function median(runs: Run[], f: (r: Run) => number): number {
  const v = runs.map(f).sort((a, b) => a - b);
  return v[Math.floor(v.length / 2)]!;
}

try {
  const env = environment();
  console.log(`checkpoint store: ${fmtInt(keys)} keys, ${stateBytes}-byte states, ${SLOT_COUNT} slots, median of ${repeat}`);
  console.log(`${env.date}  bun ${env.bun}  ${env.cpus} cpus  ${env.platform}  in ${root}`);
  const bySlot = entriesBySlot();
  const rows: (string | number)[][] = [
    ["fsync", "encode ms", "write ms", "image bytes", "disk bytes", "closed", "open ms", "slotsAt ms", "decode ms"],
  ];
  for (const fsync of [false, true]) {
    const runs: Run[] = [];
    for (let r = 0; r < repeat; r++) runs.push(once(bySlot, fsync, r));
    rows.push([
      fsync ? "on (FULL)" : "off (NORMAL)",
      fmtMs(median(runs, (r) => r.encode_ms)),
      fmtMs(median(runs, (r) => r.write_ms)),
      fmtInt(median(runs, (r) => r.imageBytes)),
      fmtInt(median(runs, (r) => r.diskBytes)),
      fmtInt(median(runs, (r) => r.closedDiskBytes)),
      fmtMs(median(runs, (r) => r.open_ms)),
      fmtMs(median(runs, (r) => r.load_ms)),
      fmtMs(median(runs, (r) => r.decode_ms)),
    ]);
  }
  console.log(table(rows));
} finally {
  if (flags.dir === undefined) rmSync(root, { recursive: true, force: true });
}
