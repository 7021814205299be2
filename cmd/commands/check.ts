// `wallaroo check --application-module PATH`: loads and builds an application as a worker would at
// start-up (module found, default export, builder, the state check), without starting one, and
// prints its pipeline: where each step runs, how messages cross workers, who may be shrunk away.
// A module a worker would refuse is refused with the worker's sentence and exit 2.
import { defineCommand } from "citty";
import { loadApplication } from "../../src/app/load.ts";
import { formatPlan, planPipeline } from "../../src/app/pipeline-plan.ts";
import { AppError, UsageError } from "../../src/errors.ts";
import { applyLogArgs, jsonArg, logArgs, rejectUnknownFlags } from "./_args.ts";
import { writeStdout } from "./_stdout.ts";

const args = {
  "application-module": { type: "string", description: "built-in app or a path to a .ts/.js module (as for wallaroo worker)", valueHint: "name|path" },
  ...jsonArg,
  ...logArgs,
} as const;

export default defineCommand({
  meta: { name: "check", description: "Load and build an application without starting a worker, and print its pipeline" },
  args,
  async run({ args: a, rawArgs }) {
    rejectUnknownFlags(rawArgs, args);
    applyLogArgs(a);
    const module = a["application-module"];
    if (!module) throw new UsageError("You must specify an application via --application-module (a built-in name or a path to a module).");
    if (a._.length > 0) throw new UsageError(`Unexpected argument "${a._[0]}"; name the module with --application-module. See --help.`);
    let plan;
    try {
      plan = planPipeline(await loadApplication(module));
    } catch (err) {
      // The module is this command's input: what stops a worker is a usage error here.
      if (err instanceof AppError) throw new UsageError(err.message);
      throw err;
    }
    await writeStdout(a.json === true ? JSON.stringify({ module, ...plan }) + "\n" : formatPlan(plan));
  },
});
