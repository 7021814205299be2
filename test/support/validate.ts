// What the sinks must show, checked as the outputs arrive (each validator is a receiver's
// OutputHandler) and summed up at the end against what the workload sent: every input produced
// exactly one output (no loss, no duplicate), each key's outputs only move forward on every sink
// connection (per-key order), and every output is right (alphabet: a running total; sequence_window:
// the exact window).
import type { AlphabetWorkload, SequenceWorkload } from "./load.ts";
import { eachLine, type Conn, type OutputHandler } from "./receiver.ts";

/** Problems listed at most this many times, so a broken run reports readably. */
const MAX_PROBLEMS = 20;

function note(problems: string[], p: string): void {
  if (problems.length < MAX_PROBLEMS) problems.push(p);
}

const dec = new TextDecoder();
const text = (b: Uint8Array, start: number, end: number) => dec.decode(b.subarray(start, end));

/** A run of ASCII digits as a number, or -1. */
function digits(b: Uint8Array, start: number, end: number): number {
  if (end <= start) return -1;
  let v = 0;
  for (let i = start; i < end; i++) {
    const d = b[i]! - 48;
    if (d < 0 || d > 9) return -1;
    v = v * 10 + d;
  }
  return v;
}

/** `<letter> => <total>` lines of the alphabet application. */
export class AlphabetValidator implements OutputHandler {
  /** Letter → total → how many times it was output. */
  readonly seen = new Map<string, Map<number, number>>();
  /** Per connection id, letter code → last total. */
  private readonly last = new Map<number, Float64Array>();
  readonly problems: string[] = [];

  onChunk(conn: Conn, chunk: Uint8Array): void {
    let last = this.last.get(conn.id);
    if (!last) this.last.set(conn.id, (last = new Float64Array(256)));
    eachLine(conn, chunk, (b, start, end) => {
      // " => " between the letter and the digits.
      const total = b[start + 1] === 32 && b[start + 2] === 61 && b[start + 3] === 62 && b[start + 4] === 32 ? digits(b, start + 5, end) : -1;
      if (total < 0) return note(this.problems, `connection ${conn.id}: malformed line ${JSON.stringify(text(b, start, end))}`);
      const code = b[start]!;
      const letter = String.fromCharCode(code);
      if (total <= last[code]!) note(this.problems, `connection ${conn.id}: ${letter} went from ${last[code]} to ${total}`);
      last[code] = total;
      let s = this.seen.get(letter);
      if (!s) this.seen.set(letter, (s = new Map()));
      s.set(total, (s.get(total) ?? 0) + 1);
    });
  }

  /** Outputs received for `letter`. */
  outputs(letter: string): number {
    let n = 0;
    for (const c of this.seen.get(letter)?.values() ?? []) n += c;
    return n;
  }

  /** The highest total received per letter. */
  lastTotals(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [l, s] of this.seen) out.set(l, Math.max(...s.keys()));
    return out;
  }

  /**
   * Every one of the first `total` messages of `wl` produced exactly one output carrying its
   * letter's running total, and nothing else was output. Empty when exact.
   */
  verify(wl: AlphabetWorkload, total: number): string[] {
    const problems = [...this.problems];
    const votes = wl.votesByLetter(total);
    for (const [letter, vs] of votes) {
      const s = new Map(this.seen.get(letter) ?? []);
      let sum = 0;
      let missing = 0;
      for (const v of vs) {
        sum += v;
        const c = s.get(sum) ?? 0;
        if (c === 0) missing++;
        else if (c > 1) note(problems, `${letter}: total ${sum} output ${c} times`);
        s.delete(sum);
      }
      if (missing > 0) note(problems, `${letter}: ${missing} of ${vs.length} outputs missing`);
      if (s.size > 0) note(problems, `${letter}: ${s.size} totals that are not running totals of its votes, e.g. ${[...s.keys()].slice(0, 3).join(",")}`);
    }
    for (const letter of this.seen.keys()) if (!votes.has(letter)) note(problems, `${letter}: output for a letter never sent`);
    return problems;
  }
}

/** Input-log positions a recovery replayed: messages from ≤ i < to. */
export interface Replayed {
  from: number;
  to: number;
}

