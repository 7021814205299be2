// A slow sink slows the source down instead of growing memory, and nothing is lost.
import { expect, test } from "bun:test";
import { Cluster } from "./cluster-harness.ts";
import { AlphabetLoad, LoadSender, Receiver, checkAlphabet, waitFor } from "./harness.ts";
import { withReceiver } from "./fixtures.ts";

let rx: Receiver;
withReceiver((r) => (rx = r));

function rssMiB(pid: number): number {
  const status = require("node:fs").readFileSync(`/proc/${pid}/status`, "utf8") as string;
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) / 1024 : NaN;
}

test("a stalled receiver pauses the sources across the cluster; memory stays bounded; all output arrives", async () => {
  const c = new Cluster("alphabet", rx);
  await c.start(2);
  await waitFor("both sink connections", 10_000, () => rx.connections >= 2);
  rx.pause();
  const load = new AlphabetLoad(21);
  // Offer far more than the kernel buffers and our bounded queues can hold: ~2 M messages.
  const s = new LoadSender(c.sourcePort, load.next, 400_000, 2_000_000);
  await s.start();
  await Bun.sleep(4000);
  const offered = s.sent;
  const got = rx.lines;
  // The workers stopped reading their inputs: the sender is stuck with most of it.
  expect(got).toBeLessThan(offered);
  for (const w of c.members.values()) expect(rssMiB(w.proc.proc.pid)).toBeLessThan(200);
  const rssStalled = Math.max(...[...c.members.values()].map((w) => rssMiB(w.proc.proc.pid)));
  await Bun.sleep(2000);
  const rssLater = Math.max(...[...c.members.values()].map((w) => rssMiB(w.proc.proc.pid)));
  // Memory does not keep growing while the load keeps being offered.
  expect(rssLater).toBeLessThan(rssStalled + 64);
  rx.resume();
  await s.done;
  await waitFor("every output", 60_000, () => rx.lines >= 2_000_000);
  await Bun.sleep(200);
  expect(checkAlphabet(load, rx)).toEqual([]);
}, 120_000);
