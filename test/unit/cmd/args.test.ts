// Flag checks citty does not do, address parsing, and `wallaroo worker`'s combination rules.
// Sentences are checked exactly: operators read them, and several are the original's.
import { describe, expect, test } from "bun:test";
import { type ArgsDef, parseArgs } from "citty";
import { DEFAULT_SOURCE_MAX_FRAME, MAX_SOURCE_MAX_FRAME, parseHostPort, parseSourceAddress } from "../../../src/address.ts";
import { UsageError } from "../../../src/errors.ts";
import { durationArg, intArg, rejectUnknownFlags, repeatedValues, splitPonyFlags, tlsFlags } from "../../../cmd/commands/_args.ts";
import { join } from "node:path";
import workerCommand, { workerConfig } from "../../../cmd/commands/worker.ts";

/** Runs `fn`, expecting a UsageError with exactly `message`. */
function usage(fn: () => unknown, message: string): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(UsageError);
  expect((err as UsageError).message).toBe(message);
  expect((err as UsageError).exitCode).toBe(2);
}

const DEF = {
  name: { type: "string", alias: "n" },
  "worker-count": { type: "string", alias: ["w", "count"] },
  verbose: { type: "boolean", alias: "v" },
  "cluster-initializer": { type: "boolean", alias: "t" },
} as const satisfies ArgsDef;

describe("rejectUnknownFlags", () => {
  test("known long, short, aliased and camelCase flags pass", () => {
    rejectUnknownFlags(["--name", "w1", "-n", "w2", "--worker-count", "3", "-w", "2", "--count", "1", "-v", "--verbose", "-t"], DEF);
    rejectUnknownFlags(["--workerCount", "3", "--clusterInitializer"], DEF);
    rejectUnknownFlags([], DEF);
  });

  test("an unknown long flag", () => {
    usage(() => rejectUnknownFlags(["--name", "w1", "--bogus"], DEF), "Unknown flag --bogus. See --help.");
    usage(() => rejectUnknownFlags(["--names", "x"], DEF), "Unknown flag --names. See --help.");
  });

  test("an unknown short flag", () => {
    usage(() => rejectUnknownFlags(["-z"], DEF), "Unknown flag -z. See --help.");
    usage(() => rejectUnknownFlags(["-n", "w1", "-x", "1"], DEF), "Unknown flag -x. See --help.");
  });

  test("--no-x is accepted for booleans only", () => {
    rejectUnknownFlags(["--no-verbose", "--no-cluster-initializer", "--no-v"], DEF);
    usage(() => rejectUnknownFlags(["--no-name"], DEF), "Unknown flag --no-name. See --help.");
    usage(() => rejectUnknownFlags(["--no-bogus"], DEF), "Unknown flag --no-bogus. See --help.");
  });

  test("--flag=value is judged by its name", () => {
    rejectUnknownFlags(["--name=w1", "-n=w2", "--worker-count=3"], DEF);
    usage(() => rejectUnknownFlags(["--bogus=1"], DEF), "Unknown flag --bogus. See --help.");
    usage(() => rejectUnknownFlags(["--bogus=a=b"], DEF), "Unknown flag --bogus. See --help.");
  });

  test("values, negative numbers, a lone dash and everything after -- are not flags", () => {
    rejectUnknownFlags(["--worker-count", "-1", "--name", "-5.5", "-0", "-", "plain", "--", "--bogus", "-z"], DEF);
  });

  test("works with the worker command's own flag table", () => {
    const def = (workerCommand as unknown as { args: ArgsDef }).args;
    rejectUnknownFlags(["-t", "-i", "a:1", "--my-control", "h:1", "-x", "h:2", "-y", "h:3", "--log-level", "debug", "--logFormat", "json"], def);
    usage(() => rejectUnknownFlags(["--cluster-initialiser"], def), "Unknown flag --cluster-initialiser. See --help.");
    usage(() => rejectUnknownFlags(["--control=h:1", "--ponies"], def), "Unknown flag --ponies. See --help.");
  });
});

