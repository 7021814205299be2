// How a worker other than the initializer gets in: a starting worker (`--control`) dials the
// initializer until it answers and registers; a joiner (`--join`) contacts the member it was
// given and asks to join. Either then waits for the cluster's answer (a topology, or a refusal
// that stops it). Every attempt and every wait has a deadline.
import { formatHostPort, type HostPort } from "../address.ts";
import type { Clock, Timer } from "../clock.ts";
import { encodeControl, type ControlBody, type Member } from "../codec/control.ts";
import { UnreachableError, type WallarooError } from "../errors.ts";
import { log } from "../log.ts";
import type { Link, LinkHandlers, Transport } from "../net/transport.ts";

export const ENTRY_LIMITS = {
  /** A starting worker keeps dialing the initializer this long… */
  startupDeadlineMs: 60_000,
  /** A member whose initializer died keeps dialing it this long (with resilience) before it gives up. */
  rejoinDeadlineMs: 600_000,
  /** …waiting this long at first, doubling up to the maximum. */
  registerRetryMs: 100,
  registerRetryMaxMs: 1000,
  /** A joiner tries the member it was given this many times, 0.5, 1, 1.5 s apart. */
  joinReachAttempts: 3,
  joinRetryMs: 500,
  /** A joiner waits this long for the cluster's answer. */
  joinAnswerDeadlineMs: 120_000,
  /** A registered worker waits this long for the topology (the others must register too). */
  registerAnswerDeadlineMs: 600_000,
  /** One connection attempt. */
  dialTimeoutMs: 2000,
} as const;

export interface EntryHost {
  readonly name: string;
  /** This worker runs with resilience: said in its registration or join, so a mixed cluster is refused. */
  readonly resilient: boolean;
  readonly transport: Transport;
  readonly clock: Clock;
  self(): Member;
  /** Control-link handlers; `closed` runs when the link closes. */
  handlers(closed: (link: Link) => void): LinkHandlers;
  fatal(err: WallarooError): void;
  /** The entry link closed after the cluster answered (a worker's link from the initializer). */
  lostAfterAnswer(): void;
  stopping(): boolean;
}

export class Entry {
  private link: Link | undefined;
  private answerTimer: Timer | undefined;
  private answered = false;
  /** While rejoining: a link that closes before the answer is dialed again, until this deadline. */
  private rejoining: { init: HostPort; frame: Uint8Array; deadline: number } | undefined;

  constructor(private readonly host: EntryHost) {}

  /** Worker: dials the initializer until it answers, then registers. */
  async register(init: HostPort): Promise<void> {
    const h = this.host;
    const self = h.self();
    const frame = encodeControl("register", { name: h.name, host: self.host, controlPort: self.controlPort, dataPort: self.dataPort, ...(h.resilient ? { resilient: true } : {}) });
    await this.dialAndSend(init, frame, ENTRY_LIMITS.startupDeadlineMs);
    log.info("registering", `Registering with the initializer at ${formatHostPort(init)}`);
    this.awaitAnswer(
      `No topology from the initializer at ${formatHostPort(init)} within ${ENTRY_LIMITS.registerAnswerDeadlineMs / 1000} s: the cluster forms once all --worker-count workers registered.`,
      ENTRY_LIMITS.registerAnswerDeadlineMs,
    );
  }

  /**
   * A member back after a crash (its own, or the initializer's): dials the initializer until it
   * answers, then asks to rejoin; the answer is a rollback (or a refusal that stops it).
   */
  async rejoin(init: HostPort, body: Omit<ControlBody<"rejoin">, "name" | "host" | "controlPort" | "dataPort">): Promise<void> {
    const h = this.host;
    const self = h.self();
    // The link of an earlier answer closes on its own; its close must not start a second dial.
    this.link = undefined;
    this.answered = false;
    const frame = encodeControl("rejoin", { name: h.name, host: self.host, controlPort: self.controlPort, dataPort: self.dataPort, ...body });
    log.info("rejoining", `Reconnecting to the initializer at ${formatHostPort(init)} to recover`);
    this.rejoining = { init, frame, deadline: h.clock.now() + ENTRY_LIMITS.rejoinDeadlineMs };
    await this.dialAndSend(init, frame, ENTRY_LIMITS.rejoinDeadlineMs);
    this.awaitAnswer(`No answer to the rejoin from the initializer at ${formatHostPort(init)} within ${ENTRY_LIMITS.rejoinDeadlineMs / 1000} s.`, ENTRY_LIMITS.rejoinDeadlineMs);
  }

