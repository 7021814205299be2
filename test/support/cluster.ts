// A cluster of real `dist/wallaroo` worker processes on 127.0.0.1, for the e2e tests, the
// benchmarks and the demo: form it, grow and shrink it, ask any worker over its external channel,
// shut it down. Every worker listens on port 0 and we read the port the OS gave from its
// `listening` log line: a port picked in advance can be taken by someone else before the worker
// binds it. An event is over when every member's status answer says so, never after a pause.
import { join } from "node:path";
import { EXTERNAL_MSG, parseClusterStatus, type ClusterStatus } from "../../src/codec/external.ts";
import { externalRequest } from "../../src/net/external-client.ts";
import { assertRunning, BIN, Child, HOST, run, wallaroo, type RunResult } from "./process.ts";
import type { Receiver } from "./receiver.ts";
import { poll } from "./wait.ts";

export interface Member {
  name: string;
  child: Child;
  control: number;
  external: number;
  /** Its --metrics port (0 unless the cluster runs with `metrics`). */
  metrics: number;
}

export interface ClusterOptions {
  /** The executable (a bench runs a private copy); default dist/wallaroo. */
  binary?: string;
  /** Each worker's stderr and stdout also go to `<logDir>/<name>.log`. */
  logDir?: string;
  /** Extra flags for every worker; the log level must stay at info or above for the port lines. */
  extraArgs?: string[];
  /** Extra flags for the harness's own `wallaroo shrink` and `shutdown` (a cluster secret). */
  toolArgs?: string[];
  /** The workers' external channels speak TLS: the harness's own queries verify them with this. */
  externalTls?: ExternalTls;
  /**
   * Fixed ports for the initializer's control, data and source listeners instead of 0: a
   * restarted initializer must listen where the members and the producers find it again.
   */
  initializerPorts?: { control: number; data: number; source: number };
  /** Every worker serves --metrics on a port from the OS (Member.metrics). */
  metrics?: boolean;
  /** The source's name in `--in` (default: the application's). */
  sourceName?: string;
  /** Every worker's whole environment and working directory (default: ours). */
  env?: Record<string, string>;
  cwd?: string;
}

/** The log lines that carry the ports a worker was given. */
const LOGGED_PORT = {
  control: /control: listening on \S+:(\d+);/,
  external: /external: listening on \S+:(\d+)/,
  source: /source is listening on \S+:(\d+)/,
  metrics: /metrics: listening on \S+:(\d+)/,
} as const;

export const INITIALIZED = "Application has successfully initialized.";
const STARTUP_DEADLINE_MS = 15_000;

/** The port `child` logged for `what`. */
export async function loggedPort(child: Child, what: keyof typeof LOGGED_PORT, deadline_ms = STARTUP_DEADLINE_MS): Promise<number> {
  return Number((await child.waitForLog(LOGGED_PORT[what], deadline_ms))[1]);
}

/** How the harness reaches external channels: over TLS, with this authority. */
export type ExternalTls = { ca: string } | undefined;

/** One request on a worker's external channel; null when the worker answers nothing. */
export async function ask(port: number, type: number, payload = "", timeout_ms = 3000, tls?: ExternalTls): Promise<{ type: number; payload: string } | null> {
  return externalRequest({ host: HOST, port }, type, payload, { expectReply: true, timeoutMs: timeout_ms, tls });
}

/** A worker's status answer, or undefined while it is not initialized. */
export async function statusAt(port: number, timeout_ms = 3000, tls?: ExternalTls): Promise<ClusterStatus | undefined> {
  const r = await ask(port, EXTERNAL_MSG.ClusterStatusQuery, "", timeout_ms, tls);
  if (!r || r.type !== EXTERNAL_MSG.ClusterStatusQueryResponse) return undefined;
  return parseClusterStatus(r.payload) ?? undefined;
}

/** Every key a worker holds, over all its state stages. */
export async function keysAt(port: number, tls?: ExternalTls): Promise<string[]> {
  const r = await ask(port, EXTERNAL_MSG.StateEntityQuery, "", 3000, tls);
  if (!r) throw new Error(`no key answer from the worker at ${port}`);
  return Object.values(JSON.parse(r.payload) as Record<string, string[]>).flat();
}

/** The same worker names, in any order. */
export const sameNames = (a: readonly string[], b: readonly string[]) => [...a].sort().join(",") === [...b].sort().join(",");

export class Cluster {
  readonly members = new Map<string, Member>();
  initializer!: Member;
  sourcePort = 0;
  readonly binary: string;
  /** Times each member was restarted. */
  private readonly restarts = new Map<string, number>();

  constructor(
    readonly app: string,
    /** Where every worker's sink connects (a Receiver's port). */
    readonly sinkPort: number,
    readonly opts: ClusterOptions = {},
  ) {
    this.binary = opts.binary ?? BIN;
  }

