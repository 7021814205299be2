// A cluster of real worker processes for the e2e tests, with helpers to grow, shrink and query it.
import { EXTERNAL_MSG, parseClusterStatus, type ClusterStatus } from "../../src/codec/external.ts";
import { externalRequest } from "../../src/net/external-client.ts";
import { HOST, Proc, cli, waitFor, type Receiver } from "./harness.ts";

export interface WorkerHandle {
  name: string;
  proc: Proc;
  control: number;
  external: number;
}

/**
 * Every process listens on port 0 and the test reads the port the OS gave from its log: a port
 * picked in advance can be taken by someone else before the worker binds it.
 */
const LOGGED_PORT = {
  control: /control: listening on \S+:(\d+);/,
  external: /external: listening on \S+:(\d+)/,
  source: /source is listening on \S+:(\d+)/,
} as const;

export async function loggedPort(proc: Proc, what: keyof typeof LOGGED_PORT): Promise<number> {
  const re = LOGGED_PORT[what];
  await proc.waitForLog(re);
  return Number(re.exec(proc.stderr)![1]);
}

/** An initializer expecting `n` workers, with its ports read from its log. */
export async function startInitializer(app: string, rx: Receiver, n: number, extraArgs: string[] = []): Promise<WorkerHandle & { sourcePort: number }> {
  const proc = new Proc("initializer", [
    "worker",
    "--application-module", app,
    "--in", `${app}@${HOST}:0`,
    "--out", `${HOST}:${rx.port}`,
    "--control", `${HOST}:0`,
    "--data", `${HOST}:0`,
    "--external", `${HOST}:0`,
    "--cluster-initializer",
    "--worker-count", String(n),
    ...extraArgs,
  ]);
  const control = await loggedPort(proc, "control");
  const external = await loggedPort(proc, "external");
  const sourcePort = await loggedPort(proc, "source");
  return { name: "initializer", proc, control, external, sourcePort };
}

export async function ask(port: number, type: number, payload = ""): Promise<{ type: number; payload: string } | null> {
  return externalRequest({ host: HOST, port }, type, payload, { expectReply: true, timeoutMs: 3000 });
}

export async function statusOf(w: WorkerHandle): Promise<ClusterStatus | undefined> {
  const r = await ask(w.external, EXTERNAL_MSG.ClusterStatusQuery);
  if (!r || r.type !== EXTERNAL_MSG.ClusterStatusQueryResponse) return undefined;
  return parseClusterStatus(r.payload) ?? undefined;
}

export async function keysOf(w: WorkerHandle): Promise<string[]> {
  const r = await ask(w.external, EXTERNAL_MSG.StateEntityQuery);
  if (!r) throw new Error(`no key answer from ${w.name}`);
  const obj = JSON.parse(r.payload) as Record<string, string[]>;
  return Object.values(obj).flat();
}

export class Cluster {
  readonly members = new Map<string, WorkerHandle>();
  initializer!: WorkerHandle;
  sourcePort = 0;

  constructor(
    readonly app: string,
    readonly rx: Receiver,
    readonly extraArgs: string[] = [],
  ) {}

  async start(n: number): Promise<void> {
    const init = await startInitializer(this.app, this.rx, n, this.extraArgs);
    this.sourcePort = init.sourcePort;
    this.initializer = init;
    this.members.set("initializer", init);
    for (let i = 1; i < n; i++) {
      const w = await this.spawnWorker(`w${i}`, ["--control", `${HOST}:${init.control}`]);
      this.members.set(w.name, w);
    }
    await init.proc.waitForLog("Application has successfully initialized.", 20_000);
    await this.waitMembership([...this.members.keys()]);
  }

