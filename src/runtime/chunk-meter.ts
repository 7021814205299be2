// Time spent on one input's chunks, per message: two clock readings per chunk (a chunk holds up to
// hundreds of kilobytes of frames), never one per message. Every message of a chunk counts with
// the chunk's mean time, so the histogram's _count is exactly the messages read from the input
// and its _sum the time spent on them; its buckets are as fine as chunks are small.
import type { Clock } from "../clock.ts";
import type { Histogram } from "../metrics/histogram.ts";

export class ChunkMeter {
  private t0 = 0;
  /** A begin inside a begin (frames released while a chunk is handled) counts as part of the outer. */
  private depth = 0;
  private messages = 0;

  constructor(private readonly clock: Clock) {}

  begin(): void {
    if (this.depth++ === 0) {
      this.t0 = this.clock.now();
      this.messages = 0;
    }
  }

  /** The chunk begun last is done: `messages` of it go `into` the histogram. */
  end(messages: number, into: Histogram): void {
    this.messages += messages;
    if (--this.depth > 0 || this.messages <= 0) return;
    into.observeMany((this.clock.now() - this.t0) / 1000 / this.messages, this.messages);
  }
}
