// Shared by the cluster unit tests: quiet logs with the events they named kept for assertions,
// a Link that keeps what was written to it, and members.
import { afterAll, afterEach, beforeAll, beforeEach, spyOn } from "bun:test";
import type { Member } from "../../../src/codec/control.ts";
import { configureLog, log } from "../../../src/log.ts";
import { GrowBuffer } from "../../../src/net/out-buffer.ts";
import { LINK_LIMITS, type Link } from "../../../src/net/transport.ts";

/** Silences the log for the file; `events` lists "level event" of every line since the test began. */
export function logEvents(): { readonly events: string[] } {
  const state = { events: [] as string[] };
  let spies: Array<{ mockRestore(): void }> = [];
  beforeAll(() => configureLog({ level: "silent" }));
  afterAll(() => configureLog({ level: "info" }));
  beforeEach(() => {
    state.events = [];
    spies = (["info", "warn", "error", "debug"] as const).map((level) =>
      spyOn(log, level).mockImplementation((event: string) => void state.events.push(`${level} ${event}`)),
    );
  });
  afterEach(() => {
    for (const s of spies.splice(0)) s.mockRestore();
  });
  return state;
}

export const member = (id: number, name: string): Member => ({ id, name, host: "h", controlPort: 1, dataPort: 2 });

/** A link whose kernel never takes anything: every byte written stays in `out`. */
export class FakeLink implements Link {
  private static nextId = 1;
  readonly id = FakeLink.nextId++;
  readonly out = new GrowBuffer(1024);
  readonly remote: string;
  readonly local = "127.0.0.1";
  closed = false;
  /** Its kernel never takes anything. */
  readonly sentBytes = 0;
  /** Calls in order: "write", "flushSoon", "flush", "end", "destroy", "pause", "resume". */
  readonly calls: string[] = [];

  constructor(remote = "peer:1") {
    this.remote = remote;
  }

  get queuedBytes(): number {
    return this.out.len;
  }
  get congested(): boolean {
    return this.out.len > LINK_LIMITS.highWaterBytes;
  }
  /** A copy of everything written so far. */
  bytes(): Uint8Array {
    return this.out.buf.slice(0, this.out.len);
  }
  write(bytes: Uint8Array): void {
    this.calls.push("write");
    this.out.append(bytes);
  }
  flush(): void {
    this.calls.push("flush");
  }
  flushSoon(): void {
    this.calls.push("flushSoon");
  }
  pause(): void {
    this.calls.push("pause");
  }
  resume(): void {
    this.calls.push("resume");
  }
  end(): void {
    this.calls.push("end");
  }
  /** Closes at once, as the memory and TCP links report themselves closed. */
  destroy(): void {
    this.calls.push("destroy");
    this.closed = true;
  }
}
