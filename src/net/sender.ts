// The socket side of `wallaroo send`: frames from `next()` go round-robin to the targets (frame
// i to target i mod n, one connection each), many frames per write() because every write is a
// syscall and Bun does not coalesce them.
//
// Per target, frames are copied into 64 KiB batches; a queue of sealed batches plus the batch
// being filled is bounded (4 MiB in all), and when the next frame's target is full the sender
// simply stops pulling. write() may accept part of a batch: the rest waits for `drain`. When a
// connection drops, the frames the old socket accepted whole count as sent and the new
// connection starts at the first frame it did not take whole, so a receiver never sees half a
// frame followed by the next one. (Accepted means the kernel took it: a frame in flight when the
// peer died is counted and lost; there are no acknowledgements on a source connection.)
import type { Socket, SocketHandler } from "bun";
import { formatHostPort, type HostPort } from "../address.ts";
import { FRAME_HEADER_BYTES, readU32 } from "../codec/frame.ts";
import { UnreachableError, WallarooError } from "../errors.ts";
import { log } from "../log.ts";

export const SEND_DEFAULTS = {
  batchBytes: 64 * 1024,
  /** Bound on everything pulled from `next()` and not yet accepted by a socket, over all targets. */
  aheadBytes: 4 * 1024 * 1024,
  /** Before it has ever connected (and after losing a connection), a target gets this long. */
  deadlineMs: 30_000,
  /** A rate-limited sender wakes this often and sends what is due as one batch per target. */
  tickMs: 5,
  /** After a stall a rate-limited sender catches up at most this much time's worth, not a flood. */
  maxRateDebtMs: 100,
  backoffMinMs: 100,
  backoffMaxMs: 1000,
  /** Upper bound on any wait, so deadlines are checked even when no socket event comes. */
  pollMs: 250,
  /** Pulled per loop turn at full speed before yielding to socket events. */
  roundBytes: 1024 * 1024,
  /** After end(), how long to wait for the peer to close before resolving anyway. */
  endGraceMs: 1000,
  /** On abort, how long to try to finish the frame each socket is in the middle of. */
  abortGraceMs: 1000,
} as const;

export interface SendOptions {
  readonly targets: readonly HostPort[];
  /** One whole frame (u32 BE length + payload) per call; null when there are no more. */
  readonly next: () => Uint8Array | null;
  /** Frames per second over all targets; undefined sends as fast as the sockets take them. */
  readonly ratePerSec?: number;
  readonly batchBytes?: number;
  readonly deadlineMs?: number;
  /** false: a connection lost after it was made ends the run with ConnectionLostError. */
  readonly reconnect: boolean;
  readonly onProgress?: (sent: number) => void;
  /** Abort stops pulling frames, finishes the frame each socket is in the middle of, and resolves. */
  readonly signal?: AbortSignal;
}

export interface SendResult {
  /** Frames the sockets accepted whole. */
  readonly sent: number;
  readonly bytes: number;
  /** Successful re-connections after a lost connection. */
  readonly reconnects: number;
}

/** A connection dropped and `reconnect` was false; carries what was sent until then. */
export class ConnectionLostError extends WallarooError {
  readonly result: SendResult;
  constructor(message: string, result: SendResult) {
    super(message);
    this.name = "ConnectionLostError";
    this.result = result;
  }
}

/** A target stayed unreachable past the deadline; carries what was sent until then. */
export class SendUnreachableError extends UnreachableError {
  readonly result: SendResult;
  constructor(message: string, result: SendResult) {
    super(message);
    this.name = "SendUnreachableError";
    this.result = result;
  }
}

interface Batch {
  bytes: Uint8Array;
  frames: number;
}

class Link {
  socket: Socket<Link> | null = null;
  connecting = false;
  everConnected = false;
  /** Since when this link has had no connection; its deadline counts from here. */
  downSince: number;
  backoffMs: number = SEND_DEFAULTS.backoffMinMs;
  retryTimer: ReturnType<typeof setTimeout> | null = null;
  warnedWaiting = false;
  readonly queue: Batch[] = [];
  /** Bytes of queue[0] the current socket has accepted. */
  headOffset = 0;
  /** Bytes in the queue (the accepted part of queue[0] included) plus the fill buffer. */
  queuedBytes = 0;
  fill: Uint8Array | null = null;
  fillLen = 0;
  fillFrames = 0;
  /** The last write was short; nothing more is written until `drain`. */
  blocked = false;

