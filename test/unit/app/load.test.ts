import { encodeOutput } from "../../../src/runtime/output-writer.ts";
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { BUILTIN_APPS, loadApplication } from "../../../src/app/load.ts";
import { AppError } from "../../../src/errors.ts";

const REPO = resolve(import.meta.dir, "../../..");
const INDEX = join(REPO, "src/index.ts");
const dir = mkdtempSync(join(tmpdir(), "wallaroo-load-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let counter = 0;
/** Writes a module into the temp dir under a fresh name (imports are cached by path). */
function mod(source: string, ext = ".ts"): string {
  const path = join(dir, `app${++counter}${ext}`);
  writeFileSync(path, source);
  return path;
}

async function loadError(nameOrPath: string): Promise<string> {
  try {
    await loadApplication(nameOrPath);
  } catch (e) {
    expect(e).toBeInstanceOf(AppError);
    return (e as Error).message;
  }
  throw new Error(`expected loading ${nameOrPath} to fail`);
}

describe("built-ins", () => {
  for (const name of Object.keys(BUILTIN_APPS)) {
    test(`loads ${name} by name`, async () => {
      const spec = await loadApplication(name);
      expect(spec.name).toBe(name);
      expect(Object.isFrozen(spec)).toBe(true);
    });
  }
  test("an unknown name without a module extension", async () => {
    expect(await loadError("alphabt")).toBe(
      'Unknown application "alphabt": use a built-in (alphabet, word_count, sequence_window, passthrough) or a path to a .ts/.js/.mjs/.mts module',
    );
  });
});

describe("module paths", () => {
  test("examples/word_lengths.ts by absolute path, and it runs", async () => {
    const spec = await loadApplication(join(REPO, "examples/word_lengths.ts"));
    expect(spec.name).toBe("word_lengths");
    expect(spec.stages.map((s) => `${s.kind}:${s.name}`)).toEqual(["map:split", "key:first letter", "stateful:longest"]);
    const text = spec.source.decode(new TextEncoder().encode("Apple avocado, and AARDVARKS!"));
    const words = (spec.stages[0]!.fn as (t: unknown) => { word: string }[])(text);
    const stage = spec.stages[2]!;
    if (stage.kind !== "stateful") throw new Error("unreachable");
    const state = stage.init();
    const lines = words.map((w) => new TextDecoder().decode(encodeOutput(spec.sink.encode, stage.fn(w, state, w.word[0]!))));
    expect(lines).toEqual(["a apple 5\n", "a avocado 7\n", "a avocado 7\n", "a aardvarks 9\n"]);
  });

  test("a relative path is resolved against the working directory", async () => {
    const path = mod(`export default (api) => api.application("rel").source("s", (p) => p.slice()).toSink((b) => b);\n`, ".js");
    const before = process.cwd();
    process.chdir(dir);
    try {
      expect((await loadApplication(`./${path.slice(dir.length + 1)}`)).name).toBe("rel");
    } finally {
      process.chdir(before);
    }
  });

  test("default export as plain AppSpec built with an imported builder", async () => {
    const path = mod(
      `import { application } from ${JSON.stringify(INDEX)};\n` +
        `export default application("direct").source("s", (p) => p[0]).keyBy((n) => String(n)).toStateful("c", () => ({ n: 0 }), (m, s) => ++s.n).toSink(String);\n`,
    );
    expect((await loadApplication(path)).stages.length).toBe(2);
  });

  test('"wallaroo" imports the binary\'s own API, so an application needs no copy of it', async () => {
    const path = mod(
      `import { application, utf8Decode } from "wallaroo";\n` +
        `export const api = await import("wallaroo");\n` +
        `export default application("bare").source("s", (p) => utf8Decode(p)).toSink((s) => s);\n`,
    );
    expect((await loadApplication(path)).name).toBe("bare");
    const { api } = (await import(path)) as { api: Record<string, unknown> };
    const own = await import("../../../src/index.ts");
    expect(api.application).toBe(own.application);
    expect(Object.keys(api).sort()).toEqual(Object.keys(own).sort());
  });

  test("an async factory, and a named export `application` instead of a default", async () => {
    const asyncPath = mod(`export default async (api) => api.application("async").source("s", (p) => p.slice()).toSink((b) => b);\n`, ".mjs");
    expect((await loadApplication(asyncPath)).name).toBe("async");
    const namedPath = mod(`export const application = (api) => api.application("named").source("s", (p) => p.slice()).toSink((b) => b);\n`);
    expect((await loadApplication(namedPath)).name).toBe("named");
  });

  test("a missing file", async () => {
    expect(await loadError("./nope/missing_app.ts")).toStartWith("Application module ./nope/missing_app.ts not found");
  });

  test("a default export that is not an application", async () => {
    const msg = await loadError(mod(`export default { hello: "world" };\n`));
    expect(msg).toContain("is not a valid application: not a wallaroo application: kind is missing");
    expect(await loadError(mod(`export default 42;\n`))).toContain("expected an AppSpec object, got number 42");
  });

  test("a pipeline without its sink", async () => {
    expect(await loadError(mod(`export default (api) => api.application("x").source("s", (p) => p);\n`))).toContain(
      "the pipeline has no sink; end it with .toSink(encode)",
    );
  });

  test("no default export", async () => {
    expect(await loadError(mod(`export const x = 1;\n`))).toContain("exports no application");
  });

  test("import errors carry the underlying message", async () => {
    expect(await loadError(mod(`throw new Error("boom at import");\nexport default 1;\n`))).toContain("failed to load: boom at import");
    expect(await loadError(mod(`export default (api) => { throw new Error("boom in factory"); };\n`))).toContain(
      "failed while building its application: boom in factory",
    );
    expect(await loadError(mod(`export default (api) => api.application("x").source("s", (p) => p).toStateful("c", () => ({}), () => null);\n`))).toContain(
      'stateful step "c" needs a keyBy before it',
    );
    expect(await loadError(mod(`export default (;\n`))).toContain("failed to load");
  });

  test("state that cannot migrate is refused at load", async () => {
    const path = mod(
      `class Counter { n = 0; inc() { this.n++; } }\n` +
        `export default (api) => api.application("cls").source("s", (p) => p[0]).keyBy((n) => String(n)).toStateful("count", () => new Counter(), (m, s) => s.inc()).toSink(String);\n`,
    );
    expect(await loadError(path)).toContain('state of step "count" cannot migrate between workers: state is an instance of Counter');
  });

  test("a path with another extension", async () => {
    expect(await loadError("./app.py")).toStartWith('Unknown application "./app.py"');
  });
});
