// The declaration bundler behind `wallaroo types`: only what the exports reach is copied, imports
// are followed (aliases undone), the entry's own `import()` type names the bundle's module, and
// what it cannot bundle faithfully stops the build with a sentence.
import { describe, expect, test } from "bun:test";
import { bundleDeclarations } from "../../../scripts/declarations/bundle.ts";

function bundle(files: Record<string, string>, extra: { only?: string[]; ambient?: string } = {}): string {
  return bundleDeclarations({ moduleName: "lib", entry: "/p/index.d.ts", read: (p) => files[p], ...extra });
}

describe("bundleDeclarations", () => {
  test("copies what the exports reach, across files, with doc comments; nothing else", () => {
    const out = bundle({
      "/p/index.d.ts": 'export { make } from "./a.ts";\nexport type { Thing } from "./b.ts";\nexport type Api = typeof import("./index.ts");\n',
      "/p/a.d.ts": [
        'import type { Thing as T } from "./b.ts";',
        "/** Makes a thing. */",
        "export declare function make<Unused>(x: Unused): T;",
        "export declare function helper(): void;",
      ].join("\n"),
      "/p/b.d.ts": "export interface Thing {\n    part: Part;\n}\ninterface Part {\n    n: number;\n}\nexport interface Unused {\n}\nexport declare const other = 1;\n",
    });
    expect(out).toBe(
      [
        'declare module "lib" {',
        '  type Api = typeof import("lib");',
        "  /** Makes a thing. */",
        "  function make<Unused>(x: Unused): Thing;",
        "  interface Thing {",
        "      part: Part;",
        "  }",
        "  interface Part {",
        "      n: number;",
        "  }",
        "  export { make, Thing, Api };",
        "}",
        "",
      ].join("\n"),
    );
  });

  test("an ambient module's block is a scope; a renamed export keeps its name; type parameters shadow", () => {
    const out = bundle(
      {
        "/p/index.d.ts": 'declare module "x" {\n  export function test<Hidden>(name: Hidden): void;\n  export { test as it };\n  export function other(): Hidden;\n  interface Hidden {}\n}\n',
      },
      { ambient: "x", only: ["it"] },
    );
    expect(out).toBe('declare module "lib" {\n  function test<Hidden>(name: Hidden): void;\n  export { test as it };\n}\n');
  });

  test("two declarations of one name, a package import, or an import() of another file stop the bundle", () => {
    expect(() =>
      bundle({
        "/p/index.d.ts": 'export { A } from "./a.ts";\nexport { B } from "./b.ts";\n',
        "/p/a.d.ts": 'import type { X as Y } from "./b.ts";\nexport interface X {}\nexport interface A { x: X; y: Y }\n',
        "/p/b.d.ts": "export interface X {}\nexport interface B {}\n",
      }),
    ).toThrow('two declarations named "X" are needed (/p/a.d.ts and /p/b.d.ts): rename one');
    expect(() => bundle({ "/p/index.d.ts": 'import type { Logger } from "consola";\nexport declare const log: Logger;\n' })).toThrow(
      'imports "consola": the public declarations may only reach this repository\'s own files',
    );
    expect(() => bundle({ "/p/index.d.ts": 'export type T = import("./b.ts").B;\n', "/p/b.d.ts": "export interface B {}\n" })).toThrow(
      "is not supported by the declaration bundler",
    );
  });
});
