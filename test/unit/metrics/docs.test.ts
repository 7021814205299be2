// docs/metrics.md and the Grafana dashboard name exactly the series a worker exposes: a series
// added without its line in the docs, or a panel querying a name that does not exist, fails here.
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { build as alphabet } from "../../../src/app/builtins/alphabet.ts";
import { Worker } from "../../../src/cluster/worker.ts";
import type { Transport } from "../../../src/net/transport.ts";
import { parseExposition } from "../../support/prometheus.ts";

const docs = join(import.meta.dir, "../../../docs");
const unused = {} as Transport;

/** Every family a worker registers, from its (strictly parsed) exposition. */
function exposed(): Set<string> {
  const w = new Worker({
    name: "initializer",
    role: "initializer",
    workerCount: 1,
    myControl: { host: "127.0.0.1", port: 0 },
    myData: { host: "127.0.0.1", port: 0 },
    sources: [],
    app: alphabet(),
    transport: unused,
  });
  return new Set(parseExposition(w.metricsText()).keys());
}

/** `wallaroo_…` names in a text, histogram suffixes taken off. */
function named(text: string): Set<string> {
  const out = new Set<string>();
  for (const m of text.matchAll(/wallaroo_[a-z_]+/g)) out.add(m[0].replace(/_(bucket|sum|count)$/, ""));
  return out;
}

describe("metrics documentation", () => {
  test("docs/metrics.md lists every series, and no other", async () => {
    const md = await Bun.file(join(docs, "metrics.md")).text();
    const tables = md
      .split("\n")
      .filter((l) => l.startsWith("| `wallaroo_"))
      .join("\n");
    expect([...named(tables)].sort()).toEqual([...exposed()].sort());
  });

  test("the Grafana dashboard queries only series that exist", async () => {
    const dash = (await Bun.file(join(docs, "grafana-dashboard.json")).json()) as { panels: { targets: { expr: string }[] }[] };
    const all = exposed();
    const used = named(dash.panels.flatMap((p) => p.targets.map((t) => t.expr)).join("\n"));
    expect(used.size).toBeGreaterThan(10);
    for (const n of used) expect(all.has(n) ? n : `missing: ${n}`).toBe(n);
  });
});
