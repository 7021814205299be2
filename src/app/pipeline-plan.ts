// Where each part of an application runs and how its messages get there, read off the AppSpec by
// the rules the dataflow applies (src/runtime/dataflow.ts, DESIGN §2–3): the source, its decoder
// and every non-parallel stateless step on the initializer; parallel steps and keyBy wherever the
// message is; a stateful step on the owner of the key's slot; the sink on the worker that made
// the output. `wallaroo check` prints it, so an author sees this before starting a cluster.
import type { AppSpec } from "./types.ts";

export type MayRunOn = "initializer" | "any worker";

/** How a message reaches a step that may run on another worker than the one holding it. */
export type Crossing = "raw frame" | "message codec";

export interface PlannedStep {
  readonly name: string;
  readonly kind: "stateless" | "key" | "stateful";
  /** Stateless steps: returns an array (toMulti). */
  readonly multi?: boolean;
  /** Stateless steps: runs wherever the message is rather than on the initializer. */
  readonly parallel?: boolean;
  /** Stateful steps: the keyBy whose key picks the state. */
  readonly keyed_by?: string;
  /** Stateful steps: "application" when the step gives its own state codec. */
  readonly state_codec?: "default" | "application";
  /** Where it runs: on the initializer, wherever the message is, or on the key's slot owner. */
  readonly runs_on: "initializer" | "where the message is" | "slot owner";
  /** The workers it may run on: "where the message is" is the initializer until a stateful step. */
  readonly may_run_on: MayRunOn;
  /** How messages reach it from another worker, when they may have to; null when they never do. */
  readonly crossing: Crossing | null;
}

export interface PipelinePlan {
  readonly application: string;
  readonly source: { readonly name: string; readonly runs_on: "initializer" };
  readonly steps: readonly PlannedStep[];
  readonly sink: { readonly name: string; readonly runs_on: "producing worker"; readonly may_run_on: MayRunOn };
  readonly message_codec: "default" | "application";
  /** What pins work to the initializer: the source and every non-parallel stateless step. */
  readonly initializer_only: readonly string[];
  /**
   * Workers that may be shrunk away: those hosting no source and no non-parallel step (the
   * original's criteria), which with this placement is every worker except the initializer.
   */
  readonly shrink_eligible: "every worker except the initializer";
}

export function planPipeline(spec: AppSpec): PipelinePlan {
  const steps: PlannedStep[] = [];
  const initializerOnly = [`source "${spec.source.name}"`];
  // The message is still the decoder's own (only keyBy since the source): it crosses as the frame.
  let raw = true;
  // A stateful step ran: the message may be on any worker now.
  let anywhere = false;
  let key: string | undefined;
  const here = (): MayRunOn => (anywhere ? "any worker" : "initializer");
  for (const st of spec.stages) {
    if (st.kind === "key") {
      key = st.name;
      steps.push({ name: st.name, kind: "key", runs_on: "where the message is", may_run_on: here(), crossing: null });
    } else if (st.kind === "map") {
      if (st.parallel) {
        steps.push({ name: st.name, kind: "stateless", multi: st.multi, parallel: true, runs_on: "where the message is", may_run_on: here(), crossing: null });
      } else {
        initializerOnly.push(`step "${st.name}"`);
        const crossing = anywhere ? "message codec" : null;
        steps.push({ name: st.name, kind: "stateless", multi: st.multi, parallel: false, runs_on: "initializer", may_run_on: "initializer", crossing });
        anywhere = false;
      }
      raw = false;
    } else {
      steps.push({
        name: st.name,
        kind: "stateful",
        keyed_by: key!,
        state_codec: st.stateCodec ? "application" : "default",
        runs_on: "slot owner",
        may_run_on: "any worker",
        crossing: raw ? "raw frame" : "message codec",
      });
      raw = false;
      anywhere = true;
    }
  }
  return {
    application: spec.name,
    source: { name: spec.source.name, runs_on: "initializer" },
    steps,
    sink: { name: spec.sink.name, runs_on: "producing worker", may_run_on: here() },
    message_codec: spec.messageCodec ? "application" : "default",
    initializer_only: initializerOnly,
    shrink_eligible: "every worker except the initializer",
  };
}

/** The plan as an author reads it: one line per part, then what it means for shrinking. */
export function formatPlan(plan: PipelinePlan): string {
  const codec = plan.message_codec === "application" ? "the application's message codec" : "the default message codec";
  const rows: [string, string, string][] = [[`source "${plan.source.name}"`, "decoder", "initializer only (it alone listens on --in)"]];
  const wherever = (may: MayRunOn) => (may === "any worker" ? "any worker: wherever the message is" : "initializer (wherever the message is: still on the initializer)");
  plan.steps.forEach((s, i) => {
    const n = `${i + 1}.`;
    if (s.kind === "key") {
      rows.push([`${n} keyBy "${s.name}"`, "key function", wherever(s.may_run_on)]);
    } else if (s.kind === "stateless") {
      const what = `${s.multi ? "1 → 0..n" : "1 → 0..1"}, ${s.parallel ? "parallel" : "not parallel"}`;
      const where = s.parallel ? wherever(s.may_run_on) : "initializer only";
      const back = s.crossing ? `; messages from a stateful step elsewhere come back through ${codec}` : "";
      rows.push([`${n} stateless "${s.name}"`, what, where + back]);
    } else {
      const how = s.crossing === "raw frame" ? "as the raw frame, decoded again there" : `through ${codec}`;
      const state = s.state_codec === "application" ? ", own state codec" : "";
      rows.push([`${n} stateful "${s.name}"`, `keyed by "${s.keyed_by}"${state}`, `any worker: the owner of the key's slot; messages cross to it ${how}`]);
    }
  });
  const sinkWhere = plan.sink.may_run_on === "any worker" ? "any worker: the one that produced the output" : "initializer (no stateful step moves messages off it)";
  rows.push([`sink "${plan.sink.name}"`, "encoder", `${sinkWhere}, on its own --out connection`]);
  const w0 = Math.max(...rows.map((r) => r[0].length));
  const w1 = Math.max(...rows.map((r) => r[1].length));
  return [
    `application "${plan.application}"`,
    "",
    ...rows.map(([a, b, c]) => `  ${a.padEnd(w0)}  ${b.padEnd(w1)}  ${c}`),
    "",
    `Initializer only: ${plan.initializer_only.join(", ")}.`,
    `Eligible for shrink: ${plan.shrink_eligible} (the initializer hosts the source${plan.initializer_only.length > 1 ? " and the non-parallel steps" : ""}).`,
    "",
  ].join("\n");
}
