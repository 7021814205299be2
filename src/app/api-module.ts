// The module specifier "wallaroo": an application module may `import { application } from
// "wallaroo"` although no such package exists next to it. The binary answers the import with its
// own copy of the public API, so the module shares the binary's code instead of bundling another
// (see DESIGN §1 on copies). `wallaroo test` answers it the same way in the test runner
// (cmd/commands/_test-preload.ts); `wallaroo types` declares it (`declare module "wallaroo"`).
import * as api from "../index.ts";

/** The specifier application modules and their tests import the API from. */
export const API_MODULE = "wallaroo";

let registered = false;

/** Makes `import … from "wallaroo"` resolve to this binary's API in modules imported from now on. */
export function registerApiModule(): void {
  if (registered) return;
  registered = true;
  Bun.plugin({
    name: "wallaroo api module",
    setup(build) {
      build.module(API_MODULE, () => ({ exports: api as unknown as Record<string, unknown>, loader: "object" }));
    },
  });
}