describe("repeatedValues", () => {
  const IN = ["in", "i"];
  test("repeated flags and comma lists, long and short, space and =", () => {
    expect(repeatedValues(["--in", "a", "--in", "b,c"], IN)).toEqual(["a", "b", "c"]);
    expect(repeatedValues(["-i", "x"], IN)).toEqual(["x"]);
    expect(repeatedValues(["--in=y"], IN)).toEqual(["y"]);
    expect(repeatedValues(["-i=z,w"], IN)).toEqual(["z", "w"]);
    expect(repeatedValues(["--in", "a", "-t", "-i", "b", "--in=c", "--out", "o"], IN)).toEqual(["a", "b", "c"]);
    expect(repeatedValues(["--in", "a,,b,"], IN)).toEqual(["a", "b"]);
    expect(repeatedValues(["--out", "o", "--inx", "q"], IN)).toEqual([]);
    expect(repeatedValues([], IN)).toEqual([]);
  });

  test("a value that is itself the flag's name is taken as a value once", () => {
    expect(repeatedValues(["--name", "in", "--in", "a"], IN)).toEqual(["a"]);
  });

  test("a missing value is a UsageError", () => {
    usage(() => repeatedValues(["--in"], IN), "--in needs a value.");
    usage(() => repeatedValues(["-i"], IN), "-i needs a value.");
    usage(() => repeatedValues(["--in", "--out", "x"], IN), "--in needs a value.");
    usage(() => repeatedValues(["--in", "a", "-i", "-t"], IN), "-i needs a value.");
  });

  test("values after -- are positional, not flags", () => {
    expect(repeatedValues(["--", "--in", "x"], IN)).toEqual([]);
  });
});

describe("splitPonyFlags", () => {
  test("sets apart every --pony… flag, with =value or a number after it, and keeps the rest in order", () => {
    const given = ["--name", "w1", "--ponythreads=1", "--ponypinasio", "--ponynoblock", "--ponythreads", "4", "--ponygcfactor", "2.0", "--ponyanything=x", "--in", "a@h:1"];
    expect(splitPonyFlags(given)).toEqual({
      rest: ["--name", "w1", "--in", "a@h:1"],
      pony: ["--ponythreads=1", "--ponypinasio", "--ponynoblock", "--ponythreads 4", "--ponygcfactor 2.0", "--ponyanything=x"],
    });
  });

  test("a flag without a value does not swallow the next flag or a non-number", () => {
    expect(splitPonyFlags(["--ponypin", "--name", "w1"])).toEqual({ rest: ["--name", "w1"], pony: ["--ponypin"] });
    expect(splitPonyFlags(["--ponynoblock", "w1"])).toEqual({ rest: ["w1"], pony: ["--ponynoblock"] });
    expect(splitPonyFlags(["--ponythreads=1", "2"])).toEqual({ rest: ["2"], pony: ["--ponythreads=1"] });
  });

  test("nothing after -- and nothing that only looks alike is taken", () => {
    expect(splitPonyFlags(["-ponythreads", "--pon", "--", "--ponythreads=1"])).toEqual({ rest: ["-ponythreads", "--pon", "--", "--ponythreads=1"], pony: [] });
    expect(splitPonyFlags([])).toEqual({ rest: [], pony: [] });
  });

  test("what is left passes the worker's own flag check", () => {
    const { rest } = splitPonyFlags(["--application-module", "alphabet", "--ponythreads", "1", "--ponynoblock", "--out", "h:1"]);
    rejectUnknownFlags(rest, workerCommand.args as ArgsDef);
  });
});

