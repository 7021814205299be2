// The in-memory transport on the simulation's scheduler: bytes arrive whole and in order per
// link (in random chunks), links reorder against each other, pause holds delivery, partitions
// hold deliveries and closes until they heal, a killed process's links close at the far end,
// a dropped connection closes at both ends, a revived name can listen again.
import { describe, expect, test } from "bun:test";
import { MemoryNetwork } from "../../src/net/memory.ts";
import type { Link } from "../../src/net/transport.ts";
import { Scheduler } from "./scheduler.ts";

interface Side {
  chunks: number;
  bytes: number[];
  closed: boolean;
}

/** A network with a server "b" on b:1 recording what arrives on each accepted link. */
async function setup(seed = 1) {
  const s = new Scheduler(seed);
  const net = new MemoryNetwork(s, s.random.network);
  const accepted: Array<{ link: Link; side: Side }> = [];
  s.schedule(s.process("b"), 0, "listen", () => {
    void net.transport("b").listen("b", 1, (link) => {
      const side: Side = { chunks: 0, bytes: [], closed: false };
      accepted.push({ link, side });
      return { data: (_l, c) => (side.chunks++, side.bytes.push(...c)), close: () => void (side.closed = true) };
    });
  });
  await run(s);
  /** Dials b:1 from `node`; resolves with the link and what the dialler receives. */
  const dial = async (node: string) => {
    const side: Side = { chunks: 0, bytes: [], closed: false };
    let link: Link | undefined;
    let error: Error | undefined;
    s.schedule(s.process(node), 0, "dial", () => {
      net
        .transport(node)
        .connect("b", 1, { data: (_l, c) => (side.chunks++, side.bytes.push(...c)), close: () => void (side.closed = true) }, 1000)
        .then((l) => (link = l), (e: Error) => (error = e));
    });
    await until(s, () => link !== undefined || error !== undefined);
    return { link, error, side };
  };
  return { s, net, accepted, dial };
}

async function run(s: Scheduler, until = Infinity): Promise<void> {
  while ((s.peekTime() ?? Infinity) <= until && (await s.step())) {}
}

async function until(s: Scheduler, cond: () => boolean): Promise<void> {
  while (!cond()) if (!(await s.step())) throw new Error("nothing left to run");
}

const bytes = (from: number, n: number) => Array.from({ length: n }, (_, i) => (from + i) & 0xff);

