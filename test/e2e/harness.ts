// Drives real `dist/wallaroo` processes on 127.0.0.1 for the e2e tests: ports from the OS,
// every wait with a deadline, every child killed when a test ends (see `killAll`).
import { resolve } from "node:path";
import type { Socket, TCPSocketListener } from "bun";

export const BIN = resolve(import.meta.dir, "../../dist/wallaroo");
export const HOST = "127.0.0.1";

export async function freePort(): Promise<number> {
  const l = Bun.listen({ hostname: HOST, port: 0, socket: { data() {} } });
  const p = l.port;
  l.stop(true);
  return p;
}

export async function waitFor<T>(what: string, deadlineMs: number, probe: () => T | undefined | false | Promise<T | undefined | false>, everyMs = 50): Promise<T> {
  const until = Date.now() + deadlineMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v as T;
    } catch (err) {
      last = err;
    }
    if (Date.now() > until) throw new Error(`timed out after ${deadlineMs} ms waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ""}`);
    await Bun.sleep(everyMs);
  }
}

const live = new Set<Proc>();

/** One child process with its stderr kept for assertions and failure reports. */
export class Proc {
  readonly proc: ReturnType<typeof Bun.spawn>;
  stderr = "";
  stdout = "";
  exitCode: number | null = null;
  readonly exited: Promise<number>;

  constructor(
    readonly label: string,
    readonly args: string[],
  ) {
    this.proc = Bun.spawn([BIN, ...args], { stdout: "pipe", stderr: "pipe", stdin: "ignore" });
    live.add(this);
    const pump = async (stream: ReadableStream<Uint8Array>, into: "stderr" | "stdout") => {
      const dec = new TextDecoder();
      for await (const chunk of stream) this[into] += dec.decode(chunk, { stream: true });
    };
    const a = pump(this.proc.stderr as ReadableStream<Uint8Array>, "stderr");
    const b = pump(this.proc.stdout as ReadableStream<Uint8Array>, "stdout");
    this.exited = this.proc.exited.then(async (code) => {
      await Promise.allSettled([a, b]);
      this.exitCode = code;
      live.delete(this);
      return code;
    });
  }

  /** Waits for a log line; fails at once if the process exits first, with every live log. */
  async waitForLog(pattern: RegExp | string, deadlineMs = 15_000): Promise<void> {
    const until = Date.now() + deadlineMs;
    for (;;) {
      if (typeof pattern === "string" ? this.stderr.includes(pattern) : pattern.test(this.stderr)) return;
      if (this.exitCode !== null) throw new Error(`${this.label} exited with ${this.exitCode} before logging ${pattern}\n${this.tail()}`);
      if (Date.now() > until) throw new Error(`timed out after ${deadlineMs} ms waiting for ${this.label} to log ${pattern}\n${dumpLogs()}`);
      await Bun.sleep(50);
    }
  }

  async waitExit(deadlineMs = 15_000): Promise<number> {
    const t = new Promise<never>((_, rej) => setTimeout(() => rej(new Error(`${this.label} did not exit within ${deadlineMs} ms\n${this.tail()}`)), deadlineMs));
    return Promise.race([this.exited, t]);
  }

  kill(sig: "SIGKILL" | "SIGTERM" = "SIGKILL"): void {
    try {
      this.proc.kill(sig);
    } catch {}
  }

  tail(lines = 30): string {
    return `--- ${this.label} stderr (last ${lines} lines) ---\n` + this.stderr.split("\n").slice(-lines).join("\n");
  }
}

/** Runs the CLI to completion (for query/shrink/shutdown/send). */
export async function cli(args: string[], deadlineMs = 20_000): Promise<{ code: number; stdout: string; stderr: string }> {
  const p = new Proc(`wallaroo ${args[0]}`, args);
  const code = await p.waitExit(deadlineMs);
  return { code, stdout: p.stdout, stderr: p.stderr };
}

export async function killAll(): Promise<void> {
  const procs = [...live];
  for (const p of procs) p.kill("SIGKILL");
  await Promise.allSettled(procs.map((p) => p.exited));
}

export function dumpLogs(): string {
  return [...live].map((p) => p.tail()).join("\n");
}

// ------------------------------------------------------------------------------------ sink

/** The user's receiver: keeps every output line per sink connection, in arrival order. */
export class Receiver {
  private listener: TCPSocketListener<{ id: number; rest: string }> | undefined;
  readonly byConn = new Map<number, string[]>();
  lines = 0;
  connections = 0;
  private nextId = 1;
  private readonly sockets = new Set<Socket<{ id: number; rest: string }>>();
  private paused = false;

  /** Stops reading every connection (a slow receiver), until `resume`. */
  pause(): void {
    this.paused = true;
    for (const s of this.sockets) s.pause();
  }

