// `wallaroo receive`: the sink receiver (the original data_receiver). Listens, accepts every
// worker's sink connection, and prints what arrives (raw, or one payload per line with --framed),
// or only counts it. Exits on SIGINT/SIGTERM, after --exit-after N lines/frames, or after
// --idle-exit seconds without data.
import type { FileSink } from "bun";
import { defineCommand } from "citty";
import { formatHostPort, parseHostPort } from "../../src/address.ts";
import { FRAME_HEADER_BYTES } from "../../src/codec/frame.ts";
import { UsageError } from "../../src/errors.ts";
import { log } from "../../src/log.ts";
import { startReceiver } from "../../src/net/receiver.ts";
import { applyLogArgs, intArg, jsonArg, logArgs, rejectUnknownFlags } from "./_args.ts";

const args = {
  listen: { type: "string", alias: "l", description: "address to listen on; port 0 picks a free one (required)", valueHint: "host:port" },
  framed: { type: "boolean", alias: "f", description: "input is u32 BE length-prefixed frames: print each payload and a newline" },
  write: { type: "boolean", default: true, description: "print what arrives", negativeDescription: "print nothing per message, only the count on exit (as --count)" },
  count: { type: "boolean", alias: "n", description: "print nothing per message; print the number of lines (frames with --framed) on exit" },
  output: { type: "string", alias: "o", description: "write to this file instead of stdout", valueHint: "path" },
  "exit-after": { type: "string", description: "exit after this many lines (frames with --framed)", valueHint: "N" },
  "idle-exit": { type: "string", description: "once data has arrived, exit after this many seconds without any", valueHint: "seconds" },
  ...jsonArg,
  ...logArgs,
} as const;

/** Output is gathered into buffers this big so a stream of small frames costs few writes. */
const OUT_BUFFER_BYTES = 64 * 1024;
const NEWLINE = 0x0a;

/**
 * Buffered writes to a FileSink. `pending` is set while the sink is backed up (a pipe nobody
 * reads fast enough); the receiver then stops reading the socket instead of buffering more.
 */
class Output {
  private buf = new Uint8Array(OUT_BUFFER_BYTES);
  private len = 0;
  private scheduled = false;
  pending: Promise<unknown> | null = null;

  constructor(private readonly sink: FileSink) {}

  /** Copies `bytes` (a view that is only valid now), with a newline when asked. */
  put(bytes: Uint8Array, newline: boolean): void {
    const need = bytes.length + (newline ? 1 : 0);
    if (this.len + need > this.buf.length) this.flush();
    if (need > this.buf.length) {
      this.hand(bytes.slice());
      if (newline) this.hand(new Uint8Array([NEWLINE]));
    } else {
      this.buf.set(bytes, this.len);
      this.len += bytes.length;
      if (newline) this.buf[this.len++] = NEWLINE;
    }
    // Everything the current socket callback adds goes out as one write.
    if (!this.scheduled) {
      this.scheduled = true;
      queueMicrotask(() => {
        this.scheduled = false;
        this.flush();
      });
    }
  }

  /** Writes a buffer nobody else will touch again, without copying it. */
  putOwned(bytes: Uint8Array): void {
    this.flush();
    this.hand(bytes);
  }

  flush(): void {
    if (this.len === 0) return;
    let b: Uint8Array;
    if (this.len * 2 < this.buf.length) {
      b = this.buf.slice(0, this.len);
    } else {
      b = this.buf.subarray(0, this.len);
      this.buf = new Uint8Array(OUT_BUFFER_BYTES);
    }
    this.len = 0;
    this.hand(b);
  }

  private hand(b: Uint8Array): void {
    const r = this.sink.write(b);
    if (typeof r === "number") return;
    const p: Promise<unknown> = r.then(
      () => {
        if (this.pending === p) this.pending = null;
      },
      () => {
        if (this.pending === p) this.pending = null;
      },
    );
    this.pending = p;
  }

  async close(endSink: boolean): Promise<void> {
    this.flush();
    await (endSink ? this.sink.end() : this.sink.flush());
  }
}

