// The exposition writer's bytes, pinned: a change to them is a change every scraper sees.
import { describe, expect, test } from "bun:test";
import { formatExposition, formatValue, type Family } from "../../../src/metrics/exposition.ts";
import { Histogram } from "../../../src/metrics/histogram.ts";
import { parseExposition } from "../../support/prometheus.ts";

describe("exposition text", () => {
  test("counter and gauge families, common labels first, escapes", () => {
    const families: Family[] = [
      {
        name: "wallaroo_source_messages_total",
        help: "Frames read.\nA second line \\ here.",
        type: "counter",
        samples: [
          { labels: { source: "alphabet" }, value: 42 },
          { labels: { source: 'we"ird\\name\n' }, value: 0 },
        ],
      },
      { name: "wallaroo_slots", help: "Slots held.", type: "gauge", samples: [{ value: 512 }] },
      { name: "wallaroo_app_counter", help: "App.", type: "untyped", samples: [{ labels: { name: "x" }, value: 1.5 }] },
    ];
    expect(formatExposition(families, { worker: "w1" })).toBe(
      [
        "# HELP wallaroo_source_messages_total Frames read.\\nA second line \\\\ here.",
        "# TYPE wallaroo_source_messages_total counter",
        'wallaroo_source_messages_total{worker="w1",source="alphabet"} 42',
        'wallaroo_source_messages_total{worker="w1",source="we\\"ird\\\\name\\n"} 0',
        "# HELP wallaroo_slots Slots held.",
        "# TYPE wallaroo_slots gauge",
        'wallaroo_slots{worker="w1"} 512',
        "# HELP wallaroo_app_counter App.",
        "# TYPE wallaroo_app_counter untyped",
        'wallaroo_app_counter{worker="w1",name="x"} 1.5',
        "",
      ].join("\n"),
    );
  });

  test("a histogram: cumulative buckets 1 µs … 10 s, +Inf, _sum, _count", () => {
    const h = new Histogram();
    h.observe(0.0000015); // → le 0.000002
    h.observeMany(0.003, 3); // → le 0.005
    h.observe(60); // → +Inf only
    const text = formatExposition([{ name: "wallaroo_latency_seconds", help: "L.", type: "histogram", samples: [{ labels: { sink: "out" }, histogram: h.snapshot() }] }]);
    const lines = text.split("\n");
    expect(lines[0]).toBe("# HELP wallaroo_latency_seconds L.");
    expect(lines[1]).toBe("# TYPE wallaroo_latency_seconds histogram");
    expect(lines.slice(2, 5)).toEqual([
      'wallaroo_latency_seconds_bucket{sink="out",le="0.000001"} 0',
      'wallaroo_latency_seconds_bucket{sink="out",le="0.000002"} 1',
      'wallaroo_latency_seconds_bucket{sink="out",le="0.000005"} 1',
    ]);
    expect(lines).toContain('wallaroo_latency_seconds_bucket{sink="out",le="0.002"} 1');
    expect(lines).toContain('wallaroo_latency_seconds_bucket{sink="out",le="0.005"} 4');
    expect(lines.slice(-5)).toEqual([
      'wallaroo_latency_seconds_bucket{sink="out",le="10"} 4',
      'wallaroo_latency_seconds_bucket{sink="out",le="+Inf"} 5',
      `wallaroo_latency_seconds_sum{sink="out"} ${0.0000015 + 0.009 + 60}`,
      'wallaroo_latency_seconds_count{sink="out"} 5',
      "",
    ]);
    // 22 bounds + Inf + sum + count + 2 comment lines + the final empty string.
    expect(lines.length).toBe(22 + 1 + 2 + 2 + 1);
    expect(() => parseExposition(text)).not.toThrow();
  });

  test("special values", () => {
    expect([NaN, Infinity, -Infinity, 0, -2, 1e21, 0.1].map(formatValue)).toEqual(["NaN", "+Inf", "-Inf", "0", "-2", "1e+21", "0.1"]);
    expect(() => parseExposition(formatExposition([{ name: "wallaroo_g", help: "", type: "gauge", samples: [{ value: 1e21 }, { labels: { a: "b" }, value: NaN }] }]))).not.toThrow();
  });

  test("nothing registered is an empty exposition", () => {
    expect(formatExposition([])).toBe("");
  });
});