  constructor(
    readonly target: HostPort,
    readonly addr: string,
    now: number,
  ) {
    this.downSince = now;
  }

  get empty(): boolean {
    return this.queue.length === 0 && this.fillLen === 0;
  }
}

// A batch holds whole frames back to back, so its own length headers locate every boundary; no
// per-frame bookkeeping is kept. Both walks stop at the end of the batch whatever the headers say.

/** End of the frame that contains byte `offset` of a batch (`offset` itself on a boundary). */
function frameBoundaryAtOrAfter(bytes: Uint8Array, offset: number): { end: number; frames: number } {
  if (!(offset >= 0 && offset <= bytes.length)) throw new RangeError(`offset ${offset} outside a ${bytes.length}-byte batch`);
  let pos = 0;
  let frames = 0;
  while (pos < offset && pos + FRAME_HEADER_BYTES <= bytes.length) {
    pos += FRAME_HEADER_BYTES + readU32(bytes, pos);
    frames++;
  }
  if (pos < offset || pos > bytes.length) throw new RangeError(`batch of ${bytes.length} bytes is not whole frames`);
  return { end: pos, frames };
}

/** Last frame boundary at or before `offset`, and how many frames lie before it. */
function frameBoundaryAtOrBefore(bytes: Uint8Array, offset: number): { end: number; frames: number } {
  if (!(offset >= 0 && offset <= bytes.length)) throw new RangeError(`offset ${offset} outside a ${bytes.length}-byte batch`);
  let pos = 0;
  let frames = 0;
  while (pos + FRAME_HEADER_BYTES <= bytes.length) {
    const next = pos + FRAME_HEADER_BYTES + readU32(bytes, pos);
    if (next > offset) break;
    pos = next;
    frames++;
  }
  return { end: pos, frames };
}

class Sender {
  private readonly links: Link[];
  private readonly batchBytes: number;
  private readonly perLinkBytes: number;
  private readonly deadlineMs: number;
  private sent = 0;
  private bytes = 0;
  private reconnects = 0;
  private pulled = 0;
  /** Once set, no connection is (re)opened and every socket that opens is ended. */
  private finished = false;
  private fatal: (() => Error) | null = null;
  private waker: (() => void) | null = null;
  private readonly handlers: SocketHandler<Link>;

  constructor(private readonly opts: SendOptions) {
    if (opts.targets.length === 0) throw new WallarooError("send needs at least one target address.");
    this.batchBytes = opts.batchBytes ?? SEND_DEFAULTS.batchBytes;
    if (!(Number.isInteger(this.batchBytes) && this.batchBytes >= FRAME_HEADER_BYTES)) throw new RangeError(`bad batchBytes ${this.batchBytes}`);
    if (opts.ratePerSec !== undefined && !(opts.ratePerSec > 0)) throw new RangeError(`bad ratePerSec ${opts.ratePerSec}`);
    this.deadlineMs = opts.deadlineMs ?? SEND_DEFAULTS.deadlineMs;
    this.perLinkBytes = Math.max(2 * this.batchBytes, Math.floor(SEND_DEFAULTS.aheadBytes / opts.targets.length));
    const now = performance.now();
    this.links = opts.targets.map((t) => new Link(t, formatHostPort(t), now));
    this.handlers = {
      open: (s: Socket<Link>) => this.onOpen(s),
      drain: (s: Socket<Link>) => {
        if (s.data.socket !== s) return; // a socket already given up on
        s.data.blocked = false;
        this.pump(s.data);
        this.wake();
      },
      close: (s: Socket<Link>) => this.onLost(s),
      error: (s: Socket<Link>, err: Error) => log.debug("send_socket_error", `Socket error on ${s.data.addr}: ${err.message}`),
      // A source connection carries nothing back; ignore whatever arrives.
      data: () => {},
    };
  }

  result(): SendResult {
    return { sent: this.sent, bytes: this.bytes, reconnects: this.reconnects };
  }

