// `wallaroo query [WHAT]`: the read-only half of the original external_sender. Without --json the
// answer is a heading in the original's words and a human rendering; with --json exactly the
// reply's JSON on one line, for scripts.
import { defineCommand } from "citty";
import { formatHostPort, parseHostPort } from "../../src/address.ts";
import { EXTERNAL_MSG, encodeClusterStatus, encodeShrinkRequest, formatClusterStatus, parseClusterStatus } from "../../src/codec/external.ts";
import { UsageError, WallarooError } from "../../src/errors.ts";
import { readClusterSecret } from "../../src/security/secret.ts";
import { externalRequest, type ExternalReply } from "../../src/net/external-client.ts";
import { applyLogArgs, externalArg, jsonArg, logArgs, rejectUnknownFlags, secretArg, tlsArgs, tlsFlags, timeoutArg } from "./_args.ts";
import { incorrectType, parseTimeoutMs, renderEligible } from "./shrink.ts";

const M = EXTERNAL_MSG;

/** WHAT → request, expected reply, and the heading external_sender printed above it. */
const QUERIES = {
  status: { request: M.ClusterStatusQuery, reply: M.ClusterStatusQueryResponse, heading: "Cluster Status:" },
  slots: { request: M.PartitionQuery, reply: M.PartitionQueryResponse, heading: "Partition Distribution:" },
  "slot-counts": { request: M.PartitionCountQuery, reply: M.PartitionCountQueryResponse, heading: "Partition Distribution (counts):" },
  keys: { request: M.StateEntityQuery, reply: M.StateEntityQueryResponse, heading: "State Entity Distribution:" },
  "key-counts": { request: M.StateEntityCountQuery, reply: M.StateEntityCountQueryResponse, heading: "State Entity Count:" },
  "cluster-key-counts": { request: M.ClusterStateEntityCountQuery, reply: M.ClusterStateEntityCountQueryResponse, heading: "Cluster State Entity Count:" },
  stateless: { request: M.StatelessPartitionQuery, reply: M.StatelessPartitionQueryResponse, heading: "Stateless Partition Distribution:" },
  "stateless-counts": { request: M.StatelessPartitionCountQuery, reply: M.StatelessPartitionCountQueryResponse, heading: "Stateless Partition Count:" },
  eligible: { request: M.ShrinkRequest, reply: M.ShrinkQueryResponse, heading: "" },
} as const;
type What = keyof typeof QUERIES;
const CHOICES = Object.keys(QUERIES).join(", ");

const NOT_INITIALIZED_JSON = JSON.stringify({ processing_messages: false });

function invalid(where: string, what: string): WallarooError {
  return new WallarooError(`Received invalid message from ${where}: ${what}.`);
}

function renderStatus(reply: ExternalReply, where: string, json: boolean): string {
  const heading = QUERIES.status.heading;
  if (reply.type === M.ClusterStatusQueryResponseNotInitialized) {
    return json ? NOT_INITIALIZED_JSON + "\n" : `${heading}\nCluster not yet initialized\nProcessing messages: false\n`;
  }
  if (reply.type !== M.ClusterStatusQueryResponse) throw incorrectType(reply, where);
  const s = parseClusterStatus(reply.payload);
  if (!s) throw invalid(where, "not a cluster status");
  return json ? encodeClusterStatus(s) + "\n" : `${heading}\n${formatClusterStatus(s)}\n`;
}

/** The distribution replies are shown as they come: their shape is the server's business. */
function renderJson(what: What, reply: ExternalReply, where: string, json: boolean): string {
  if (reply.type !== QUERIES[what].reply) throw incorrectType(reply, where);
  let value: unknown;
  try {
    value = JSON.parse(reply.payload);
  } catch {
    throw invalid(where, "the reply is not JSON");
  }
  if (value === null || typeof value !== "object") throw invalid(where, "the reply is not a JSON object");
  if (!json) return `${QUERIES[what].heading}\n${JSON.stringify(value, null, 2)}\n`;
  // Verbatim keeps the server's key order; re-serialise only if it is not already one line.
  return (/[\r\n]/.test(reply.payload) ? JSON.stringify(value) : reply.payload) + "\n";
}

const args = {
  what: { type: "positional", required: false, default: "status", description: CHOICES, valueHint: "what" },
  ...externalArg,
  ...jsonArg,
  ...timeoutArg,
  ...secretArg,
  ...tlsArgs,
  ...logArgs,
} as const;

export default defineCommand({
  meta: { name: "query", description: "Ask a worker about the cluster: status, slots, keys, counts, shrink eligibility" },
  args,
  async run({ args: a, rawArgs }) {
    rejectUnknownFlags(rawArgs, args);
    applyLogArgs(a);
    const what = a.what ?? "status";
    if (!Object.hasOwn(QUERIES, what)) throw new UsageError(`Unknown query "${what}". Choose one of: ${CHOICES}.`);
    if (a._.length > 1) throw new UsageError(`Unexpected argument "${a._[1]}". See --help.`);
    const w = what as What;
    const addr = parseHostPort(a.external, "--external");
    const timeoutMs = parseTimeoutMs(a.timeout);
    const where = formatHostPort(addr);
    const json = a.json === true;

    const payload = w === "eligible" ? encodeShrinkRequest({ query: true, node_names: [], node_count: 0 }) : "";
    const secret = await readClusterSecret(a["cluster-secret-file"]);
    const reply = await externalRequest(addr, QUERIES[w].request, payload, { expectReply: true, timeoutMs, secret, tls: tlsFlags(a, false) });
    if (!reply) throw new WallarooError(`No answer from ${where}.`);

    let out: string;
    if (w === "status") out = renderStatus(reply, where, json);
    else if (w === "eligible") {
      if (reply.type !== M.ShrinkQueryResponse) throw incorrectType(reply, where);
      out = renderEligible(reply, where, json);
    } else out = renderJson(w, reply, where, json);
    process.stdout.write(out);
  },
});