describe("MemoryNetwork", () => {
  test("bytes arrive whole and in order on a link, cut into chunks", async () => {
    const { s, accepted, dial } = await setup();
    const { link } = await dial("a");
    s.schedule(s.process("a"), 0, "write", () => {
      for (let i = 0; i < 50; i++) link!.write(new Uint8Array(bytes(i * 1000, 1000)));
    });
    await run(s);
    const side = accepted[0]!.side;
    expect(side.bytes).toEqual(Array.from({ length: 50 }, (_, i) => bytes(i * 1000, 1000)).flat());
    expect(side.chunks).toBeGreaterThan(10);
  });

  test("writes on different links overtake each other; on one link they never do", async () => {
    const { s, net } = await setup(3);
    const got = new Map<string, number[]>();
    const order: string[] = [];
    s.schedule(s.process("r"), 0, "listen", () => {
      void net.transport("r").listen("r", 2, (l) => ({
        data: (_l, c) => {
          const list = got.get(l.remote) ?? [];
          list.push(...c);
          got.set(l.remote, list);
          for (let i = 0; i < c.length; i++) order.push(l.remote);
        },
        close() {},
      }));
    });
    await run(s);
    const senders = ["x", "y", "z"];
    const links: Link[] = [];
    for (const n of senders) s.schedule(s.process(n), 0, "dial", () => void net.transport(n).connect("r", 2, { data() {}, close() {} }, 1000).then((l) => links.push(l)));
    await until(s, () => links.length === 3);
    // Each sender writes its counter once per ms, all three at the same instants.
    for (let t = 0; t < 40; t++) links.forEach((l, i) => s.schedule(s.process(senders[i]!), t, "w", () => l.write(new Uint8Array([t]))));
    await run(s);
    expect([...got.values()]).toEqual(senders.map(() => Array.from({ length: 40 }, (_, t) => t)));
    // Round-robin is the order they were written in; the network must have mixed it.
    const roundRobin = Array.from({ length: 120 }, (_, i) => order[i % 3]);
    expect(order).not.toEqual(roundRobin);
  });

  test("pause holds delivery until resume; nothing is lost", async () => {
    const { s, accepted, dial } = await setup();
    const { link } = await dial("a");
    await run(s);
    const { link: server, side } = accepted[0]!;
    s.schedule(s.process("b"), 0, "pause", () => server.pause());
    s.schedule(s.process("a"), 1, "write", () => link!.write(new Uint8Array(bytes(0, 5000))));
    await run(s, s.now() + 100);
    expect(side.bytes.length).toBe(0);
    expect(link!.queuedBytes).toBe(5000);
    s.schedule(s.process("b"), 0, "resume", () => server.resume());
    await run(s);
    expect(side.bytes).toEqual(bytes(0, 5000));
    expect(link!.queuedBytes).toBe(0);
  });

  test("a reader that stops makes the writer congested; once it reads again the writer gets drain", async () => {
    const s = new Scheduler(1);
    const net = new MemoryNetwork(s, s.random.network);
    let server: Link | undefined;
    let drains = 0;
    s.schedule(s.process("b"), 0, "listen", () => {
      void net.transport("b").listen("b", 1, (l) => {
        server = l;
        l.pause();
        return { data() {}, close() {} };
      });
    });
    let link: Link | undefined;
    s.schedule(s.process("a"), 1, "dial", () => void net.transport("a").connect("b", 1, { data() {}, drain: () => drains++, close() {} }, 1000).then((l) => (link = l)));
    await until(s, () => link !== undefined && server !== undefined);
    s.schedule(s.process("a"), 0, "write", () => link!.write(new Uint8Array(5 * 1024 * 1024)));
    await run(s);
    expect(link!.congested).toBe(true);
    expect(drains).toBe(0);
    s.schedule(s.process("b"), 0, "resume", () => server!.resume());
    await run(s);
    expect(link!.congested).toBe(false);
    expect(drains).toBe(1);
  });

  test("a partition holds deliveries and closes until it heals; a connect across it times out", async () => {
    const { s, net, accepted, dial } = await setup();
    const { link } = await dial("a");
    await run(s);
    const { side } = accepted[0]!;
    net.partition(["a"], ["b"]);
    s.schedule(s.process("a"), 0, "write", () => {
      link!.write(new Uint8Array(bytes(0, 300)));
      link!.end();
    });
    await run(s, s.now() + 5000);
    expect(side.bytes.length).toBe(0);
    expect(side.closed).toBe(false);
    const t0 = s.now();
    const across = await dial("a");
    expect(across.error?.message).toContain("ETIMEDOUT");
    expect(s.now() - t0).toBeGreaterThanOrEqual(1000);
    net.heal();
    await run(s);
    expect(side.bytes).toEqual(bytes(0, 300));
    expect(side.closed).toBe(true);
  });

  test("a killed process: its links close at the far end after what it sent; it cannot connect; a revived name listens again", async () => {
    const { s, net, accepted, dial } = await setup();
    const { link, side: dialler } = await dial("a");
    s.schedule(s.process("a"), 0, "write", () => link!.write(new Uint8Array(bytes(0, 100))));
    await run(s, s.now());
    s.kill("b");
    net.kill("b");
    s.schedule(s.process("a"), 0, "write", () => link!.write(new Uint8Array(bytes(0, 100))));
    await run(s);
    expect(dialler.closed).toBe(true);
    expect(accepted[0]!.side.closed).toBe(false); // its code never runs again
    const refused = await dial("a");
    expect(refused.error?.message).toContain("ECONNREFUSED");
    s.revive("b");
    let port = 0;
    s.schedule(s.process("b"), 0, "listen", () => void net.transport("b").listen("b", 1, () => ({ data() {}, close() {} })).then((srv) => (port = srv.port)));
    await run(s);
    expect(port).toBe(1);
    expect((await dial("a")).link).toBeDefined();
  });

  test("a dropped connection closes at both ends; what was in flight is lost", async () => {
    const { s, net, accepted, dial } = await setup();
    const { link, side } = await dial("a");
    await run(s);
    s.schedule(s.process("a"), 0, "write", () => link!.write(new Uint8Array(bytes(0, 100))));
    await run(s, s.now());
    const [open] = net.openLinks();
    expect(net.drop(open!.id)).toBe(true);
    await run(s);
    expect(side.closed).toBe(true);
    expect(accepted[0]!.side.closed).toBe(true);
    expect(accepted[0]!.side.bytes.length).toBe(0);
    expect(net.openLinks()).toEqual([]);
  });

  test("a connection reset before its opening reached the dialler fails the connect", async () => {
    const { s, net } = await setup();
    let error: Error | undefined;
    let closed = false;
    s.schedule(s.process("a"), 0, "dial", () => {
      net
        .transport("a")
        .connect("b", 1, { data() {}, close: () => void (closed = true) }, 1000)
        .catch((e: Error) => (error = e));
    });
    // Run until the link exists (the dialler's connect event), then reset it at once.
    await until(s, () => net.openLinks().length > 0);
    expect(net.drop(net.openLinks()[0]!.id)).toBe(true);
    await run(s);
    expect(error?.message).toContain("ECONNRESET");
    expect(closed).toBe(false);
  });

  test("link ids and ports belong to one network", async () => {
    const one = await setup();
    const two = await setup();
    const a = await one.dial("a");
    const b = await two.dial("a");
    expect(a.link!.id).toBe(b.link!.id);
  });
});
