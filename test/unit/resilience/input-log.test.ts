// The input log: one behaviour suite run against the file and the memory implementation, then
// what only the files have — reopening, torn tails, corruption refused, the directory removed.
import { afterEach, describe, expect, test } from "bun:test";
import { appendFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { InvariantError } from "../../../src/assert.ts";
import { writeU32 } from "../../../src/codec/frame.ts";
import { ResilienceError } from "../../../src/resilience/checkpoint-store.ts";
import { FileInputLog, type InputLog, MemoryInputLog, openInputLog, SEGMENT_HEADER_BYTES } from "../../../src/resilience/input-log.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "wallaroo-input-log-"));
  dirs.push(d);
  return join(d, "log");
}

/** Frame n's payload: its position spelled out, padded to a length that varies with n. */
function payload(n: number, size = 1 + (n % 37)): Uint8Array {
  const p = new Uint8Array(size);
  for (let i = 0; i < size; i++) p[i] = (n * 31 + i) & 0xff;
  return p;
}

/** The wire bytes of several frames, back to back. */
function framed(payloads: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(payloads.reduce((s, p) => s + 4 + p.length, 0));
  let off = 0;
  for (const p of payloads) {
    writeU32(out, off, p.length);
    out.set(p, off + 4);
    off += 4 + p.length;
  }
  return out;
}

/** Appends frames for positions [from, from + count) in one batch. */
function appendRange(log: InputLog, from: number, count: number, size?: number): void {
  const ps: Uint8Array[] = [];
  for (let n = from; n < from + count; n++) ps.push(payload(n, size));
  log.append(framed(ps), count);
}

/** Reads up to max frames from `from`, copying each payload out of the transient view. */
function readAll(log: InputLog, from: number, max = Infinity): { next: number; frames: Uint8Array[] } {
  const frames: Uint8Array[] = [];
  const next = log.read(from, max === Infinity ? log.end - from : max, (buf, s, e) => frames.push(buf.slice(s, e)));
  return { next, frames };
}

function expectPositions(frames: Uint8Array[], from: number, size?: number): void {
  frames.forEach((f, i) => expect(f).toEqual(payload(from + i, size)));
}

interface Impl {
  name: string;
  open(segmentBytes?: number): InputLog;
  /** Bytes one segment takes besides its frames. */
  overhead: number;
}

const IMPLS: Impl[] = [
  { name: "file", open: (segmentBytes) => openInputLog(tempDir(), { fsync: false, segmentBytes }), overhead: SEGMENT_HEADER_BYTES },
  { name: "memory", open: (segmentBytes) => new MemoryInputLog({ segmentBytes }), overhead: 0 },
];

