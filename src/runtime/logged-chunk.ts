// A source chunk's frames made durable before they are processed (resilience): the frames that
// lie whole in the chunk are contiguous there, wire format and all, so they are logged straight
// from it and processed from it; only a frame completed from earlier chunks is copied (with its
// length) first. So a chunk costs one or two log writes and no copy of its frames.
import { assert } from "../assert.ts";

/** Makes `count` frames (their exact wire bytes) durable before any of them is processed. */
export type LogFrames = (framed: Uint8Array, count: number) => void;
/** Processes one frame's payload; `conn` is the connection's id (handed through). */
export type Process = (buf: Uint8Array, start: number, end: number, conn: number) => void;

export class LoggedChunk {
  /** The frame completed from earlier chunks, with its length: at most one per chunk. */
  private carried = new Uint8Array(0);
  private carriedLen = -1;
  /** [start, end) of each payload that lies in the chunk itself, in order. */
  private offsets = new Int32Array(2048);
  private count = 0;
  private chunk: Uint8Array | undefined;

  constructor(
    private readonly log: LogFrames,
    private readonly process: Process,
    private readonly conn: number,
  ) {}


  /** Starts a chunk: `collect` is then handed each of its frames by the frame reader. */
  begin(chunk: Uint8Array): void {
    this.chunk = chunk;
    this.count = 0;
    this.carriedLen = -1;
  }

  readonly collect = (buf: Uint8Array, start: number, end: number): void => {
    if (buf === this.chunk) {
      if (2 * this.count + 2 > this.offsets.length) {
        const next = new Int32Array(this.offsets.length * 2);
        next.set(this.offsets);
        this.offsets = next;
      }
      this.offsets[2 * this.count] = start;
      this.offsets[2 * this.count + 1] = end;
      this.count++;
      return;
    }
    // Completed in the reader's carry buffer: it comes before every frame of this chunk.
    assert(this.carriedLen < 0 && this.count === 0, "only a chunk's first frame is completed from earlier chunks");
    const n = end - start;
    if (this.carried.length < n + 4) this.carried = new Uint8Array(Math.max(n + 4, 2 * this.carried.length, 256));
    new DataView(this.carried.buffer).setUint32(0, n);
    this.carried.set(buf.subarray(start, end), 4);
    this.carriedLen = n;
  };

  /** Logs what the chunk completed, then processes it in order; returns how many frames. */
  end(): number {
    const chunk = this.chunk!;
    const conn = this.conn;
    const process = this.process;
    this.chunk = undefined;
    const carried = this.carriedLen >= 0;
    if (carried) this.log(this.carried.subarray(0, this.carriedLen + 4), 1);
    const n = this.count;
    // The whole frames of the chunk, each preceded by its u32 length, back to back.
    if (n > 0) this.log(chunk.subarray(this.offsets[0]! - 4, this.offsets[2 * n - 1]!), n);
    if (carried) process(this.carried, 4, 4 + this.carriedLen, conn);
    const o = this.offsets;
    for (let i = 0; i < n; i++) process(chunk, o[2 * i]!, o[2 * i + 1]!, conn);
    if (this.carried.length > 1024 * 1024) this.carried = new Uint8Array(0);
    return n + (carried ? 1 : 0);
  }
}
