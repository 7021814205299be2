// The preload `wallaroo test` gives the test runner: it answers `import … from "wallaroo"` with
// the API module at `apiPath`, as a worker answers it for an application module
// (src/app/api-module.ts), so an application and its tests share one copy of the API.
import { API_MODULE } from "../../src/app/api-module.ts";

/** Source of the preload module. */
export function testPreload(apiPath: string): string {
  return [
    `import * as api from ${JSON.stringify(apiPath)};`,
    // A test that starts the binary (a worker, say) must get wallaroo, not Bun.
    `delete process.env.BUN_BE_BUN;`,
    `Bun.plugin({`,
    `  name: "wallaroo api module",`,
    `  setup(build) {`,
    `    build.module(${JSON.stringify(API_MODULE)}, () => ({ exports: api, loader: "object" }));`,
    `  },`,
    `});`,
    ``,
  ].join("\n");
}
