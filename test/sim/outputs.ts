// The user's receiver in a simulated run: it reads every worker's sink connection and checks the
// sequence_window outputs as they arrive (`key-N [a,b,c,d]`, d the input's sequence number).
// Per key: no value twice (across all connections), values increasing on each connection, and a
// window of consecutive values ending at d (state carried intact across every move). Whether a
// key may have lost messages (its owner died) is decided at the end, by the caller.

const LINE = /^key-(\d+) \[(\d+),(\d+),(\d+),(\d+)\]$/;

export class OutputCheck {
  /** Safety problems: a malformed line, a duplicate, a value going back on one connection. */
  readonly problems: string[] = [];
  /** Keys with a window that is not consecutive (a problem unless the key's owner died). */
  readonly badWindows = new Map<number, string>();
  private readonly seen: Array<Set<number>>;
  private readonly lastOnConn = new Map<number, Map<number, number>>();
  received = 0;

  /** Outputs produced again after a rollback (resilient runs), by key. */
  replayed = 0;

  /**
   * `replays`: a resilient run, whose outputs are at least once: a value may come out again after
   * a rollback (with the same window), and a connection may go back to an earlier value; a
   * window that is not consecutive is a problem at the end unless the key was given up.
   */
  constructor(
    keys: number,
    private readonly replays = false,
  ) {
    this.seen = Array.from({ length: keys }, () => new Set<number>());
  }

  /** A decoder for one sink connection. */
  connection(conn: number): (chunk: Uint8Array) => void {
    const dec = new TextDecoder();
    const last = new Map<number, number>();
    this.lastOnConn.set(conn, last);
    let rest = "";
    return (chunk) => {
      const parts = (rest + dec.decode(chunk, { stream: true })).split("\n");
      rest = parts.pop()!;
      for (const line of parts) this.line(conn, last, line);
    };
  }

  private line(conn: number, last: Map<number, number>, line: string): void {
    this.received++;
    const m = LINE.exec(line);
    if (!m) return void this.problem(`malformed output ${JSON.stringify(line)} on sink connection ${conn}`);
    const k = Number(m[1]);
    const d = Number(m[5]);
    const seen = this.seen[k];
    if (!seen) return void this.problem(`output for unknown key-${k}`);
    if (seen.has(d) && !this.replays) this.problem(`key-${k}: value ${d} output twice`);
    if (seen.has(d)) this.replayed++;
    seen.add(d);
    const prev = last.get(k) ?? 0;
    if (d <= prev && !this.replays) this.problem(`key-${k}: went from ${prev} to ${d} on sink connection ${conn}`);
    last.set(k, d);
    const want = [d - 3, d - 2, d - 1, d].map((x) => Math.max(0, x)).join(",");
    const got = [m[2], m[3], m[4], m[5]].join(",");
    if (got !== want && !this.badWindows.has(k)) this.badWindows.set(k, `key-${k}: window [${got}] where [${want}] was expected`);
  }

  private problem(p: string): void {
    if (this.problems.length < 20) this.problems.push(p);
  }

  /** Outputs of key k seen so far. */
  count(k: number): number {
    return this.seen[k]!.size;
  }

  /** Values of key k in 1..sent that never came out. */
  missing(k: number, sent: number): number {
    return sent - this.seen[k]!.size;
  }
}
