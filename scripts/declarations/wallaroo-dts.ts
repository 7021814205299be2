// What `wallaroo types` prints (and `wallaroo init` writes as wallaroo.d.ts), made at build time:
// the module "wallaroo" (tsc's declarations of src/index.ts, bundled into one block) and the part
// of "bun:test" an application's tests use (taken from the bun-types this repository pins, which
// match the Bun inside the binary). The file is checked on its own, with nothing but TypeScript's
// standard library, before it is embedded: an author has no node_modules.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import ts from "typescript";
import { bundleDeclarations } from "./bundle.ts";

/** The bun:test functions an application's tests get types for. */
export const BUN_TEST_EXPORTS = ["describe", "test", "it", "expect", "beforeAll", "beforeEach", "afterAll", "afterEach"] as const;

/** The declarations file for `version`, from the repository at `root`. Throws when it does not type-check alone. */
export function wallarooDeclarations(root: string, version: string): string {
  const api = bundleDeclarations({ moduleName: "wallaroo", entry: join(root, "src/index.d.ts"), read: declarationEmitter(root) });
  const bunTypes = join(root, "node_modules/bun-types/test.d.ts");
  const bunTest = bundleDeclarations({
    moduleName: "bun:test",
    entry: bunTypes,
    ambient: "bun:test",
    only: BUN_TEST_EXPORTS,
    read: (p) => (p === bunTypes ? readFileSync(p, "utf8") : undefined),
  });
  const text = [
    `// TypeScript declarations of the wallaroo ${version} API, printed by \`wallaroo types\`.`,
    `// "wallaroo" is the module application modules and their tests import (the binary provides it);`,
    `// "bun:test" is the test API \`wallaroo test\` runs (a part of it). List this file in a`,
    `// tsconfig.json ("include") for completion and checking; nothing needs installing.`,
    "",
    api,
    bunTest,
  ].join("\n");
  const problems = typeCheckAlone(text);
  if (problems.length > 0) throw new Error(`the generated declarations do not type-check on their own:\n${problems.join("\n")}`);
  return text;
}

/**
 * tsc's declarations of the files of src/index.ts's program, by the absolute path of the .d.ts,
 * each emitted when first asked for: the bundler asks only for those the exports reach.
 */
function declarationEmitter(root: string): (dtsPath: string) => string | undefined {
  const config = ts.getParsedCommandLineOfConfigFile(join(root, "tsconfig.json"), {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => {} });
  if (!config) throw new Error(`cannot read ${join(root, "tsconfig.json")}`);
  const options: ts.CompilerOptions = { ...config.options, noEmit: false, declaration: true, emitDeclarationOnly: true, outDir: undefined, declarationDir: undefined };
  const program = ts.createProgram([join(root, "src/index.ts")], options);
  const emitted = new Map<string, string>();
  return (dtsPath) => {
    if (!emitted.has(dtsPath)) {
      const source = program.getSourceFile(dtsPath.replace(/\.d\.ts$/, ".ts"));
      if (!source) return undefined;
      const result = program.emit(source, (path, text) => void emitted.set(path, text), undefined, true);
      // Type errors are `tsc --noEmit`'s to report; here only what stops declarations being emitted.
      if (result.diagnostics.length > 0) throw new Error(`declaration emit failed:\n${format(result.diagnostics)}`);
    }
    return emitted.get(dtsPath);
  };
}

/** Diagnostics of `text` as the only declarations besides lib.esnext, used by a file importing both modules. */
function typeCheckAlone(text: string): string[] {
  const dir = mkdtempSync(join(tmpdir(), "wallaroo-dts-"));
  try {
    const dts = join(dir, "wallaroo.d.ts");
    const use = join(dir, "use.ts");
    writeFileSync(dts, text);
    writeFileSync(
      use,
      [
        `import * as wallaroo from "wallaroo";`,
        `import { describe, expect, test } from "bun:test";`,
        `export const api: wallaroo.WallarooApi = wallaroo;`,
        `describe("d", () => test("t", () => expect(wallaroo.frame("x").length).toBe(5)));`,
      ].join("\n"),
    );
    const options: ts.CompilerOptions = {
      strict: true,
      noEmit: true,
      types: [],
      typeRoots: [],
      lib: ["lib.esnext.d.ts"],
      target: ts.ScriptTarget.ESNext,
      module: ts.ModuleKind.ESNext,
      moduleResolution: ts.ModuleResolutionKind.Bundler,
      skipDefaultLibCheck: true,
    };
    const program = ts.createProgram([dts, use], options);
    return format(ts.getPreEmitDiagnostics(program)).split("\n").filter((l) => l.length > 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function format(diagnostics: readonly ts.Diagnostic[]): string {
  return ts.formatDiagnostics(diagnostics, { getCanonicalFileName: (f) => f, getCurrentDirectory: () => "", getNewLine: () => "\n" });
}