/**
 * `<letter> => <total>` lines of alphabet on a cluster that recovers from crashes. Outputs are
 * at-least-once with deterministic replay: a recovery rolls every letter back to the last
 * committed checkpoint and produces the same totals again, in the same order. Order holds per
 * sink connection only: when a grow or shrink moves a letter, the old owner's last outputs may
 * arrive after the new owner's first ones (and a restarted worker opens a new connection). So per
 * letter: every running total arrives, nothing else, and the highest is the final total; on each
 * connection the totals move forward (skipping those output elsewhere) except at most once per
 * recovery, going back to totals output again elsewhere or before (replays) until they pass the
 * connection's previous highest; no total comes more than once per recovery besides its first;
 * and, when the recoveries' replayed input positions are given, only totals of replayed messages
 * come more than once. AlphabetValidator stays the exact check of a cluster that never rolls back.
 */
export class ReplayingAlphabetValidator implements OutputHandler {
  /** Letter → its totals in arrival order. */
  readonly arrivals = new Map<string, number[]>();
  /** Letter → the sink connection of each of its arrivals (parallel to `arrivals`). */
  private readonly arrivalConns = new Map<string, number[]>();
  readonly problems: string[] = [];
  /**
   * Outputs whose total was not above every total of its letter that had arrived before (over
   * all connections), counted as they arrive: replays, and the rare late output of a letter's
   * previous owner. For waits and progress; `replays()` is the exact count.
   */
  repeats = 0;
  /** Times a letter's total did not move forward, in arrival order over all connections. */
  wentBack = 0;
  /** Letter code → the highest total so far, and the last one. */
  private readonly max = new Float64Array(256).fill(-1);
  private readonly last = new Float64Array(256).fill(-1);

  onChunk(conn: Conn, chunk: Uint8Array): void {
    eachLine(conn, chunk, (b, start, end) => {
      // " => " between the letter and the digits.
      const total = b[start + 1] === 32 && b[start + 2] === 61 && b[start + 3] === 62 && b[start + 4] === 32 ? digits(b, start + 5, end) : -1;
      if (total < 0) return note(this.problems, `connection ${conn.id}: malformed line ${JSON.stringify(text(b, start, end))}`);
      const code = b[start]!;
      const letter = String.fromCharCode(code);
      if (total <= this.max[code]!) this.repeats++;
      if (total <= this.last[code]!) this.wentBack++;
      this.max[code] = Math.max(this.max[code]!, total);
      this.last[code] = total;
      let a = this.arrivals.get(letter);
      if (!a) {
        this.arrivals.set(letter, (a = []));
        this.arrivalConns.set(letter, []);
      }
      a.push(total);
      this.arrivalConns.get(letter)!.push(conn.id);
    });
  }

  /** The highest total received per letter. */
  maxTotals(): Map<string, number> {
    const out = new Map<string, number>();
    for (const l of this.arrivals.keys()) out.set(l, this.max[l.charCodeAt(0)]!);
    return out;
  }

  /** Outputs of a total that had been output before (of `letter`, or of every letter): the replays. */
  replays(letter?: string): number {
    let n = 0;
    for (const [l, a] of this.arrivals) if (letter === undefined || l === letter) n += a.length - new Set(a).size;
    return n;
  }

