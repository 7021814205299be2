import { describe, expect, test } from "bun:test";
import { BUCKET_BOUNDS_S, BUCKETS, bucketIndex, dense, difference, Histogram, quantile, sparse } from "../../../src/metrics/histogram.ts";

describe("histogram", () => {
  test("bounds are 1-2-5 per decade from 1 µs to 10 s", () => {
    expect(BUCKET_BOUNDS_S.length).toBe(22);
    expect(BUCKET_BOUNDS_S[0]).toBe(1e-6);
    expect(BUCKET_BOUNDS_S.at(-1)).toBe(10);
    for (let i = 3; i < BUCKET_BOUNDS_S.length; i++) expect(BUCKET_BOUNDS_S[i]! / BUCKET_BOUNDS_S[i - 3]!).toBeCloseTo(10, 9);
  });

  test("a value on a bound goes in that bound's bucket (le is ≤)", () => {
    expect(bucketIndex(0)).toBe(0);
    expect(bucketIndex(1e-6)).toBe(0);
    expect(bucketIndex(1.0001e-6)).toBe(1);
    expect(bucketIndex(10)).toBe(21);
    expect(bucketIndex(10.5)).toBe(22);
    expect(bucketIndex(Infinity)).toBe(22);
  });

  test("observeMany counts n and adds n times the value to the sum", () => {
    const h = new Histogram();
    h.observeMany(0.001, 10);
    h.observeMany(0.5, 0);
    expect(h.count).toBe(10);
    expect(h.sum).toBeCloseTo(0.01, 12);
    expect(h.counts[bucketIndex(0.001)]).toBe(10);
  });

  test("quantile interpolates inside the bucket, as histogram_quantile does", () => {
    const counts = new Array<number>(BUCKETS).fill(0);
    counts[bucketIndex(0.001)] = 99; // (0.0005, 0.001]
    counts[bucketIndex(0.1)] = 1; // (0.05, 0.1]
    expect(quantile(counts, 0.5)).toBeCloseTo(0.0005 + 0.0005 * (50 / 99), 9);
    expect(quantile(counts, 0.99)).toBeCloseTo(0.001, 9);
    expect(quantile(counts, 1)).toBeCloseTo(0.1, 9);
    expect(quantile(new Array(BUCKETS).fill(0), 0.99)).toBeUndefined();
  });

  test("difference and the sparse form round-trip", () => {
    const h = new Histogram();
    h.observe(0.002);
    const a = h.snapshot();
    h.observeMany(0.02, 4);
    const d = difference(h.snapshot(), a);
    expect(d.count).toBe(4);
    expect(sparse(d.counts)).toEqual([[bucketIndex(0.02), 4]]);
    expect(dense(sparse(h.counts))).toEqual(Array.from(h.counts));
  });
});
