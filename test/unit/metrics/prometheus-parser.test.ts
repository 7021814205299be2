// The tests' strict exposition parser must itself refuse what it is there to catch.
import { describe, expect, test } from "bun:test";
import { parseExposition, sampleValue } from "../../support/prometheus.ts";

const ok = ["# HELP a_total A.", "# TYPE a_total counter", 'a_total{x="1"} 3', 'a_total{x="2"} 4', ""].join("\n");

describe("strict exposition parser", () => {
  test("reads families, labels and values", () => {
    const f = parseExposition(ok);
    expect(f.get("a_total")!.type).toBe("counter");
    expect(sampleValue(f, "a_total", { x: "2" })).toBe(4);
  });

  const bad: Record<string, string> = {
    "no final newline": ok.trimEnd(),
    "sample before TYPE": 'b 1\n# TYPE b gauge\n',
    "family split": "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na{x=\"y\"} 2\n",
    "same series twice": "# TYPE a gauge\na 1\na 2\n",
    "bad value": "# TYPE a gauge\na one\n",
    "bad escape": '# TYPE a gauge\na{x="\\t"} 1\n',
    "unquoted label": "# TYPE a gauge\na{x=1} 1\n",
    "bad name": "# TYPE 1a gauge\n1a 1\n",
    "negative counter": "# TYPE a_total counter\na_total -1\n",
    "empty line": "# TYPE a gauge\n\na 1\n",
    "histogram without +Inf": '# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n',
    "histogram not cumulative": '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="2"} 1\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 2\n',
    "histogram count mismatch": '# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 3\n',
    "histogram without _sum": '# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_count 2\n',
  };
  for (const [what, text] of Object.entries(bad)) test(`refuses: ${what}`, () => expect(() => parseExposition(text)).toThrow());
});
