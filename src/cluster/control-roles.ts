// Who may send each control message. A connection's role comes from how it was opened and what
// it said first: the link this worker asked to join or register on (`entry`) until answered; a
// link bound to the initializer; one bound to a member of the cluster; anything else is a
// `stranger`, which may only introduce itself (hello, register, join, rejoin). A message from a
// role not listed for it is refused and logged, never acted on (control-dispatch.ts).
import type { ControlName } from "../codec/control.ts";

export type SenderRole = "stranger" | "entry" | "member" | "initializer";

const ANYONE = ["stranger", "entry", "member", "initializer"] as const;
/** Members and the initializer (itself a member). */
const MEMBERS = ["member", "initializer"] as const;
const COORDINATOR = ["initializer"] as const;
/** The answer to this worker's own registration, join or rejoin. */
const ANSWER = ["entry"] as const;

export const CONTROL_SENDERS: { readonly [N in ControlName]: readonly SenderRole[] } = {
  hello: ANYONE,
  register: ANYONE,
  join: ANYONE,
  rejoin: ANYONE,
  refused: ANSWER,
  topology: ANSWER,
  connected: MEMBERS,
  start: COORDINATOR,
  tryJoin: MEMBERS,
  joinReply: COORDINATOR,
  addWorkers: COORDINATOR,
  plan: COORDINATOR,
  slotsInstalled: MEMBERS,
  complete: COORDINATOR,
  tryShrink: MEMBERS,
  shrinkReply: COORDINATOR,
  keyCountReq: MEMBERS,
  keyCountReply: MEMBERS,
  // A member asks the initializer to stop the cluster, which tells every member; the refusal of
  // a rejoin (or of a removed worker's hello) comes as one too.
  shutdown: ["entry", "member", "initializer"],
  abortJoin: COORDINATOR,
  lost: COORDINATOR,
  pressure: MEMBERS,
  linkLost: MEMBERS,
  heartbeat: MEMBERS,
  down: COORDINATOR,
  barrierDone: MEMBERS,
  snapshot: COORDINATOR,
  snapshotCaptured: MEMBERS,
  snapshotWritten: MEMBERS,
  committed: COORDINATOR,
  // The rollback that takes a member back comes on the link it rejoined on, before that is bound.
  rollback: ["entry", "initializer"],
  rolledBack: MEMBERS,
  rollbackLinked: MEMBERS,
  undone: COORDINATOR,
  // RotateLog asked at one member for another is forwarded to it.
  rotateLog: MEMBERS,
  // `wallaroo top` asked at one member gathers every member's status.
  statusReq: MEMBERS,
  statusReply: MEMBERS,
};

export function senderAllowed(type: ControlName, role: SenderRole): boolean {
  return (CONTROL_SENDERS[type] as readonly SenderRole[]).includes(role);
}