  resume(): void {
    this.paused = false;
    for (const s of this.sockets) s.resume();
  }

  async start(port = 0): Promise<number> {
    this.listener = Bun.listen<{ id: number; rest: string }>({
      hostname: HOST,
      port,
      socket: {
        open: (s) => {
          this.sockets.add(s);
          if (this.paused) s.pause();
          s.data = { id: this.nextId++, rest: "" };
          this.byConn.set(s.data.id, []);
          this.connections++;
        },
        data: (s, chunk) => {
          const text = s.data.rest + new TextDecoder().decode(chunk);
          const parts = text.split("\n");
          s.data.rest = parts.pop()!;
          const list = this.byConn.get(s.data.id)!;
          for (const l of parts) list.push(l);
          this.lines += parts.length;
        },
        close: (s) => void this.sockets.delete(s),
      },
    });
    return this.listener.port;
  }

  get port(): number {
    return this.listener!.port;
  }

  /** Connections that delivered at least one line. */
  activeConnections(): number {
    let n = 0;
    for (const l of this.byConn.values()) if (l.length > 0) n++;
    return n;
  }

  stop(): void {
    this.listener?.stop(true);
  }
}

// ---------------------------------------------------------------------------------- source

/** Deterministic PRNG (mulberry32) so every run sends what the test expects. */
import { createUnitRng as rng } from "../../src/tools/generators.ts";
export { rng };

export function alphabetFrame(letter: string, votes: number): Uint8Array {
  const b = new Uint8Array(9);
  const v = new DataView(b.buffer);
  v.setUint32(0, 5);
  b[4] = letter.charCodeAt(0);
  v.setUint32(5, votes);
  return b;
}

export function sequenceFrame(key: string, value: number): Uint8Array {
  const k = new TextEncoder().encode(key);
  const b = new Uint8Array(4 + 8 + k.length);
  const v = new DataView(b.buffer);
  v.setUint32(0, 8 + k.length);
  v.setBigUint64(4, BigInt(value));
  b.set(k, 12);
  return b;
}

/**
 * A test sender: writes frames produced by `next` at `rate` frames/s (batched every 10 ms),
 * honouring partial writes, until `stop()` or `limit` frames. It records nothing itself: the
 * frame producer keeps what the validator needs.
 */
export class LoadSender {
  private socket: Socket<undefined> | undefined;
  private pending: Uint8Array[] = [];
  private timer: ReturnType<typeof setInterval> | undefined;
  sent = 0;
  private stopped = false;
  done: Promise<void>;
  private resolveDone!: () => void;

  constructor(
    private readonly port: number,
    private readonly next: () => Uint8Array,
    private readonly rate: number,
    private readonly limit = Infinity,
  ) {
    this.done = new Promise((r) => (this.resolveDone = r));
  }

  async start(): Promise<void> {
    this.socket = await Bun.connect<undefined>({
      hostname: HOST,
      port: this.port,
      socket: {
        data() {},
        drain: () => this.flush(),
        close: () => {},
      },
    });
    const perTick = Math.max(1, Math.round(this.rate / 100));
    this.timer = setInterval(() => {
      if (this.stopped) return;
      // Never queue more than a second ahead: the worker's backpressure must reach us.
      if (this.queued() > this.rate * 9) return;
      const n = Math.min(perTick, this.limit - this.sent);
      if (n <= 0) return this.finish();
      const frames: Uint8Array[] = [];
      let size = 0;
      for (let i = 0; i < n; i++) {
        const f = this.next();
        frames.push(f);
        size += f.length;
      }
      const buf = new Uint8Array(size);
      let o = 0;
      for (const f of frames) {
        buf.set(f, o);
        o += f.length;
      }
      this.sent += n;
      this.pending.push(buf);
      this.flush();
      if (this.sent >= this.limit) this.finish();
    }, 10);
  }

  private queued(): number {
    let n = 0;
    for (const p of this.pending) n += p.length;
    return n;
  }

  private flush(): void {
    while (this.pending.length > 0 && this.socket) {
      const head = this.pending[0]!;
      const w = this.socket.write(head);
      if (w < 0) return;
      if (w < head.length) {
        this.pending[0] = head.subarray(w);
        return;
      }
      this.pending.shift();
    }
    if (this.stopped && this.pending.length === 0) this.resolveDone();
  }

  private finish(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.flush();
  }

  /** Stops producing; resolves once every produced frame was handed to the kernel. */
  async stop(): Promise<void> {
    this.finish();
    await waitFor("the sender to flush", 30_000, () => this.pending.length === 0);
    this.resolveDone();
  }

  close(): void {
    this.finish();
    this.socket?.end();
  }
}

// ------------------------------------------------------------------------------ validation