  private spawn(name: string, args: string[], sinkPort = this.sinkPort): Child {
    const logPath = this.opts.logDir ? join(this.opts.logDir, `${name}.log`) : undefined;
    const metrics = this.opts.metrics ? ["--metrics", `${HOST}:0`] : [];
    return wallaroo(name, ["worker", "--application-module", this.app, "--out", `${HOST}:${sinkPort}`, ...metrics, ...args, ...(this.opts.extraArgs ?? [])], {
      binary: this.binary,
      logPath,
      env: this.opts.env,
      cwd: this.opts.cwd,
    });
  }

  /** The ports a member just spawned logged (its metrics port only when the cluster serves them). */
  private async member(name: string, child: Child): Promise<Member> {
    return {
      name,
      child,
      control: await loggedPort(child, "control"),
      external: await loggedPort(child, "external"),
      metrics: this.opts.metrics ? await loggedPort(child, "metrics") : 0,
    };
  }

  /** Runs `wallaroo <args>` with this cluster's binary. */
  run(args: string[], deadline_ms = 20_000): Promise<RunResult> {
    return run(args, deadline_ms, this.binary, { env: this.opts.env, cwd: this.opts.cwd });
  }

  /** Forms a cluster of `n`: the initializer and w1 … w(n−1); returns once every member reports all of them. */
  async start(n: number, deadline_ms = 30_000): Promise<this> {
    const init = await this.startInitializer(n);
    for (let i = 1; i < n; i++) {
      const w = await this.spawnWorker(`w${i}`, ["--control", `${HOST}:${init.control}`]);
      this.members.set(w.name, w);
    }
    await init.child.waitForLog(INITIALIZED, deadline_ms);
    await this.waitMembership([...this.members.keys()], deadline_ms);
    return this;
  }

  /** An initializer expecting `n` workers; returns once it listens (formation goes on). */
  async startInitializer(n: number): Promise<Member> {
    const fixed = this.opts.initializerPorts;
    const child = this.spawn("initializer", [
      "--in", `${this.opts.sourceName ?? this.app}@${HOST}:${fixed?.source ?? 0}`,
      "--control", `${HOST}:${fixed?.control ?? 0}`,
      "--data", `${HOST}:${fixed?.data ?? 0}`,
      "--external", `${HOST}:0`,
      "--cluster-initializer",
      "--worker-count", String(n),
    ]);
    const init = await this.member("initializer", child);
    this.sourcePort = await loggedPort(child, "source");
    this.initializer = init;
    this.members.set(init.name, init);
    return init;
  }

  /**
   * A worker with its own ports from the OS; returns once it listens (it may exit later). Not yet
   * a member. Its sink connects to `sinkPort` (default: the cluster's receiver).
   */
  async spawnWorker(name: string, how: string[], sinkPort = this.sinkPort): Promise<Member> {
    const child = this.spawn(name, ["--my-control", `${HOST}:0`, "--external", `${HOST}:0`, "--name", name, ...how], sinkPort);
    return this.member(name, child);
  }

  /**
   * Starts member `name` again with exactly the command line it was started with (a crashed
   * worker recovering from its resilience files) once the old process has exited; returns once it
   * listens, with the ports the OS gave it this time. It replaces the old process in `members`.
   */
  async restart(name: string): Promise<Member> {
    const old = this.members.get(name);
    if (!old) throw new Error(`no member ${name} to restart`);
    // Its ports (and, for a member, its name at the initializer) are free only once it is gone.
    await old.child.waitExit(5000);
    const n = (this.restarts.get(name) ?? 0) + 1;
    this.restarts.set(name, n);
    // A log of its own: the first process's log is kept.
    const logPath = this.opts.logDir ? join(this.opts.logDir, `${name}.restart${n}.log`) : undefined;
    const child = new Child(name, old.child.cmd, { logPath, env: this.opts.env, cwd: this.opts.cwd });
    const m = await this.member(name, child);
    if (name === this.initializer.name) {
      this.sourcePort = await loggedPort(child, "source");
      this.initializer = m;
    }
    this.members.set(name, m);
    return m;
  }

  /** Starts joiners through `via` (any member), `--worker-count count` when joining together; does not wait. */
  async spawnJoiners(names: string[], via: Member = this.initializer, count = names.length): Promise<Member[]> {
    return Promise.all(
      names.map((n) => {
        const args = ["--join", `${HOST}:${via.control}`];
        if (count !== 1) args.push("--worker-count", String(count));
        return this.spawnWorker(n, args);
      }),
    );
  }

  /** Joins workers through `via` and waits until every member reports the new membership. */
  async grow(names: string[], via: Member = this.initializer, deadline_ms = 30_000): Promise<Member[]> {
    const joiners = await this.spawnJoiners(names, via);
    for (const j of joiners) this.members.set(j.name, j);
    await this.waitMembership([...this.members.keys()], deadline_ms);
    return joiners;
  }

