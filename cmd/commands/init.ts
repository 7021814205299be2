// `wallaroo init [DIR] [--name NAME]`: writes a new application into DIR (default: here) from the
// templates in src/scaffold/: the app, its tests, sample input, wallaroo.d.ts, a tsconfig.json and
// a README. It writes only files that do not exist yet: if any of them does, it writes nothing.
import { existsSync, mkdirSync, statSync, writeFileSync } from "node:fs";
import { basename, join, relative, resolve } from "node:path";
import { defineCommand } from "citty";
import { APP_NAME_PATTERN, MAX_NAME_LENGTH } from "../../src/app/builder.ts";
import { embeddedDeclarations } from "../../src/embedded.ts";
import { UsageError } from "../../src/errors.ts";
import { log } from "../../src/log.ts";
import { scaffoldFiles } from "../../src/scaffold/scaffold.ts";
import { applyLogArgs, logArgs, rejectUnknownFlags } from "./_args.ts";

const args = {
  dir: { type: "positional", required: false, default: ".", description: "directory to write the application into (created if missing)", valueHint: "dir" },
  name: { type: "string", description: "the application's name (default: from the directory's name)", valueHint: "name" },
  ...logArgs,
} as const;

/** An application name from a directory name: what the name rules refuse becomes "-". */
export function nameFromDir(dir: string): string {
  const name = basename(dir).replace(/[^A-Za-z0-9_.-]+/g, "-").replace(/^[^A-Za-z0-9]+/, "").slice(0, MAX_NAME_LENGTH);
  return name.length > 0 ? name : "app";
}

export default defineCommand({
  meta: { name: "init", description: "Write a new application, its tests, wallaroo.d.ts and a README into a directory" },
  args,
  run({ args: a, rawArgs }) {
    rejectUnknownFlags(rawArgs, args);
    applyLogArgs(a);
    if (a._.length > 1) throw new UsageError(`Unexpected argument "${a._[1]}": wallaroo init takes one directory. See --help.`);
    const dir = resolve(a.dir ?? ".");
    const name = a.name ?? nameFromDir(dir);
    if (name.length === 0 || name.length > MAX_NAME_LENGTH || !APP_NAME_PATTERN.test(name)) {
      throw new UsageError(`--name "${name}": an application name is 1 to ${MAX_NAME_LENGTH} letters, digits, "_", "-" or "." starting with a letter or digit.`);
    }
    if (existsSync(dir) && !statSync(dir).isDirectory()) throw new UsageError(`${dir} exists and is not a directory.`);
    const files = scaffoldFiles(name, embeddedDeclarations());
    const existing = files.filter((f) => existsSync(join(dir, f.path))).map((f) => f.path);
    if (existing.length > 0) {
      throw new UsageError(`${dir} already has ${existing.join(", ")}; wallaroo init writes only new files, so it wrote nothing. Choose another directory, or move them away.`);
    }
    mkdirSync(dir, { recursive: true });
    // "wx": a file that appeared since the check above is not overwritten either.
    for (const f of files) writeFileSync(join(dir, f.path), f.content, { flag: "wx" });
    const where = relative(process.cwd(), dir) || ".";
    log.info("init_written", `Wrote application "${name}" to ${where}: ${files.map((f) => f.path).join(", ")}.`);
    log.info("init_next", `Next: cd ${where} && wallaroo test; README.md shows how to run it on a 2-worker cluster.`);
  },
});