  /** A worker with its own ports from the OS; returns once it listens (it may exit later). */
  async spawnWorker(name: string, how: string[]): Promise<WorkerHandle> {
    const proc = new Proc(name, [
      "worker",
      "--application-module", this.app,
      "--out", `${HOST}:${this.rx.port}`,
      "--my-control", `${HOST}:0`,
      "--external", `${HOST}:0`,
      "--name", name,
      ...how,
      ...this.extraArgs,
    ]);
    const control = await loggedPort(proc, "control");
    const external = await loggedPort(proc, "external");
    return { name, proc, control, external };
  }

  /** Starts joiners through `via` (any member); does not wait. */
  async spawnJoiners(names: string[], via: WorkerHandle, count = names.length): Promise<WorkerHandle[]> {
    const out: WorkerHandle[] = [];
    for (const n of names) {
      const args = ["--join", `${HOST}:${via.control}`];
      if (count !== 1 || names.length > 1) args.push("--worker-count", String(count));
      out.push(await this.spawnWorker(n, args));
    }
    return out;
  }

  /** Joins workers through `via` and waits until every member reports the new membership. */
  async grow(names: string[], via: WorkerHandle = this.initializer): Promise<void> {
    const joiners = await this.spawnJoiners(names, via);
    for (const j of joiners) this.members.set(j.name, j);
    await this.waitMembership([...this.members.keys()], 30_000);
  }

  /** Runs `wallaroo shrink` against `via`; on acceptance waits for leavers to exit and membership. */
  async shrink(args: string[], via: WorkerHandle = this.initializer): Promise<{ code: number; stdout: string; leavers: string[] }> {
    const before = (await statusOf(this.initializer))!.worker_names;
    const r = await cli(["shrink", "--external", `${HOST}:${via.external}`, ...args]);
    if (r.code !== 0) return { code: r.code, stdout: r.stdout, leavers: [] };
    const after = await waitFor("the shrink to complete", 30_000, async () => {
      const s = await statusOf(this.initializer);
      return s && s.worker_names.length < before.length ? s.worker_names : undefined;
    });
    const leavers = before.filter((n) => !after.includes(n));
    for (const n of leavers) {
      const code = await this.members.get(n)!.proc.waitExit(20_000);
      if (code !== 0) throw new Error(`leaver ${n} exited ${code}\n${this.members.get(n)!.proc.tail()}`);
      this.members.delete(n);
    }
    await this.waitMembership([...this.members.keys()]);
    return { code: r.code, stdout: r.stdout, leavers };
  }

  /** Waits until every live member's status lists exactly `names` (in any order). */
  async waitMembership(names: string[], deadlineMs = 20_000): Promise<void> {
    const want = [...names].sort().join(",");
    await waitFor(`membership ${want} on every worker`, deadlineMs, async () => {
      for (const w of this.members.values()) {
        const s = await statusOf(w);
        if (!s || [...s.worker_names].sort().join(",") !== want || s.worker_count !== names.length || !s.processing_messages) return false;
      }
      return true;
    }, 100).catch((err: Error) => {
      throw new Error(`${err.message}\n${[...this.members.values()].map((w) => w.proc.tail(w.name === "initializer" ? 40 : 12)).join("\n")}`);
    });
  }

  /** Every key on exactly one worker; returns key → worker. */
  async keyOwners(): Promise<{ owners: Map<string, string>; problems: string[] }> {
    const owners = new Map<string, string>();
    const problems: string[] = [];
    for (const w of this.members.values()) {
      for (const k of await keysOf(w)) {
        const prev = owners.get(k);
        if (prev) problems.push(`key ${k} on both ${prev} and ${w.name}`);
        owners.set(k, w.name);
      }
    }
    return { owners, problems };
  }

  async shutdown(): Promise<void> {
    await cli(["shutdown", "--external", `${HOST}:${this.initializer.external}`]);
    for (const w of this.members.values()) {
      const code = await w.proc.waitExit(20_000);
      if (code !== 0) throw new Error(`${w.name} exited ${code} on shutdown\n${w.proc.tail()}`);
    }
  }
}
