// Flag groups declared once and spread into commands, plus the checks citty does not do:
// citty accepts unknown flags silently, and we promise that no flag is accepted and ignored.
import type { ArgsDef } from "citty";
import { existsSync } from "node:fs";
import { UsageError } from "../../src/errors.ts";
import { configureLog, type LogFormat, type LogLevelName, LOG_LEVELS } from "../../src/log.ts";

export const logArgs = {
  "log-level": { type: "string", description: "error | warn | info | debug", default: "info", valueHint: "level" },
  "log-format": { type: "string", description: "text | json (JSON lines on stderr)", default: "text", valueHint: "format" },
} as const satisfies ArgsDef;

export const jsonArg = {
  json: { type: "boolean", description: "print the answer as JSON with stable keys" },
} as const satisfies ArgsDef;

export const externalArg = {
  external: { type: "string", alias: "e", description: "a worker's external channel address", valueHint: "host:port", required: true },
} as const satisfies ArgsDef;

export const timeoutArg = {
  timeout: { type: "string", description: "seconds to wait for an answer", default: "10", valueHint: "seconds" },
} as const satisfies ArgsDef;

export const secretArg = {
  "cluster-secret-file": {
    type: "string",
    description: "file holding the cluster secret (or set WALLAROO_CLUSTER_SECRET); generate with: openssl rand -hex 32",
    valueHint: "path",
  },
} as const satisfies ArgsDef;

export const tlsArgs = {
  "tls-cert": { type: "string", description: "this side's certificate (PEM); with --tls-key", valueHint: "path" },
  "tls-key": { type: "string", description: "the private key of --tls-cert (PEM)", valueHint: "path" },
  "tls-ca": { type: "string", description: "the authority that signed the members' certificates (PEM; default: the system's)", valueHint: "path" },
} as const satisfies ArgsDef;

export interface TlsFlags {
  cert?: string;
  key?: string;
  ca?: string;
}

/**
 * The --tls-* flags, each file checked to exist now (a typo must not wait for the first
 * connection). `needCert`: a worker must present a certificate; a tool may give only --tls-ca.
 */
export function tlsFlags(a: Record<string, unknown>, needCert: boolean): TlsFlags | undefined {
  const get = (k: string) => {
    const v = a[k];
    if (v === undefined) return undefined;
    if (typeof v !== "string" || v === "") throw new UsageError(`--${k} needs the path of a PEM file.`);
    if (!existsSync(v)) throw new UsageError(`--${k}: no such file ${v}.`);
    return v;
  };
  const cert = get("tls-cert");
  const key = get("tls-key");
  const ca = get("tls-ca");
  if ((cert === undefined) !== (key === undefined)) throw new UsageError("--tls-cert and --tls-key go together.");
  if (cert === undefined && ca === undefined) return undefined;
  if (needCert && cert === undefined) throw new UsageError("A worker with TLS needs its certificate: --tls-cert and --tls-key (and --tls-ca for the members' authority).");
  // The system's authorities would admit anyone holding a publicly issued certificate as a member.
  if (needCert && ca === undefined) throw new UsageError("A worker with TLS needs --tls-ca, the authority that signed the members' certificates (the system's authorities would admit any public certificate).");
  return { cert, key, ca };
}

/** Applies --log-level/--log-format; unknown values are usage errors. */
export function applyLogArgs(args: { "log-level"?: string; "log-format"?: string }, worker?: string): void {
  const level = args["log-level"] ?? "info";
  const format = args["log-format"] ?? "text";
  if (!(level in LOG_LEVELS)) throw new UsageError(`--log-level must be one of ${Object.keys(LOG_LEVELS).join(", ")}, not "${level}".`);
  if (format !== "text" && format !== "json") throw new UsageError(`--log-format must be text or json, not "${format}".`);
  configureLog({ level: level as LogLevelName, format: format as LogFormat, worker });
}

