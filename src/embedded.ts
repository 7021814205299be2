// What scripts/build.ts bakes into the binary with `define`, besides the version: the declarations
// `wallaroo types` prints and `wallaroo init` writes, and the public API bundled into one ES module,
// which `wallaroo test` hands the test runner (a child process of the binary acting as Bun, which
// cannot read the binary's own modules). Running from source neither exists.
import { WallarooError } from "./errors.ts";

declare const WALLAROO_DECLARATIONS: string | undefined;
declare const WALLAROO_API_BUNDLE: string | undefined;

const FROM_SOURCE = "this wallaroo runs from source; `npm run build` makes them (scripts/build.ts): use dist/wallaroo";

/** The text of wallaroo.d.ts. */
export function embeddedDeclarations(): string {
  if (typeof WALLAROO_DECLARATIONS !== "string") throw new WallarooError(`No TypeScript declarations are embedded: ${FROM_SOURCE}.`);
  return WALLAROO_DECLARATIONS;
}

/** src/index.ts bundled with everything it imports, as ES module source; undefined when running from source. */
export function embeddedApiBundle(): string | undefined {
  return typeof WALLAROO_API_BUNDLE === "string" ? WALLAROO_API_BUNDLE : undefined;
}
