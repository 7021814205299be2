// An application author with nothing but the binary: in a directory outside the repository (no
// node_modules above it) and with only `wallaroo` on PATH, `wallaroo init` writes an application;
// `check` prints its pipeline; `test` passes, and fails once a bug is written into its step; the
// application runs on a 2-worker cluster with exact outputs; and TypeScript (the repository's, as
// an author would install it) type-checks it against the written wallaroo.d.ts.
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { SAMPLE_DEPOSITS } from "../../src/scaffold/scaffold.ts";
import { Cluster } from "../support/cluster.ts";
import { BIN, HOST, run, type RunResult } from "../support/process.ts";
import { KeepLines } from "../support/receiver.ts";
import { cleanUpAfterEach, receiver } from "./fixtures.ts";

cleanUpAfterEach();

const root = realpathSync(mkdtempSync(join(tmpdir(), "wallaroo-author-")));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const bin = join(root, "bin");
mkdirSync(bin);
symlinkSync(BIN, join(bin, "wallaroo"));
/** The author's whole environment: the binary and nothing else on PATH. */
const env = { PATH: bin, HOME: root };

/** `wallaroo <args>` in `cwd`, found on PATH as an author runs it. */
function wallaroo(args: string[], cwd: string, deadline_ms = 60_000): Promise<RunResult> {
  return run(args, deadline_ms, "wallaroo", { env, cwd });
}

/** A fresh application written by `wallaroo init` in its own directory. */
async function scaffold(dir: string): Promise<string> {
  const r = await wallaroo(["init", dir, "--name", "ledger"], root);
  expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: expect.stringContaining('Wrote application "ledger"') });
  return join(root, dir);
}

const output = (r: RunResult) => `${r.stdout}\n${r.stderr}`;