describe("intArg", () => {
  test("absent or empty stays undefined", () => {
    expect(intArg("n", undefined)).toBeUndefined();
    expect(intArg("n", "")).toBeUndefined();
  });

  test("whole numbers at or above the minimum", () => {
    expect(intArg("n", "0")).toBe(0);
    expect(intArg("n", "5", 1)).toBe(5);
    expect(intArg("n", "007")).toBe(7);
    expect(intArg("n", String(Number.MAX_SAFE_INTEGER))).toBe(Number.MAX_SAFE_INTEGER);
  });

  test("anything else is a UsageError", () => {
    for (const bad of ["abc", "-1", "1.5", "1e3", " 5", "5 ", "+5", "0x10"]) usage(() => intArg("worker-count", bad), `--worker-count must be a whole number, not "${bad}".`);
    usage(() => intArg("worker-count", "0", 1), "--worker-count must be at least 1, not 0.");
  });

  test("a number too large to be exact", () => {
    usage(() => intArg("n", "9007199254740993"), "--n is too large: 9007199254740993.");
  });
});

describe("durationArg", () => {
  test("units, and a bare number in the flag's own unit (the original's nanoseconds)", () => {
    expect(durationArg("t", "250ms", "ns", 1, 1e9)).toBe(250);
    expect(durationArg("t", "1s", "ns", 1, 1e9)).toBe(1000);
    expect(durationArg("t", "1.5s", "ns", 1, 1e9)).toBe(1500);
    expect(durationArg("t", "2m", "ns", 1, 1e9)).toBe(120_000);
    expect(durationArg("t", "500000us", "ns", 1, 1e9)).toBe(500);
    expect(durationArg("t", "1000000000", "ns", 1, 1e9)).toBe(1000);
    expect(durationArg("t", "750", "ms", 1, 1e9)).toBe(750);
    expect(durationArg("t", undefined, "ms", 1, 1e9)).toBeUndefined();
  });

  test("anything else, or out of bounds, is a usage error naming the flag", () => {
    for (const bad of ["1h", "-1s", "1.5", "s", "1 s x", "NaN"]) expect(() => durationArg("failure-timeout", bad, "ms", 1, 1e9)).toThrow(/--failure-timeout must be a duration/);
    expect(() => durationArg("failure-timeout", "10ms", "ms", 100, 1000)).toThrow("--failure-timeout must be between 100 ms and 1000 ms, not \"10ms\".");
  });
});

describe("parseHostPort", () => {
  test("valid forms", () => {
    expect(parseHostPort("127.0.0.1:7000", "--out")).toEqual({ host: "127.0.0.1", port: 7000 });
    expect(parseHostPort("localhost:0", "--out")).toEqual({ host: "localhost", port: 0 });
    expect(parseHostPort("h:65535", "--out")).toEqual({ host: "h", port: 65535 });
    expect(parseHostPort(":7000", "--out")).toEqual({ host: "0.0.0.0", port: 7000 });
    expect(parseHostPort("[::1]:7000", "--out")).toEqual({ host: "::1", port: 7000 });
    expect(parseHostPort("::1:7000", "--out")).toEqual({ host: "::1", port: 7000 });
  });

  test("invalid forms, each with its sentence and flag", () => {
    usage(() => parseHostPort("host", "--out"), `--out expects host:port, not "host".`);
    usage(() => parseHostPort("", "--control"), `--control expects host:port, not "".`);
    for (const bad of ["host:", "host:abc", "host:-1", "host:1.5", "host: 1", "host:1 "]) usage(() => parseHostPort(bad, "--out"), `--out expects host:port, and "${bad}" has no valid port.`);
    usage(() => parseHostPort("host:65536", "--join"), "--join expects a port from 0 to 65535, not 65536.");
    usage(() => parseHostPort("host:99999999999", "--out"), "--out expects a port from 0 to 65535, not 99999999999.");
  });
});

