// One worker's metrics: a list of families, each read by a callback at scrape time. The code that
// counts keeps its own fields and histograms (a plain `n++` on its hot path, or nothing new at all
// where a count already existed); nothing is copied into the registry until someone asks, so
// recording costs what it cost before the registry existed. One registry per Worker object: the
// simulation runs many workers in one process, so nothing here is module-level.
import { assert } from "../assert.ts";
import { formatExposition, type Family, type HistogramSample, type Labels, type MetricType, type ValueSample } from "./exposition.ts";
import type { Histogram } from "./histogram.ts";

export const METRIC_PREFIX = "wallaroo_";
const NAME = /^wallaroo_[a-z][a-z0-9_]*$/;
const LABEL = /^[a-z_][a-z0-9_]*$/;

type ValueCollect = () => number | readonly ValueSample[];
type HistogramCollect = () => Histogram | readonly { labels?: Labels; histogram: Histogram }[];

interface Entry {
  name: string;
  help: string;
  type: MetricType;
  collect: ValueCollect | HistogramCollect;
}

export class Registry {
  private readonly entries: Entry[] = [];
  private readonly names = new Set<string>();

  constructor(
    /** Labels on every sample (the worker's name). */
    readonly common: Labels = {},
  ) {}

  private add(name: string, help: string, type: MetricType, collect: Entry["collect"]): void {
    assert(NAME.test(name), `metric name ${name} must match ${NAME}`);
    assert(!this.names.has(name), `metric ${name} registered twice`);
    // The conventions the docs promise: counters end in _total, base units in the name.
    assert(type !== "counter" || name.endsWith("_total"), `counter ${name} must end in _total`);
    assert(type === "counter" || !name.endsWith("_total"), `only counters end in _total (${name})`);
    this.names.add(name);
    this.entries.push({ name, help, type, collect });
  }

  counter(name: string, help: string, collect: ValueCollect): void {
    this.add(name, help, "counter", collect);
  }

  gauge(name: string, help: string, collect: ValueCollect): void {
    this.add(name, help, "gauge", collect);
  }

  /** Values whose kind the registry cannot know (the application's own counters()). */
  untyped(name: string, help: string, collect: ValueCollect): void {
    this.add(name, help, "untyped", collect);
  }

  histogram(name: string, help: string, collect: HistogramCollect): void {
    this.add(name, help, "histogram", collect);
  }

  /** Every family with its samples as of now. */
  collect(): Family[] {
    return this.entries.map((e) => {
      if (e.type === "histogram") {
        const got = (e.collect as HistogramCollect)();
        const list = Array.isArray(got) ? got : [{ histogram: got as Histogram }];
        const samples: HistogramSample[] = list.map((s: { labels?: Labels; histogram: Histogram }) => ({ labels: checked(s.labels), histogram: s.histogram.snapshot() }));
        return { name: e.name, help: e.help, type: "histogram", samples };
      }
      const got = (e.collect as ValueCollect)();
      const samples = typeof got === "number" ? [{ value: got }] : got.map((s) => ({ labels: checked(s.labels), value: s.value }));
      return { name: e.name, help: e.help, type: e.type as "counter" | "gauge" | "untyped", samples };
    });
  }

  /** The exposition text of everything registered. */
  text(): string {
    return formatExposition(this.collect(), this.common);
  }
}

function checked(labels: Labels | undefined): Labels | undefined {
  if (labels) for (const k of Object.keys(labels)) assert(LABEL.test(k) && k !== "le", `label name ${k} is not allowed`);
  return labels;
}