describe("authoring an application with the binary alone", () => {
  test("the directory has no node_modules above it and the binary is the only command", () => {
    for (let d = root; ; d = dirname(d)) {
      expect(existsSync(join(d, "node_modules"))).toBe(false);
      if (dirname(d) === d) break;
    }
    expect(env.PATH.split(":")).toEqual([bin]);
  });

  test("init writes the application and refuses to overwrite: with one file present it writes none", async () => {
    const app = await scaffold("ledger");
    for (const f of ["app.ts", "app.test.ts", "input.msg", "wallaroo.d.ts", "tsconfig.json", "README.md"]) expect(existsSync(join(app, f))).toBe(true);
    expect(readFileSync(join(app, "app.ts"), "utf8")).toContain('application("ledger")');
    const types = await wallaroo(["types"], root);
    expect(types.code).toBe(0);
    expect(readFileSync(join(app, "wallaroo.d.ts"), "utf8")).toBe(types.stdout);
    // Every value src/index.ts exports is declared (the types are checked by tsc below).
    const block = /declare module "wallaroo" \{[\s\S]*?\n {2}export \{ ([^}]*) \};\n\}/.exec(types.stdout);
    const declared = block![1]!.split(", ").map((n) => n.split(" as ").pop());
    expect(declared).toEqual(expect.arrayContaining(Object.keys(await import("../../src/index.ts"))));

    const other = join(root, "half");
    mkdirSync(other);
    writeFileSync(join(other, "README.md"), "mine\n");
    const again = await wallaroo(["init", "half"], root);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain("already has README.md; wallaroo init writes only new files, so it wrote nothing");
    expect(readFileSync(join(other, "README.md"), "utf8")).toBe("mine\n");
    expect(existsSync(join(other, "app.ts"))).toBe(false);
  }, 60_000);

  test("check prints the pipeline; a module a worker would refuse gives the worker's sentence and exit 2", async () => {
    const app = await scaffold("checked");
    const r = await wallaroo(["check", "--application-module", "app.ts"], app);
    expect(r.code).toBe(0);
    const lines = r.stdout.split("\n").map((l) => l.trim().replace(/ {2,}/g, " | "));
    expect(lines).toContain('application "ledger"');
    expect(lines).toContain('source "deposits" | decoder | initializer only (it alone listens on --in)');
    expect(lines).toContain('1. keyBy "account" | key function | initializer (wherever the message is: still on the initializer)');
    expect(lines).toContain(
      "2. stateful \"balance\" | keyed by \"account\" | any worker: the owner of the key's slot; messages cross to it as the raw frame, decoded again there",
    );
    expect(lines).toContain('sink "sink" | encoder | any worker: the one that produced the output, on its own --out connection');
    expect(lines).toContain("Eligible for shrink: every worker except the initializer (the initializer hosts the source).");

    writeFileSync(join(app, "broken.ts"), 'import { application } from "wallaroo";\nexport default application("ledger").source("in", (p) => p\n');
    const broken = await wallaroo(["check", "--application-module", "broken.ts"], app);
    expect(broken.code).toBe(2);
    expect(broken.stderr).toContain("Application module broken.ts failed to load:");
    const missing = await wallaroo(["check", "--application-module", "nowhere.ts"], app);
    expect({ code: missing.code, stderr: missing.stderr.trim() }).toEqual({ code: 2, stderr: `Application module nowhere.ts not found (looked for ${join(app, "nowhere.ts")})` });
  }, 60_000);

  test("test passes on the application, and fails once its step has a bug", async () => {
    const app = await scaffold("tested");
    const pass = await wallaroo(["test"], app);
    expect({ code: pass.code, output: output(pass) }).toEqual({ code: 0, output: expect.stringContaining(" 3 pass") });
    expect(output(pass)).toContain(" 0 fail");

    // The bug: each deposit replaces the balance instead of adding to it.
    const source = readFileSync(join(app, "app.ts"), "utf8");
    const buggy = source.replace("b.total += d.amount;", "b.total = d.amount;");
    expect(buggy).not.toBe(source);
    writeFileSync(join(app, "app.ts"), buggy);
    const fail = await wallaroo(["test"], app);
    expect(fail.code).not.toBe(0);
    expect(output(fail)).toContain("(fail) ledger > each deposit outputs the account's running balance");
  }, 90_000);

  test("the application runs on a 2-worker cluster as its README says, with exact outputs", async () => {
    const app = await scaffold("clustered");
    const rx = receiver(new KeepLines());
    const c = await new Cluster("app.ts", rx.port, { binary: "wallaroo", env, cwd: app, sourceName: "deposits" }).start(2);
    const sent = await wallaroo(["send", "--to", `${HOST}:${c.sourcePort}`, "--file", "input.msg"], app);
    expect(sent.code).toBe(0);
    await rx.waitLines(SAMPLE_DEPOSITS.length, 20_000);
    await c.shutdown(20_000, rx);

    // Each account's balances, in its deposits' order.
    const expected = new Map<string, string[]>();
    const totals = new Map<string, number>();
    for (const d of SAMPLE_DEPOSITS) {
      const [account, amount] = d.split(" ") as [string, string];
      totals.set(account, (totals.get(account) ?? 0) + Number(amount));
      expected.set(account, [...(expected.get(account) ?? []), `${account} ${totals.get(account)}`]);
    }
    // One connection per worker; an account's lines all come in order on one of them.
    const got = new Map<string, string[]>();
    for (const lines of rx.handler.byConn.values()) {
      const byAccount = new Map<string, string[]>();
      for (const l of lines) byAccount.set(l.split(" ")[0]!, [...(byAccount.get(l.split(" ")[0]!) ?? []), l]);
      for (const [account, seq] of byAccount) {
        expect(got.has(account)).toBe(false);
        got.set(account, seq);
      }
    }
    expect(Object.fromEntries(got)).toEqual(Object.fromEntries(expected));
    // Both workers held accounts: the keyed step really ran on the second one too.
    expect(rx.activeConnections).toBe(2);
  }, 90_000);

  test("TypeScript type-checks the application and its tests against the written wallaroo.d.ts", async () => {
    const app = await scaffold("typed");
    const tsc = [process.execPath, resolve(import.meta.dir, "../../node_modules/typescript/bin/tsc"), "-p", "."];
    const check = async () => {
      const p = Bun.spawn(tsc, { cwd: app, env, stdout: "pipe", stderr: "pipe" });
      const [code, out] = await Promise.all([p.exited, new Response(p.stdout).text()]);
      return { code, out: out.trim() };
    };
    expect(await check()).toEqual({ code: 0, out: "" });
    // The declarations are what is checked against: a call they do not allow is an error.
    writeFileSync(join(app, "wrong.ts"), 'import { testPipeline } from "wallaroo";\ntestPipeline("not an application");\n');
    const wrong = await check();
    expect(wrong.code).not.toBe(0);
    expect(wrong.out).toContain("wrong.ts(2,14): error TS2345");
  }, 90_000);
});
