// `wallaroo send`: the load generator. Frames from a file (like the original votes.msg) or from a
// built-in generator go to one or more source addresses, as fast as possible or at --rate.
import { defineCommand } from "citty";
import { formatHostPort, MAX_SOURCE_MAX_FRAME, parseHostPort } from "../../src/address.ts";
import { FRAME_HEADER_BYTES, readU32 } from "../../src/codec/frame.ts";
import { UsageError } from "../../src/errors.ts";
import { log } from "../../src/log.ts";
import { ConnectionLostError, runSender, SendUnreachableError, type SendResult } from "../../src/net/sender.ts";
import { checkFramedFile, GENERATORS, isGeneratorName } from "../../src/tools/generators.ts";
import { applyLogArgs, intArg, jsonArg, logArgs, rejectUnknownFlags, repeatedValues } from "./_args.ts";

const args = {
  to: { type: "string", alias: "t", description: "source address(es) to send to, round-robin (required)", valueHint: "host:port[,host:port]" },
  file: { type: "string", alias: "f", description: "file of framed messages (u32 BE length + payload each)", valueHint: "path" },
  generator: { type: "string", description: `built-in messages: ${Object.keys(GENERATORS).join(" | ")} (default alphabet)`, valueHint: "name" },
  messages: { type: "string", alias: "m", description: "total messages to send (a file without --repeat stops at its end)", valueHint: "N" },
  repeat: { type: "boolean", alias: "r", description: "loop the file; without --messages, send until interrupted" },
  rate: { type: "string", description: "messages per second over all targets (default: as fast as possible)", valueHint: "N" },
  keys: { type: "string", alias: "k", description: "number of distinct keys the generator uses", valueHint: "K" },
  seed: { type: "string", description: "generator seed (default 1)", valueHint: "S" },
  reconnect: { type: "boolean", default: true, description: "reconnect when a connection drops", negativeDescription: "stop with an error when a connection drops" },
  timeout: { type: "string", default: "30", description: "seconds to wait for each target to accept a connection", valueHint: "seconds" },
  ...jsonArg,
  ...logArgs,
} as const;

/** How often a progress line is logged (debug level) on a long run. */
const PROGRESS_EVERY_MS = 10_000;

interface Source {
  next: () => Uint8Array | null;
  describe: string;
}

async function fileSource(path: string, limit: number | undefined, repeat: boolean): Promise<Source> {
  let bytes: Uint8Array;
  try {
    bytes = await Bun.file(path).bytes();
  } catch (err) {
    throw new UsageError(`Cannot read --file ${path}: ${err instanceof Error ? err.message : String(err)}`);
  }
  const count = checkFramedFile(bytes, MAX_SOURCE_MAX_FRAME);
  if (count === 0) throw new UsageError(`--file ${path} holds no messages.`);
  let pos = 0;
  let sent = 0;
  return {
    describe: `${count} messages from ${path}${repeat ? " (repeated)" : ""}`,
    next() {
      if (limit !== undefined && sent >= limit) return null;
      if (pos >= bytes.length) {
        if (!repeat) return null;
        pos = 0;
      }
      const end = pos + FRAME_HEADER_BYTES + readU32(bytes, pos);
      const frame = bytes.subarray(pos, end);
      pos = end;
      sent++;
      return frame;
    },
  };
}

function generatorSource(name: string, seed: number, keys: number | undefined, limit: number | undefined): Source {
  if (!isGeneratorName(name)) throw new UsageError(`--generator must be one of ${Object.keys(GENERATORS).join(", ")}, not "${name}".`);
  let gen;
  try {
    gen = GENERATORS[name]({ seed, keys });
  } catch (err) {
    if (err instanceof RangeError) throw new UsageError(`--keys: ${err.message}.`);
    throw err;
  }
  let sent = 0;
  return {
    describe: `${name} messages`,
    next() {
      if (limit !== undefined && sent >= limit) return null;
      sent++;
      return gen.next();
    },
  };
}

function summary(r: SendResult, json: boolean, targets: string): void {
  if (json) process.stdout.write(JSON.stringify({ sent: r.sent, bytes: r.bytes, reconnects: r.reconnects }) + "\n");
  else log.info("send_done", `Sent ${r.sent} messages (${r.bytes} bytes) to ${targets}; ${r.reconnects} reconnects.`, { ...r });
}

export default defineCommand({
  meta: { name: "send", description: "Send framed messages from a file or a generator to source addresses" },
  args,
  async run({ rawArgs, args: a }) {
    rejectUnknownFlags(rawArgs, args);
    applyLogArgs(a);

    const to = repeatedValues(rawArgs, ["to", "t"]);
    if (to.length === 0) throw new UsageError("Must supply required '--to' argument.");
    const targets = to.map((t) => parseHostPort(t, "--to"));
    const messages = intArg("messages", a.messages, 1);
    const rate = intArg("rate", a.rate, 1);
    const keys = intArg("keys", a.keys, 1);
    const seedGiven = intArg("seed", a.seed, 0);
    const timeoutS = intArg("timeout", a.timeout, 1) ?? 30;
    const repeat = a.repeat === true;

    let source: Source;
    if (a.file !== undefined) {
      if (a.generator !== undefined) throw new UsageError("--file and --generator cannot be used together.");
      if (keys !== undefined) throw new UsageError("--keys applies to --generator, not to --file.");
      if (seedGiven !== undefined) throw new UsageError("--seed applies to --generator, not to --file.");
      source = await fileSource(a.file, messages, repeat);
    } else {
      if (messages === undefined && !repeat) {
        throw new UsageError("A generator never runs out: give --messages N, or --repeat to send until interrupted.");
      }
      source = generatorSource(a.generator ?? "alphabet", seedGiven ?? 1, keys, messages);
    }

    const targetText = targets.map(formatHostPort).join(",");
    const abort = new AbortController();
    const onSignal = () => abort.abort();
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
    const started = performance.now();
    let lastLog = started;
    log.info("send_start", `Sending ${source.describe} to ${targetText}${rate ? ` at ${rate} msg/s` : ""}.`, { targets: targetText, rate });
    try {
      const result = await runSender({
        targets,
        next: source.next,
        ratePerSec: rate,
        deadlineMs: timeoutS * 1000,
        reconnect: a.reconnect !== false,
        signal: abort.signal,
        onProgress(sent) {
          const now = performance.now();
          if (now - lastLog < PROGRESS_EVERY_MS) return;
          lastLog = now;
          log.debug("send_progress", `Sent ${sent} messages (${Math.round((sent * 1000) / (now - started))} msg/s).`, { sent });
        },
      });
      summary(result, a.json === true, targetText);
      return 0;
    } catch (err) {
      // A dropped connection still has a count worth reporting before the error.
      if (err instanceof ConnectionLostError || err instanceof SendUnreachableError) summary(err.result, a.json === true, targetText);
      throw err;
    } finally {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    }
  },
});