  async run(): Promise<SendResult> {
    const { signal, ratePerSec } = this.opts;
    if (signal?.aborted) return this.result();
    const onAbort = () => this.wake();
    signal?.addEventListener("abort", onAbort);
    try {
      for (const l of this.links) this.connect(l);
      let rateStart = performance.now();
      let done = false;
      let lastProgress = 0;
      for (;;) {
        this.checkDeadlines();
        if (this.fatal) throw this.fatal();
        if (signal?.aborted) {
          await this.abortFlush();
          break;
        }
        let stop: "done" | "cap" | "round" | "budget" = "done";
        if (!done) {
          let budget = Infinity;
          if (ratePerSec !== undefined) {
            const now = performance.now();
            const maxDebt = Math.max(1, Math.ceil((ratePerSec * SEND_DEFAULTS.maxRateDebtMs) / 1000));
            budget = Math.floor((ratePerSec * (now - rateStart)) / 1000) - this.pulled;
            if (budget > maxDebt) {
              // Behind after a stall: forget the backlog beyond maxDebt instead of bursting it.
              rateStart = now - ((this.pulled + maxDebt) * 1000) / ratePerSec;
              budget = maxDebt;
            }
          }
          stop = this.fill(budget);
          done = stop === "done";
        }
        this.flushAll(done);
        if (this.sent !== lastProgress) {
          lastProgress = this.sent;
          this.opts.onProgress?.(this.sent);
        }
        if (done && this.links.every((l) => l.empty)) break;
        if (!done && this.stalled()) {
          // Woken early by drain, open, close or abort.
          await this.wait(SEND_DEFAULTS.pollMs);
        } else if (stop === "budget") {
          const untilNext = ((this.pulled + 1) * 1000) / ratePerSec! - (performance.now() - rateStart);
          await this.wait(Math.min(SEND_DEFAULTS.pollMs, Math.max(SEND_DEFAULTS.tickMs, untilNext)));
        } else if (!done) {
          // A full round: let socket events run, then go on.
          await new Promise<void>((r) => setImmediate(r));
        } else {
          // Everything pulled; waiting for drain or a reconnect to flush the rest.
          await this.wait(SEND_DEFAULTS.pollMs);
        }
      }
      await this.endAll(SEND_DEFAULTS.endGraceMs);
      if (this.sent !== lastProgress) this.opts.onProgress?.(this.sent);
      return this.result();
    } finally {
      signal?.removeEventListener("abort", onAbort);
      this.close();
    }
  }

  /** Pulls frames into per-target batches until the budget, the round or a target's bound is reached. */
  private fill(budget: number): "done" | "cap" | "round" | "budget" {
    const n = this.links.length;
    let produced = 0;
    let bytes = 0;
    while (produced < budget) {
      if (bytes >= SEND_DEFAULTS.roundBytes) return "round";
      const link = this.links[this.pulled % n]!;
      if (link.queuedBytes >= this.perLinkBytes) return "cap";
      const frame = this.opts.next();
      if (frame === null) return "done";
      if (frame.length < FRAME_HEADER_BYTES || readU32(frame, 0) !== frame.length - FRAME_HEADER_BYTES) {
        throw new WallarooError(`The message source produced a malformed frame (${frame.length} bytes, header says ${frame.length >= 4 ? readU32(frame, 0) : "?"}).`);
      }
      this.append(link, frame);
      this.pulled++;
      produced++;
      bytes += frame.length;
    }
    return "budget";
  }

  private append(link: Link, frame: Uint8Array): void {
    link.queuedBytes += frame.length;
    if (frame.length > this.batchBytes) {
      this.seal(link);
      link.queue.push({ bytes: frame.slice(), frames: 1 });
      return;
    }
    if (link.fillLen + frame.length > this.batchBytes) this.seal(link);
    if (link.fill === null) link.fill = new Uint8Array(this.batchBytes);
    const f = link.fill;
    let at = link.fillLen;
    // A loop beats set() for the typical 9–40 byte frame.
    if (frame.length <= 64) for (let i = 0; i < frame.length; i++) f[at++] = frame[i]!;
    else f.set(frame, at);
    link.fillLen += frame.length;
    link.fillFrames++;
  }

