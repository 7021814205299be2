// One worker, the compiled binary, real sockets: the foundation a new user meets first.
import { describe, expect, test } from "bun:test";
import { EXTERNAL_MSG, encodeExternal } from "../../src/codec/external.ts";
import { Cluster, ask } from "../support/cluster.ts";
import { AlphabetWorkload, SequenceWorkload } from "../support/load.ts";
import { HOST, run } from "../support/process.ts";
import { KeepLines } from "../support/receiver.ts";
import { AlphabetValidator, SequenceValidator } from "../support/validate.ts";
import { cleanUpAfterEach, closedPort, externalFrames, rawConnection, receiver, sendAll } from "./fixtures.ts";

cleanUpAfterEach();

describe("one worker", () => {
  test("alphabet totals are exact and the cluster answers status, queries and shutdown", async () => {
    const rx = receiver(new AlphabetValidator());
    const c = await new Cluster("alphabet", rx.port).start(1);
    const wl = new AlphabetWorkload(7);
    await sendAll(c.sourcePort, wl, 20_000, 50_000);
    await rx.waitLines(20_000, 20_000);

    const ext = ["--external", `${HOST}:${c.initializer.external}`];
    const st = await run(["query", ...ext]);
    expect(st.code).toBe(0);
    expect(st.stdout).toContain("Processing messages: true, Worker count: 1, Workers: |initializer,|");
    const js = await run(["query", "status", "--json", ...ext]);
    expect(JSON.parse(js.stdout)).toEqual({ worker_count: 1, worker_names: ["initializer"], processing_messages: true });
    const keys = await run(["query", "keys", "--json", ...ext]);
    expect(JSON.parse(keys.stdout)["add votes"].sort()).toEqual([...wl.expectedTotals(20_000).keys()].sort());
    const q = await run(["shrink", "--query", ...ext]);
    expect(q.stdout.trim()).toBe("Eligible for shrink: Node count: 0, Nodes: ||");
    const refused = await run(["shrink", "--count", "1", ...ext]);
    expect(refused.stdout.trim()).toBe("Cluster shrink response: Cannot shrink 0 workers!");
    expect(refused.code).toBe(4);
    // After EOF on the sink, no late output (a duplicate) can still be on its way.
    await c.shutdown(20_000, rx);
    expect(rx.handler.verify(wl, 20_000)).toEqual([]);
    expect(rx.lines).toBe(20_000);
  }, 60_000);

  test("sequence_window windows are exact", async () => {
    const rx = receiver(new SequenceValidator(50));
    const c = await new Cluster("sequence_window", rx.port).start(1);
    const wl = new SequenceWorkload(50);
    await sendAll(c.sourcePort, wl, 10_000, 40_000);
    await rx.waitLines(10_000, 20_000);
    await c.shutdown(20_000, rx);
    expect(rx.handler.verify(wl, 10_000).problems).toEqual([]);
    expect(rx.lines).toBe(10_000);
    expect(c.initializer.child.stderr).not.toContain("window_violation");
  }, 60_000);

  test("a user's .ts module runs in the compiled binary", async () => {
    const rx = receiver(new KeepLines());
    const c = await new Cluster(`${import.meta.dir}/../../examples/word_lengths.ts`, rx.port).start(1);
    const s = await rawConnection(c.sourcePort);
    const text = new TextEncoder().encode("Stream processing grows and shrinks");
    const f = new Uint8Array(4 + text.length);
    new DataView(f.buffer).setUint32(0, text.length);
    f.set(text, 4);
    s.socket.write(f);
    await rx.waitLines(5, 10_000);
    const lines = rx.handler.all();
    expect(lines).toContain("p processing 10");
    expect(lines).toContain("s stream 6");
    s.socket.end();
  }, 60_000);

  test("bad source frames close only the offending connection", async () => {
    const rx = receiver(new KeepLines());
    const c = await new Cluster("alphabet", rx.port).start(1);
    const good = await rawConnection(c.sourcePort);
    const bad = await rawConnection(c.sourcePort);
    // A claimed length far above the 16 KiB default: closed without allocating it.
    bad.socket.write(new Uint8Array([0x7f, 0xff, 0xff, 0xff, 1, 2, 3]));
    await bad.waitClosed();
    await c.initializer.child.waitForLog("exceeds max 16384. Closed connection.");
    // A zero-length frame and a frame the decoder rejects are dropped and logged; the
    // connection carries on.
    good.socket.write(new Uint8Array([0, 0, 0, 0]));
    good.socket.write(new Uint8Array([0, 0, 0, 2, 0x61, 0x62]));
    good.socket.write(new Uint8Array([0, 0, 0, 5, 0x61, 0, 0, 0, 7]));
    await rx.waitLines(1, 5000, "the good frame's output");
    expect(rx.handler.all()).toEqual(["a => 7"]);
    await c.initializer.child.waitForLog("decoder dropped");
    // A connection that dies inside a frame loses only that frame.
    const trunc = await rawConnection(c.sourcePort);
    trunc.socket.write(new Uint8Array([0, 0, 0, 5, 0x62, 0]));
    trunc.socket.end();
    await c.initializer.child.waitForLog("closed inside a frame");
    good.socket.write(new Uint8Array([0, 0, 0, 5, 0x61, 0, 0, 0, 3]));
    await rx.waitLines(2, 5000, "the next output");
    expect(rx.handler.all()).toEqual(["a => 7", "a => 10"]);
    expect((await c.status(c.initializer))?.processing_messages).toBe(true);
    good.socket.end();
  }, 60_000);

  test("a bad external request gets an answer or a closed connection, and the worker goes on", async () => {
    const rx = receiver(new KeepLines());
    const c = await new Cluster("alphabet", rx.port).start(1);
    const conn = await rawConnection(c.initializer.external);
    conn.socket.write(new Uint8Array([0, 0, 0, 0])); // zero-length: skipped
    conn.socket.write(encodeExternal(EXTERNAL_MSG.ShrinkRequest, '{"query":"yes"}')); // malformed shrink: answered why
    conn.socket.write(encodeExternal(EXTERNAL_MSG.ClusterStatusQuery, ""));
    await conn.until(() => externalFrames(conn.received()).length >= 2, "two replies");
    expect(externalFrames(conn.received())).toEqual([
      { type: EXTERNAL_MSG.ShrinkErrorResponse, payload: "Malformed shrink request: query must be true or false." },
      { type: EXTERNAL_MSG.ClusterStatusQueryResponse, payload: expect.stringContaining('"worker_names":["initializer"]') },
    ]);
    conn.socket.write(new Uint8Array([0, 0, 0, 2, 0, 99])); // unknown id: closed, unanswered
    await conn.waitClosed();
    expect(externalFrames(conn.received()).length).toBe(2);
    const big = await rawConnection(c.initializer.external);
    big.socket.write(new Uint8Array([0, 1, 0, 0, 0, 9]));
    await big.waitClosed();
    expect((await ask(c.initializer.external, EXTERNAL_MSG.ClusterStatusQuery))?.type).toBe(EXTERNAL_MSG.ClusterStatusQueryResponse);
    conn.socket.end();
  }, 60_000);

  test("the sink holds output back while the receiver is down and delivers it when it returns", async () => {
    // The worker starts with no receiver listening on its --out: it must start anyway and hold output.
    const gone = receiver(new KeepLines());
    const port = gone.port;
    gone.stop();
    const c = await new Cluster("alphabet", port).start(1);
    const wl = new AlphabetWorkload(3);
    await sendAll(c.sourcePort, wl, 2000, 20_000);
    await c.initializer.child.waitForLog("is not reachable");
    // One validator across both receivers: together they must show every output exactly once.
    const check = new AlphabetValidator();
    const held = receiver(check, port);
    await held.waitLines(2000, 10_000, "the held outputs");
    // The receiver restarts mid-stream: the worker reconnects and nothing is lost.
    held.stop();
    const after = receiver(check, port);
    await sendAll(c.sourcePort, wl, 2000, 20_000);
    await after.waitLines(2000, 10_000, "the outputs after the restart");
    await c.shutdown(20_000, after);
    expect(check.verify(wl, 4000)).toEqual([]);
    expect(held.lines + after.lines).toBe(4000);
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
      [["worker", "--application-module", "alphabet", "--out", "127.0.0.1:1", "--control", "127.0.0.1:1", "--name", "w", "--metrics", "nonsense"], '--metrics expects host:port, not "nonsense".'],
      [["worker", "--application-module", "alphabet", "--out", "127.0.0.1:1", "--stop-pause", "1"], "Unknown flag --stop-pause"],
      [["worker", "--application-module", "alphabet", "--out", "127.0.0.1:1", "--cluster-initializer", "--control", "127.0.0.1:1", "--data", "127.0.0.1:3", "--in", "nonsense"], "Inputs must be in the"],
      [["shrink", "--external", "127.0.0.1:1"], "You must specify exactly one of --query, --count, or --workers"],
      [["shrink", "--external", "127.0.0.1:1", "--count", "0"], ""],
      [["shrink", "--external", "127.0.0.1:1", "--count", "2", "--query"], "You must specify exactly one of --query, --count, or --workers"],
    ];
    for (const [args, sentence] of cases) {
      const r = await run(args);
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(r.stderr).toContain(sentence);
    }
  }, 60_000);

  test("an unreachable cluster exits 3", async () => {
    const port = closedPort();
    for (const args of [["query", "--external", `${HOST}:${port}`], ["shrink", "--query", "--external", `${HOST}:${port}`], ["shutdown", "--external", `${HOST}:${port}`]]) {
      const r = await run(args);
      expect({ args, code: r.code }).toEqual({ args, code: 3 });
    }
  }, 30_000);

  test("an unknown application module is a clear error", async () => {
    const r = await run(["worker", "--application-module", "/nonexistent/app.ts", "--out", "127.0.0.1:1", "--cluster-initializer", "--control", "127.0.0.1:0", "--data", "127.0.0.1:0", "--in", "127.0.0.1:0"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("not found");
  }, 30_000);
});

