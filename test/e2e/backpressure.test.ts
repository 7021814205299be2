// A slow sink slows the source down instead of growing memory, and nothing is lost.
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { Cluster } from "../support/cluster.ts";
import { AlphabetWorkload } from "../support/load.ts";
import { AlphabetValidator } from "../support/validate.ts";
import { cleanUpAfterEach, receiver, sender } from "./fixtures.ts";

cleanUpAfterEach();

/** Well above what the kernel buffers on the way hold (≈14 MB here) and the workers' bounded queues. */
const OFFERED = 3_000_000;
/** No byte taken by the source for this long, with a write waiting: nobody reads it any more. */
const STALL_MS = 1500;

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : NaN;
}

test("a stalled receiver stops the sources being read across the cluster; memory stays bounded; all output arrives", async () => {
  const rx = receiver(new AlphabetValidator());
  const c = await new Cluster("alphabet", rx.port).start(2);
  await rx.waitConnections(2, 10_000);
  rx.pause();
  const wl = new AlphabetWorkload(21);
  const s = await sender(c.sourcePort, wl);
  const all = s.atRate(400_000, OFFERED);
  // With every sink backed up the workers must stop reading their source: the sender's writes
  // stop being taken. Were the source still read — however slowly, into however much memory —
  // this would time out.
  await s.waitStalled(STALL_MS, 30_000);
  expect(s.sent).toBeLessThan(OFFERED);
  const rssStalled = [...c.members.values()].map((w) => rssMiB(w.child.pid));
  for (const mib of rssStalled) expect(mib).toBeLessThan(200);
  rx.resume();
  // Reading again lets everything through, exactly once.
  await all;
  await rx.waitLines(OFFERED, 60_000);
  await c.shutdown(20_000, rx);
  expect(rx.handler.verify(wl, OFFERED)).toEqual([]);
}, 120_000);
