// `wallaroo worker`: runs one worker — the initializer (`--cluster-initializer`), a starting
// worker (`--control <initializer>`), or a joiner (`--join <any member>`). Flags and their
// combination rules follow the original Wallaroo (reference §1).
import { defineCommand } from "citty";
import { InvariantError } from "../../src/assert.ts";
import { parseHostPort, parseSourceAddress, type HostPort } from "../../src/address.ts";
import { loadApplication } from "../../src/app/load.ts";
import { INITIALIZER_NAME, Worker, type WorkerConfig } from "../../src/cluster/worker.ts";
import { DEFAULT_CHECKPOINT_INTERVAL_MS, DEFAULT_RESILIENCE_DIR } from "../../src/cluster/resilience.ts";
import { UsageError, WallarooError } from "../../src/errors.ts";
import { fatalLine, haltIo, setFaultHandler } from "../../src/fault.ts";
import { log, setLogWorker } from "../../src/log.ts";
import { systemClock } from "../../src/clock.ts";
import { channelsOver } from "../../src/net/channels.ts";
import { startMetricsServer } from "../../src/net/metrics-server.ts";
import { tcpTransport, type TlsFiles } from "../../src/net/tcp.ts";
import { readClusterSecret } from "../../src/security/secret.ts";
import { applyLogArgs, durationArg, intArg, logArgs, rejectUnknownFlags, repeatedValues, secretArg, splitPonyFlags, tlsArgs, tlsFlags } from "./_args.ts";

const args = {
  "application-module": { type: "string", description: "built-in app (alphabet, word_count, sequence_window, passthrough) or a path to a .ts/.js module", valueHint: "name|path" },
  in: { type: "string", alias: "i", description: "source listen address(es), repeatable or comma separated (initializer only listens)", valueHint: "[name@]host:port[:maxsize]" },
  out: { type: "string", alias: "o", description: "the receiver this worker's sink connects to", valueHint: "host:port" },
  control: { type: "string", alias: "c", description: "initializer: its control listen address; worker: the initializer's control address", valueHint: "host:port" },
  data: { type: "string", alias: "d", description: "initializer only: its data listen address", valueHint: "host:port" },
  "my-control": { type: "string", alias: "x", description: "this worker's control listen address (default: any free port)", valueHint: "host:port" },
  "my-data": { type: "string", alias: "y", description: "this worker's data listen address (default: any free port)", valueHint: "host:port" },
  external: { type: "string", alias: "e", description: "external channel listen address (queries, shrink, shutdown)", valueHint: "host:port" },
  metrics: { type: "string", alias: "m", description: "HTTP listen address for /metrics (Prometheus), /status, /healthz and /readyz", valueHint: "host:port" },
  "worker-count": { type: "string", alias: "w", description: "initializer: cluster size including itself; joiner: workers joining together", valueHint: "N" },
  name: { type: "string", alias: "n", description: "worker name (the initializer is always named initializer)", valueHint: "name" },
  "cluster-initializer": { type: "boolean", alias: "t", description: "this worker forms the cluster and coordinates it" },
  join: { type: "string", alias: "j", description: "join a running cluster through any member's control address", valueHint: "host:port" },
  "resilience-dir": { type: "string", description: "keep checkpoints (and, on the initializer, the input log) here: a crashed worker started again recovers", valueHint: "dir" },
  "run-with-resilience": { type: "boolean", description: `resilience in the default directory (${DEFAULT_RESILIENCE_DIR}) unless --resilience-dir names one` },
  "time-between-checkpoints": { type: "string", description: "checkpoint interval (default 1s; a bare number is nanoseconds, as in the original)", valueHint: "1s|250ms|ns" },
  "resilience-fsync": { type: "boolean", description: "sync every checkpoint and input-log write to disk, so a machine crash loses nothing either (slower)" },
  "advertise-host": { type: "string", description: "the address other members reach this worker at (default: its listen address; a wildcard listener is seen where it connects from)", valueHint: "host" },
  "source-idle-timeout": { type: "string", description: "initializer: close a source connection that sent nothing for this long (default 10m; 0 never)", valueHint: "10m|0" },
  "failure-timeout": { type: "string", description: "a member heard nothing from for this long is lost (default 1s, at least 500ms)", valueHint: "1s|2s" },
  ...secretArg,
  ...tlsArgs,
  ...logArgs,
} as const;

type Parsed = Record<string, string | boolean | undefined>;

