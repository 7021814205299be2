// What happened in a simulated run, one line per event: virtual time, node, kind, detail. Two runs
// of one seed must produce the same lines, so nothing here may depend on anything but the run.
// Without `full` only a digest and the last lines are kept (cheap enough for every seed, and a
// failure still shows what led up to it).

const RECENT = 60;

export class Trace {
  /** Every line (full mode only). */
  readonly lines: string[] = [];
  private readonly recentLines: string[] = [];
  private hash = 0x811c9dc5;
  count = 0;

  constructor(readonly full: boolean) {}

  add(at: number, node: string, kind: string, detail: string): void {
    const line = `${at.toFixed(3).padStart(11)} ${node.padEnd(11)} ${kind.padEnd(10)} ${detail}`;
    this.count++;
    if (this.full) this.lines.push(line);
    else {
      this.recentLines.push(line);
      if (this.recentLines.length > RECENT * 2) this.recentLines.splice(0, RECENT);
    }
    // FNV-1a over the UTF-16 units: a fingerprint to compare runs without keeping them.
    let h = this.hash;
    for (let i = 0; i < line.length; i++) h = Math.imul(h ^ line.charCodeAt(i), 0x01000193);
    this.hash = Math.imul(h ^ 10, 0x01000193);
  }

  /** A hex fingerprint of every line so far. */
  get digest(): string {
    return `${(this.hash >>> 0).toString(16).padStart(8, "0")}/${this.count}`;
  }

  /** The last `n` lines. */
  recent(n = RECENT): string[] {
    const src = this.full ? this.lines : this.recentLines;
    return src.slice(-n);
  }

  text(): string {
    return this.lines.map((l) => l + "\n").join("");
  }
}
