// `wallaroo types`: prints the TypeScript declarations of the application API (the module
// "wallaroo", generated from src/index.ts at build time) and of the bun:test functions tests use.
// `wallaroo types > wallaroo.d.ts` gives an editor completion and checking with nothing installed.
import { defineCommand } from "citty";
import { embeddedDeclarations } from "../../src/embedded.ts";
import { UsageError } from "../../src/errors.ts";
import { rejectUnknownFlags } from "./_args.ts";
import { writeStdout } from "./_stdout.ts";

const args = {} as const;

export default defineCommand({
  meta: { name: "types", description: 'Print the TypeScript declarations of the application API (module "wallaroo") and of bun:test' },
  args,
  async run({ rawArgs }) {
    rejectUnknownFlags(rawArgs, args);
    if (rawArgs.some((a) => !a.startsWith("-"))) throw new UsageError("wallaroo types takes no arguments; redirect its output: wallaroo types > wallaroo.d.ts");
    await writeStdout(embeddedDeclarations());
  },
});