/** Turns flags into a configuration, refusing every combination the original refused. */
export function workerConfig(a: Parsed, rawArgs: readonly string[]): Omit<WorkerConfig, "app" | "transport"> & { module: string; metrics?: HostPort; sourceIdleMs?: number } {
  const str = (k: string) => (typeof a[k] === "string" && a[k] !== "" ? (a[k] as string) : undefined);
  const module = str("application-module");
  if (!module) throw new UsageError("You must specify an application via --application-module (alphabet, word_count, sequence_window, passthrough, or a path).");
  const isInit = a["cluster-initializer"] === true;
  const join = str("join");
  const control = str("control");
  const data = str("data");
  const countText = str("worker-count");
  const count = intArg("worker-count", countText, 0);
  if (count === 0) throw new UsageError("--worker-count must be at least 1.");
  if (isInit && join) throw new UsageError("--cluster-initializer and --join cannot be combined: the initializer forms a new cluster.");
  if (!isInit && data) throw new UsageError("Only supply --data to cluster initializer.");
  if (!isInit && !join && count !== undefined) throw new UsageError("Only supply --worker-count to cluster initializer or to joining worker.");
  if (join && control) throw new UsageError("--join and --control cannot be combined: a joiner finds the initializer through the member it contacts.");
  const sources = repeatedValues(rawArgs, ["in", "i"]).map((s) => parseSourceAddress(s));
  const outText = str("out");
  if (!outText) throw new UsageError("You must specify where the sink writes via --out host:port.");
  const out = parseHostPort(outText, "--out");
  let name = str("name");
  if (isInit) {
    if (!control) throw new UsageError("Cluster initializer needs its control channel address to be specified via --control.");
    if (!data) throw new UsageError("Cluster initializer needs its data channel address to be specified via --data.");
    if (sources.length === 0) throw new UsageError("The initializer hosts the sources: give at least one --in host:port.");
    if (str("my-control") || str("my-data")) throw new UsageError("--my-control and --my-data are for other workers; the initializer listens on --control and --data.");
    name = INITIALIZER_NAME;
  } else {
    if (!name) throw new UsageError(join ? "You must specify a name for the worker via the -n parameter." : "You must specify a worker name via --name/-n.");
    if (name === INITIALIZER_NAME) throw new UsageError(`The name ${INITIALIZER_NAME} is reserved for the worker started with --cluster-initializer.`);
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(name)) throw new UsageError(`Worker names use letters, digits, '_', '-' and '.', up to 64 characters; "${name}" does not.`);
    if (!join && !control) throw new UsageError("A worker needs the initializer's control address via --control (or --join to join a running cluster).");
  }
  const peerAddr = isInit ? undefined : parseHostPort((join ?? control)!, join ? "--join" : "--control");
  // On one machine (the initializer at a loopback address) a worker listens on loopback only;
  // otherwise on every interface, and the members it reaches see the address it came from.
  const defaultHost = !peerAddr || isLoopback(peerAddr.host) || peerAddr.host === "0.0.0.0" ? "127.0.0.1" : "0.0.0.0";
  const mine = (k: "my-control" | "my-data"): HostPort => (str(k) ? parseHostPort(str(k)!, `--${k}`) : { host: defaultHost, port: 0 });
  return {
    module,
    name,
    role: isInit ? "initializer" : join ? "joiner" : "worker",
    workerCount: count ?? 1,
    control: isInit ? parseHostPort(control!, "--control") : control ? parseHostPort(control, "--control") : undefined,
    data: data ? parseHostPort(data, "--data") : undefined,
    myControl: mine("my-control"),
    myData: mine("my-data"),
    join: join ? parseHostPort(join, "--join") : undefined,
    external: str("external") ? parseHostPort(str("external")!, "--external") : undefined,
    metrics: str("metrics") ? parseHostPort(str("metrics")!, "--metrics") : undefined,
    sources,
    out,
    // At least two heartbeats (every 250 ms) fit in any timeout: members with different timeouts never flap.
    failureTimeoutMs: durationArg("failure-timeout", str("failure-timeout"), "ms", 500, 600_000),
    resilience: resilienceConfig(a, str),
    advertiseHost: advertiseHost(str("advertise-host")),
    sourceIdleMs: durationArg("source-idle-timeout", str("source-idle-timeout"), "s", 0, 86_400_000),
  };
}

const isLoopback = (host: string) => host === "localhost" || host === "::1" || /^127\./.test(host);

function advertiseHost(h: string | undefined): string | undefined {
  if (h === undefined) return undefined;
  if (h === "0.0.0.0" || h === "::" || !/^[A-Za-z0-9.:_-]{1,253}$/.test(h))
    throw new UsageError(`--advertise-host must be an address or host name the other members can reach, not "${h}".`);
  return h;
}

/** `--resilience-dir`, `--run-with-resilience`, `--time-between-checkpoints`, `--resilience-fsync`. */
function resilienceConfig(a: Parsed, str: (k: string) => string | undefined): WorkerConfig["resilience"] {
  const dir = str("resilience-dir") ?? (a["run-with-resilience"] === true ? DEFAULT_RESILIENCE_DIR : undefined);
  const interval = str("time-between-checkpoints");
  if (!dir) {
    if (interval !== undefined || a["resilience-fsync"] === true) throw new UsageError("--time-between-checkpoints and --resilience-fsync need --resilience-dir (or --run-with-resilience).");
    return undefined;
  }
  return {
    dir,
    intervalMs: durationArg("time-between-checkpoints", interval, "ns", 10, 3_600_000) ?? DEFAULT_CHECKPOINT_INTERVAL_MS,
    fsync: a["resilience-fsync"] === true,
  };
}