/** Throws a UsageError naming the first flag the command does not define. */
export function rejectUnknownFlags(rawArgs: readonly string[], def: ArgsDef): void {
  const known = new Set<string>();
  const booleans = new Set<string>();
  for (const [name, d] of Object.entries(def)) {
    const alias = (d as { alias?: string | string[] }).alias;
    const names = [name, ...(alias === undefined ? [] : Array.isArray(alias) ? alias : [alias])];
    for (const n of names) {
      known.add(n);
      if (d.type === "boolean") booleans.add(n);
    }
  }
  for (const raw of rawArgs) {
    if (raw === "--") break;
    if (!raw.startsWith("-") || raw === "-" || /^-\d/.test(raw)) continue;
    let name = raw.replace(/^--?/, "").split("=")[0]!;
    if (raw.startsWith("--no-") && booleans.has(name.slice(3))) name = name.slice(3);
    // camelCase spellings are accepted by citty; keep them equivalent.
    const kebab = name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
    if (!known.has(name) && !known.has(kebab)) throw new UsageError(`Unknown flag ${raw.split("=")[0]}. See --help.`);
  }
}

/** All values given for a flag that may repeat (`--in a --in b`) or hold a comma list. */
export function repeatedValues(rawArgs: readonly string[], names: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < rawArgs.length; i++) {
    const raw = rawArgs[i]!;
    if (raw === "--") break;
    for (const n of names) {
      const flag = n.length === 1 ? `-${n}` : `--${n}`;
      if (raw === flag) {
        const v = rawArgs[i + 1];
        if (v === undefined || (v.startsWith("-") && v.length > 1)) throw new UsageError(`${flag} needs a value.`);
        out.push(...v.split(",").filter((s) => s.length > 0));
        i++;
      } else if (raw.startsWith(flag + "=")) {
        out.push(...raw.slice(flag.length + 1).split(",").filter((s) => s.length > 0));
      }
    }
  }
  return out;
}

/** Parses a positive integer flag; undefined stays undefined. */
export function intArg(name: string, value: string | undefined, min = 0): number | undefined {
  if (value === undefined || value === "") return undefined;
  if (!/^\d+$/.test(value)) throw new UsageError(`--${name} must be a whole number, not "${value}".`);
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new UsageError(`--${name} is too large: ${value}.`);
  if (n < min) throw new UsageError(`--${name} must be at least ${min}, not ${value}.`);
  return n;
}

const DURATION_UNITS_MS = { ns: 1e-6, us: 1e-3, ms: 1, s: 1000, m: 60_000 } as const;
type DurationUnit = keyof typeof DURATION_UNITS_MS;

/**
 * A duration flag in milliseconds: `250ms`, `1s`, `1.5s`, `500us`, `2m`, or a bare whole number in
 * `bareUnit` (the original took nanoseconds for --time-between-checkpoints). Bounded by
 * [minMs, maxMs]; anything else is a usage error naming the flag.
 */
export function durationArg(name: string, value: string | undefined, bareUnit: DurationUnit, minMs: number, maxMs: number): number | undefined {
  if (value === undefined || value === "") return undefined;
  const m = /^(\d+(?:\.\d+)?)(ns|us|ms|s|m)?$/.exec(value.trim());
  if (!m || (m[2] === undefined && m[1]!.includes(".")))
    throw new UsageError(`--${name} must be a duration like 250ms, 1s or 2m (or a whole number of ${bareUnit}), not "${value}".`);
  const ms = Number(m[1]) * DURATION_UNITS_MS[(m[2] ?? bareUnit) as DurationUnit];
  if (!(ms >= minMs && ms <= maxMs)) throw new UsageError(`--${name} must be between ${minMs} ms and ${maxMs} ms, not "${value}".`);
  return ms;
}

/**
 * The original's workers were Pony programs, and its scripts pass them Pony runtime flags
 * (`--ponythreads=1`, `--ponynoblock`, `--ponypinasio`, …). A worker here is one process with one
 * JS thread, so they mean nothing; they are set apart (with their value: `=v`, or a number after
 * them, as the Pony runtime read `--ponythreads 4`) so that the original's scripts run unchanged.
 */
export function splitPonyFlags(rawArgs: readonly string[]): { rest: string[]; pony: string[] } {
  const rest: string[] = [];
  const pony: string[] = [];
  for (let i = 0; i < rawArgs.length; i++) {
    const raw = rawArgs[i]!;
    if (raw === "--") {
      rest.push(...rawArgs.slice(i));
      break;
    }
    if (!raw.startsWith("--pony")) {
      rest.push(raw);
      continue;
    }
    const next = rawArgs[i + 1];
    if (!raw.includes("=") && next !== undefined && /^\d+(\.\d+)?$/.test(next)) {
      pony.push(`${raw} ${next}`);
      i++;
    } else pony.push(raw);
  }
  return { rest, pony };
}
