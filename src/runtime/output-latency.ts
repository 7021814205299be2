// End-to-end latency: from the moment the initializer read a message from a source connection to
// the moment its output is in this worker's sink buffer (written to the kernel in the same turn).
// Recorded per batch, not per message: whoever hands the dataflow input says when that input was
// ingested (`from`), and `settle` counts every output written since the last call as one group of
// that age. A data batch carries its ingest time across workers (the TIME frame, src/codec/data.ts),
// so a message forwarded twice is still measured from its source.
import type { Clock } from "../clock.ts";
import { Histogram } from "../metrics/histogram.ts";

export class OutputLatency {
  /** When the input being processed now was ingested (ms since the epoch); negative while unknown. */
  at = -1;
  private seen = 0;
  readonly histogram = new Histogram();

  constructor(
    private readonly clock: Clock,
    /** Outputs written so far (the sink's count). */
    private readonly outputs: () => number,
  ) {}

  /** What is processed from now on was ingested at `at`; outputs until now are settled first. */
  from(at: number): void {
    if (at === this.at) return;
    this.settle();
    this.at = at;
  }

  /** Counts the outputs written since the last call, as old as `now − at`. */
  settle(): void {
    const written = this.outputs();
    const n = written - this.seen;
    if (n <= 0) return;
    this.seen = written;
    // Outputs of input whose ingest time is unknown are seen, not counted (docs/metrics.md).
    if (this.at >= 0) this.histogram.observeMany(Math.max(0, this.clock.epochMs() - this.at) / 1000, n);
  }
}
