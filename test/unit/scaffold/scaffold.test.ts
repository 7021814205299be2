// What `wallaroo init` writes: the name in place, input.msg framed as `wallaroo send` reads it, and
// a README whose expected output is what the application makes of input.msg.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { nameFromDir } from "../../../cmd/commands/init.ts";
import { registerApiModule } from "../../../src/app/api-module.ts";
import { specFromModule } from "../../../src/app/load.ts";
import { SAMPLE_DEPOSITS, scaffoldFiles } from "../../../src/scaffold/scaffold.ts";
import { checkFramedFile } from "../../../src/tools/generators.ts";
import { testPipeline } from "../../../src/testing/pipeline-harness.ts";

const files = new Map(scaffoldFiles("ledger", "// declarations\n").map((f) => [f.path, f.content]));
const text = (path: string) => files.get(path) as string;
const dir = mkdtempSync(join(tmpdir(), "wallaroo-scaffold-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("scaffoldFiles", () => {
  test("the application, its tests and README carry the name; the declarations are written as given", () => {
    expect([...files.keys()]).toEqual(["app.ts", "app.test.ts", "input.msg", "wallaroo.d.ts", "tsconfig.json", "README.md"]);
    expect(text("app.ts")).toContain('application("ledger")');
    expect(text("app.test.ts")).toContain('describe("ledger"');
    expect(text("README.md")).toStartWith("# ledger\n");
    for (const f of ["app.ts", "app.test.ts", "README.md"]) expect(text(f)).not.toContain("__NAME__");
    expect(text("wallaroo.d.ts")).toBe("// declarations\n");
    expect(JSON.parse(text("tsconfig.json")).include).toEqual(["**/*.ts"]);
  });

  test("input.msg holds the sample deposits as source frames", () => {
    const msg = files.get("input.msg") as Uint8Array;
    expect(checkFramedFile(msg, 1024)).toBe(SAMPLE_DEPOSITS.length);
    expect(new TextDecoder().decode(msg.subarray(4, 4 + msg[3]!))).toBe(SAMPLE_DEPOSITS[0]);
  });

  test("the README's expected output is what the application outputs for input.msg", async () => {
    const path = join(dir, "app.ts");
    writeFileSync(path, text("app.ts"));
    // The application imports "wallaroo", as it does next to the binary.
    registerApiModule();
    const spec = await specFromModule(await import(path), "app.ts");
    const out = testPipeline(spec).sendText(...SAMPLE_DEPOSITS);
    const readme = /The receiver prints[^\n]*\n\n```\n([^`]*)```/.exec(text("README.md"));
    expect(readme).not.toBeNull();
    expect(out.join("")).toBe(readme![1]!);
  });
});

describe("nameFromDir", () => {
  test("a directory's name, with what application names refuse replaced", () => {
    expect(nameFromDir("/home/me/my-app")).toBe("my-app");
    expect(nameFromDir("/home/me/My App (2)")).toBe("My-App-2-");
    expect(nameFromDir("/home/me/.hidden")).toBe("hidden");
    expect(nameFromDir("/")).toBe("app");
  });
});
