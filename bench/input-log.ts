// The input log's raw speed on this machine: appends of 10-byte-payload frames in batches of
// 4096 (one write each), with fsync off and on, then a replay reading a log back 4096 frames per
// read(). It is the ceiling the initializer's logging puts on a source's throughput.
//
//   bun bench/input-log.ts [--dir PATH] [--seconds N]
//
// --dir: where the log goes (default: a fresh directory under the OS temp dir; fsync figures
// depend entirely on the device below it). Each phase runs --seconds (default 2). Appends rotate
// and truncate every CHECKPOINT_BATCHES batches, as a committed checkpoint would, so disk use stays
// near 60 MB however fast the device is; the figures include those deletions. The log is deleted
// at the end.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeU32 } from "../src/codec/frame.ts";
import { type FileInputLog, openInputLog } from "../src/resilience/input-log.ts";

const PAYLOAD_BYTES = 10;
const BATCH_FRAMES = 4096;
const CHECKPOINT_BATCHES = 1000;

function flag(name: string, fallback: string): string {
  const i = process.argv.indexOf(name);
  return i === -1 ? fallback : (process.argv[i + 1] ?? fallback);
}

const seconds = Number(flag("--seconds", "2"));
const given = flag("--dir", "");
const root = given || mkdtempSync(join(tmpdir(), "wallaroo-bench-input-log-"));

const batch = new Uint8Array(BATCH_FRAMES * (4 + PAYLOAD_BYTES));
for (let i = 0; i < BATCH_FRAMES; i++) {
  const off = i * (4 + PAYLOAD_BYTES);
  writeU32(batch, off, PAYLOAD_BYTES);
  batch.fill(i & 0xff, off + 4, off + 4 + PAYLOAD_BYTES);
}

function rate(frames: number, bytes: number, ms: number): string {
  const s = ms / 1000;
  return `${(frames / s / 1e6).toFixed(2)} M frames/s, ${(bytes / s / 1e6).toFixed(1)} MB/s (${frames} frames in ${ms.toFixed(0)} ms)`;
}

function appendPhase(fsync: boolean): void {
  const log = openInputLog(join(root, fsync ? "fsync" : "nofsync"), { fsync });
  const t0 = performance.now();
  const deadline = t0 + seconds * 1000;
  let batches = 0;
  while (performance.now() < deadline) {
    log.append(batch, BATCH_FRAMES);
    if (++batches % CHECKPOINT_BATCHES === 0) {
      log.rotate();
      log.truncateBefore(log.end);
    }
  }
  const ms = performance.now() - t0;
  console.log(`append, fsync ${fsync ? "on " : "off"}: ${rate(log.end, batches * batch.length, ms)}; ${(ms / batches).toFixed(3)} ms per batch`);
  log.destroy();
}

function readPhase(): void {
  const log = openInputLog(join(root, "read"), { fsync: false });
  for (let i = 0; i < CHECKPOINT_BATCHES; i++) log.append(batch, BATCH_FRAMES);
  let sum = 0;
  let frames = 0;
  let bytes = 0;
  const t0 = performance.now();
  const deadline = t0 + seconds * 1000;
  while (performance.now() < deadline) frames += replay(log, (buf, s, e) => {
    sum += buf[s]!;
    bytes += 4 + e - s;
  });
  const ms = performance.now() - t0;
  console.log(`read (4096 per call, page cache warm): ${rate(frames, bytes, ms)} [checksum ${sum}]`);
  log.destroy();
}

/** Reads the whole log once, as a recovery would; returns the frames read. */
function replay(log: FileInputLog, onFrame: (buf: Uint8Array, s: number, e: number) => void): number {
  let pos = log.start;
  // Bounded: each pass delivers at least one frame until end.
  while (pos < log.end) pos = log.read(pos, BATCH_FRAMES, onFrame);
  return pos - log.start;
}

console.log(`input log in ${root}: ${BATCH_FRAMES} frames of ${PAYLOAD_BYTES}-byte payload per append, ${seconds} s per phase`);
appendPhase(false);
appendPhase(true);
readPhase();
if (!given) rmSync(root, { recursive: true, force: true });