for (const impl of IMPLS) {
  describe(`${impl.name} input log`, () => {
    test("starts empty at position 0", () => {
      const log = impl.open();
      expect([log.start, log.end, log.bytes]).toEqual([0, 0, impl.overhead]);
      expect(readAll(log, 0, 10)).toEqual({ next: 0, frames: [] });
      log.destroy();
    });

    test("append/read round trip across segments, with any read size", () => {
      const log = impl.open(200);
      let n = 0;
      for (const count of [1, 7, 30, 2, 100, 1, 13]) {
        appendRange(log, n, count);
        n += count;
      }
      expect([log.start, log.end]).toEqual([0, n]);
      for (const step of [1, 3, 64, n]) {
        let pos = 0;
        const got: Uint8Array[] = [];
        while (pos < n) {
          const r = readAll(log, pos, step);
          expect(r.frames.length).toBe(Math.min(step, n - pos));
          expect(r.next).toBe(pos + r.frames.length);
          got.push(...r.frames);
          pos = r.next;
        }
        expectPositions(got, 0);
      }
      log.destroy();
    });

    test("reads from the middle of a segment, through the sparse index and out of order", () => {
      // ≈ 3.5 MB in one segment: several index marks, several read chunks.
      const log = impl.open(1 << 30);
      const total = 250_000;
      for (let n = 0; n < total; n += 5000) appendRange(log, n, 5000, 10);
      for (const from of [0, 1, 4999, 5000, 77_777, 140_001, 200_000, total - 1, 123, total]) {
        const r = readAll(log, from, 50);
        expect(r.frames.length).toBe(Math.min(50, total - from));
        expectPositions(r.frames, from, 10);
      }
      log.destroy();
    });

    test("read(max 0) and read at end deliver nothing; out-of-range positions are bugs", () => {
      const log = impl.open();
      appendRange(log, 0, 5);
      expect(readAll(log, 2, 0)).toEqual({ next: 2, frames: [] });
      expect(readAll(log, 5, 10)).toEqual({ next: 5, frames: [] });
      expect(() => readAll(log, 6, 1)).toThrow(InvariantError);
      expect(() => readAll(log, -1, 1)).toThrow(InvariantError);
      expect(() => log.truncateBefore(6)).toThrow(InvariantError);
      log.destroy();
    });

    test("append refuses bytes that are not exactly `count` frames within the limit", () => {
      const log = impl.open();
      const two = framed([payload(0), payload(1)]);
      expect(() => log.append(two, 1)).toThrow(InvariantError);
      expect(() => log.append(two, 3)).toThrow(InvariantError);
      expect(() => log.append(two, 0)).toThrow(InvariantError);
      expect(() => log.append(two.subarray(0, two.length - 1), 2)).toThrow(InvariantError);
      const huge = new Uint8Array(4);
      writeU32(huge, 0, 16 * 1024 * 1024 + 1);
      expect(() => log.append(huge, 1)).toThrow(/above 16777216/);
      expect([log.end, log.bytes]).toEqual([0, impl.overhead]);
      log.append(two, 2);
      expectPositions(readAll(log, 0).frames, 0);
      log.destroy();
    });

    test("the caller may reuse its buffer once append returns", () => {
      const log = impl.open();
      const buf = framed([payload(0, 8)]);
      log.append(buf, 1);
      buf.fill(0xee);
      expect(readAll(log, 0).frames).toEqual([payload(0, 8)]);
      log.destroy();
    });

    test("rotate + truncateBefore delete exactly the segments wholly before pos", () => {
      const log = impl.open();
      const frameBytes = 4 + 10;
      appendRange(log, 0, 5, 10);
      log.rotate();
      log.rotate(); // an empty tail: no second segment at the same position
      appendRange(log, 5, 5, 10);
      log.rotate();
      appendRange(log, 10, 5, 10);
      const seg = impl.overhead + 5 * frameBytes;
      expect(log.bytes).toBe(3 * seg);

      log.truncateBefore(0);
      log.truncateBefore(4); // segment 0 still holds position 4
      expect([log.start, log.bytes]).toEqual([0, 3 * seg]);
      log.truncateBefore(7);
      expect([log.start, log.end, log.bytes]).toEqual([5, 15, 2 * seg]);
      log.truncateBefore(3); // behind start: nothing left to delete
      expect(log.start).toBe(5);
      log.truncateBefore(10);
      expect([log.start, log.bytes]).toEqual([10, seg]);
      expectPositions(readAll(log, 10).frames, 10, 10);

      // Everything before end: the tail goes too, replaced by an empty one that keeps the position.
      log.truncateBefore(15);
      expect([log.start, log.end, log.bytes]).toEqual([15, 15, impl.overhead]);
      expect(readAll(log, 15, 5)).toEqual({ next: 15, frames: [] });
      appendRange(log, 15, 3, 10);
      expectPositions(readAll(log, 15).frames, 15, 10);
      log.destroy();
    });

    test("a segment rolls over once it passes segmentBytes, never splitting a batch", () => {
      const log = impl.open(100);
      appendRange(log, 0, 10, 20); // 240 bytes: past the limit in one batch, kept whole
      appendRange(log, 10, 1, 20); // starts the second segment
      log.truncateBefore(10);
      expect([log.start, log.bytes]).toEqual([10, impl.overhead + 24]);
      log.destroy();
    });

    test("a 1 MiB and a 3 MiB frame straddling the read buffer", () => {
      const log = impl.open();
      appendRange(log, 0, 1000, 1000); // ≈ 1 MB: the big frame starts near the 1 MiB chunk's end
      const big1 = payload(1000, 1024 * 1024);
      const big3 = payload(1001, 3 * 1024 * 1024 + 5);
      log.append(framed([big1, big3]), 2);
      appendRange(log, 1002, 50, 7);
      const all = readAll(log, 0).frames;
      expect(all.length).toBe(1052);
      expectPositions(all.slice(0, 1000), 0, 1000);
      expect(all[1000]!).toEqual(big1);
      expect(all[1001]!).toEqual(big3);
      expectPositions(all.slice(1002), 1002, 7);
      for (const from of [999, 1000, 1001, 1002]) {
        const one = readAll(log, from, 1).frames[0]!;
        expect(one).toEqual(all[from]!);
      }
      log.destroy();
    });
  });
}