function countNewlines(chunk: Uint8Array): number {
  let n = 0;
  for (let i = chunk.indexOf(NEWLINE); i !== -1; i = chunk.indexOf(NEWLINE, i + 1)) n++;
  return n;
}

/** Index just past the `n`-th newline (n ≥ 1), or -1 when the chunk has fewer. */
function afterNthNewline(chunk: Uint8Array, n: number): number {
  let i = -1;
  for (let k = 0; k < n; k++) {
    i = chunk.indexOf(NEWLINE, i + 1);
    if (i === -1) return -1;
  }
  return i + 1;
}

export default defineCommand({
  meta: { name: "receive", description: "Listen for sink connections and print or count what arrives" },
  args,
  async run({ rawArgs, args: a }) {
    rejectUnknownFlags(rawArgs, args);
    applyLogArgs(a);

    if (a.listen === undefined || a.listen === "") throw new UsageError("Must supply required '--listen' argument");
    const at = parseHostPort(a.listen, "--listen");
    const framed = a.framed === true;
    const counting = a.count === true || a.write === false;
    if (counting && a.output !== undefined) throw new UsageError("--output has nothing to write with --count or --no-write.");
    const exitAfter = intArg("exit-after", a["exit-after"], 1);
    const idleExitS = intArg("idle-exit", a["idle-exit"], 1);
    const json = a.json === true;

    const toStdout = !counting && a.output === undefined;
    const out = counting ? null : new Output(a.output !== undefined ? Bun.file(a.output).writer() : Bun.stdout.writer());

    let lines = 0;
    let bytes = 0;
    let connections = 0;
    let lastDataMs = 0;
    let stopping = false;
    let finish!: () => void;
    const finished = new Promise<void>((resolve) => (finish = resolve));
    const stop = () => {
      stopping = true;
      finish();
    };

    const onData = (_conn: number, chunk: Uint8Array): Promise<unknown> | undefined => {
      if (stopping) return undefined;
      lastDataMs = performance.now();
      if (framed) {
        bytes += FRAME_HEADER_BYTES + chunk.length;
        lines++;
        out?.put(chunk, true);
        if (exitAfter !== undefined && lines >= exitAfter) stop();
      } else {
        let take = chunk;
        const cut = exitAfter === undefined ? -1 : afterNthNewline(chunk, exitAfter - lines);
        if (cut !== -1) take = chunk.subarray(0, cut);
        bytes += take.length;
        lines += cut !== -1 ? exitAfter! - lines : countNewlines(take);
        out?.putOwned(take);
        if (cut !== -1) stop();
      }
      return out?.pending ?? undefined;
    };

    const receiver = await startReceiver({
      host: at.host,
      port: at.port,
      framed,
      onData,
      onOpen: () => {
        connections++;
      },
    });
    log.info("receiver_listening", `Listening on ${formatHostPort({ host: receiver.host, port: receiver.port })}`, {
      host: receiver.host,
      port: receiver.port,
    });

    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
    let idleTimer: ReturnType<typeof setInterval> | undefined;
    if (idleExitS !== undefined) {
      const idleMs = idleExitS * 1000;
      idleTimer = setInterval(() => {
        if (lastDataMs > 0 && performance.now() - lastDataMs >= idleMs) stop();
      }, Math.min(1000, idleMs / 4));
    }
    try {
      await finished;
    } finally {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      if (idleTimer) clearInterval(idleTimer);
      receiver.stop();
    }

    let last: string | undefined;
    if (json) last = JSON.stringify({ connections, bytes, lines }) + "\n";
    else if (counting) last = `${lines}\n`;
    if (last !== undefined && toStdout && out) out.putOwned(new TextEncoder().encode(last));
    await out?.close(a.output !== undefined);
    if (last !== undefined && !(toStdout && out)) process.stdout.write(last);
    log.debug("receiver_done", `Received ${lines} ${framed ? "frames" : "lines"} (${bytes} bytes) over ${connections} connections.`, {
      connections,
      bytes,
      lines,
    });
    return 0;
  },
});