  /**
   * `wallaroo shrink <args>` through `via`. When accepted: waits for the membership to lose the
   * leavers, for each leaver to exit 0, and for every remaining member to agree.
   */
  async shrink(args: string[], via: Member = this.initializer, deadline_ms = 30_000): Promise<RunResult & { leavers: string[] }> {
    const before = (await this.status(this.initializer))!.worker_names;
    const r = await this.run(["shrink", "--external", `${HOST}:${via.external}`, ...args, ...(this.opts.toolArgs ?? [])]);
    if (r.code !== 0) return { ...r, leavers: [] };
    const after = await poll("the shrink to take effect", deadline_ms, async () => {
      const s = await this.status(this.initializer);
      return s && s.worker_names.length < before.length ? s.worker_names : undefined;
    });
    const leavers = before.filter((n) => !after.includes(n));
    for (const n of leavers) {
      const leaver = this.members.get(n)!;
      const code = await leaver.child.waitExit(deadline_ms);
      if (code !== 0) throw new Error(`leaver ${n} exited ${code}\n${leaver.child.tail()}`);
      this.members.delete(n);
    }
    await this.waitMembership([...this.members.keys()], deadline_ms);
    return { ...r, leavers };
  }

  /** A member's status answer; undefined while it is not initialized or does not answer. */
  async status(m: Member | string, timeout_ms = 3000): Promise<ClusterStatus | undefined> {
    const member = typeof m === "string" ? this.members.get(m) : m;
    if (!member) return undefined;
    return statusAt(member.external, timeout_ms, this.opts.externalTls).catch(() => undefined);
  }

  /** True when each of `names` reports exactly `names` and is processing; `agreed` collects those that do. */
  async membershipIs(names: readonly string[], agreed?: Set<string>): Promise<boolean> {
    const all = await Promise.all(names.map((n) => this.status(n)));
    const ok = all.map((s) => s !== undefined && s.processing_messages && s.worker_count === names.length && sameNames(s.worker_names, names));
    ok.forEach((y, i) => y && agreed?.add(names[i]!));
    return ok.every((y) => y);
  }

  /** Waits until every live member's status lists exactly `names` (in any order); fails early if a member dies. */
  async waitMembership(names: readonly string[], deadline_ms = 20_000): Promise<void> {
    await poll(`membership ${[...names].sort().join(",")} on every worker`, deadline_ms, () => this.membershipIs(names), {
      every_ms: 50,
      abort: () => assertRunning(names.flatMap((n) => this.members.get(n)?.child ?? [])),
    }).catch((err: Error) => {
      throw new Error(`${err.message}\n${[...this.members.values()].map((w) => w.child.tail(w.name === "initializer" ? 40 : 12)).join("\n")}`);
    });
  }

  /** Which worker holds each key; `problems` lists every key held twice. */
  async keyOwners(): Promise<{ owners: Map<string, string>; problems: string[] }> {
    const owners = new Map<string, string>();
    const problems: string[] = [];
    for (const w of this.members.values()) {
      for (const k of await keysAt(w.external, this.opts.externalTls)) {
        const prev = owners.get(k);
        if (prev) problems.push(`key ${k} on both ${prev} and ${w.name}`);
        owners.set(k, w.name);
      }
    }
    return { owners, problems };
  }

  /**
   * `wallaroo shutdown` through the initializer; every member must exit 0 within the deadline.
   * Whoever has not is killed, and the failure names them. With `receiver`, also waits for EOF
   * on every sink connection.
   */
  async shutdown(deadline_ms = 20_000, receiver?: Receiver): Promise<void> {
    const r = await this.run(["shutdown", "--external", `${HOST}:${this.initializer.external}`, ...(this.opts.toolArgs ?? [])]);
    const failures: string[] = r.code === 0 ? [] : [`wallaroo shutdown exited ${r.code}: ${r.stderr.trim()}`];
    await Promise.all(
      [...this.members.values()].map(async (w) => {
        const code = await w.child.waitExit(deadline_ms).catch(() => null);
        if (code === null) w.child.kill("SIGKILL");
        if (code !== 0) failures.push(`${w.name} ${code === null ? `did not exit within ${deadline_ms} ms` : `exited ${code}`} on shutdown\n${w.child.tail(12)}`);
      }),
    );
    if (failures.length > 0) throw new Error(failures.join("\n"));
    // Each worker closes its sink connection after flushing it: EOF on all of them means every
    // output there will ever be has arrived, so a check after this can see a late duplicate.
    await receiver?.waitAllClosed(deadline_ms);
  }

  kill(): void {
    for (const m of this.members.values()) m.child.kill("SIGKILL");
  }
}
