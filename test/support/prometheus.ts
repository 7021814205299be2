// A strict parser of the Prometheus text exposition format (0.0.4) for the tests: it refuses
// anything a lenient scraper would let through — a sample before its family's TYPE, a family
// split in two, a repeated series, a bad name, label or escape, a value that is not a number, a
// histogram whose buckets are not cumulative or lack le="+Inf", _count or _sum, a missing final
// newline — so a test that parses a worker's /metrics fails on any of them.

export interface ParsedSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}
export interface ParsedFamily {
  name: string;
  type: string;
  help: string;
  samples: ParsedSample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);

function fail(line: number, why: string): never {
  throw new Error(`exposition line ${line}: ${why}`);
}

function parseValue(s: string, line: number): number {
  if (s === "+Inf") return Infinity;
  if (s === "-Inf") return -Infinity;
  if (s === "NaN") return NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(s)) fail(line, `"${s}" is not a number`);
  return Number(s);
}

/** `{a="x",b="y"}` from position `p` of `text`; returns the labels and the position after `}`. */
function parseLabels(text: string, p: number, line: number): { labels: Record<string, string>; end: number } {
  const labels: Record<string, string> = {};
  p++; // '{'
  while (text[p] !== "}") {
    const eq = text.indexOf("=", p);
    if (eq < 0) fail(line, "label without '='");
    const name = text.slice(p, eq);
    if (!LABEL_NAME.test(name)) fail(line, `bad label name "${name}"`);
    if (name in labels) fail(line, `label ${name} twice`);
    if (text[eq + 1] !== '"') fail(line, `label ${name}: value not quoted`);
    let v = "";
    let i = eq + 2;
    for (;;) {
      const c = text[i];
      if (c === undefined) fail(line, `label ${name}: unterminated value`);
      if (c === '"') break;
      if (c === "\\") {
        const n = text[i + 1];
        if (n === "\\") v += "\\";
        else if (n === '"') v += '"';
        else if (n === "n") v += "\n";
        else fail(line, `label ${name}: bad escape \\${n}`);
        i += 2;
        continue;
      }
      v += c;
      i++;
    }
    labels[name] = v;
    p = i + 1;
    if (text[p] === ",") p++;
    else if (text[p] !== "}") fail(line, `expected ',' or '}' after label ${name}`);
  }
  return { labels, end: p + 1 };
}

/** The family a sample name belongs to, given the declared families. */
function familyOf(name: string, declared: Map<string, ParsedFamily>): ParsedFamily | undefined {
  const f = declared.get(name);
  if (f) return f;
  for (const suffix of ["_bucket", "_sum", "_count"]) {
    if (!name.endsWith(suffix)) continue;
    const base = declared.get(name.slice(0, -suffix.length));
    if (base && base.type === "histogram") return base;
  }
  return undefined;
}

function checkHistograms(f: ParsedFamily): void {
  const series = new Map<string, { buckets: [number, number][]; sum?: number; count?: number }>();
  for (const s of f.samples) {
    const { le, ...rest } = s.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    let e = series.get(key);
    if (!e) series.set(key, (e = { buckets: [] }));
    if (s.name.endsWith("_bucket")) {
      if (le === undefined) throw new Error(`${f.name}: bucket without le`);
      e.buckets.push([le === "+Inf" ? Infinity : Number(le), s.value]);
    } else if (s.name.endsWith("_sum")) e.sum = s.value;
    else if (s.name.endsWith("_count")) e.count = s.value;
    else throw new Error(`${f.name}: sample ${s.name} in a histogram`);
  }
  for (const [key, e] of series) {
    const where = `${f.name}${key}`;
    if (e.sum === undefined || e.count === undefined) throw new Error(`${where}: _sum or _count missing`);
    const last = e.buckets.at(-1);
    if (!last || last[0] !== Infinity) throw new Error(`${where}: no le="+Inf" bucket last`);
    if (last[1] !== e.count) throw new Error(`${where}: +Inf bucket ${last[1]} ≠ _count ${e.count}`);
    for (let i = 1; i < e.buckets.length; i++) {
      if (!(e.buckets[i]![0] > e.buckets[i - 1]![0])) throw new Error(`${where}: le not increasing`);
      if (e.buckets[i]![1] < e.buckets[i - 1]![1]) throw new Error(`${where}: buckets not cumulative`);
    }
  }
}

