// The plan `wallaroo check` prints must say what the dataflow does: where each step runs and how
// its messages cross workers.
import { describe, expect, test } from "bun:test";
import alphabet from "../../../src/app/builtins/alphabet.ts";
import { application } from "../../../src/app/builder.ts";
import { formatPlan, planPipeline } from "../../../src/app/pipeline-plan.ts";

const text = (p: Uint8Array) => new TextDecoder().decode(p);

describe("planPipeline", () => {
  test("only keyBy before the state: the raw frame crosses; the sink may be on any worker", () => {
    const plan = planPipeline(alphabet);
    expect(plan.steps).toEqual([
      { name: "letter", kind: "key", runs_on: "where the message is", may_run_on: "initializer", crossing: null },
      { name: "add votes", kind: "stateful", keyed_by: "letter", state_codec: "default", runs_on: "slot owner", may_run_on: "any worker", crossing: "raw frame" },
    ]);
    expect(plan.sink).toEqual({ name: "sink", runs_on: "producing worker", may_run_on: "any worker" });
    expect(plan.initializer_only).toEqual(['source "alphabet"']);
  });

  test("a non-parallel step after a stateful one pins it to the initializer and brings messages back", () => {
    const app = application("a")
      .source("in", (p) => text(p))
      .to("trim", (s) => s.trim(), { parallel: true })
      .keyBy("word", (w) => w)
      .toStateful("count", () => ({ n: 0 }), (w, s) => ({ w, n: ++s.n }), { stateCodec: { serialize: () => new Uint8Array(1), deserialize: () => ({ n: 0 }) } })
      .toMulti("lines", (o) => [`${o.w}`, `${o.n}`])
      .to("upper", (s) => s.toUpperCase(), { parallel: true })
      .toSink((s) => s);
    const plan = planPipeline(app);
    expect(plan.steps.map((s) => [s.name, s.runs_on, s.may_run_on, s.crossing])).toEqual([
      ["trim", "where the message is", "initializer", null],
      ["word", "where the message is", "initializer", null],
      ["count", "slot owner", "any worker", "message codec"],
      ["lines", "initializer", "initializer", "message codec"],
      ["upper", "where the message is", "initializer", null],
    ]);
    expect(plan.steps[2]!.state_codec).toBe("application");
    expect(plan.sink.may_run_on).toBe("initializer");
    expect(plan.initializer_only).toEqual(['source "in"', 'step "lines"']);
  });

  test("the text names each part with where it runs and who may be shrunk", () => {
    expect(formatPlan(planPipeline(alphabet))).toBe(
      [
        'application "alphabet"',
        "",
        '  source "alphabet"        decoder            initializer only (it alone listens on --in)',
        '  1. keyBy "letter"        key function       initializer (wherever the message is: still on the initializer)',
        "  2. stateful \"add votes\"  keyed by \"letter\"  any worker: the owner of the key's slot; messages cross to it as the raw frame, decoded again there",
        '  sink "sink"              encoder            any worker: the one that produced the output, on its own --out connection',
        "",
        'Initializer only: source "alphabet".',
        "Eligible for shrink: every worker except the initializer (the initializer hosts the source).",
        "",
      ].join("\n"),
    );
  });
});
