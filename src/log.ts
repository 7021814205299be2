// Logs go to stderr through consola; stdout is reserved for data and --json answers.
// In JSON mode every line is one object with a stable `event` name so scripts can wait on it.
import { createConsola, type ConsolaInstance, type LogObject } from "consola/core";

export type LogFormat = "text" | "json";
export const LOG_LEVELS = { silent: -999, error: 0, warn: 1, info: 3, debug: 4, trace: 5 } as const;
export type LogLevelName = keyof typeof LOG_LEVELS;

let worker = "";
let instance: ConsolaInstance = build("text", "info");

/**
 * One log line is one line: names, reasons and addresses that came from the network may carry
 * newlines or terminal escapes, and a forged line in an operator's log is a lie told in our
 * voice. Control characters (C0, DEL, C1, and the Unicode line separators) are shown escaped.
 * JSON lines need none of this: JSON.stringify escapes them already.
 */
export function printable(s: string): string {
  return s.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => {
    if (c === "\n") return "\\n";
    if (c === "\r") return "\\r";
    if (c === "\t") return "\\t";
    return `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`;
  });
}

function build(format: LogFormat, level: LogLevelName): ConsolaInstance {
  const reporter = {
    log(obj: LogObject) {
      const [first, ...rest] = obj.args;
      const msg = typeof first === "string" ? first : String(first);
      const fields = rest.length === 1 && typeof rest[0] === "object" && rest[0] !== null ? (rest[0] as Record<string, unknown>) : undefined;
      if (format === "json") {
        const line = JSON.stringify({
          time: obj.date.toISOString(),
          level: obj.type,
          worker: worker || undefined,
          event: fields?.event ?? "log",
          msg,
          ...fields,
        });
        process.stderr.write(line + "\n");
      } else {
        const prefix = worker ? `[${worker}] ` : "";
        const tag = obj.type === "info" || obj.type === "log" || obj.type === "success" ? "" : `${obj.type.toUpperCase()} `;
        process.stderr.write(`${prefix}${tag}${printable(msg)}\n`);
      }
    },
  };
  return createConsola({ level: LOG_LEVELS[level], reporters: [reporter] });
}

export function configureLog(opts: { format?: LogFormat; level?: LogLevelName; worker?: string }): void {
  if (opts.worker !== undefined) worker = opts.worker;
  instance = build(opts.format ?? "text", opts.level ?? "info");
}

export function setLogWorker(name: string): void {
  worker = name;
}

/** A log line as the simulator takes it (see `tapLog`). */
export type LogTap = (level: "info" | "warn" | "error" | "debug", event: string, msg: string, fields?: Record<string, unknown>) => void;
let tap: LogTap | undefined;

/**
 * Hands every line to `fn` instead of consola (undefined: back to consola). The in-process
 * simulation runs many workers in one process on virtual time: it puts their lines in its trace,
 * and consola's repeat throttling reads the wall clock and sets real timers. The binary never
 * calls this.
 */
export function tapLog(fn: LogTap | undefined): void {
  tap = fn;
}

/**
 * `event` is the stable name in JSON mode; `msg` is the operator-facing text (worded after the
 * original Wallaroo's lines so existing scripts can grep them).
 */
export const log = {
  info: (event: string, msg: string, fields?: Record<string, unknown>) => (tap ? tap("info", event, msg, fields) : instance.info(msg, { event, ...fields })),
  warn: (event: string, msg: string, fields?: Record<string, unknown>) => (tap ? tap("warn", event, msg, fields) : instance.warn(msg, { event, ...fields })),
  error: (event: string, msg: string, fields?: Record<string, unknown>) => (tap ? tap("error", event, msg, fields) : instance.error(msg, { event, ...fields })),
  debug: (event: string, msg: string, fields?: Record<string, unknown>) => (tap ? tap("debug", event, msg, fields) : instance.debug(msg, { event, ...fields })),
};
