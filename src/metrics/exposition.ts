// The Prometheus text exposition format (version 0.0.4), written from collected families: a pure
// function, so its bytes are pinned by golden tests. Per family: `# HELP`, `# TYPE`, then its
// samples; a histogram's buckets are cumulative, end with le="+Inf", and are followed by _sum and
// _count.
import { BUCKET_BOUNDS_S, type HistogramSnapshot } from "./histogram.ts";

export const EXPOSITION_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

export const METRIC_TYPE = { counter: "counter", gauge: "gauge", histogram: "histogram", untyped: "untyped" } as const;
export type MetricType = (typeof METRIC_TYPE)[keyof typeof METRIC_TYPE];

export type Labels = Readonly<Record<string, string>>;

export interface ValueSample {
  readonly labels?: Labels;
  readonly value: number;
}
export interface HistogramSample {
  readonly labels?: Labels;
  readonly histogram: HistogramSnapshot;
}

export type Family =
  | { readonly name: string; readonly help: string; readonly type: "counter" | "gauge" | "untyped"; readonly samples: readonly ValueSample[] }
  | { readonly name: string; readonly help: string; readonly type: "histogram"; readonly samples: readonly HistogramSample[] };

const escapeHelp = (s: string) => s.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
const escapeLabel = (s: string) => s.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');

/** A sample value as the format spells it. */
export function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

function labelText(common: Labels, own: Labels | undefined, extra?: [string, string]): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(common)) parts.push(`${k}="${escapeLabel(v)}"`);
  if (own) for (const [k, v] of Object.entries(own)) parts.push(`${k}="${escapeLabel(v)}"`);
  if (extra) parts.push(`${extra[0]}="${extra[1]}"`);
  return parts.length === 0 ? "" : `{${parts.join(",")}}`;
}

/** Every family as exposition text; `common` labels (the worker's name) go first on every sample. */
export function formatExposition(families: readonly Family[], common: Labels = {}): string {
  const out: string[] = [];
  for (const f of families) {
    out.push(`# HELP ${f.name} ${escapeHelp(f.help)}`);
    out.push(`# TYPE ${f.name} ${f.type}`);
    if (f.type !== "histogram") {
      for (const s of f.samples) out.push(`${f.name}${labelText(common, s.labels)} ${formatValue(s.value)}`);
      continue;
    }
    for (const s of f.samples) {
      const h = s.histogram;
      let cumulative = 0;
      BUCKET_BOUNDS_S.forEach((bound, i) => {
        cumulative += h.counts[i] ?? 0;
        out.push(`${f.name}_bucket${labelText(common, s.labels, ["le", String(bound)])} ${formatValue(cumulative)}`);
      });
      out.push(`${f.name}_bucket${labelText(common, s.labels, ["le", "+Inf"])} ${formatValue(h.count)}`);
      out.push(`${f.name}_sum${labelText(common, s.labels)} ${formatValue(h.sum)}`);
      out.push(`${f.name}_count${labelText(common, s.labels)} ${formatValue(h.count)}`);
    }
  }
  return out.length === 0 ? "" : out.join("\n") + "\n";
}
