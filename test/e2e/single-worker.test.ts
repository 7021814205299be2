// One worker, the compiled binary, real sockets: the foundation a new user meets first.
import { describe, expect, test } from "bun:test";
import { EXTERNAL_MSG, encodeExternal } from "../../src/codec/external.ts";
import { Cluster, ask, statusOf } from "./cluster-harness.ts";
import { AlphabetLoad, HOST, LoadSender, Receiver, SequenceLoad, checkAlphabet, checkSequence, cli, freePort, waitFor } from "./harness.ts";
import { withReceiver } from "./fixtures.ts";

let rx: Receiver;
withReceiver((r) => (rx = r));

async function rawConnection(port: number) {
  const got: Uint8Array[] = [];
  let closed = false;
  const s = await Bun.connect({
    hostname: HOST,
    port,
    socket: {
      data: (_s, d) => void got.push(new Uint8Array(d)),
      close: () => void (closed = true),
    },
  });
  return { s, got, isClosed: () => closed };
}

describe("one worker", () => {
  test("alphabet totals are exact and the cluster answers status, queries and shutdown", async () => {
    const c = new Cluster("alphabet", rx);
    await c.start(1);
    const load = new AlphabetLoad(7);
    const sender = new LoadSender(c.sourcePort, load.next, 50_000, 20_000);
    await sender.start();
    await sender.done;
    await waitFor("all outputs", 20_000, () => rx.lines >= 20_000);
    await Bun.sleep(100);
    expect(checkAlphabet(load, rx)).toEqual([]);
    expect(rx.lines).toBe(20_000);

    const st = await cli(["query", "--external", `${HOST}:${c.initializer.external}`]);
    expect(st.code).toBe(0);
    expect(st.stdout).toContain("Processing messages: true, Worker count: 1, Workers: |initializer,|");
    const js = await cli(["query", "status", "--json", "--external", `${HOST}:${c.initializer.external}`]);
    expect(JSON.parse(js.stdout)).toEqual({ worker_count: 1, worker_names: ["initializer"], processing_messages: true });
    const keys = await cli(["query", "keys", "--json", "--external", `${HOST}:${c.initializer.external}`]);
    expect(JSON.parse(keys.stdout)["add votes"].sort()).toEqual([...load.votes.keys()].sort());
    const q = await cli(["shrink", "--query", "--external", `${HOST}:${c.initializer.external}`]);
    expect(q.stdout.trim()).toBe("Eligible for shrink: Node count: 0, Nodes: ||");
    const refused = await cli(["shrink", "--count", "1", "--external", `${HOST}:${c.initializer.external}`]);
    expect(refused.stdout.trim()).toBe("Cluster shrink response: Cannot shrink 0 workers!");
    expect(refused.code).toBe(4);
    await c.shutdown();
  }, 60_000);

  test("sequence_window windows are exact", async () => {
    const c = new Cluster("sequence_window", rx);
    await c.start(1);
    const load = new SequenceLoad(50);
    const sender = new LoadSender(c.sourcePort, load.next, 40_000, 10_000);
    await sender.start();
    await sender.done;
    await waitFor("all outputs", 20_000, () => rx.lines >= 10_000);
    expect(checkSequence(load, rx)).toEqual([]);
    expect(c.initializer.proc.stderr).not.toContain("window_violation");
  }, 60_000);

  test("a user's .ts module runs in the compiled binary", async () => {
    const c = new Cluster(`${import.meta.dir}/../../examples/word_lengths.ts`, rx);
    await c.start(1);
    const s = await rawConnection(c.sourcePort);
    const text = new TextEncoder().encode("Stream processing grows and shrinks");
    const f = new Uint8Array(4 + text.length);
    new DataView(f.buffer).setUint32(0, text.length);
    f.set(text, 4);
    s.s.write(f);
    await waitFor("5 outputs", 10_000, () => rx.lines >= 5);
    const lines = [...rx.byConn.values()].flat();
    expect(lines).toContain("p processing 10");
    expect(lines).toContain("s stream 6");
    s.s.end();
  }, 60_000);

  test("bad source frames close only the offending connection", async () => {
    const c = new Cluster("alphabet", rx);
    await c.start(1);
    const good = await rawConnection(c.sourcePort);
    const bad = await rawConnection(c.sourcePort);
    // A claimed length far above the 16 KiB default: closed without allocating it.
    bad.s.write(new Uint8Array([0x7f, 0xff, 0xff, 0xff, 1, 2, 3]));
    await waitFor("the bad connection to close", 5000, () => bad.isClosed());
    await c.initializer.proc.waitForLog("exceeds max 16384. Closed connection.");
    // A zero-length frame and a frame the decoder rejects are dropped and logged; the
    // connection carries on.
    good.s.write(new Uint8Array([0, 0, 0, 0]));
    good.s.write(new Uint8Array([0, 0, 0, 2, 0x61, 0x62]));
    good.s.write(new Uint8Array([0, 0, 0, 5, 0x61, 0, 0, 0, 7]));
    await waitFor("the good frame's output", 5000, () => rx.lines >= 1);
    expect([...rx.byConn.values()].flat()).toEqual(["a => 7"]);
    await c.initializer.proc.waitForLog("decoder dropped");
    // A connection that dies inside a frame loses only that frame.
    const trunc = await rawConnection(c.sourcePort);
    trunc.s.write(new Uint8Array([0, 0, 0, 5, 0x62, 0]));
    trunc.s.end();
    await c.initializer.proc.waitForLog("closed inside a frame");
    good.s.write(new Uint8Array([0, 0, 0, 5, 0x61, 0, 0, 0, 3]));
    await waitFor("the next output", 5000, () => rx.lines >= 2);
    expect([...rx.byConn.values()].flat()).toEqual(["a => 7", "a => 10"]);
    expect((await statusOf(c.initializer))?.processing_messages).toBe(true);
    good.s.end();
  }, 60_000);

  test("bad external requests get no answer and leave the connection usable", async () => {
    const c = new Cluster("alphabet", rx);
    await c.start(1);
    const conn = await rawConnection(c.initializer.external);
    conn.s.write(new Uint8Array([0, 0, 0, 0])); // zero-length: skipped
    conn.s.write(new Uint8Array([0, 0, 0, 2, 0, 99])); // unknown id
    conn.s.write(encodeExternal(EXTERNAL_MSG.ShrinkRequest, '{"query":"yes"}')); // malformed JSON shape
    conn.s.write(encodeExternal(EXTERNAL_MSG.ClusterStatusQuery, ""));
    await waitFor("one reply", 5000, () => conn.got.reduce((n, b) => n + b.length, 0) >= 6);
    await Bun.sleep(200);
    const all = Buffer.concat(conn.got);
    const len = all.readUInt32BE(0);
    expect(all.length).toBe(4 + len); // exactly one reply: the status
    expect(all.readUInt16BE(4)).toBe(EXTERNAL_MSG.ClusterStatusQueryResponse);
    const big = await rawConnection(c.initializer.external);
    big.s.write(new Uint8Array([0, 1, 0, 0, 0, 9]));
    await waitFor("the oversized request's connection to close", 5000, () => big.isClosed());
    expect((await ask(c.initializer.external, EXTERNAL_MSG.ClusterStatusQuery))?.type).toBe(EXTERNAL_MSG.ClusterStatusQueryResponse);
    conn.s.end();
  }, 60_000);

  test("the sink holds output back while the receiver is down and delivers it when it returns", async () => {
    const port = rx.port;
    rx.stop();
    const c = new Cluster("alphabet", rx);
    // Start with no receiver listening: the worker must start anyway and hold output.
    const held = new Receiver();
    const load = new AlphabetLoad(3);
    (c as any).rx = { port };
    await c.start(1);
    const sender = new LoadSender(c.sourcePort, load.next, 20_000, 2000);
    await sender.start();
    await sender.done;
    await c.initializer.proc.waitForLog("is not reachable");
    await held.start(port);
    await waitFor("held outputs", 10_000, () => held.lines >= 2000);
    // The receiver restarts mid-stream: the worker reconnects and nothing is lost.
    held.stop();
    const after = new Receiver();
    await after.start(port);
    const more = new LoadSender(c.sourcePort, load.next, 20_000, 2000);
    await more.start();
    await more.done;
    await waitFor("outputs after the restart", 10_000, () => held.lines + after.lines >= 4000);
    const merged = new Receiver();
    let i = 0;
    for (const r of [held, after]) for (const l of r.byConn.values()) merged.byConn.set(i++, l);
    expect(checkAlphabet(load, merged)).toEqual([]);
    after.stop();
  }, 60_000);
});

