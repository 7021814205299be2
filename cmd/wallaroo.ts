#!/usr/bin/env bun
// The executable: one registry of lazily loaded subcommands, and the single place where errors
// become exit codes (citty itself only knows 0 and 1).
import { defineCommand, runCommand, renderUsage, type CommandDef } from "citty";
import { EXIT, WallarooError } from "../src/errors.ts";
import { log } from "../src/log.ts";
import { VERSION } from "../src/version.ts";

const load = <T>(p: Promise<{ default: T }>) => p.then((m) => m.default);

export const commands = {
  worker: () => load(import("./commands/worker.ts")),
  send: () => load(import("./commands/send.ts")),
  receive: () => load(import("./commands/receive.ts")),
  query: () => load(import("./commands/query.ts")),
  shrink: () => load(import("./commands/shrink.ts")),
  shutdown: () => load(import("./commands/shutdown.ts")),
  top: () => load(import("./commands/top.ts")),
  init: () => load(import("./commands/init.ts")),
  check: () => load(import("./commands/check.ts")),
  test: () => load(import("./commands/test.ts")),
  types: () => load(import("./commands/types.ts")),
} as const;

const main = defineCommand({
  meta: {
    name: "wallaroo",
    version: VERSION,
    description: "A distributed stream processor whose clusters grow and shrink while they run",
  },
  subCommands: commands as unknown as Record<string, () => Promise<CommandDef<any>>>,
});

async function resolveSub(argv: string[]): Promise<CommandDef<any> | undefined> {
  const name = argv[0];
  if (!name || !(name in commands)) return undefined;
  return (await commands[name as keyof typeof commands]()) as CommandDef<any>;
}

async function run(argv: string[]): Promise<number> {
  if (argv.length === 0 || argv[0] === "--help" || argv[0] === "-h") {
    process.stdout.write((await renderUsage(main)) + "\n");
    return argv.length === 0 ? EXIT.usage : EXIT.ok;
  }
  if (argv[0] === "--version" || argv[0] === "-v") {
    process.stdout.write(VERSION + "\n");
    return EXIT.ok;
  }
  const sub = await resolveSub(argv);
  if (!sub) {
    process.stderr.write(`Unknown command "${argv[0]}". Commands: ${Object.keys(commands).join(", ")}.\n`);
    return EXIT.usage;
  }
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write((await renderUsage(sub, main)) + "\n");
    return EXIT.ok;
  }
  try {
    const { result } = await runCommand(sub, { rawArgs: argv.slice(1) });
    return typeof result === "number" ? result : EXIT.ok;
  } catch (err) {
    if (err instanceof WallarooError) {
      process.stderr.write(`${err.message}\n`);
      return err.exitCode;
    }
    // citty reports its own argument errors with a `code` (e.g. EARG).
    if (err && typeof err === "object" && "code" in err && typeof (err as any).code === "string" && (err as any).code.startsWith("E")) {
      process.stderr.write(`${(err as unknown as Error).message}\n`);
      return EXIT.usage;
    }
    log.error("fatal", `Unexpected failure: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    return EXIT.runtime;
  }
}

const code = await run(process.argv.slice(2));
process.exit(code);