  /**
   * The outputs for the first `total` messages of `wl`, after at most `recoveries` recoveries
   * (their replayed input positions in `replayed` when known), by the rule above. Empty when so.
   */
  verify(wl: AlphabetWorkload, total: number, recoveries: number, replayed?: readonly Replayed[]): string[] {
    const problems = [...this.problems];
    const votes = wl.votesByLetter(total);
    for (const [letter, vs] of votes) {
      // Votes are at least 1: running totals strictly increase, so a total names its position.
      const index = new Map<number, number>();
      const totals: number[] = [];
      let sum = 0;
      vs.forEach((v, i) => {
        index.set((sum += v), i);
        totals.push(sum);
      });
      const arrived = this.arrivals.get(letter) ?? [];
      const conns = this.arrivalConns.get(letter) ?? [];
      const times = new Uint32Array(vs.length);
      let foreign = 0;
      for (const t of arrived) {
        const i = index.get(t);
        if (i === undefined) foreign++;
        else times[i]!++;
      }
      // Per connection: the last position, the highest so far, and the steps back.
      const prevOn = new Map<number, number>();
      const highest = new Map<number, number>();
      const back = new Map<number, number>();
      arrived.forEach((t, k) => {
        const i = index.get(t);
        if (i === undefined) return;
        const c = conns[k]!;
        const p = prevOn.get(c);
        if (p !== undefined && i <= p) back.set(c, (back.get(c) ?? 0) + 1);
        prevOn.set(c, i);
        // Below what this connection already carried: a replay, so output at least twice in all.
        const h = highest.get(c) ?? -1;
        if (i <= h && times[i]! < 2) note(problems, `${letter}: ${t} came on connection ${c} after ${totals[h]} there, yet it was output only once (a step back that is no replay)`);
        highest.set(c, Math.max(h, i));
      });
      for (const [c, n] of back) if (n > recoveries) note(problems, `${letter}: went back ${n} times on connection ${c} for ${recoveries} recoveries`);
      let missing = 0;
      let over = 0;
      let notReplayed = 0;
      let overExample = "";
      let notReplayedExample = "";
      for (let i = 0; i < vs.length; i++) {
        if (times[i] === 0) missing++;
        if (times[i]! > 1 + recoveries) {
          over++;
          overExample ||= `${totals[i]} output ${times[i]} times`;
        }
        if (replayed && times[i]! > 1) {
          const m = wl.indexOfOccurrence(letter.charCodeAt(0), i);
          if (!replayed.some((r) => m >= r.from && m < r.to)) {
            notReplayed++;
            notReplayedExample ||= `${totals[i]} (message ${m}) output ${times[i]} times`;
          }
        }
      }
      if (missing > 0) note(problems, `${letter}: ${missing} of ${vs.length} running totals never output`);
      if (foreign > 0) note(problems, `${letter}: ${foreign} outputs that are not running totals of its votes`);
      if (over > 0) note(problems, `${letter}: ${over} totals output more than once per recovery (${recoveries} recoveries), e.g. ${overExample}`);
      if (notReplayed > 0) note(problems, `${letter}: ${notReplayed} totals output more than once that no recovery replayed, e.g. ${notReplayedExample}`);
      const top = Math.max(-1, ...[...highest.values()]);
      if (top !== vs.length - 1) note(problems, `${letter}: the highest total output is ${top < 0 ? "none" : totals[top]}, not the final total ${sum}`);
    }
    for (const letter of this.arrivals.keys()) if (!votes.has(letter)) note(problems, `${letter}: output for a letter never sent`);
    return problems;
  }
}

/**
 * The last `<letter> => <total>` per letter out of each connection's last chunks: the cheap
 * check of a throughput run, which keeps nothing else.
 */
export function alphabetTotalsFromTails(conns: readonly Conn[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const c of conns) {
    for (const line of dec.decode(Buffer.concat(c.tail)).split("\n")) {
      const m = /^(.) => (\d+)$/.exec(line);
      if (m) out.set(m[1]!, Math.max(out.get(m[1]!) ?? 0, Number(m[2])));
    }
  }
  return out;
}

/** The last totals are the sums of the votes sent; empty when exact. */
export function checkAlphabetTotals(expected: Map<string, number>, got: Map<string, number>): string[] {
  const problems: string[] = [];
  for (const [l, v] of expected) if (got.get(l) !== v) note(problems, `${l}: last total ${got.get(l) ?? "none"}, expected ${v}`);
  for (const l of got.keys()) if (!expected.has(l)) note(problems, `${l}: output for a letter never sent`);
  return problems;
}

/** Same rule as the application's windowIsValid: zeros, then a run up by one, starting at 1 after zeros. */
function windowOk(w: number[]): boolean {
  let i = 0;
  while (i < 4 && w[i] === 0) i++;
  if (i === 4) return true;
  if (i > 0 && w[i] !== 1) return false;
  for (let j = i + 1; j < 4; j++) if (w[j] !== w[j - 1]! + 1) return false;
  return true;
}

export interface SequenceReport {
  received: number;
  wrongKeys: number;
  /** Empty when every key's outputs are exactly its windows, each once, in order per connection. */
  problems: string[];
}

