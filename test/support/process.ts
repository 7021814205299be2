// Child processes for the e2e tests, the benchmarks and the demo: stderr kept line by line (and
// teed to a log file when asked), waits on a log line or an exit that end on the event itself and
// always have a deadline, and a registry so that every child is killed at the end — after a test,
// on the bench's or the demo's exit, on SIGINT/SIGTERM — whatever path led there.
import type { Subprocess } from "bun";
import { resolve } from "node:path";
import { Conditions, withDeadline } from "./wait.ts";

export const HOST = "127.0.0.1";
/** The binary under test; WALLAROO_BINARY points the harness at another build. */
export const BIN = process.env.WALLAROO_BINARY ?? resolve(import.meta.dir, "../../dist/wallaroo");

const live = new Set<Child>();
const exitListeners: ((c: Child) => void)[] = [];
let exitHooked = false;

/** Children still running (a bench reads their CPU time from /proc). */
export function liveChildren(): ReadonlySet<Child> {
  return live;
}

/** Called once per child when it has exited (a bench adds up their CPU time). */
export function onChildExit(listener: (c: Child) => void): void {
  exitListeners.push(listener);
}

function hookExit(): void {
  if (exitHooked) return;
  exitHooked = true;
  // Last resort: whatever path the process leaves by, no child outlives it.
  process.on("exit", () => {
    for (const c of live) c.kill("SIGKILL");
  });
}

export interface SpawnOptions {
  /** Tee stdout and stderr (stdout lines prefixed) to this file. */
  logPath?: string;
  /** The child's whole environment (default: ours); NO_COLOR=1 is always added. */
  env?: Record<string, string>;
  /** The child's working directory (default: ours). */
  cwd?: string;
}

/** A spawned process whose stderr lines and stdout text are kept for waits and failure reports. */
export class Child {
  readonly proc: Subprocess<"ignore", "pipe", "pipe">;
  readonly lines: string[] = [];
  stdout = "";
  exitCode: number | null = null;
  readonly exited: Promise<number>;
  private readonly changes = new Conditions();
  private readonly log: ReturnType<ReturnType<typeof Bun.file>["writer"]> | undefined;

  constructor(
    readonly name: string,
    readonly cmd: string[],
    opts: SpawnOptions = {},
  ) {
    hookExit();
    if (opts.logPath) {
      this.log = Bun.file(opts.logPath).writer();
      this.log.write(`$ ${cmd.join(" ")}\n`);
    }
    this.proc = Bun.spawn(cmd, { stdin: "ignore", stdout: "pipe", stderr: "pipe", cwd: opts.cwd, env: { ...(opts.env ?? process.env), NO_COLOR: "1" } });
    live.add(this);
    const err = this.pump(this.proc.stderr, (line) => {
      this.lines.push(line);
      this.log?.write(line + "\n");
      this.changes.changed();
    });
    const out = this.pump(this.proc.stdout, (line) => {
      this.stdout += line + "\n";
      this.log?.write(`[stdout] ${line}\n`);
    });
    this.exited = this.proc.exited.then(async (code) => {
      // Every line the child wrote is in before anyone sees it exit.
      await Promise.allSettled([err, out]);
      await this.log?.end();
      this.exitCode = code;
      live.delete(this);
      for (const l of exitListeners) l(this);
      this.changes.changed();
      return code;
    });
  }

  get pid(): number {
    return this.proc.pid;
  }

  /** Everything the child wrote on stderr so far. */
  get stderr(): string {
    return this.lines.join("\n");
  }

  private async pump(stream: ReadableStream<Uint8Array>, onLine: (line: string) => void): Promise<void> {
    const dec = new TextDecoder();
    let carry = "";
    for await (const chunk of stream) {
      const parts = (carry + dec.decode(chunk, { stream: true })).split("\n");
      carry = parts.pop()!;
      for (const line of parts) onLine(line);
    }
    if (carry) onLine(carry);
  }

