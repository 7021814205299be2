// The files `wallaroo init` writes: a small working application (a keyed, stateful pipeline with a
// decoder and an encoder), its tests, sample input, the API's declarations, a tsconfig.json that
// uses them, and a README with the commands to test it and to run it on a 2-worker cluster.
// The templates are the .txt files beside this one; `__NAME__` becomes the application's name.
import { frame } from "../index.ts";
import app from "./app.ts.txt" with { type: "text" };
import appTest from "./app.test.ts.txt" with { type: "text" };
import readme from "./README.md.txt" with { type: "text" };
import tsconfig from "./tsconfig.json.txt" with { type: "text" };

/** The deposits in input.msg, one payload each (the README shows the balances they give). */
export const SAMPLE_DEPOSITS = [
  "alice 5",
  "bob 3",
  "frank 10",
  "alice 2",
  "grace 7",
  "carol 4",
  "bob -1",
  "frank 5",
  "alice 1",
  "grace 3",
  "carol 6",
  "bob 2",
] as const;

export interface ScaffoldFile {
  /** Relative to the application's directory. */
  readonly path: string;
  readonly content: string | Uint8Array;
}

/** The files of a new application named `name`, given the declarations to write as wallaroo.d.ts. */
export function scaffoldFiles(name: string, declarations: string): ScaffoldFile[] {
  const named = (template: string) => template.replaceAll("__NAME__", name);
  return [
    { path: "app.ts", content: named(app) },
    { path: "app.test.ts", content: named(appTest) },
    { path: "input.msg", content: Buffer.concat(SAMPLE_DEPOSITS.map((d) => frame(d))) },
    { path: "wallaroo.d.ts", content: declarations },
    { path: "tsconfig.json", content: tsconfig },
    { path: "README.md", content: named(readme) },
  ];
}