describe("parseSourceAddress", () => {
  const INPUTS = (text: string) => `Inputs must be in the \`source_name@host:service\` or \`source_name@host:service:max_size\` format! Got "${text}".`;

  test("valid forms", () => {
    expect(parseSourceAddress("src@127.0.0.1:7000:1024")).toEqual({ name: "src", host: "127.0.0.1", port: 7000, maxFrame: 1024 });
    expect(parseSourceAddress("127.0.0.1:7000")).toEqual({ name: undefined, host: "127.0.0.1", port: 7000, maxFrame: DEFAULT_SOURCE_MAX_FRAME });
    expect(parseSourceAddress("src@h:1")).toEqual({ name: "src", host: "h", port: 1, maxFrame: 16 * 1024 });
    expect(parseSourceAddress(":7000:5")).toEqual({ name: undefined, host: "0.0.0.0", port: 7000, maxFrame: 5 });
    expect(parseSourceAddress("s@:0")).toEqual({ name: "s", host: "0.0.0.0", port: 0, maxFrame: DEFAULT_SOURCE_MAX_FRAME });
    expect(parseSourceAddress(`h:1:${MAX_SOURCE_MAX_FRAME}`).maxFrame).toBe(64 * 1024 * 1024);
    expect(parseSourceAddress("h:1:1").maxFrame).toBe(1);
  });

  test("malformed forms get the original's sentence", () => {
    for (const bad of ["", "h", "src@h", "@h:1", "h:1:2:3", "h:abc", "h:", "h:-1", "h:1:abc", "h:1:", "h:1:-5", "h:1:1.5", "src@"]) usage(() => parseSourceAddress(bad), INPUTS(bad));
  });

  test("an IPv6 literal goes in brackets, as for parseHostPort", () => {
    expect(parseSourceAddress("[::1]:7000")).toEqual({ name: undefined, host: "::1", port: 7000, maxFrame: DEFAULT_SOURCE_MAX_FRAME });
    expect(parseSourceAddress("src@[fe80::1]:7000:512")).toEqual({ name: "src", host: "fe80::1", port: 7000, maxFrame: 512 });
    for (const bad of ["[::1]", "[]:7000", "[::1]7000", "[::1:7000", "::1:7000"]) usage(() => parseSourceAddress(bad), INPUTS(bad));
  });

  test("a port or size out of range gets a range sentence", () => {
    usage(() => parseSourceAddress("h:70000"), "--in expects a port from 0 to 65535, not 70000.");
    usage(() => parseSourceAddress("h:1:0"), `--in max size must be from 1 to ${MAX_SOURCE_MAX_FRAME} bytes, not 0.`);
    usage(() => parseSourceAddress(`h:1:${MAX_SOURCE_MAX_FRAME + 1}`), `--in max size must be from 1 to 67108864 bytes, not 67108865.`);
    usage(() => parseSourceAddress("h:70000", "--source"), "--source expects a port from 0 to 65535, not 70000.");
  });

  test("a second @ is refused with the Inputs sentence", () => {
    usage(() => parseSourceAddress("a@b@h:1"), 'Inputs must be in the `source_name@host:service` or `source_name@host:service:max_size` format! Got "a@b@h:1".');
  });
});