/**
 * `key-<k> [a,b,c,d]` lines of sequence_window, for a SequenceWorkload of `keys` keys. An output
 * ending at d names message idx = (d−1)·K + k; a second sighting of idx is a duplicate. Parsed
 * from bytes, so it keeps up with a benchmark; `onOutput` sees each new valid output (a bench's
 * latency meter).
 */
export class SequenceValidator implements OutputHandler {
  private seenIdx: Uint8Array;
  readonly perKey: Uint32Array;
  duplicates = 0;
  badWindows = 0;
  unparsable = 0;
  outOfOrder = 0;
  readonly examples: string[] = [];
  /** Per connection id, key → last value. */
  private readonly last = new Map<number, Float64Array>();
  private readonly w = [0, 0, 0, 0];

  constructor(
    readonly keys: number,
    readonly onOutput?: (conn: Conn, key: number, idx: number, t: number) => void,
    capacity = 1 << 20,
  ) {
    this.seenIdx = new Uint8Array(capacity);
    this.perKey = new Uint32Array(keys);
  }

  onChunk(conn: Conn, chunk: Uint8Array, t: number): void {
    let last = this.last.get(conn.id);
    if (!last) this.last.set(conn.id, (last = new Float64Array(this.keys)));
    eachLine(conn, chunk, (b, start, end) => this.line(conn, last, b, start, end, t));
  }

  /** Parses `key-<k> [a,b,c,d]` into k and this.w; false when the line has another shape. */
  private parse(b: Uint8Array, start: number, end: number): number {
    // "key-"
    if (b[start] !== 107 || b[start + 1] !== 101 || b[start + 2] !== 121 || b[start + 3] !== 45) return -1;
    let i = start + 4;
    let k = 0;
    const kStart = i;
    while (i < end && b[i]! >= 48 && b[i]! <= 57) k = k * 10 + (b[i++]! - 48);
    if (i === kStart || b[i] !== 32 || b[i + 1] !== 91) return -1;
    i += 2;
    for (let j = 0; j < 4; j++) {
      let v = 0;
      const vStart = i;
      while (i < end && b[i]! >= 48 && b[i]! <= 57) v = v * 10 + (b[i++]! - 48);
      // "," between the values, "]" after the last.
      if (i === vStart || b[i] !== (j < 3 ? 44 : 93)) return -1;
      this.w[j] = v;
      i++;
    }
    return i === end && k < this.keys ? k : -1;
  }

  private line(conn: Conn, last: Float64Array, b: Uint8Array, start: number, end: number, t: number): void {
    const k = this.parse(b, start, end);
    if (k < 0) {
      this.unparsable++;
      return note(this.examples, `unparsable: ${text(b, start, end)}`);
    }
    const w = this.w;
    const d = w[3]!;
    if (!windowOk(w)) {
      this.badWindows++;
      note(this.examples, `key-${k}: window [${w}] (state lost or reordered)`);
    }
    if (d <= last[k]!) {
      this.outOfOrder++;
      note(this.examples, `connection ${conn.id}: key-${k} went from ${last[k]} to ${d}`);
    }
    last[k] = d;
    if (d < 1) return;
    const idx = (d - 1) * this.keys + k;
    if (!this.markSeen(idx)) {
      this.duplicates++;
      return note(this.examples, `key-${k}: value ${d} output twice`);
    }
    this.perKey[k]!++;
    this.onOutput?.(conn, k, idx, t);
  }

  private markSeen(idx: number): boolean {
    if (idx >= this.seenIdx.length) {
      let size = this.seenIdx.length * 2;
      while (size <= idx) size *= 2;
      const next = new Uint8Array(size);
      next.set(this.seenIdx);
      this.seenIdx = next;
    }
    if (this.seenIdx[idx]) return false;
    this.seenIdx[idx] = 1;
    return true;
  }

  /** Checks the outputs against the first `sent` messages of `wl`. */
  verify(wl: SequenceWorkload, sent: number): SequenceReport {
    const problems = [...this.examples];
    let received = 0;
    let wrongKeys = 0;
    for (let k = 0; k < this.keys; k++) {
      received += this.perKey[k]!;
      const want = wl.sentForKey(k, sent);
      if (this.perKey[k] !== want) {
        wrongKeys++;
        note(problems, `key-${k}: ${this.perKey[k]} outputs for ${want} inputs`);
      }
    }
    return { received, wrongKeys, problems };
  }
}