  /** The first stderr line from index `from` on matching `pattern`. */
  find(pattern: RegExp | string, from = 0): RegExpMatchArray | null {
    for (let i = from; i < this.lines.length; i++) {
      const line = this.lines[i]!;
      if (typeof pattern === "string") {
        if (line.includes(pattern)) return [pattern] as RegExpMatchArray;
      } else {
        const m = line.match(pattern);
        if (m) return m;
      }
    }
    return null;
  }

  /**
   * Waits for a stderr line (from index `from` on) matching `pattern`. Fails as soon as the child
   * exits without having logged it, and at the deadline, with the child's last lines.
   */
  async waitForLog(pattern: RegExp | string, deadline_ms = 15_000, from = 0): Promise<RegExpMatchArray> {
    const seen: { match: RegExpMatchArray | null; scanned: number } = { match: null, scanned: from };
    const test = (): boolean => {
      // Each line is looked at once, however long the child talks before the match.
      seen.match = this.find(pattern, seen.scanned);
      seen.scanned = this.lines.length;
      return seen.match !== null || this.exitCode !== null;
    };
    await this.changes.until(
      test,
      deadline_ms,
      `${this.name} to log ${pattern}`,
      () => this.tail(),
    );
    if (!seen.match) throw new Error(`${this.name} exited with ${this.exitCode} before logging ${pattern}\n${this.tail()}`);
    return seen.match;
  }

  /** The exit code, once the child exits by itself within `deadline_ms`. */
  async waitExit(deadline_ms = 15_000): Promise<number> {
    return withDeadline(this.exited, deadline_ms, `${this.name} to exit`).catch((err: Error) => {
      throw new Error(`${err.message}\n${this.tail()}`);
    });
  }

  kill(sig: NodeJS.Signals = "SIGKILL"): void {
    if (this.exitCode !== null) return;
    try {
      this.proc.kill(sig);
    } catch {
      // already gone
    }
  }

  /** SIGTERM, then SIGKILL if it is still there after `grace_ms`. */
  async stop(grace_ms = 3000): Promise<number> {
    if (this.exitCode !== null) return this.exitCode;
    this.kill("SIGTERM");
    try {
      return await withDeadline(this.exited, grace_ms, `${this.name} to exit`);
    } catch {
      this.kill("SIGKILL");
      return await this.exited;
    }
  }

  tail(n = 30): string {
    return `--- ${this.name} stderr (last ${n} lines) ---\n` + this.lines.slice(-n).join("\n");
  }
}

/** A `wallaroo <args>` child. */
export function wallaroo(name: string, args: string[], opts: SpawnOptions & { binary?: string } = {}): Child {
  return new Child(name, [opts.binary ?? BIN, ...args], opts);
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs `wallaroo <args>` (query, shrink, shutdown, send) to completion; killed and failed at the deadline. */
export async function run(args: string[], deadline_ms = 20_000, binary = BIN, opts: SpawnOptions = {}): Promise<RunResult> {
  const t0 = performance.now();
  const c = wallaroo(`wallaroo ${args[0]}`, args, { ...opts, binary });
  try {
    const code = await c.waitExit(deadline_ms);
    return { code, stdout: c.stdout, stderr: c.stderr, ms: performance.now() - t0 };
  } finally {
    c.kill("SIGKILL");
  }
}

/** Kills every child still running (SIGKILL) and waits until each has gone. */
export async function killAll(): Promise<void> {
  const procs = [...live];
  for (const p of procs) p.kill("SIGKILL");
  await Promise.allSettled(procs.map((p) => p.exited));
}

/** SIGTERM to every child still running, SIGKILL after `grace_ms`. */
export async function stopAll(grace_ms = 2000): Promise<void> {
  await Promise.all([...live].map((c) => c.stop(grace_ms)));
}

/** Throws, with its last lines, if one of `children` has exited (a wait on the others is pointless then). */
export function assertRunning(children: Iterable<Child>): void {
  for (const c of children) if (c.exitCode !== null) throw new Error(`${c.name} exited with ${c.exitCode}\n${c.tail(15)}`);
}

/** The last lines of every child still running, for a failure report. */
export function dumpLogs(lines = 30): string {
  return [...live].map((p) => p.tail(lines)).join("\n");
}