describe("workerConfig", () => {
  const def = (workerCommand as unknown as { args: ArgsDef }).args;
  /** Parses like the command does (citty, then workerConfig with the raw flags). */
  const cfg = (raw: string[]) => workerConfig(parseArgs(raw, def) as unknown as Record<string, string | boolean | undefined>, raw);

  const APP = ["--application-module", "word_count"];
  const OUT = ["--out", "127.0.0.1:7020"];
  const INIT = [...APP, "--cluster-initializer", "--control", "127.0.0.1:7000", "--data", "127.0.0.1:7001", "--in", "127.0.0.1:7010", ...OUT];
  const WORKER = [...APP, "--control", "10.0.0.1:7000", "--name", "w1", ...OUT];
  const JOINER = [...APP, "--join", "10.0.0.2:7000", "--name", "j1", ...OUT];

  test("an initializer", () => {
    expect(cfg(INIT)).toEqual({
      module: "word_count",
      name: "initializer",
      role: "initializer",
      workerCount: 1,
      control: { host: "127.0.0.1", port: 7000 },
      data: { host: "127.0.0.1", port: 7001 },
      myControl: { host: "127.0.0.1", port: 0 },
      myData: { host: "127.0.0.1", port: 0 },
      join: undefined,
      external: undefined,
      failureTimeoutMs: undefined,
      sources: [{ name: undefined, host: "127.0.0.1", port: 7010, maxFrame: DEFAULT_SOURCE_MAX_FRAME }],
      out: { host: "127.0.0.1", port: 7020 },
    });
  });

  test("an initializer with short flags, several sources, a count and an external address", () => {
    const c = cfg(["--application-module", "alphabet", "-t", "-c", ":7000", "-d", ":7001", "-i", "a@:1,b@:2:99", "--in=:3", "-o", "h:4", "-w", "3", "-e", ":5"]);
    expect(c.role).toBe("initializer");
    expect(c.workerCount).toBe(3);
    expect(c.control).toEqual({ host: "0.0.0.0", port: 7000 });
    expect(c.external).toEqual({ host: "0.0.0.0", port: 5 });
    expect(c.sources).toEqual([
      { name: "a", host: "0.0.0.0", port: 1, maxFrame: DEFAULT_SOURCE_MAX_FRAME },
      { name: "b", host: "0.0.0.0", port: 2, maxFrame: 99 },
      { name: undefined, host: "0.0.0.0", port: 3, maxFrame: DEFAULT_SOURCE_MAX_FRAME },
    ]);
  });

  test("the initializer's name is forced to initializer", () => {
    expect(cfg([...INIT, "--name", "boss"]).name).toBe("initializer");
    expect(cfg([...INIT, "-n", "initializer"]).name).toBe("initializer");
  });

  test("the initializer needs --control, --data and --in", () => {
    const without = (flag: string) => {
      const i = INIT.indexOf(flag);
      return [...INIT.slice(0, i), ...INIT.slice(i + 2)];
    };
    usage(() => cfg(without("--control")), "Cluster initializer needs its control channel address to be specified via --control.");
    usage(() => cfg(without("--data")), "Cluster initializer needs its data channel address to be specified via --data.");
    usage(() => cfg(without("--in")), "The initializer hosts the sources: give at least one --in host:port.");
  });

  test("the initializer's --in must be well formed", () => {
    usage(() => cfg([...INIT, "--in", "nope"]), `Inputs must be in the \`source_name@host:service\` or \`source_name@host:service:max_size\` format! Got "nope".`);
    usage(() => cfg([...INIT, "--in"]), "--in needs a value.");
  });

  test("every worker needs --application-module and --out", () => {
    const noApp = (raw: string[]) => raw.slice(2);
    const appMsg = "You must specify an application via --application-module (alphabet, word_count, sequence_window, passthrough, or a path).";
    for (const raw of [INIT, WORKER, JOINER]) {
      usage(() => cfg(noApp(raw)), appMsg);
      usage(() => cfg(raw.filter((_, i) => raw[i] !== "--out" && raw[i - 1] !== "--out")), "You must specify where the sink writes via --out host:port.");
    }
    usage(() => cfg(["--application-module=", ...WORKER.slice(2)]), appMsg);
  });

  test("a starting worker", () => {
    expect(cfg(WORKER)).toEqual({
      module: "word_count",
      name: "w1",
      role: "worker",
      workerCount: 1,
      control: { host: "10.0.0.1", port: 7000 },
      data: undefined,
      // The initializer is on another machine: listens on every interface by default, and the
      // members see the address it connects from.
      myControl: { host: "0.0.0.0", port: 0 },
      myData: { host: "0.0.0.0", port: 0 },
      join: undefined,
      external: undefined,
      sources: [],
      out: { host: "127.0.0.1", port: 7020 },
    });
  });

  test("a worker's own addresses: given, or on loopback when the initializer's host is any", () => {
    const c = cfg([...WORKER, "--my-control", "10.0.0.9:7100", "-y", ":7101"]);
    expect(c.myControl).toEqual({ host: "10.0.0.9", port: 7100 });
    expect(c.myData).toEqual({ host: "0.0.0.0", port: 7101 });
    const any = cfg([...APP, "-c", ":7000", "-n", "w1", ...OUT]);
    expect(any.myControl).toEqual({ host: "127.0.0.1", port: 0 });
    for (const local of ["127.0.0.1:7000", "127.1.2.3:7000", "localhost:7000", "[::1]:7000"])
      expect(cfg([...APP, "-c", local, "-n", "w1", ...OUT]).myControl).toEqual({ host: "127.0.0.1", port: 0 });
    expect(cfg([...JOINER]).myData).toEqual({ host: "0.0.0.0", port: 0 });
  });

  test("--advertise-host names a reachable address; a wildcard is refused", () => {
    expect(cfg([...WORKER, "--advertise-host", "10.0.0.7"]).advertiseHost).toBe("10.0.0.7");
    expect(cfg([...WORKER, "--advertise-host", "worker-3.internal"]).advertiseHost).toBe("worker-3.internal");
    expect(cfg(WORKER).advertiseHost).toBeUndefined();
    usage(() => cfg([...WORKER, "--advertise-host", "0.0.0.0"]), `--advertise-host must be an address or host name the other members can reach, not "0.0.0.0".`);
    usage(() => cfg([...WORKER, "--advertise-host", "a b"]), `--advertise-host must be an address or host name the other members can reach, not "a b".`);
  });

  test("--source-idle-timeout: a duration, 0 for never", () => {
    expect(cfg([...INIT, "--source-idle-timeout", "30s"]).sourceIdleMs).toBe(30_000);
    expect(cfg([...INIT, "--source-idle-timeout", "0"]).sourceIdleMs).toBe(0);
    expect(cfg(INIT).sourceIdleMs).toBeUndefined();
    usage(() => cfg([...WORKER, "--my-data", "nohost"]), `--my-data expects host:port, not "nohost".`);
  });

  test("non-initializers: --data is forbidden", () => {
    usage(() => cfg([...WORKER, "--data", "h:1"]), "Only supply --data to cluster initializer.");
    usage(() => cfg([...JOINER, "-d", "h:1"]), "Only supply --data to cluster initializer.");
  });

  test("non-initializers: --name is required, with the original's two sentences", () => {
    usage(() => cfg([...APP, "--control", "h:1", ...OUT]), "You must specify a worker name via --name/-n.");
    usage(() => cfg([...APP, "--join", "h:1", ...OUT]), "You must specify a name for the worker via the -n parameter.");
  });

  test("the name initializer is reserved", () => {
    usage(() => cfg([...WORKER, "--name", "initializer"]), "The name initializer is reserved for the worker started with --cluster-initializer.");
    usage(() => cfg([...JOINER, "-n", "initializer"]), "The name initializer is reserved for the worker started with --cluster-initializer.");
  });

  test("names use a safe alphabet, up to 64 characters", () => {
    expect(cfg([...WORKER, "--name", "a".repeat(64)]).name).toBe("a".repeat(64));
    expect(cfg([...WORKER, "--name", "W_1-x.y"]).name).toBe("W_1-x.y");
    for (const bad of ["a".repeat(65), "w 1", "w/1", "ключ", "w1@h"]) usage(() => cfg([...WORKER, "--name", bad]), `Worker names use letters, digits, '_', '-' and '.', up to 64 characters; "${bad}" does not.`);
  });

  test("a starting worker needs --control or --join", () => {
    usage(() => cfg([...APP, "--name", "w1", ...OUT]), "A worker needs the initializer's control address via --control (or --join to join a running cluster).");
  });

  test("--worker-count only for the initializer or a joiner", () => {
    usage(() => cfg([...WORKER, "--worker-count", "2"]), "Only supply --worker-count to cluster initializer or to joining worker.");
    expect(cfg([...JOINER, "--worker-count", "2"]).workerCount).toBe(2);
    expect(cfg([...INIT, "-w", "4"]).workerCount).toBe(4);
  });

  test("--worker-count 0 is refused everywhere", () => {
    for (const raw of [INIT, JOINER, WORKER]) usage(() => cfg([...raw, "--worker-count", "0"]), "--worker-count must be at least 1.");
    usage(() => cfg([...INIT, "-w", "-2"]), `--worker-count must be a whole number, not "-2".`);
    usage(() => cfg([...INIT, "-w", "two"]), `--worker-count must be a whole number, not "two".`);
  });

  test("a joiner", () => {
    expect(cfg([...JOINER, "-w", "2"])).toEqual({
      module: "word_count",
      name: "j1",
      role: "joiner",
      workerCount: 2,
      control: undefined,
      data: undefined,
      myControl: { host: "0.0.0.0", port: 0 },
      myData: { host: "0.0.0.0", port: 0 },
      join: { host: "10.0.0.2", port: 7000 },
      external: undefined,
      sources: [],
      out: { host: "127.0.0.1", port: 7020 },
    });
  });

  test("--join with --control is refused", () => {
    usage(() => cfg([...JOINER, "--control", "h:1"]), "--join and --control cannot be combined: a joiner finds the initializer through the member it contacts.");
  });

  test("--join with --cluster-initializer is refused", () => {
    usage(() => cfg([...INIT, "--join", "h:1"]), "--cluster-initializer and --join cannot be combined: the initializer forms a new cluster.");
  });

  test("bad addresses name their flag", () => {
    usage(() => cfg([...JOINER.slice(0, 2), "--join", "h", ...JOINER.slice(4)]), `--join expects host:port, not "h".`);
    usage(() => cfg([...WORKER.slice(0, 2), "--control", "h:x", ...WORKER.slice(4)]), `--control expects host:port, and "h:x" has no valid port.`);
    usage(() => cfg([...INIT, "--external", "h:70000"]), "--external expects a port from 0 to 65535, not 70000.");
    usage(() => cfg([...WORKER.slice(0, -2), "--out", "nowhere"]), `--out expects host:port, not "nowhere".`);
  });

  test("--my-control/--my-data given to the initializer are refused, not ignored", () => {
    usage(() => cfg([...INIT, "--my-control", "127.0.0.1:7100"]), "--my-control and --my-data are for other workers; the initializer listens on --control and --data.");
    usage(() => cfg([...INIT, "--my-data", "127.0.0.1:7101"]), "--my-control and --my-data are for other workers; the initializer listens on --control and --data.");
  });
});

