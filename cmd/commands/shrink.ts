// `wallaroo shrink`: the original cluster_shrinker. One ShrinkRequest, one reply, printed in the
// original's words (scripts cut the query output with sed), or as JSON with stable keys.
import { defineCommand } from "citty";
import { parseHostPort, formatHostPort } from "../../src/address.ts";
import {
  EXTERNAL_MSG,
  encodeShrinkQueryResponse,
  encodeShrinkRequest,
  formatEligible,
  parseShrinkQueryResponse,
  type ShrinkRequest,
} from "../../src/codec/external.ts";
import { EXIT, UsageError, WallarooError } from "../../src/errors.ts";
import { readClusterSecret } from "../../src/security/secret.ts";
import { externalRequest, type ExternalReply } from "../../src/net/external-client.ts";
import { applyLogArgs, externalArg, intArg, jsonArg, logArgs, rejectUnknownFlags, secretArg, tlsArgs, tlsFlags, repeatedValues, timeoutArg } from "./_args.ts";

const ONE_OF = "You must specify exactly one of --query, --count, or --workers";
/** A day: long enough for any honest wait, short enough to stay a deadline. */
const MAX_TIMEOUT_S = 86_400;
/** `--count -1`: every eligible worker. */
const ALL_ELIGIBLE = "-1";
/** How the cluster words a shrink it accepted; every other type-6 text is a refusal. */
const ACCEPTED_PREFIX = "Shrinking by";

// TODO(lead): parseTimeoutMs belongs in _args.ts next to timeoutArg; it lives here because that
// file was not ours to edit. query.ts and shutdown.ts import it from here.
export function parseTimeoutMs(text: string | undefined): number {
  const t = text ?? "10";
  const s = /^\d+(\.\d+)?$/.test(t) ? Number(t) : NaN;
  if (!(s > 0 && s <= MAX_TIMEOUT_S)) throw new UsageError(`--timeout must be a number of seconds above 0 and at most ${MAX_TIMEOUT_S}, not "${t}".`);
  return Math.max(1, Math.round(s * 1000));
}

export function incorrectType(reply: ExternalReply, where: string): WallarooError {
  return new WallarooError(`Received incorrect external message type ${reply.type} from ${where}.`);
}

/** Reply 5, shared with `wallaroo query eligible`. */
export function renderEligible(reply: ExternalReply, where: string, json: boolean): string {
  const r = parseShrinkQueryResponse(reply.payload);
  if (!r) throw new WallarooError(`Received invalid message from ${where}: not a ShrinkQueryResponse.`);
  return (json ? encodeShrinkQueryResponse(r) : formatEligible(r.node_names, r.node_count)) + "\n";
}

const args = {
  ...externalArg,
  query: { type: "boolean", alias: "q", description: "list the workers that may leave" },
  count: { type: "string", alias: "c", description: "remove this many workers (the oldest, never the initializer); -1: every one that may leave", valueHint: "n" },
  workers: { type: "string", alias: "w", description: "remove these workers", valueHint: "a,b,c" },
  ...jsonArg,
  ...timeoutArg,
  ...secretArg,
  ...tlsArgs,
  ...logArgs,
} as const;

function requestFrom(a: { query?: boolean; count?: string; workers?: string }, rawArgs: readonly string[]): ShrinkRequest {
  const given = [a.query === true, a.count !== undefined, a.workers !== undefined].filter(Boolean).length;
  if (given !== 1) throw new UsageError(ONE_OF + ".");
  if (a.query) return { query: true, node_names: [], node_count: 0 };
  if (a.count !== undefined) {
    if (a.count === "") throw new UsageError("--count needs a number of workers.");
    // The original cluster_shrinker's way to ask for every eligible worker; sent as it sent it.
    if (a.count === ALL_ELIGIBLE) return { query: false, node_names: [], node_count: -1 };
    return { query: false, node_names: [], node_count: intArg("count", a.count, 1)! };
  }
  // Repeats add up (`-w a -w b`); order and duplicates are kept: the cluster judges them.
  const names = repeatedValues(rawArgs, ["workers", "w"]);
  if (names.length === 0) throw new UsageError("--workers needs at least one worker name.");
  return { query: false, node_names: names, node_count: 0 };
}

export default defineCommand({
  meta: { name: "shrink", description: "Ask a running cluster which workers may leave, or make some leave" },
  args,
  async run({ args: a, rawArgs }) {
    rejectUnknownFlags(rawArgs, args);
    applyLogArgs(a);
    if (a._.length > 0) throw new UsageError(`Unexpected argument "${a._[0]}". See --help.`);
    const addr = parseHostPort(a.external, "--external");
    const req = requestFrom(a, rawArgs);
    const timeoutMs = parseTimeoutMs(a.timeout);
    const where = formatHostPort(addr);

    const secret = await readClusterSecret(a["cluster-secret-file"]);
    const reply = await externalRequest(addr, EXTERNAL_MSG.ShrinkRequest, encodeShrinkRequest(req), { expectReply: true, timeoutMs, secret, tls: tlsFlags(a, false) });
    if (!reply) throw new WallarooError(`No answer from ${where}.`);
    const json = a.json === true;
    if (reply.type === EXTERNAL_MSG.ShrinkQueryResponse) {
      process.stdout.write(renderEligible(reply, where, json));
      return EXIT.ok;
    }
    if (reply.type === EXTERNAL_MSG.ShrinkErrorResponse) {
      // The original sends success and refusal as the same type; only the text tells them apart.
      const accepted = reply.payload.startsWith(ACCEPTED_PREFIX);
      const line = json ? JSON.stringify({ accepted, response: reply.payload }) : `Cluster shrink response: ${reply.payload}`;
      process.stdout.write(line + "\n");
      return accepted ? EXIT.ok : EXIT.refused;
    }
    throw incorrectType(reply, where);
  },
});
