// `wallaroo test [FILES…]`: runs an application's bun:test files with the binary alone. A
// `bun build --compile` executable started with BUN_BE_BUN=1 acts as the Bun CLI, so the binary
// runs itself as `bun test`, with a preload that makes `import { testPipeline } from "wallaroo"`
// (and the application's own imports of "wallaroo") resolve to the API. The child cannot read the
// binary's embedded modules, so the API, bundled at build time (src/embedded.ts), is written to a
// temporary directory for the run. Arguments are bun test's: files or path filters, and its flags.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { defineCommand } from "citty";
import { embeddedApiBundle } from "../../src/embedded.ts";
import { testPreload } from "./_test-preload.ts";

const args = {
  files: {
    type: "positional",
    required: false,
    description: "test files or path filters (default: every *.test.ts below this directory); bun test's flags pass through (--timeout, -t pattern, --watch…)",
    valueHint: "files…",
  },
} as const;

const FORWARDED_SIGNALS = ["SIGINT", "SIGTERM"] as const;

export default defineCommand({
  meta: { name: "test", description: "Run an application's bun:test files (with testPipeline from \"wallaroo\") using this binary alone" },
  args,
  async run({ rawArgs }) {
    let child: ReturnType<typeof Bun.spawn> | undefined;
    const handlers = FORWARDED_SIGNALS.map((sig) => [sig, () => void child?.kill(sig)] as const);
    const dir = mkdtempSync(join(tmpdir(), "wallaroo-test-"));
    try {
      const bundle = embeddedApiBundle();
      // From source (no bundle embedded) the runner imports the repository's API directly.
      let apiPath = resolve(import.meta.dir, "../../src/index.ts");
      if (bundle !== undefined) {
        apiPath = join(dir, "wallaroo.js");
        writeFileSync(apiPath, bundle);
      }
      const preload = join(dir, "preload.js");
      writeFileSync(preload, testPreload(apiPath));
      for (const [sig, h] of handlers) process.on(sig, h);
      child = Bun.spawn([process.execPath, "test", "--preload", preload, ...rawArgs], {
        env: { ...process.env, BUN_BE_BUN: "1" },
        stdio: ["inherit", "inherit", "inherit"],
      });
      const code = await child.exited;
      return child.signalCode ? 1 : code;
    } finally {
      for (const [sig, h] of handlers) process.off(sig, h);
      rmSync(dir, { recursive: true, force: true });
    }
  },
});