// The worker's one failure policy. A broken invariant (an InvariantError, or any exception nobody
// expected) stops the process with code 70 and a `FATAL: <where>: <stack>` line, wherever it is
// detected: a socket handler (src/net reports it through src/fault.ts), a timer or a microtask
// (uncaughtException), a promise nobody awaited (unhandledRejection). Going on would risk losing
// or duplicating data; a supervisor restarting the worker is the cure.

export const EXIT_FATAL = 70;
/** How long the FATAL line may take to reach a slow stderr reader before we exit anyway. */
export const FATAL_FLUSH_MS = 2000;

interface FatalIo {
  /** `done` runs once the line (and everything written before it) is out; maybe synchronously. */
  write(line: string, done: () => void): void;
  exit(code: number): void;
  setTimeout(fn: () => void, ms: number): void;
  /** Stops src/net reading and writing. */
  halt(): void;
}

const processIo: FatalIo = {
  // Bun's stderr is asynchronous to a pipe: exiting right after write() can lose the line. The
  // callback comes after every earlier log line too, so the order on stderr is kept.
  write: (line, done) => void process.stderr.write(line, () => done()),
  exit: (code) => process.exit(code),
  setTimeout: (fn, ms) => void setTimeout(fn, ms),
  halt: () => void haltIo(),
};

/** The single place a worker dies of a fault. Only the first fault is reported. */
export function fatalStop(io: FatalIo = processIo): (where: string, err: unknown) => void {
  let stopping = false;
  return (where, err) => {
    if (stopping) return;
    stopping = true;
    // Nothing more in or out while the line is flushed: peers must not see suspect state.
    io.halt();
    io.setTimeout(() => io.exit(EXIT_FATAL), FATAL_FLUSH_MS);
    io.write(fatalLine(where, err), () => io.exit(EXIT_FATAL));
  };
}

/** Points every way an exception can escape in a worker at `fatalStop`. */
export function installFailurePolicy(): (where: string, err: unknown) => void {
  const stop = fatalStop();
  setFaultHandler(stop);
  process.on("uncaughtException", (err) => stop("uncaught exception", err));
  process.on("unhandledRejection", (reason) => stop("unhandled promise rejection", reason));
  return stop;
}

export default defineCommand({
  meta: { name: "worker", description: "Run one worker of an application (initializer, starting worker, or joiner)" },
  args,
  async run({ args: a, rawArgs: given }) {
    const fatal = installFailurePolicy();
    const { rest: rawArgs, pony } = splitPonyFlags(given);
    rejectUnknownFlags(rawArgs, args);
    const cfg = workerConfig(a as Parsed, rawArgs);
    applyLogArgs(a, cfg.name);
    setLogWorker(cfg.name);
    if (pony.length > 0) log.warn("pony_flags_ignored", `Pony runtime flags have no effect here (a worker is one process with one JS thread): ignored ${pony.join(" ")}`);
    if (cfg.role !== "initializer" && cfg.sources.length > 0)
      log.info("in_not_listened", "--in given to a non-initializer: sources are hosted by the initializer, so this worker does not listen on it");
    const secret = await readClusterSecret(typeof a["cluster-secret-file"] === "string" ? a["cluster-secret-file"] : undefined);
    if (!secret)
      log.warn(
        "no_cluster_secret",
        "No cluster secret: this worker's control and data ports accept anyone who can reach them. Give every member --cluster-secret-file (docs/security.md).",
      );
    const app = await loadApplication(cfg.module);
    const tls = tlsFlags(a, true) as TlsFiles | undefined;
    const channels = channelsOver(tcpTransport, { secret, clock: systemClock, sourceIdleMs: cfg.sourceIdleMs, tls });
    const worker = new Worker({ ...cfg, app, transport: tcpTransport, channels, secret });
    // Before the worker starts, so /healthz answers and /readyz says why not while it forms.
    let metrics;
    try {
      metrics = cfg.metrics ? startMetricsServer(cfg.name, cfg.metrics, { metrics: () => worker.metricsText(), status: () => worker.statusReport(), readiness: () => worker.readiness() }) : undefined;
    } catch (err) {
      throw new WallarooError(`Worker ${cfg.name} could not start: ${(err as Error).message}`);
    }
    const onSignal = (sig: string) => {
      log.info("signal", `Received ${sig}: shutting the cluster down cleanly`);
      void worker.shutdown(true, `${sig} received by ${cfg.name}`);
    };
    process.on("SIGINT", () => onSignal("SIGINT"));
    process.on("SIGTERM", () => onSignal("SIGTERM"));
    try {
      await worker.start();
    } catch (err) {
      if (err instanceof WallarooError) throw err;
      if (err instanceof InvariantError) {
        fatal("starting the worker", err);
        return await new Promise<number>(() => {}); // fatal exits within FATAL_FLUSH_MS
      }
      const e = err as Error;
      throw new WallarooError(`Worker ${cfg.name} could not start: ${e.message}`);
    }
    const code = await worker.exited;
    metrics?.stop();
    return code;
  },
});