/** Alphabet inputs with the expectations they imply. */
export class AlphabetLoad {
  readonly votes = new Map<string, number[]>();
  private readonly r: () => number;
  constructor(seed: number, private readonly letters = "abcdefghijklmnopqrstuvwxyz") {
    this.r = rng(seed);
  }
  next = (): Uint8Array => {
    const letter = this.letters[Math.floor(this.r() * this.letters.length)]!;
    const v = 1 + Math.floor(this.r() * 9999);
    let l = this.votes.get(letter);
    if (!l) this.votes.set(letter, (l = []));
    l.push(v);
    return alphabetFrame(letter, v);
  };
  get count(): number {
    let n = 0;
    for (const l of this.votes.values()) n += l.length;
    return n;
  }
}

/**
 * Every input produced exactly one output, carrying its running total (no loss, no duplicate),
 * and on every sink connection each letter's totals only increase (per-key order).
 * Returns a list of problems (empty when exact).
 */
export function checkAlphabet(load: AlphabetLoad, rx: Receiver): string[] {
  const problems: string[] = [];
  const seen = new Map<string, Map<number, number>>();
  for (const [conn, lines] of rx.byConn) {
    const last = new Map<string, number>();
    for (const line of lines) {
      const m = /^(.) => (\d+)$/.exec(line);
      if (!m) {
        problems.push(`connection ${conn}: malformed line ${JSON.stringify(line)}`);
        continue;
      }
      const [, letter, t] = m as unknown as [string, string, string];
      const total = Number(t);
      const prev = last.get(letter) ?? 0;
      if (total <= prev) problems.push(`connection ${conn}: ${letter} went from ${prev} to ${total}`);
      last.set(letter, total);
      let s = seen.get(letter);
      if (!s) seen.set(letter, (s = new Map()));
      s.set(total, (s.get(total) ?? 0) + 1);
    }
  }
  for (const [letter, votes] of load.votes) {
    const s = seen.get(letter) ?? new Map<number, number>();
    let sum = 0;
    let missing = 0;
    for (const v of votes) {
      sum += v;
      const c = s.get(sum) ?? 0;
      if (c === 0) missing++;
      else if (c > 1) problems.push(`${letter}: total ${sum} output ${c} times`);
      s.delete(sum);
    }
    if (missing > 0) problems.push(`${letter}: ${missing} of ${votes.length} outputs missing`);
    if (s.size > 0) problems.push(`${letter}: ${s.size} unexpected totals, e.g. ${[...s.keys()].slice(0, 3).join(",")}`);
  }
  for (const letter of seen.keys()) if (!load.votes.has(letter)) problems.push(`${letter}: output for a letter never sent`);
  return problems.slice(0, 20);
}

/** sequence_window inputs: key i gets 1, 2, 3, … round-robin. */
export class SequenceLoad {
  readonly sentPerKey: number[];
  private i = 0;
  constructor(readonly keys: number) {
    this.sentPerKey = new Array(keys).fill(0);
  }
  next = (): Uint8Array => {
    const k = this.i++ % this.keys;
    const v = ++this.sentPerKey[k]!;
    return sequenceFrame(`key-${k}`, v);
  };
  get count(): number {
    return this.i;
  }
}

/** Each key's outputs are exactly its windows over 1..n, each once, in order per connection. */
export function checkSequence(load: SequenceLoad, rx: Receiver): string[] {
  const problems: string[] = [];
  const seen: Array<Set<number>> = load.sentPerKey.map(() => new Set());
  for (const [conn, lines] of rx.byConn) {
    const last = new Map<number, number>();
    for (const line of lines) {
      const m = /^key-(\d+) \[(\d+),(\d+),(\d+),(\d+)\]$/.exec(line);
      if (!m) {
        problems.push(`connection ${conn}: malformed line ${JSON.stringify(line)}`);
        continue;
      }
      const k = Number(m[1]);
      const w = [Number(m[2]), Number(m[3]), Number(m[4]), Number(m[5])];
      const d = w[3]!;
      const expect = [d - 3, d - 2, d - 1, d].map((x) => Math.max(0, x));
      if (w.join() !== expect.join()) problems.push(`key-${k}: window [${w}] where [${expect}] was expected (state lost or reordered)`);
      if (d <= (last.get(k) ?? 0)) problems.push(`connection ${conn}: key-${k} went from ${last.get(k)} to ${d}`);
      last.set(k, d);
      if (seen[k]!.has(d)) problems.push(`key-${k}: value ${d} output twice`);
      seen[k]!.add(d);
    }
  }
  load.sentPerKey.forEach((n, k) => {
    if (seen[k]!.size !== n) problems.push(`key-${k}: ${n - seen[k]!.size} of ${n} outputs missing`);
  });
  return problems.slice(0, 20);
}