describe("command line", () => {
  test("invalid flag combinations exit 2 with one precise sentence", async () => {
    const cases: Array<[string[], string]> = [
      [["worker", "--application-module", "alphabet", "--out", "127.0.0.1:1", "--cluster-initializer", "--control", "127.0.0.1:1", "--in", "127.0.0.1:2"], "Cluster initializer needs its data channel address to be specified via --data."],
      [["worker", "--application-module", "alphabet", "--out", "127.0.0.1:1", "--control", "127.0.0.1:1", "--data", "127.0.0.1:3", "--name", "w1"], "Only supply --data to cluster initializer."],
      [["worker", "--application-module", "alphabet", "--out", "127.0.0.1:1", "--control", "127.0.0.1:1"], "You must specify a worker name via --name/-n."],
      [["worker", "--application-module", "alphabet", "--out", "127.0.0.1:1", "--control", "127.0.0.1:1", "--name", "w", "--worker-count", "2"], "Only supply --worker-count to cluster initializer or to joining worker."],
      [["worker", "--application-module", "alphabet", "--out", "127.0.0.1:1", "--cluster-initializer", "--join", "127.0.0.1:1"], "--cluster-initializer and --join cannot be combined"],
      [["worker", "--application-module", "alphabet", "--out", "127.0.0.1:1", "--cluster-initializer", "--worker-count", "0"], "--worker-count must be at least 1."],
      [["worker", "--application-module", "alphabet", "--out", "127.0.0.1:1", "--metrics", "127.0.0.1:5"], "Unknown flag --metrics"],
      [["worker", "--application-module", "alphabet", "--out", "127.0.0.1:1", "--cluster-initializer", "--control", "127.0.0.1:1", "--data", "127.0.0.1:3", "--in", "nonsense"], "Inputs must be in the"],
      [["shrink", "--external", "127.0.0.1:1"], "You must specify exactly one of --query, --count, or --workers"],
      [["shrink", "--external", "127.0.0.1:1", "--count", "0"], ""],
      [["shrink", "--external", "127.0.0.1:1", "--count", "2", "--query"], "You must specify exactly one of --query, --count, or --workers"],
    ];
    for (const [args, sentence] of cases) {
      const r = await cli(args);
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(r.stderr).toContain(sentence);
    }
  }, 60_000);

  test("an unreachable cluster exits 3", async () => {
    const port = await freePort();
    for (const args of [["query", "--external", `${HOST}:${port}`], ["shrink", "--query", "--external", `${HOST}:${port}`], ["shutdown", "--external", `${HOST}:${port}`]]) {
      const r = await cli(args);
      expect({ args, code: r.code }).toEqual({ args, code: 3 });
    }
  }, 30_000);

  test("an unknown application module is a clear error", async () => {
    const r = await cli(["worker", "--application-module", "/nonexistent/app.ts", "--out", "127.0.0.1:1", "--cluster-initializer", "--control", "127.0.0.1:0", "--data", "127.0.0.1:0", "--in", "127.0.0.1:0"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("not found");
  }, 30_000);
});

