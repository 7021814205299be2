// Control channel: membership, join, shrink and migration coordination between workers.
// Control messages are rare, so the body is JSON, validated on receipt.
//
//   frame  = length:u32be body                 ; length counts body bytes, at most 16 MiB
//   body   = type:u16be json:utf8              ; json is one object, shape fixed per type
//
// A frame whose type is unknown or whose JSON does not match its type's schema is rejected as a
// whole (`decodeControl` returns an error); the connection is then closed by the caller.
import * as v from "valibot";
import { writeU32 } from "./frame.ts";
import { readU16, writeU16 } from "./data.ts";
import { WorkerStatusSchema } from "../metrics/status.ts";

export const CONTROL_MAX_FRAME = 16 * 1024 * 1024;

const name = v.pipe(v.string(), v.minLength(1), v.maxLength(255));
const port = v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(65535));
const id = v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(0xfffe));
const count = v.pipe(v.number(), v.integer(), v.minValue(0));
const epoch = v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(0xffffffff));

export const MemberSchema = v.object({ id, name, host: v.string(), controlPort: port, dataPort: port });
export type Member = v.InferOutput<typeof MemberSchema>;

const TopologySchema = v.object({
  members: v.array(MemberSchema),
  epoch,
  /** slot → member id */
  owners: v.array(id),
  /** A resilient cluster's id: a member records it, and a restart with another's files is refused. */
  cluster: v.optional(v.string()),
});
export type Topology = v.InferOutput<typeof TopologySchema>;

/** Every control message: type id and body schema. */
export const CONTROL = {
  hello: { id: 1, schema: v.object({ name }) },
  register: { id: 2, schema: v.object({ name, host: v.string(), controlPort: port, dataPort: port, resilient: v.optional(v.boolean()) }) },
  refused: { id: 3, schema: v.object({ reason: v.string() }) },
  topology: { id: 4, schema: TopologySchema },
  connected: { id: 5, schema: v.object({ name }) },
  start: { id: 6, schema: v.object({ members: v.array(MemberSchema) }) },
  join: { id: 7, schema: v.object({ name, count, host: v.string(), controlPort: port, dataPort: port, resilient: v.optional(v.boolean()) }) },
  tryJoin: { id: 8, schema: v.object({ reqId: count, name, count, host: v.string(), controlPort: port, dataPort: port, resilient: v.optional(v.boolean()) }) },
  joinReply: { id: 9, schema: v.object({ reqId: count, ok: v.boolean(), reason: v.optional(v.string()), topology: v.optional(TopologySchema) }) },
  addWorkers: { id: 10, schema: v.object({ members: v.array(MemberSchema) }) },
  plan: {
    id: 11,
    schema: v.object({
      epoch,
      /** [slot, from member id, to member id] */
      moves: v.array(v.tuple([count, id, id])),
      /** every member that must send a marker to each old owner */
      participants: v.array(id),
      /** workers that died: moves from them carry no state and expect no markers */
      dead: v.optional(v.array(id)),
      /** members this shrink removes: they turn unready before they hand anything over */
      leaving: v.optional(v.array(id)),
    }),
  },
  slotsInstalled: { id: 12, schema: v.object({ epoch, slots: v.array(count), keys: count, bytes: count }) },
  complete: { id: 14, schema: v.object({ members: v.array(MemberSchema), leaving: v.array(name) }) },
  /** `nonce`/`ts`: a signed shrink's, so the coordinator refuses it when it comes again through any member. */
  tryShrink: {
    id: 16,
    schema: v.object({ reqId: count, query: v.boolean(), names: v.array(v.string()), count, nonce: v.optional(v.pipe(v.string(), v.regex(/^[0-9a-f]{32}$/))), ts: v.optional(count) }),
  },
  shrinkReply: { id: 17, schema: v.object({ reqId: count, type: count, payload: v.string() }) },
  keyCountReq: { id: 18, schema: v.object({ reqId: count }) },
  keyCountReply: { id: 19, schema: v.object({ reqId: count, name, counts: v.record(v.string(), v.record(v.string(), count)) }) },
  shutdown: { id: 20, schema: v.object({ reason: v.optional(v.string()) }) },
  abortJoin: { id: 21, schema: v.object({ names: v.array(name) }) },
  /** The coordinator saw a participant die during a migration. */
  lost: { id: 22, schema: v.object({ id }) },
  /** A worker's queue of messages held for incoming slots crossed its high (or low) mark. */
  pressure: { id: 23, schema: v.object({ high: v.boolean() }) },
  /** To the coordinator: the sender's connection to member `id` broke (ids 13 and 15 are retired). */
  linkLost: { id: 24, schema: v.object({ id, epoch: v.optional(epoch) }) },
  /** Every 250 ms between the initializer and each member: liveness, and the keys the sender holds. */
  heartbeat: { id: 25, schema: v.object({ keys: count }) },
  /**
   * From the coordinator: the members that are down now (empty when none); the sources are paused
   * while any is. With `epoch` (a recovery that rolls every member back), frames of that epoch
   * or older are discarded until the rollback; without it the members go on applying them.
   */
  down: { id: 26, schema: v.object({ names: v.array(name), epoch: v.optional(epoch) }) },
  /** To the coordinator: this member has round `round` of checkpoint `k`'s barrier from every other member. */
  barrierDone: { id: 27, schema: v.object({ k: count, round: count }) },
  /** From the coordinator: every barrier round is done; write checkpoint `k` (what changed since the last one). */
  snapshot: { id: 28, schema: v.object({ k: count }) },
  /** To the coordinator: checkpoint `k`'s images are taken here (in memory): the sources may resume. */
  snapshotCaptured: { id: 35, schema: v.object({ k: count }) },
  /** To the coordinator: checkpoint `k` is written here (and this member's sink flushed). */
  snapshotWritten: { id: 29, schema: v.object({ k: count, slots: count, bytes: count, failed: v.optional(v.string()) }) },
  /** From the coordinator: checkpoint `k` is committed; older ones may go. */
  committed: { id: 30, schema: v.object({ k: count }) },
  /** From the coordinator: roll back to checkpoint `k` under table `owners` at `epoch` (a new one), with these members. */
  rollback: {
    id: 31,
    /**
     * `empty`: slots of members given up, starting empty at their new owners (their images are not theirs).
     * `restore`: a local recovery: only these members restore their slots; the others keep their
     * state and the table (absent: every member restores).
     */
    schema: v.object({
      k: count,
      epoch,
      members: v.array(MemberSchema),
      owners: v.array(id),
      empty: v.optional(v.array(count)),
      restore: v.optional(v.array(id)),
    }),
  },
  /** To the coordinator: rolled back, and connected to every member. */
  rolledBack: { id: 32, schema: v.object({ k: count, epoch }) },
  /**
   * To the coordinator: took the rollback and is connected to every member; its state is still
   * being restored, and what arrives meanwhile waits. The replay may start once every member
   * said this; the recovery ends once every member said `rolledBack`.
   */
  rollbackLinked: { id: 39, schema: v.object({ k: count, epoch }) },
  /** A member back after a crash (its own, or the initializer's), at its new addresses. */
  rejoin: { id: 33, schema: v.object({ name, cluster: v.string(), host: v.string(), controlPort: port, dataPort: port, epoch }) },
  /** From the coordinator: the grow or shrink in flight is undone; ignore its markers and state until the rollback. */
  undone: { id: 34, schema: v.object({ epoch }) },
  /** An operator's RotateLog (external type 2) asked at another member and naming this one. */
  rotateLog: { id: 36, schema: v.object({ name }) },
  /** `wallaroo top` asks a worker, which asks every member for its status (src/metrics/status.ts). */
  statusReq: { id: 37, schema: v.object({ reqId: count }) },
  statusReply: { id: 38, schema: v.object({ reqId: count, name, status: WorkerStatusSchema }) },
} as const;

