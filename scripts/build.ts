// `npm run build`: compiles cmd/wallaroo.ts into the single executable dist/wallaroo.
// bunfig.toml and .env files are not autoloaded by the shipped binary (an operator's working
// directory must not change how a worker behaves); the version is baked in with --define.
import pkg from "../package.json" with { type: "json" };

const args = [
  "build",
  "--compile",
  "--no-compile-autoload-bunfig",
  "--no-compile-autoload-dotenv",
  `--define=WALLAROO_VERSION=${JSON.stringify(pkg.version)}`,
  "cmd/wallaroo.ts",
  "--outfile",
  "dist/wallaroo",
];
const proc = Bun.spawnSync([process.execPath, ...args], { stdout: "inherit", stderr: "inherit" });
if (proc.exitCode !== 0) {
  console.error(`build failed (bun build exited ${proc.exitCode})`);
  process.exit(1);
}