/** Parses and checks a whole exposition; throws naming the first problem. */
export function parseExposition(text: string): Map<string, ParsedFamily> {
  if (text.length > 0 && !text.endsWith("\n")) throw new Error("exposition does not end with a newline");
  const families = new Map<string, ParsedFamily>();
  const seen = new Set<string>();
  let current: ParsedFamily | undefined;
  const closed = new Set<string>();
  const lines = text.split("\n");
  lines.pop();
  lines.forEach((raw, i) => {
    const line = i + 1;
    if (raw === "") fail(line, "empty line");
    if (raw.startsWith("#")) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(raw);
      if (!m) return; // a plain comment
      const [, kind, name, rest] = m as unknown as [string, string, string, string];
      if (!NAME.test(name)) fail(line, `bad metric name "${name}"`);
      if (closed.has(name)) fail(line, `family ${name} declared again after other families`);
      let f = families.get(name);
      if (!f) {
        if (current && current.name !== name) closed.add(current.name);
        f = { name, type: "untyped", help: "", samples: [] };
        families.set(name, f);
        current = f;
      }
      if (f.samples.length > 0) fail(line, `${kind} of ${name} after its samples`);
      if (kind === "TYPE") {
        if (!TYPES.has(rest)) fail(line, `unknown type "${rest}"`);
        f.type = rest;
      } else f.help = rest;
      return;
    }
    const nameEnd = raw.search(/[{ ]/);
    if (nameEnd <= 0) fail(line, "no metric name");
    const name = raw.slice(0, nameEnd);
    if (!NAME.test(name)) fail(line, `bad metric name "${name}"`);
    let p = nameEnd;
    let labels: Record<string, string> = {};
    if (raw[p] === "{") ({ labels, end: p } = parseLabels(raw, p, line));
    if (raw[p] !== " ") fail(line, "expected a space before the value");
    const parts = raw.slice(p + 1).split(" ");
    if (parts.length > 2 || parts[0] === "") fail(line, "expected 'value [timestamp]'");
    const value = parseValue(parts[0]!, line);
    if (parts[1] !== undefined && !/^-?\d+$/.test(parts[1])) fail(line, "bad timestamp");
    const f = familyOf(name, families);
    if (!f) fail(line, `sample ${name} before its # TYPE`);
    if (f !== current) fail(line, `sample ${name} outside its family's block`);
    const series = name + JSON.stringify(Object.entries(labels).sort());
    if (seen.has(series)) fail(line, `series ${series} twice`);
    seen.add(series);
    if (f.type === "counter" && value < 0) fail(line, `counter ${name} is negative`);
    f.samples.push({ name, labels, value });
  });
  for (const f of families.values()) if (f.type === "histogram") checkHistograms(f);
  return families;
}

/** The value of the one sample of `name` whose labels include `labels`; throws when not exactly one. */
export function sampleValue(fams: Map<string, ParsedFamily>, name: string, labels: Record<string, string> = {}): number {
  const all = [...fams.values()].flatMap((f) => f.samples).filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (all.length !== 1) throw new Error(`${all.length} samples of ${name}${JSON.stringify(labels)}`);
  return all[0]!.value;
}

/** The sum over every sample of `name` whose labels include `labels` (0 when none). */
export function sumOf(fams: Map<string, ParsedFamily>, name: string, labels: Record<string, string> = {}): number {
  return [...fams.values()]
    .flatMap((f) => f.samples)
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((a, s) => a + s.value, 0);
}