  private seal(link: Link): void {
    if (link.fillLen === 0 || link.fill === null) return;
    let bytes: Uint8Array;
    if (link.fillLen * 2 < link.fill.length) {
      // Copy a small batch out and keep the buffer, so queued bytes are real bytes, not 64 KiB each.
      bytes = link.fill.slice(0, link.fillLen);
    } else {
      bytes = link.fill.subarray(0, link.fillLen);
      link.fill = null;
    }
    link.queue.push({ bytes, frames: link.fillFrames });
    link.fillLen = 0;
    link.fillFrames = 0;
  }

  /** The target of the next frame is full: pulling more must wait for a socket event. */
  private stalled(): boolean {
    return this.links[this.pulled % this.links.length]!.queuedBytes >= this.perLinkBytes;
  }

  /**
   * Writes what is sealed; seals the batch being filled too when `all` or when its socket has
   * nothing else to write, so a socket left writable has nothing left to write.
   */
  private flushAll(all: boolean): void {
    for (const l of this.links) {
      if (all) this.seal(l);
      if (l.socket === null || l.blocked) continue;
      this.pump(l);
      if (l.queue.length === 0 && l.fillLen > 0 && l.socket !== null && !l.blocked) {
        this.seal(l);
        this.pump(l);
      }
    }
  }

  private pump(link: Link): void {
    const sock = link.socket;
    while (sock !== null && !link.blocked && link.queue.length > 0) {
      const b = link.queue[0]!;
      const w = sock.write(link.headOffset === 0 ? b.bytes : b.bytes.subarray(link.headOffset));
      if (w < 0) {
        this.onLost(sock);
        return;
      }
      link.headOffset += w;
      if (link.headOffset < b.bytes.length) {
        link.blocked = true;
        return;
      }
      link.queue.shift();
      link.headOffset = 0;
      link.queuedBytes -= b.bytes.length;
      this.sent += b.frames;
      this.bytes += b.bytes.length;
    }
  }

  private connect(link: Link): void {
    if (this.finished || link.connecting || link.socket !== null) return;
    link.connecting = true;
    Bun.connect<Link>({ hostname: link.target.host, port: link.target.port, data: link, socket: this.handlers }).then(
      () => {
        link.connecting = false;
      },
      (err: unknown) => {
        link.connecting = false;
        this.onConnectFailed(link, err);
      },
    );
  }

  private onOpen(sock: Socket<Link>): void {
    const link = sock.data;
    link.connecting = false;
    if (this.finished) {
      sock.end();
      return;
    }
    link.socket = sock;
    link.blocked = false;
    link.backoffMs = SEND_DEFAULTS.backoffMinMs;
    link.warnedWaiting = false;
    if (link.everConnected) {
      this.reconnects++;
      log.info("send_reconnected", `Reconnected to ${link.addr}.`, { target: link.addr });
    } else {
      log.debug("send_connected", `Connected to ${link.addr}.`, { target: link.addr });
    }
    link.everConnected = true;
    this.pump(link);
    this.wake();
  }

  private onConnectFailed(link: Link, err: unknown): void {
    if (this.finished) return;
    const why = err instanceof Error ? err.message : String(err);
    if (!link.warnedWaiting) {
      link.warnedWaiting = true;
      log.info("send_waiting", `Cannot connect to ${link.addr} (${why}); retrying for up to ${this.deadlineMs / 1000} s.`, { target: link.addr });
    } else {
      log.debug("send_connect_failed", `Connecting to ${link.addr} failed: ${why}`, { target: link.addr });
    }
    this.checkDeadlines();
    if (this.fatal) return this.wake();
    link.retryTimer = setTimeout(() => {
      link.retryTimer = null;
      this.connect(link);
    }, link.backoffMs);
    link.backoffMs = Math.min(link.backoffMs * 2, SEND_DEFAULTS.backoffMaxMs);
  }

