// `wallaroo top`: one screen of the whole cluster, asked of one worker, which asks every member
// (external message 103, wallaroo's own). On a terminal it refreshes in place every --interval;
// otherwise, and always with --json, it takes two answers one interval apart (the rates need
// two) and prints once.
import { defineCommand } from "citty";
import * as v from "valibot";
import { formatHostPort, parseHostPort, type HostPort } from "../../src/address.ts";
import { EXTERNAL_MSG } from "../../src/codec/external.ts";
import { UsageError, WallarooError } from "../../src/errors.ts";
import { ClusterStatusesSchema, type ClusterStatuses } from "../../src/metrics/status.ts";
import { externalRequest } from "../../src/net/external-client.ts";
import { applyLogArgs, externalArg, jsonArg, logArgs, rejectUnknownFlags, secretArg, timeoutArg, tlsArgs, tlsFlags, type TlsFlags } from "./_args.ts";
import { readClusterSecret } from "../../src/security/secret.ts";
import { incorrectType, parseTimeoutMs } from "./shrink.ts";
import { renderTop, topView } from "./_top-view.ts";

const args = {
  ...externalArg,
  ...jsonArg,
  interval: { type: "string", description: "seconds between two answers (the rates are over it)", default: "1", valueHint: "seconds" },
  ...timeoutArg,
  ...secretArg,
  ...tlsArgs,
  ...logArgs,
} as const;

/** How to reach the worker: signed with the cluster secret, over TLS, as `query` does. */
type Reach = { secret?: Uint8Array; tls?: TlsFlags };

/** Clears the terminal and puts the cursor top left, so each screen replaces the last. */
const HOME_AND_CLEAR = "\x1b[H\x1b[2J";

async function ask(addr: HostPort, timeoutMs: number, reach: Reach): Promise<ClusterStatuses> {
  const where = formatHostPort(addr);
  const reply = await externalRequest(addr, EXTERNAL_MSG.WorkersStatusQuery, "", { expectReply: true, timeoutMs, ...reach });
  if (!reply) throw new WallarooError(`No answer from ${where}.`);
  if (reply.type !== EXTERNAL_MSG.WorkersStatusQueryResponse) throw incorrectType(reply, where);
  let json: unknown;
  try {
    json = JSON.parse(reply.payload);
  } catch {
    throw new WallarooError(`Received invalid message from ${where}: the reply is not JSON.`);
  }
  const parsed = v.safeParse(ClusterStatusesSchema, json);
  if (!parsed.success) throw new WallarooError(`Received invalid message from ${where}: ${parsed.issues[0]?.message ?? "not a workers status"}.`);
  return parsed.output;
}

function intervalMs(text: string | undefined): number {
  const t = text ?? "1";
  const s = /^\d+(\.\d+)?$/.test(t) ? Number(t) : NaN;
  if (!(s >= 0.1 && s <= 3600)) throw new UsageError(`--interval must be a number of seconds from 0.1 to 3600, not "${t}".`);
  return Math.round(s * 1000);
}

export default defineCommand({
  meta: { name: "top", description: "Watch every worker: slots, keys, messages in and out per second, p99 latency, held messages, autoscale phase" },
  args,
  async run({ args: a, rawArgs }) {
    rejectUnknownFlags(rawArgs, args);
    applyLogArgs(a);
    if (a._.length > 0) throw new UsageError(`Unexpected argument "${a._[0]}". See --help.`);
    const addr = parseHostPort(a.external, "--external");
    const where = formatHostPort(addr);
    const timeoutMs = parseTimeoutMs(a.timeout);
    const everyMs = intervalMs(a.interval);
    const reach: Reach = { secret: await readClusterSecret(a["cluster-secret-file"]), tls: tlsFlags(a, false) };
    let prev = await ask(addr, timeoutMs, reach);
    let t0 = performance.now();
    const once = a.json === true || !process.stdout.isTTY;
    for (;;) {
      await Bun.sleep(everyMs);
      let cur: ClusterStatuses;
      try {
        cur = await ask(addr, timeoutMs, reach);
      } catch (err) {
        if (once) throw err;
        // On a terminal a worker that does not answer once is shown, not fatal: the next try may.
        process.stdout.write(`${HOME_AND_CLEAR}wallaroo top — ${where}: ${(err as Error).message}\n`);
        continue;
      }
      const t1 = performance.now();
      const view = topView(cur, prev, Math.round(t1 - t0) / 1000);
      if (a.json === true) return void process.stdout.write(JSON.stringify(view) + "\n");
      if (once) return void process.stdout.write(renderTop(view, where));
      process.stdout.write(HOME_AND_CLEAR + renderTop(view, where));
      prev = cur;
      t0 = t1;
    }
  },
});
