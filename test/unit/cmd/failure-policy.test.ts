// The worker's one failure policy (cmd/commands/worker.ts) and the hook src/net reports through
// (src/fault.ts). In-process tests use fakes for stderr and exit; the rest spawn real processes,
// because exit codes and uncaught exceptions can only be seen from outside. Every child has a
// deadline and is killed when its test ends.
import { afterEach, describe, expect, test } from "bun:test";
import type { Subprocess } from "bun";
import { join } from "node:path";
import { EXIT_FATAL, FATAL_FLUSH_MS, fatalStop } from "../../../cmd/commands/worker.ts";
import { InvariantError } from "../../../src/assert.ts";
import { fatalLine, reportFault, setFaultHandler } from "../../../src/fault.ts";

const ROOT = join(import.meta.dir, "../../..");
const FIXTURES = join(import.meta.dir, "fixtures");
const DEADLINE_MS = 15_000;

describe("reportFault", () => {
  test("by default rethrows what it is given, so an uncaught fault stays uncaught", () => {
    const err = new InvariantError("x");
    expect(() => reportFault("somewhere", err)).toThrow(err);
  });

  test("goes to the installed handler, and the restore function puts the previous one back", () => {
    const seen: Array<[string, unknown]> = [];
    const restore = setFaultHandler((where, err) => void seen.push([where, err]));
    try {
      reportFault("in a timer", "boom");
      expect(seen).toEqual([["in a timer", "boom"]]);
    } finally {
      restore();
    }
    expect(() => reportFault("after restore", new Error("y"))).toThrow("y");
    expect(seen.length).toBe(1);
  });

  test("fatalLine is `FATAL: <where>: <stack>` on one trailing newline", () => {
    const err = new InvariantError("slot 3 owned twice");
    const line = fatalLine("handling data from 1.2.3.4", err);
    expect(line.startsWith("FATAL: handling data from 1.2.3.4: InvariantError: invariant violated: slot 3 owned twice\n    at ")).toBe(true);
    expect(line.endsWith("\n")).toBe(true);
    expect(fatalLine("w", 42)).toBe("FATAL: w: 42\n");
  });
});

/** A fake process for fatalStop: records what it writes, when it exits and what it halts. */
function fakeIo(opts: { flushNow: boolean }) {
  const events: string[] = [];
  let pendingFlush: (() => void) | undefined;
  let timer: { fn: () => void; ms: number } | undefined;
  const io = {
    write(line: string, done: () => void) {
      events.push(`write ${line}`);
      if (opts.flushNow) done();
      else pendingFlush = done;
    },
    exit(code: number) {
      events.push(`exit ${code}`);
    },
    setTimeout(fn: () => void, ms: number) {
      timer = { fn, ms };
    },
    halt() {
      events.push("halt");
    },
  };
  return { io, events, flush: () => pendingFlush?.(), fireTimer: () => timer?.fn(), timerMs: () => timer?.ms };
}

describe("fatalStop", () => {
  test("halts I/O, writes the FATAL line, and exits 70 once it is flushed", () => {
    const f = fakeIo({ flushNow: false });
    const stop = fatalStop(f.io);
    const err = new InvariantError("epoch went backwards");
    stop("uncaught exception", err);
    expect(f.events).toEqual(["halt", `write ${fatalLine("uncaught exception", err)}`]);
    f.flush();
    expect(f.events.at(-1)).toBe(`exit ${EXIT_FATAL}`);
    expect(EXIT_FATAL).toBe(70);
  });

  test("exits 70 at the flush deadline when stderr never takes the line", () => {
    const f = fakeIo({ flushNow: false });
    fatalStop(f.io)("w", new Error("e"));
    expect(f.events.some((e) => e.startsWith("exit"))).toBe(false);
    expect(f.timerMs()).toBe(FATAL_FLUSH_MS);
    f.fireTimer();
    expect(f.events.at(-1)).toBe("exit 70");
  });

  test("only the first fault is reported: a second one while stopping writes nothing", () => {
    const f = fakeIo({ flushNow: false });
    const stop = fatalStop(f.io);
    stop("first", new Error("a"));
    stop("second", new Error("b"));
    expect(f.events.filter((e) => e.startsWith("write")).length).toBe(1);
    expect(f.events.filter((e) => e === "halt").length).toBe(1);
  });

  test("a flush that completes synchronously exits at once", () => {
    const f = fakeIo({ flushNow: true });
    fatalStop(f.io)("w", new Error("e"));
    expect(f.events.at(-1)).toBe("exit 70");
  });
});

// ---- real processes ----

const children: Subprocess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) c.kill("SIGKILL");
});

interface Ended {
  code: number | null;
  stderr: string;
}

/** A child process whose stderr is collected as it comes, so a test can wait on a line. */
class Child {
  readonly proc: Subprocess<"ignore", "ignore", "pipe">;
  stderr = "";
  private readonly read: Promise<void>;
  private waiter: (() => void) | undefined;

