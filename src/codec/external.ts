// The original Wallaroo external channel: operators' tools (shrink, shutdown, queries) talk to
// any worker over it. Pure bytes ↔ values; the socket side lives in src/net/external-client.ts.
//
//   frame   = length:u32be body:byte[length]
//   body    = type:u16be payload:utf8[length - 2]
//
// Same framing both directions. `length` counts the body, so an empty payload is `00000002 TTTT`.
// A request's body is at most 16 KiB (the original's limit); a reply may be of any size (the
// keys a worker holds can fill megabytes). JSON payloads are compact with an unspecified key
// order: parsers accept any order and ignore extra keys, encoders write the order the original
// wrote (golden bytes in the tests). The distribution answers' JSON is in ./external-answers.ts.
import * as v from "valibot";
import { FRAME_HEADER_BYTES, writeU32 } from "./frame.ts";

export const EXTERNAL_MSG = {
  Print: 1,
  RotateLog: 2,
  CleanShutdown: 3,
  ShrinkRequest: 4,
  ShrinkQueryResponse: 5,
  ShrinkErrorResponse: 6,
  PartitionQuery: 7,
  PartitionQueryResponse: 8,
  ClusterStatusQuery: 9,
  ClusterStatusQueryResponse: 10,
  ClusterStatusQueryResponseNotInitialized: 11,
  PartitionCountQuery: 12,
  PartitionCountQueryResponse: 13,
  SourceIdsQuery: 14,
  SourceIdsQueryResponse: 15,
  ReportStatus: 16,
  StateEntityQuery: 17,
  StateEntityQueryResponse: 18,
  StatelessPartitionQuery: 19,
  StatelessPartitionQueryResponse: 20,
  StateEntityCountQuery: 21,
  StateEntityCountQueryResponse: 22,
  StatelessPartitionCountQuery: 23,
  StatelessPartitionCountQueryResponse: 24,
  ClusterStateEntityCountQuery: 25,
  ClusterStateEntityCountQueryResponse: 26,
  // Ours, not the original's: signed requests on a cluster with a secret (src/codec/external-auth.ts).
  AuthenticatedRequest: 100,
  RequestRefused: 101,
  RequestAccepted: 102,
  /** Ours too: every member's status (src/metrics/status.ts), for `wallaroo top`. */
  WorkersStatusQuery: 103,
  WorkersStatusQueryResponse: 104,
} as const;
export type ExternalMsgType = (typeof EXTERNAL_MSG)[keyof typeof EXTERNAL_MSG];

/** Largest request body (type + payload) a worker reads; the original closes the connection above it. */
export const EXTERNAL_MAX_REQUEST = 16384;
/**
 * Largest reply body a client reads: any real answer. The reader holds what arrived, never what a
 * length claims (src/codec/frame.ts), so a bogus length costs nothing until its bytes come.
 */
export const EXTERNAL_MAX_REPLY = 0x40000000;
/** What a u32 length can say. */
const EXTERNAL_MAX_BODY = 0xffffffff;
export const EXTERNAL_TYPE_BYTES = 2;

const KNOWN_TYPES: ReadonlySet<number> = new Set(Object.values(EXTERNAL_MSG));

export function isExternalMsgType(type: number): type is ExternalMsgType {
  return KNOWN_TYPES.has(type);
}

const encoder = new TextEncoder();
// fatal: a peer sending broken UTF-8 is a protocol error, not text to repair silently.
const decoder = new TextDecoder("utf-8", { fatal: true });

/** Body bytes a payload would take, to check a request against EXTERNAL_MAX_REQUEST before encoding. */
export function externalBodyBytes(payload: string): number {
  return EXTERNAL_TYPE_BYTES + encoder.encode(payload).length;
}

/**
 * A whole frame, length prefix included. Throws RangeError on an unknown type or a body a u32
 * cannot count; the 16 KiB request limit is the sender's to check (externalBodyBytes).
 */
export function encodeExternal(type: number, payload: string): Uint8Array {
  if (!isExternalMsgType(type)) throw new RangeError(`unknown external message type ${type}`);
  const text = encoder.encode(payload);
  const bodyLen = EXTERNAL_TYPE_BYTES + text.length;
  if (bodyLen > EXTERNAL_MAX_BODY) throw new RangeError(`external message body of ${bodyLen} bytes exceeds ${EXTERNAL_MAX_BODY}`);
  const out = new Uint8Array(FRAME_HEADER_BYTES + bodyLen);
  writeU32(out, 0, bodyLen);
  out[4] = type >>> 8;
  out[5] = type & 0xff;
  out.set(text, FRAME_HEADER_BYTES + EXTERNAL_TYPE_BYTES);
  return out;
}

export type ExternalDecoded = { ok: true; type: ExternalMsgType; payload: string } | { ok: false; reason: string };

/** Decodes the bytes after the length prefix. Never throws: a bad body is a value the caller reports. */
export function decodeExternalBody(body: Uint8Array): ExternalDecoded {
  if (body.length < EXTERNAL_TYPE_BYTES) return { ok: false, reason: `body of ${body.length} bytes is shorter than the 2-byte type` };
  const type = (body[0]! << 8) | body[1]!;
  if (!isExternalMsgType(type)) return { ok: false, reason: `unknown message type ${type}` };
  try {
    return { ok: true, type, payload: decoder.decode(body.subarray(EXTERNAL_TYPE_BYTES)) };
  } catch {
    return { ok: false, reason: "payload is not valid UTF-8" };
  }
}

// ---- JSON payloads ------------------------------------------------------------------------------

const Count = v.pipe(v.number(), v.safeInteger(), v.minValue(0));
const Names = v.array(v.string());

