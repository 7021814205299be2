// The sink receiver (what the workers' `--out` connects to), inside the test, bench or demo
// process: one connection per worker, each chunk handed to an OutputHandler with the time it
// arrived. Waits end on the events themselves: a line arriving, a connection opening, the last
// connection reaching EOF (every worker flushed its sink and closed it, as on shutdown).
import type { Socket, TCPSocketListener } from "bun";
import { HOST } from "./process.ts";
import { Conditions, now } from "./wait.ts";

/** Per-connection state the receiver keeps; handlers keep their own per-connection state by `id`. */
export interface Conn {
  readonly id: number;
  lines: number;
  bytes: number;
  /** Bytes of an unfinished line from the previous chunk. */
  carry: Uint8Array;
  /** The last chunks received (for a final parse of the tail, e.g. alphabet totals). */
  tail: Uint8Array[];
  openedAt: number;
  closedAt?: number;
}

/** What the receiver does with each chunk; it must count complete lines into conn.lines. */
export interface OutputHandler {
  onChunk(conn: Conn, chunk: Uint8Array, t: number): void;
}

/** Connection ids are unique across receivers, so one handler can serve a receiver and its successor. */
let nextConnId = 0;
const TAIL_CHUNKS = 4;

export class Receiver<H extends OutputHandler = OutputHandler> {
  private server: TCPSocketListener<Conn> | undefined;
  private readonly sockets = new Set<Socket<Conn>>();
  private readonly changes = new Conditions();
  private paused = false;
  readonly conns: Conn[] = [];
  lines = 0;
  firstAt = NaN;
  lastAt = NaN;

  constructor(readonly handler: H) {}

  /** Listens on `port` (0: the OS picks) at `host` and returns the port. */
  listen(port = 0, host = HOST): number {
    this.server = Bun.listen<Conn>({
      hostname: host,
      port,
      socket: {
        open: (s) => {
          const c: Conn = { id: nextConnId++, lines: 0, bytes: 0, carry: new Uint8Array(0), tail: [], openedAt: now() };
          s.data = c;
          this.conns.push(c);
          this.sockets.add(s);
          if (this.paused) s.pause();
          this.changes.changed();
        },
        data: (s, chunk) => {
          const t = now();
          const c = s.data;
          const before = c.lines;
          c.bytes += chunk.length;
          this.handler.onChunk(c, chunk, t);
          c.tail.push(chunk);
          if (c.tail.length > TAIL_CHUNKS) c.tail.shift();
          this.lines += c.lines - before;
          if (Number.isNaN(this.firstAt)) this.firstAt = t;
          this.lastAt = t;
          this.changes.changed();
        },
        close: (s) => {
          s.data.closedAt = now();
          this.sockets.delete(s);
          this.changes.changed();
        },
        error() {},
      },
    });
    return this.server.port;
  }

  get port(): number {
    return this.server!.port;
  }

  /** Connections accepted so far. */
  get connections(): number {
    return this.conns.length;
  }

  /** Connections not yet closed by their worker. */
  get open(): number {
    return this.sockets.size;
  }

  /** Connections that delivered at least one line. */
  get activeConnections(): number {
    return this.conns.filter((c) => c.lines > 0).length;
  }

  /** Stops reading every connection (a stalled receiver), until `resume`. */
  pause(): void {
    this.paused = true;
    for (const s of this.sockets) s.pause();
  }

  resume(): void {
    this.paused = false;
    for (const s of this.sockets) s.resume();
  }

  /** Resolves once `test()` holds, looked at whenever a chunk arrives or a connection opens or closes. */
  until(test: () => boolean, deadline_ms: number, what: string): Promise<void> {
    return this.changes.until(test, deadline_ms, what, () => `have ${this.lines} lines`);
  }

  waitLines(n: number, deadline_ms: number, what = `${n} output lines`): Promise<void> {
    return this.changes.until(() => this.lines >= n, deadline_ms, what, () => `have ${this.lines}`);
  }

  /**
   * Waits for `n` lines however long a big run takes, but fails once none has arrived for
   * `stall_ms`, or as soon as `abort` throws (a worker died).
   */
  async waitLinesFlowing(n: number, stall_ms: number, what: string, abort?: () => void): Promise<void> {
    let last = this.lines;
    let moved = now();
    while (this.lines < n) {
      abort?.();
      if (this.lines !== last) {
        last = this.lines;
        moved = now();
      } else if (now() - moved > stall_ms) {
        throw new Error(`${what}: outputs stalled at ${this.lines}/${n} for ${stall_ms} ms`);
      }
      // Wakes on the next line, or after a tick to look at `abort` and the stall again.
      const seen = this.lines;
      await this.changes.until(() => this.lines !== seen, 100, "").catch(() => {});
    }
  }

  waitConnections(n: number, deadline_ms: number): Promise<void> {
    return this.changes.until(() => this.conns.length >= n, deadline_ms, `${n} sink connections`, () => `have ${this.conns.length}`);
  }

  /** EOF on every connection accepted so far: nothing more can arrive from those workers. */
  waitAllClosed(deadline_ms: number): Promise<void> {
    return this.changes.until(() => this.sockets.size === 0, deadline_ms, "EOF on every sink connection", () => `${this.sockets.size} still open`);
  }

  stop(): void {
    this.server?.stop(true);
  }
}

/** Only counts newlines: the cheapest handler (≈2 GB/s, far above a line-at-a-time parse). */
export class CountLines implements OutputHandler {
  onChunk(conn: Conn, chunk: Uint8Array): void {
    let n = 0;
    for (let i = 0; i < chunk.length; i++) if (chunk[i] === 10) n++;
    conn.lines += n;
  }
}

/** Keeps every line as text, per connection in arrival order (for tests that read the lines). */
export class KeepLines implements OutputHandler {
  readonly byConn = new Map<number, string[]>();
  private readonly dec = new TextDecoder();

  onChunk(conn: Conn, chunk: Uint8Array): void {
    let list = this.byConn.get(conn.id);
    if (!list) this.byConn.set(conn.id, (list = []));
    eachLine(conn, chunk, (b, start, end) => void list.push(this.dec.decode(b.subarray(start, end))));
  }

  /** Every line of every connection. */
  all(): string[] {
    return [...this.byConn.values()].flat();
  }
}

/**
 * Calls `fn` for each complete line of a chunk (without its newline), the previous chunk's
 * unfinished line glued on, and counts the lines into `conn.lines`.
 */
export function eachLine(conn: Conn, chunk: Uint8Array, fn: (buf: Uint8Array, start: number, end: number) => void): void {
  const b = chunk as Buffer;
  let start = 0;
  if (conn.carry.length > 0) {
    const nl = b.indexOf(10);
    const joined = new Uint8Array(conn.carry.length + (nl === -1 ? b.length : nl));
    joined.set(conn.carry);
    joined.set(b.subarray(0, nl === -1 ? b.length : nl), conn.carry.length);
    if (nl === -1) {
      conn.carry = joined;
      return;
    }
    conn.carry = new Uint8Array(0);
    fn(joined, 0, joined.length);
    conn.lines++;
    start = nl + 1;
  }
  let nl = b.indexOf(10, start);
  while (nl !== -1) {
    fn(b, start, nl);
    conn.lines++;
    start = nl + 1;
    nl = b.indexOf(10, start);
  }
  if (start < b.length) conn.carry = b.slice(start);
}
