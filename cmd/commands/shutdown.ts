// `wallaroo shutdown`: the original cluster_shutdown. Sends CleanShutdown and closes; the cluster
// does not answer it, so success means "the request left this machine", not "the cluster stopped".
import { defineCommand } from "citty";
import { parseHostPort } from "../../src/address.ts";
import { EXTERNAL_MSG } from "../../src/codec/external.ts";
import { UsageError } from "../../src/errors.ts";
import { readClusterSecret } from "../../src/security/secret.ts";
import { externalRequest } from "../../src/net/external-client.ts";
import { applyLogArgs, externalArg, logArgs, rejectUnknownFlags, secretArg, tlsArgs, tlsFlags, timeoutArg } from "./_args.ts";
import { parseTimeoutMs } from "./shrink.ts";

const args = {
  // Positional too, so `cluster_shutdown HOST:PORT` habits keep working.
  address: { type: "positional", required: false, description: "a worker's external channel address (same as --external)", valueHint: "host:port" },
  external: { ...externalArg.external, required: false },
  timeout: { ...timeoutArg.timeout, description: "seconds allowed to connect and send" },
  ...secretArg,
  ...tlsArgs,
  ...logArgs,
} as const;

export default defineCommand({
  meta: { name: "shutdown", description: "Stop the whole cluster cleanly (every worker deletes its resilience files)" },
  args,
  async run({ args: a, rawArgs }) {
    rejectUnknownFlags(rawArgs, args);
    applyLogArgs(a);
    if (a._.length > 1) throw new UsageError(`Unexpected argument "${a._[1]}". See --help.`);
    const given = [a.address, a.external].filter((x) => x !== undefined);
    if (given.length !== 1) throw new UsageError("Give the worker's address once: either HOST:PORT or --external HOST:PORT.");
    const flag = a.external !== undefined ? "--external" : "HOST:PORT";
    const addr = parseHostPort(given[0]!, flag);
    const timeoutMs = parseTimeoutMs(a.timeout);
    // Signed, it is answered (accepted, or refused with the reason: an error).
    const secret = await readClusterSecret(a["cluster-secret-file"]);
    await externalRequest(addr, EXTERNAL_MSG.CleanShutdown, "", { expectReply: false, timeoutMs, secret, tls: tlsFlags(a, false) });
  },
});