const ShrinkQueryResponseSchema = v.object({ node_names: Names, node_count: Count });
const ClusterStatusSchema = v.object({ worker_count: Count, worker_names: Names, processing_messages: v.boolean(), down_workers: v.optional(Names) });

/** `node_count` as written on the wire: a negative count is the original's "every eligible worker". */
export type ShrinkRequest = { query: boolean; node_names: string[]; node_count: number };
export type ShrinkQueryResponse = v.InferOutput<typeof ShrinkQueryResponseSchema>;
export type ClusterStatus = v.InferOutput<typeof ClusterStatusSchema>;

function parseWith<S extends v.GenericSchema>(schema: S, payload: string): v.InferOutput<S> | null {
  let raw: unknown;
  try {
    raw = JSON.parse(payload);
  } catch {
    return null;
  }
  const r = v.safeParse(schema, raw);
  return r.success ? r.output : null;
}

export type Decoded<T> = { ok: true; value: T } | { ok: false; reason: string };

/** An integer as the original's JSON reader saw one: digits only, no fraction or exponent. */
const INTEGER_TOKEN = /^-?\d+$/;

/**
 * The original read `node_count` as an I64 and used it as a U64: `1e0` or `0.0` is not an
 * integer there (the request was dropped), and `-1` (what its cluster_shrinker --count -1 sends)
 * became the largest count, i.e. every eligible worker. JSON.parse cannot tell `1e0` from `1`,
 * so the token itself is checked (Bun hands a reviver the source text of every number).
 */
export function decodeShrinkRequest(payload: string): Decoded<ShrinkRequest> {
  const countTokens = new WeakMap<object, string | undefined>();
  let raw: unknown;
  try {
    raw = JSON.parse(payload, function (this: object, key: string, value: unknown, ctx?: { source?: string }) {
      if (key === "node_count") countTokens.set(this, ctx?.source);
      return value;
    });
  } catch {
    return { ok: false, reason: "the payload is not JSON" };
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) return { ok: false, reason: "the payload is not a JSON object" };
  const o = raw as Record<string, unknown>;
  if (typeof o.query !== "boolean") return { ok: false, reason: "query must be true or false" };
  if (!Array.isArray(o.node_names) || !o.node_names.every((n) => typeof n === "string")) return { ok: false, reason: "node_names must be an array of worker names" };
  if (!("node_count" in o)) return { ok: false, reason: "node_count is missing" };
  const count = o.node_count;
  const token = countTokens.get(o) ?? JSON.stringify(count);
  // A token too long for a double is still an integer: ±Infinity, clamped by shrinkCount.
  if (typeof count !== "number" || Number.isNaN(count) || !INTEGER_TOKEN.test(token))
    return { ok: false, reason: `node_count must be an integer, not ${token.length > 32 ? `${token.slice(0, 32)}…` : token}` };
  return { ok: true, value: { query: o.query, node_names: o.node_names as string[], node_count: count } };
}

/** The count a shrink by count asks for: a negative one is every eligible worker, as in the original. */
export function shrinkCount(nodeCount: number): number {
  return nodeCount < 0 ? Number.MAX_SAFE_INTEGER : Math.min(nodeCount, Number.MAX_SAFE_INTEGER);
}

export function parseShrinkQueryResponse(payload: string): ShrinkQueryResponse | null {
  return parseWith(ShrinkQueryResponseSchema, payload);
}

export function parseClusterStatus(payload: string): ClusterStatus | null {
  return parseWith(ClusterStatusSchema, payload);
}

function assertCount(n: number, what: string): void {
  if (!(Number.isSafeInteger(n) && n >= 0)) throw new RangeError(`${what} must be a non-negative integer, not ${n}`);
}

// Object literals rather than spreads: JSON.stringify follows insertion order, and the order is
// part of the golden bytes.
export function encodeShrinkRequest(req: ShrinkRequest): string {
  // -1 is the original cluster_shrinker's "every eligible worker".
  if (req.node_count !== -1) assertCount(req.node_count, "node_count");
  return JSON.stringify({ query: req.query, node_names: req.node_names, node_count: req.node_count });
}

export function encodeShrinkQueryResponse(r: ShrinkQueryResponse): string {
  assertCount(r.node_count, "node_count");
  return JSON.stringify({ node_names: r.node_names, node_count: r.node_count });
}

export function encodeClusterStatus(s: ClusterStatus): string {
  assertCount(s.worker_count, "worker_count");
  // The original's three keys, in its order; members that are down only when there are some.
  const down = s.down_workers && s.down_workers.length > 0 ? { down_workers: s.down_workers } : {};
  return JSON.stringify({ worker_count: s.worker_count, worker_names: s.worker_names, processing_messages: s.processing_messages, ...down });
}

// ---- Human renderings (load-bearing: scripts cut them with sed) ----------------------------------

/** `|a,b,|`: every name followed by a comma, as the original tools print lists. */
function pipeList(names: readonly string[]): string {
  return `|${names.map((n) => `${n},`).join("")}|`;
}

/** `count` defaults to the number of names; the reply's own node_count is passed when there is one. */
export function formatEligible(names: readonly string[], count: number = names.length): string {
  return `Eligible for shrink: Node count: ${count}, Nodes: ${pipeList(names)}`;
}

export function formatClusterStatus(s: ClusterStatus): string {
  const down = s.down_workers && s.down_workers.length > 0 ? `, Down: ${pipeList(s.down_workers)}` : "";
  return `Processing messages: ${s.processing_messages}, Worker count: ${s.worker_count}, Workers: ${pipeList(s.worker_names)}${down}`;
}