  constructor(readonly cmd: string[]) {
    const proc = Bun.spawn(cmd, { cwd: ROOT, stdin: "ignore", stdout: "ignore", stderr: "pipe" });
    this.proc = proc;
    children.push(proc);
    this.read = (async () => {
      const dec = new TextDecoder();
      for await (const chunk of proc.stderr) {
        this.stderr += dec.decode(chunk, { stream: true });
        this.waiter?.();
      }
      this.waiter?.();
    })();
  }

  /** Resolves with the first match of `re` in stderr; rejects at the deadline or if the child exits first. */
  async waitFor(re: RegExp, ms = DEADLINE_MS): Promise<RegExpMatchArray> {
    const until = performance.now() + ms;
    for (;;) {
      const m = this.stderr.match(re);
      if (m) return m;
      if (this.proc.exitCode !== null) throw new Error(`exited ${this.proc.exitCode} before printing ${re}; stderr: ${this.stderr}`);
      const left = until - performance.now();
      if (left <= 0) throw new Error(`no ${re} within ${ms} ms; stderr: ${this.stderr}`);
      // Woken by the next stderr chunk (or EOF); the timer only bounds the wait.
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiter = () => {
          clearTimeout(t);
          this.waiter = undefined;
          r();
        };
      });
    }
  }

  /** Exit code and all of stderr; kills the child and rejects at the deadline. */
  async ended(ms = DEADLINE_MS): Promise<Ended> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<"late">((r) => (timer = setTimeout(() => r("late"), ms)));
    const code = await Promise.race([this.proc.exited, late]);
    clearTimeout(timer);
    if (code === "late") {
      this.proc.kill("SIGKILL");
      throw new Error(`${this.cmd.join(" ")} still running after ${ms} ms; stderr: ${this.stderr}`);
    }
    await this.read;
    return { code, stderr: this.stderr };
  }
}

const script = (...args: string[]) => new Child([process.execPath, join(FIXTURES, "fault-script.ts"), ...args]).ended();

describe("the failure policy in a real process", () => {
  test("an InvariantError thrown in a timer: exit 70 and a FATAL line", async () => {
    const r = await script("timer");
    expect(r.stderr).toMatch(/^FATAL: uncaught exception: InvariantError: invariant violated: a timer found a slot owned twice\n\s+at /m);
    expect(r.code).toBe(70);
  }, DEADLINE_MS + 5000);

  test("an InvariantError thrown in a socket handler: exit 70 and a FATAL line naming the connection", async () => {
    const r = await script("socket");
    expect(r.stderr).toMatch(/^FATAL: handling data from 127\.0\.0\.1: InvariantError: invariant violated: a socket handler found a slot owned twice\n\s+at /m);
    expect(r.code).toBe(70);
  }, DEADLINE_MS + 5000);

  test("an exception in a microtask and an unhandled rejection: exit 70 and a FATAL line", async () => {
    const [micro, rejection] = await Promise.all([script("microtask"), script("rejection")]);
    expect(micro.stderr).toMatch(/^FATAL: uncaught exception: InvariantError: invariant violated: a microtask found/m);
    expect(micro.code).toBe(70);
    expect(rejection.stderr).toMatch(/^FATAL: unhandled promise rejection: InvariantError: invariant violated: a promise found/m);
    expect(rejection.code).toBe(70);
  }, DEADLINE_MS + 5000);

  test("without the policy (every command but worker) a socket handler's exception is uncaught: Bun's report, not 70", async () => {
    const r = await script("socket", "--no-policy");
    expect(r.stderr).not.toContain("FATAL:");
    expect(r.stderr).toContain("InvariantError: invariant violated: a socket handler found a slot owned twice");
    expect(r.code).toBe(1);
  }, DEADLINE_MS + 5000);

  test("a running `wallaroo worker` whose invariant breaks in a timer exits 70 with a FATAL line", async () => {
    const worker = new Child([
      process.execPath,
      join(ROOT, "cmd/wallaroo.ts"),
      "worker",
      "--application-module",
      join(FIXTURES, "fault-app.ts"),
      "--cluster-initializer",
      "--worker-count",
      "1",
      "--in",
      "127.0.0.1:0",
      "--out",
      "127.0.0.1:1",
      "--control",
      "127.0.0.1:0",
      "--data",
      "127.0.0.1:0",
    ]);
    // The source port comes from the OS; the worker logs it. The fault must come from a running
    // worker, so the frame goes in only once the cluster is ready.
    const port = Number((await worker.waitFor(/source is listening on 127\.0\.0\.1:(\d+)/))[1]);
    await worker.waitFor(/Cluster is ready to work/);
    const sock = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } });
    const payload = new TextEncoder().encode("fault");
    const frame = new Uint8Array(4 + payload.length);
    new DataView(frame.buffer).setUint32(0, payload.length);
    frame.set(payload, 4);
    sock.write(frame);
    const r = await worker.ended();
    sock.end();
    expect(r.stderr).toMatch(/^FATAL: uncaught exception: InvariantError: invariant violated: fault-app was told to break\n\s+at /m);
    expect(r.code).toBe(70);
  }, DEADLINE_MS + 5000);
});