describe("file input log on disk", () => {
  const names = (dir: string) => readdirSync(dir).sort();
  const segName = (first: number) => `input-${String(first).padStart(20, "0")}.log`;

  test("segments are named by their first position and hold a header then the frames as given", () => {
    const dir = tempDir();
    const log = openInputLog(dir, { fsync: true });
    appendRange(log, 0, 3);
    log.rotate();
    const batch = framed([payload(3), payload(4)]);
    log.append(batch, 2);
    log.close();
    expect(names(dir)).toEqual([segName(0), segName(3)]);
    const bytes = readFileSync(join(dir, segName(3)));
    expect(bytes.subarray(0, 4).toString("latin1")).toBe("WLIL");
    expect([...bytes.subarray(4, SEGMENT_HEADER_BYTES)]).toEqual([0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3]);
    expect([...bytes.subarray(SEGMENT_HEADER_BYTES)]).toEqual([...batch]);
  });

  test("reopening recovers start, end, bytes and the frames", () => {
    const dir = tempDir();
    const log = openInputLog(dir, { fsync: false, segmentBytes: 300 });
    for (let n = 0; n < 100; n += 10) appendRange(log, n, 10);
    log.rotate();
    log.truncateBefore(40);
    const before = { start: log.start, end: log.end, bytes: log.bytes };
    log.close();
    expect(before.start).toBeGreaterThan(0);

    const again = openInputLog(dir, { fsync: false, segmentBytes: 300 });
    expect({ start: again.start, end: again.end, bytes: again.bytes }).toEqual(before);
    expect(again.tornBytes).toBe(0);
    expectPositions(readAll(again, again.start).frames, again.start);
    appendRange(again, 100, 5);
    expectPositions(readAll(again, 95).frames, 95);
    again.close();
  });

  test("an empty tail left by rotate + truncate keeps the position across a restart", () => {
    const dir = tempDir();
    const log = openInputLog(dir, { fsync: false });
    appendRange(log, 0, 42);
    log.truncateBefore(42);
    log.close();
    expect(names(dir)).toEqual([segName(42)]);
    const again = openInputLog(dir, { fsync: false });
    expect([again.start, again.end]).toEqual([42, 42]);
    again.close();
  });

  test("a torn tail is cut and reported, and appends go on after it", () => {
    const dir = tempDir();
    const log = openInputLog(dir, { fsync: false });
    appendRange(log, 0, 20);
    const bytes = log.bytes;
    log.close();
    const tail = join(dir, segName(0));
    // A crash mid-append: the header and part of a 30-byte payload reached the file.
    const partial = framed([payload(20, 30)]).subarray(0, 4 + 11);
    appendFileSync(tail, partial);

    const again = openInputLog(dir, { fsync: true });
    expect([again.tornBytes, again.end, again.bytes]).toEqual([15, 20, bytes]);
    expect(statSync(tail).size).toBe(bytes);
    appendRange(again, 20, 3);
    expectPositions(readAll(again, 0).frames, 0);
    again.close();

    appendFileSync(tail, new Uint8Array([0, 0])); // less than a length prefix
    const third = openInputLog(dir, { fsync: false });
    expect([third.tornBytes, third.end]).toEqual([2, 23]);
    third.close();
  });

  test("a process killed while appending leaves a log that reopens with every acknowledged frame", async () => {
    const dir = tempDir();
    const src = join(import.meta.dir, "../../../src");
    // The child appends 100-frame batches of position-stamped payloads and reports each one done.
    const child = Bun.spawn(
      [
        process.execPath,
        "-e",
        `import { openInputLog } from ${JSON.stringify(join(src, "resilience/input-log.ts"))};
         import { writeU32 } from ${JSON.stringify(join(src, "codec/frame.ts"))};
         const log = openInputLog(${JSON.stringify(dir)}, { fsync: false, segmentBytes: 64 * 1024 });
         const buf = new Uint8Array(100 * 12);
         for (let n = 0; ; n += 100) {
           for (let i = 0; i < 100; i++) { writeU32(buf, i * 12, 8); writeU32(buf, i * 12 + 4, n + i); writeU32(buf, i * 12 + 8, ~(n + i)); }
           log.append(buf, 100);
           if (n % 10000 === 0) process.stdout.write(n + 100 + "\\n");
         }`,
      ],
      { stdout: "pipe", stderr: "inherit" },
    );
    const acked = await new Promise<number>((resolve) => {
      let text = "";
      const reader = child.stdout.getReader();
      const pump = (): void => {
        void reader.read().then(({ value }) => {
          text += new TextDecoder().decode(value);
          const lines = text.split("\n").filter(Boolean);
          if (lines.length >= 5) resolve(Number(lines[lines.length - 1]));
          else pump();
        });
      };
      pump();
    });
    child.kill("SIGKILL");
    await child.exited;

    const log = openInputLog(dir, { fsync: false, segmentBytes: 64 * 1024 });
    expect(log.end).toBeGreaterThanOrEqual(acked);
    // A batch is one write, but a write that SIGKILL interrupts may have stored part of it: the
    // frames it did store whole are valid (checked below), a torn last one is cut on reopen.
    let pos = 0;
    let seen = 0;
    while (pos < log.end) {
      pos = log.read(pos, 5000, (buf, s, e) => {
        const dv = new DataView(buf.buffer, buf.byteOffset + s, e - s);
        if (dv.getUint32(0) !== seen || dv.getUint32(4) !== ~seen >>> 0) throw new Error(`frame ${seen} damaged`);
        seen++;
      });
    }
    expect(seen).toBe(log.end);
    log.close();
  });

  test("a newest segment torn inside its header is repaired", () => {
    for (const size of [0, 7]) {
      const dir = tempDir();
      const log = openInputLog(dir, { fsync: false });
      appendRange(log, 0, 4);
      log.rotate();
      log.close();
      const tail = join(dir, segName(4));
      writeFileSync(tail, readFileSync(tail).subarray(0, size));
      const again = openInputLog(dir, { fsync: false });
      expect([again.tornBytes, again.start, again.end]).toEqual([size, 0, 4]);
      expect(statSync(tail).size).toBe(SEGMENT_HEADER_BYTES);
      appendRange(again, 4, 2);
      expectPositions(readAll(again, 0).frames, 0);
      again.close();
    }
  });

  /** Builds three segments [0,3) [3,6) [6,9), damages them, and expects the open to refuse without touching a file. */
  function refuses(damage: (dir: string) => void, message: RegExp): void {
    const dir = tempDir();
    const log = openInputLog(dir, { fsync: false });
    for (const n of [0, 3, 6]) {
      appendRange(log, n, 3);
      if (n < 6) log.rotate();
    }
    log.close();
    damage(dir);
    const sizes = () => names(dir).map((n) => [n, statSync(join(dir, n)).size]);
    const before = sizes();
    let err: unknown;
    try {
      openInputLog(dir, { fsync: false });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ResilienceError);
    expect((err as Error).message).toMatch(message);
    expect((err as Error).message).toContain("cannot be trusted for replay");
    expect(sizes()).toEqual(before);
  }

  test("a missing segment (a gap) is refused", () => {
    refuses((dir) => unlinkSync(join(dir, segName(3))), new RegExp(`${segName(6)} starts at position 6 but .*${segName(0)} ends at 3`));
  });

  test("a frame longer than 16 MiB is refused, even in the newest segment", () => {
    const bad = new Uint8Array(8);
    writeU32(bad, 0, 16 * 1024 * 1024 + 1);
    refuses((dir) => appendFileSync(join(dir, segName(6)), bad), new RegExp(`${segName(6)} holds a frame at byte \\d+ claiming 16777217 bytes`));
  });

  test("a partial frame in an older segment is refused", () => {
    refuses((dir) => appendFileSync(join(dir, segName(3)), new Uint8Array([0, 0, 0, 9, 1])), new RegExp(`${segName(3)} ends in a partial frame \\(5 bytes\\)`));
  });

  test("a foreign file, another format version, or a header for another position is refused", () => {
    const patch = (at: number, bytes: number[]) => (dir: string) => {
      const p = join(dir, segName(3));
      const b = readFileSync(p);
      b.set(bytes, at);
      writeFileSync(p, b);
    };
    refuses(patch(0, [0x47]), /does not start with the input log's magic bytes/);
    refuses(patch(5, [2]), /format version 2; this build reads version 1/);
    refuses(patch(15, [4]), /does not match its name's position 3/);
    refuses((dir) => writeFileSync(join(dir, segName(3)), "WLIL"), new RegExp(`${segName(3)} is 4 bytes, shorter than its header`));
  });

  test("destroy removes the segments and the directory, but not someone else's file", () => {
    const dir = tempDir();
    const log = openInputLog(dir, { fsync: false, segmentBytes: 50 });
    for (let n = 0; n < 20; n += 4) appendRange(log, n, 4);
    expect(names(dir).length).toBeGreaterThan(1);
    log.destroy();
    expect(existsSync(dir)).toBe(false);

    const log2 = openInputLog(dir, { fsync: false });
    appendRange(log2, 0, 2);
    writeFileSync(join(dir, "notes.txt"), "mine");
    log2.destroy();
    expect(names(dir)).toEqual(["notes.txt"]);
  });

  test("frames straddling the read buffer are found again by the scan on reopen", () => {
    const dir = tempDir();
    const log = openInputLog(dir, { fsync: false });
    appendRange(log, 0, 1000, 1000);
    log.append(framed([payload(1000, 1024 * 1024)]), 1);
    appendRange(log, 1001, 3000, 400);
    log.close();
    const again: FileInputLog = openInputLog(dir, { fsync: false });
    expect(again.end).toBe(4001);
    expect(readAll(again, 1000, 1).frames[0]!).toEqual(payload(1000, 1024 * 1024));
    expectPositions(readAll(again, 2500, 100).frames, 2500, 400);
    again.close();
  });
});

describe("memory input log", () => {
  test("a simulated crash keeps the object: close() loses nothing", () => {
    const log = new MemoryInputLog();
    appendRange(log, 0, 3);
    log.close();
    appendRange(log, 3, 2);
    expectPositions(readAll(log, 0).frames, 0);
  });
});
