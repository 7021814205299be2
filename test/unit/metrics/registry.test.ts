import { describe, expect, test } from "bun:test";
import { Histogram } from "../../../src/metrics/histogram.ts";
import { Registry } from "../../../src/metrics/registry.ts";
import { parseExposition, sampleValue } from "../../support/prometheus.ts";

describe("registry", () => {
  test("values are read when collected, not when registered", () => {
    const r = new Registry({ worker: "w1" });
    let n = 1;
    const h = new Histogram();
    r.counter("wallaroo_things_total", "Things.", () => n);
    r.gauge("wallaroo_parts", "Parts.", () => [{ labels: { step: "a" }, value: 2 }, { labels: { step: "b" }, value: 3 }]);
    r.histogram("wallaroo_wait_seconds", "Waits.", () => [{ labels: { peer: "w2" }, histogram: h }]);
    n = 7;
    h.observe(0.01);
    const f = parseExposition(r.text());
    expect(sampleValue(f, "wallaroo_things_total", { worker: "w1" })).toBe(7);
    expect(sampleValue(f, "wallaroo_parts", { step: "b" })).toBe(3);
    expect(sampleValue(f, "wallaroo_wait_seconds_count", { peer: "w2" })).toBe(1);
  });

  test("names follow the conventions or registration fails", () => {
    const r = new Registry();
    expect(() => r.counter("wallaroo_things", "", () => 0)).toThrow(/_total/);
    expect(() => r.gauge("wallaroo_things_total", "", () => 0)).toThrow(/_total/);
    expect(() => r.gauge("other_things", "", () => 0)).toThrow(/must match/);
    r.gauge("wallaroo_x", "", () => 0);
    expect(() => r.gauge("wallaroo_x", "", () => 0)).toThrow(/twice/);
    r.gauge("wallaroo_y", "", () => [{ labels: { le: "1" }, value: 0 }]);
    expect(() => r.collect()).toThrow(/le/);
  });
});