  private onLost(sock: Socket<Link>): void {
    const link = sock.data;
    if (link.socket !== sock) return;
    link.socket = null;
    link.blocked = false;
    link.downSince = performance.now();
    this.rewind(link);
    if (this.finished) return this.wake();
    if (!this.opts.reconnect) {
      this.fatal = () =>
        new ConnectionLostError(`Lost the connection to ${link.addr} after ${this.sent} messages; not reconnecting (--no-reconnect).`, this.result());
      return this.wake();
    }
    log.warn("send_connection_lost", `Lost the connection to ${link.addr}; reconnecting.`, { target: link.addr, sent: this.sent });
    link.retryTimer = setTimeout(() => {
      link.retryTimer = null;
      this.connect(link);
    }, link.backoffMs);
    this.wake();
  }

  /** Keeps the frames the old socket took whole as sent; the next connection starts at a frame. */
  private rewind(link: Link): void {
    if (link.headOffset === 0 || link.queue.length === 0) return;
    const b = link.queue[0]!;
    const { end, frames } = frameBoundaryAtOrBefore(b.bytes, link.headOffset);
    this.sent += frames;
    this.bytes += end;
    link.queuedBytes -= end;
    b.bytes = b.bytes.subarray(end);
    b.frames -= frames;
    link.headOffset = 0;
  }

  private checkDeadlines(): void {
    if (this.fatal) return;
    const now = performance.now();
    for (const l of this.links) {
      if (l.socket !== null || now - l.downSince < this.deadlineMs) continue;
      const s = this.deadlineMs / 1000;
      const msg = l.everConnected
        ? `Lost the connection to ${l.addr} and could not reconnect within ${s} s.`
        : `Could not connect to ${l.addr} within ${s} s.`;
      this.fatal = () => new SendUnreachableError(msg, this.result());
      return;
    }
  }

  /** Drops everything not yet started; lets each socket finish the frame it is in the middle of. */
  private async abortFlush(): Promise<void> {
    for (const l of this.links) {
      let keep: Batch | null = null;
      if (l.socket !== null && l.headOffset > 0) {
        const b = l.queue[0]!;
        const { end, frames } = frameBoundaryAtOrAfter(b.bytes, l.headOffset);
        if (end === l.headOffset) {
          // Stopped exactly between frames: those are sent, nothing is left to finish.
          this.sent += frames;
          this.bytes += end;
        } else {
          keep = { bytes: b.bytes.subarray(0, end), frames };
        }
      }
      l.queue.length = 0;
      l.fill = null;
      l.fillLen = 0;
      l.fillFrames = 0;
      if (keep) l.queue.push(keep);
      else l.headOffset = 0;
      l.queuedBytes = keep ? keep.bytes.length : 0;
    }
    const until = performance.now() + SEND_DEFAULTS.abortGraceMs;
    while (!this.links.every((l) => l.empty || l.socket === null) && performance.now() < until) {
      this.flushAll(false);
      if (this.links.every((l) => l.empty || l.socket === null)) break;
      await this.wait(Math.max(1, Math.min(SEND_DEFAULTS.pollMs, until - performance.now())));
    }
  }

  /** Half-closes every socket (all its data is already with the kernel) and waits for the peers. */
  private async endAll(graceMs: number): Promise<void> {
    this.finished = true;
    for (const l of this.links) {
      if (l.retryTimer) clearTimeout(l.retryTimer);
      l.retryTimer = null;
      l.socket?.end();
    }
    const until = performance.now() + graceMs;
    while (this.links.some((l) => l.socket !== null) && performance.now() < until) {
      await this.wait(Math.max(1, Math.min(SEND_DEFAULTS.pollMs, until - performance.now())));
    }
  }

  /** Idempotent cleanup for every exit path: no timer or socket outlives the run. */
  private close(): void {
    this.finished = true;
    for (const l of this.links) {
      if (l.retryTimer) clearTimeout(l.retryTimer);
      l.retryTimer = null;
      const s = l.socket;
      l.socket = null;
      s?.end();
    }
    this.wake();
  }

  private wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        if (this.waker === done) this.waker = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.waker = done;
    });
  }

  private wake(): void {
    const w = this.waker;
    this.waker = null;
    w?.();
  }
}

/** Sends frames until `next()` returns null (then flushes and ends every socket) or `signal` aborts. */
export function runSender(opts: SendOptions): Promise<SendResult> {
  return new Sender(opts).run();
}