  /** The initializer closed a rejoin before answering (it was still starting, or died again): dial again. */
  private async redialRejoin(): Promise<void> {
    const r = this.rejoining!;
    const left = r.deadline - this.host.clock.now();
    if (left <= 0) return this.host.fatal(new UnreachableError(`Could not rejoin the initializer at ${formatHostPort(r.init)} in time.`));
    await this.host.clock.sleep(ENTRY_LIMITS.registerRetryMaxMs);
    try {
      await this.dialAndSend(r.init, r.frame, left);
    } catch (err) {
      this.host.fatal(err instanceof UnreachableError ? err : new UnreachableError(String(err)));
    }
  }

  private awaitAnswer(why: string, ms: number): void {
    const h = this.host;
    h.clock.clearTimeout(this.answerTimer);
    this.answerTimer = h.clock.setTimeout(() => h.fatal(new UnreachableError(why)), ms);
  }

  /** Dials `init` until it answers (or the deadline passes) and writes `frame` on the new link. */
  private async dialAndSend(init: HostPort, frame: Uint8Array, deadlineMs: number): Promise<void> {
    const h = this.host;
    const deadline = h.clock.now() + deadlineMs;
    let delay: number = ENTRY_LIMITS.registerRetryMs;
    for (;;) {
      if (h.stopping()) return;
      try {
        const link = await h.transport.connect(init.host, init.port, this.handlers(init), ENTRY_LIMITS.dialTimeoutMs);
        link.write(frame);
        this.link = link;
        return;
      } catch (err) {
        if (h.clock.now() + delay > deadline)
          throw new UnreachableError(`Could not reach the initializer at ${formatHostPort(init)} within ${deadlineMs / 1000} s: ${(err as Error).message}`);
        log.debug("register_retry", `initializer at ${formatHostPort(init)} not up yet (${(err as Error).message}); retrying in ${delay} ms`);
        await h.clock.sleep(delay);
        delay = Math.min(delay * 2, ENTRY_LIMITS.registerRetryMaxMs);
      }
    }
  }

  /** Joiner: contacts a member and asks to join `count` joiners arriving together. */
  async join(addr: HostPort, count: number): Promise<void> {
    const h = this.host;
    log.info("join_preparing", "New worker preparing to join cluster");
    let link: Link | undefined;
    let lastErr = "";
    for (let i = 0; i < ENTRY_LIMITS.joinReachAttempts && !link; i++) {
      try {
        link = await h.transport.connect(addr.host, addr.port, this.handlers(addr), ENTRY_LIMITS.dialTimeoutMs);
      } catch (err) {
        lastErr = (err as Error).message;
        await h.clock.sleep(ENTRY_LIMITS.joinRetryMs * (i + 1));
      }
    }
    if (!link) throw new UnreachableError(`Join Error: could not reach a cluster member at ${formatHostPort(addr)} (${lastErr}).`);
    this.link = link;
    const self = h.self();
    link.write(encodeControl("join", { name: h.name, count, host: self.host, controlPort: self.controlPort, dataPort: self.dataPort, ...(h.resilient ? { resilient: true } : {}) }));
    this.answerTimer = h.clock.setTimeout(
      () => h.fatal(new UnreachableError(`Join Error: no answer from ${formatHostPort(addr)} within ${ENTRY_LIMITS.joinAnswerDeadlineMs / 1000} s.`)),
      ENTRY_LIMITS.joinAnswerDeadlineMs,
    );
  }

  /**
   * The cluster answered with a topology. A worker keeps the link (it is its control link from
   * the initializer, returned here); a joiner's link goes to whichever member it contacted, so
   * it is closed.
   */
  /** The link of the request awaiting an answer (a registration, a join or a rejoin), if any. */
  get pending(): Link | undefined {
    return this.answered ? undefined : this.link;
  }

  accepted(keep: boolean): Link | undefined {
    this.answered = true;
    this.rejoining = undefined;
    this.host.clock.clearTimeout(this.answerTimer);
    if (keep) return this.link;
    // Forget it before ending it: a transport may report the close synchronously.
    const link = this.link;
    this.link = undefined;
    link?.end();
    return undefined;
  }

  stop(): void {
    this.host.clock.clearTimeout(this.answerTimer);
    this.link?.end();
  }

  private handlers(addr: HostPort): LinkHandlers {
    return this.host.handlers((l) => {
      if (l !== this.link || this.host.stopping()) return;
      if (!this.answered && this.rejoining) return void this.redialRejoin();
      if (!this.answered) this.host.fatal(new UnreachableError(`The cluster closed the connection at ${formatHostPort(addr)} before answering.`));
      else this.host.lostAfterAnswer();
    });
  }
}
