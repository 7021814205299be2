// A histogram of durations in seconds with fixed buckets, the same for every series, so that any
// two can be added or subtracted bucket by bucket (a scrape minus the one before it, one worker
// plus another). The bounds are 1-2-5 per decade from 1 µs to 10 s: 22 buckets, then +Inf.

/** Upper bounds in seconds, written out (products like 2 * 1e-6 would print as 0.0000019999…). */
export const BUCKET_BOUNDS_S: readonly number[] = [
  0.000001, 0.000002, 0.000005, 0.00001, 0.00002, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2,
  0.5, 1, 2, 5, 10,
];

/** Buckets including the last one, +Inf. */
export const BUCKETS = BUCKET_BOUNDS_S.length + 1;

/** The bucket `seconds` falls in: the first whose bound is at least it (+Inf for anything above 10 s). */
export function bucketIndex(seconds: number): number {
  const b = BUCKET_BOUNDS_S;
  let lo = 0;
  let hi = b.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (b[mid]! < seconds) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export interface HistogramSnapshot {
  /** Per bucket, not cumulative; the last is +Inf. */
  readonly counts: readonly number[];
  readonly count: number;
  readonly sum: number;
}

export class Histogram {
  readonly counts = new Float64Array(BUCKETS);
  count = 0;
  sum = 0;

  observe(seconds: number): void {
    this.counts[bucketIndex(seconds)]!++;
    this.count++;
    this.sum += seconds;
  }

  /** `n` observations of `seconds` each: a chunk of messages that all took the chunk's mean. */
  observeMany(seconds: number, n: number): void {
    if (n <= 0) return;
    this.counts[bucketIndex(seconds)]! += n;
    this.count += n;
    this.sum += seconds * n;
  }

  snapshot(): HistogramSnapshot {
    return { counts: Array.from(this.counts), count: this.count, sum: this.sum };
  }
}

/** `a − b`, bucket by bucket: what was observed between two snapshots of one series. */
export function difference(a: HistogramSnapshot, b: HistogramSnapshot | undefined): HistogramSnapshot {
  if (!b) return a;
  return { counts: a.counts.map((c, i) => c - (b.counts[i] ?? 0)), count: a.count - b.count, sum: a.sum - b.sum };
}

/**
 * The q-quantile (0 < q ≤ 1) as Prometheus's histogram_quantile estimates it: linear within the
 * bucket it falls in, the bucket's upper bound when that is +Inf's lower neighbour. Undefined
 * when nothing was observed.
 */
export function quantile(counts: readonly number[], q: number): number | undefined {
  const total = counts.reduce((a, b) => a + b, 0);
  if (total <= 0) return undefined;
  const rank = q * total;
  let below = 0;
  for (let i = 0; i < counts.length; i++) {
    const c = counts[i]!;
    if (below + c >= rank && c > 0) {
      if (i >= BUCKET_BOUNDS_S.length) return BUCKET_BOUNDS_S[BUCKET_BOUNDS_S.length - 1];
      const lower = i === 0 ? 0 : BUCKET_BOUNDS_S[i - 1]!;
      const upper = BUCKET_BOUNDS_S[i]!;
      return lower + (upper - lower) * ((rank - below) / c);
    }
    below += c;
  }
  return BUCKET_BOUNDS_S[BUCKET_BOUNDS_S.length - 1];
}

/** Only the buckets that hold something, as [index, count] pairs: what crosses the wire. */
export function sparse(counts: ArrayLike<number>): [number, number][] {
  const out: [number, number][] = [];
  for (let i = 0; i < counts.length; i++) if (counts[i]! > 0) out.push([i, counts[i]!]);
  return out;
}

/** The inverse of `sparse`; indices out of range are ignored. */
export function dense(pairs: readonly (readonly [number, number])[]): number[] {
  const out = new Array<number>(BUCKETS).fill(0);
  for (const [i, c] of pairs) if (i >= 0 && i < BUCKETS) out[i] = c;
  return out;
}
