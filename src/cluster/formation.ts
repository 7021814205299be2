// The initializer forming a new cluster: it collects `--worker-count - 1` registrations, gives
// every worker the topology (members, epoch 1, the round-robin table), waits until each one has
// connected to all the others, then starts the cluster. A worker that goes away while
// registrations are still collected frees its place (a restart may register again); one lost
// after the topology went out aborts formation, because the others already hold a table that
// names it.
import { assert } from "../assert.ts";
import type { Clock, Timer } from "../clock.ts";
import type { ControlBody, Member, Topology } from "../codec/control.ts";
import { log } from "../log.ts";
import type { Link } from "../net/transport.ts";
import { INITIALIZER_NAME } from "./membership.ts";
import { initialOwners } from "./slots.ts";

/** Workers given the topology get this long to connect to each other. */
export const FORMATION_CONNECT_MS = 30_000;

export interface FormationHost {
  readonly workerCount: number;
  readonly clock: Clock;
  self(): Member;
  allocateId(): number;
  refuse(link: Link, reason: string): void;
  /** Adopts the formed topology here, sends it to every worker on its registration link, and dials them. */
  form(topology: Topology, links: ReadonlyMap<number, Link>): void;
  /** Every worker connected to every other: the cluster starts. */
  start(members: readonly Member[]): void;
  /** Formation cannot complete. */
  abort(reason: string): void;
}

type Phase = "registering" | "connecting" | "formed" | "failed";

export class Formation {
  private phase: Phase = "registering";
  private readonly registrations: Array<{ member: Member; link: Link }> = [];
  private members: Member[] = [];
  private waiting = new Set<string>();
  private timer: Timer | undefined;

  constructor(private readonly host: FormationHost) {}

  get formed(): boolean {
    return this.phase === "formed";
  }

  /** A cluster of one forms at once. */
  begin(): void {
    if (this.host.workerCount === 1) this.form();
    else log.info("waiting_workers", `Waiting for ${this.host.workerCount - 1} workers to register`);
  }

  /** Returns whether the registration was accepted. */
  onRegister(link: Link, body: ControlBody<"register">, host: string): boolean {
    const refuse = (reason: string) => {
      log.warn("register_refused", `Refused worker ${body.name}: ${reason}`);
      this.host.refuse(link, reason);
      return false;
    };
    if (this.phase !== "registering") return refuse("The cluster is already formed; start the worker with --join to add it to a running cluster.");
    if (body.name === INITIALIZER_NAME || this.registrations.some((r) => r.member.name === body.name))
      return refuse(`Worker name ${body.name} is already registered with the cluster.`);
    const member: Member = { id: this.host.allocateId(), name: body.name, host, controlPort: body.controlPort, dataPort: body.dataPort };
    this.registrations.push({ member, link });
    const need = this.host.workerCount - 1;
    log.info("worker_registered", `Worker ${body.name} registered (${this.registrations.length}/${need})`);
    if (this.registrations.length === need) {
      log.info("control_identified", "All worker control channels identified");
      this.form();
    }
    return true;
  }

  /** A control link closed before the cluster formed. */
  linkClosed(link: Link): void {
    if (this.phase !== "registering") return;
    const i = this.registrations.findIndex((r) => r.link === link);
    if (i < 0) return;
    const [r] = this.registrations.splice(i, 1);
    log.warn("registration_lost", `Worker ${r!.member.name} went away before the cluster formed; waiting for ${this.host.workerCount - 1 - this.registrations.length} more to register`);
  }

  /** A member's connections are gone: fatal to a formation that already sent its topology. */
  memberLost(id: number): void {
    if (this.phase !== "connecting") return;
    const m = this.members.find((x) => x.id === id);
    this.fail(`Formation failed: worker ${m?.name ?? id} was lost before the cluster formed.`);
  }

  private fail(reason: string): void {
    if (this.phase !== "connecting") return;
    this.phase = "failed";
    this.host.clock.clearTimeout(this.timer);
    this.host.abort(reason);
  }

  private form(): void {
    assert(this.phase === "registering", "formation happens once");
    this.phase = "connecting";
    this.members = [this.host.self(), ...this.registrations.map((r) => r.member)];
    const topology: Topology = { members: this.members, epoch: 1, owners: initialOwners(this.members.map((m) => m.id)) };
    this.waiting = new Set(this.members.map((m) => m.name));
    this.timer = this.host.clock.setTimeout(
      () => this.fail(`Formation failed: ${[...this.waiting].join(", ")} did not connect to every worker within ${FORMATION_CONNECT_MS / 1000} s.`),
      FORMATION_CONNECT_MS,
    );
    this.host.form(topology, new Map(this.registrations.map((r) => [r.member.id, r.link])));
  }

  /** Member `name` (the initializer included) has connected to every other. */
  onConnected(name: string): void {
    if (this.phase !== "connecting") return;
    this.waiting.delete(name);
    if (this.waiting.size > 0) return;
    this.phase = "formed";
    this.host.clock.clearTimeout(this.timer);
    log.info("topology_ready", `All ${this.members.length} workers reporting Topology ready!`);
    this.host.start(this.members);
  }
}