export type ControlName = keyof typeof CONTROL;
export type ControlBody<N extends ControlName> = v.InferOutput<(typeof CONTROL)[N]["schema"]>;
export type ControlMessage = { [N in ControlName]: { type: N; body: ControlBody<N> } }[ControlName];

const byId = new Map<number, ControlName>(Object.entries(CONTROL).map(([n, d]) => [d.id, n as ControlName]));
const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder("utf-8", { fatal: true });

/** A whole frame for one control message. */
export function encodeControl<N extends ControlName>(type: N, body: ControlBody<N>): Uint8Array {
  const json = textEncoder.encode(JSON.stringify(body));
  const out = new Uint8Array(4 + 2 + json.length);
  writeU32(out, 0, 2 + json.length);
  writeU16(out, 4, CONTROL[type].id);
  out.set(json, 6);
  return out;
}

export type ControlDecodeResult = { ok: true; msg: ControlMessage } | { ok: false; reason: string };

/** Decodes a frame body `[start, end)` (after the u32 length). Never throws. */
export function decodeControl(buf: Uint8Array, start: number, end: number): ControlDecodeResult {
  if (end - start < 2) return { ok: false, reason: "control frame shorter than its type" };
  const typeId = readU16(buf, start);
  const type = byId.get(typeId);
  if (!type) return { ok: false, reason: `unknown control message type ${typeId}` };
  let json: unknown;
  try {
    json = JSON.parse(textDecoder.decode(buf.subarray(start + 2, end)));
  } catch {
    return { ok: false, reason: `control message ${type} is not valid UTF-8 JSON` };
  }
  const parsed = v.safeParse(CONTROL[type].schema, json);
  if (!parsed.success) return { ok: false, reason: `control message ${type} is malformed: ${parsed.issues[0]?.message ?? "invalid"}` };
  return { ok: true, msg: { type, body: parsed.output } as ControlMessage };
}