describe("tlsFlags", () => {
  const dir = join(import.meta.dir, "../../fixtures/tls");
  const cert = { "tls-cert": join(dir, "member.pem"), "tls-key": join(dir, "member.key") };
  const ca = { "tls-ca": join(dir, "ca.pem") };
  const refuses = (f: () => unknown, sentence: string) => {
    expect(f).toThrow(UsageError);
    expect(f).toThrow(sentence);
  };

  test("a worker needs its certificate and the members' authority; a tool may give only the authority", () => {
    expect(tlsFlags({ ...cert, ...ca }, true)).toEqual({ cert: cert["tls-cert"], key: cert["tls-key"], ca: ca["tls-ca"] });
    expect(tlsFlags({ ...ca }, false)).toEqual({ cert: undefined, key: undefined, ca: ca["tls-ca"] });
    expect(tlsFlags({}, true)).toBeUndefined();
    refuses(() => tlsFlags({ ...cert }, true), "A worker with TLS needs --tls-ca");
    refuses(() => tlsFlags({ ...ca }, true), "A worker with TLS needs its certificate");
    refuses(() => tlsFlags({ "tls-cert": cert["tls-cert"], ...ca }, true), "--tls-cert and --tls-key go together.");
    refuses(() => tlsFlags({ "tls-ca": join(dir, "nope.pem") }, false), "--tls-ca: no such file");
  });
});
