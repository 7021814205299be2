// A cluster of real worker processes for the e2e tests, with helpers to grow, shrink and query it.
import { EXTERNAL_MSG, parseClusterStatus, type ClusterStatus } from "../../src/codec/external.ts";
import { externalRequest } from "../../src/net/external-client.ts";
import { HOST, Proc, cli, freePort, waitFor, type Receiver } from "./harness.ts";

export interface WorkerHandle {
  name: string;
  proc: Proc;
  control: number;
  external: number;
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
    this.sourcePort = await freePort();
    const control = await freePort();
    const data = await freePort();
    const external = await freePort();
    const proc = new Proc("initializer", [
      "worker",
      "--application-module", this.app,
      "--in", `${this.app}@${HOST}:${this.sourcePort}`,
      "--out", `${HOST}:${this.rx.port}`,
      "--control", `${HOST}:${control}`,
      "--data", `${HOST}:${data}`,
      "--external", `${HOST}:${external}`,
      "--cluster-initializer",
      "--worker-count", String(n),
      ...this.extraArgs,
    ]);
    this.initializer = { name: "initializer", proc, control, external };
    this.members.set("initializer", this.initializer);
    for (let i = 1; i < n; i++) {
      const w = await this.spawnWorker(`w${i}`, ["--control", `${HOST}:${control}`]);
      this.members.set(w.name, w);
    }
    await proc.waitForLog("Application has successfully initialized.", 20_000);
    await this.waitMembership([...this.members.keys()]);
  }

  async spawnWorker(name: string, how: string[]): Promise<WorkerHandle> {
    const control = await freePort();
    const external = await freePort();
    const proc = new Proc(name, [
      "worker",
      "--application-module", this.app,
      "--out", `${HOST}:${this.rx.port}`,
      "--my-control", `${HOST}:${control}`,
      "--external", `${HOST}:${external}`,
      "--name", name,
      ...how,
      ...this.extraArgs,
    ]);
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
