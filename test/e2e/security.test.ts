// Only members get in (issue 11), on the compiled binary: with a cluster secret, outsiders (a
// joiner with a wrong or no secret, raw clients speaking our codecs) are refused at the handshake
// and unsigned requests that change the cluster are refused, while the cluster forms, grows,
// shrinks and stays exact under load. Without a secret, forged messages from strangers are
// refused by role and never stop a worker.
import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encodeControl } from "../../src/codec/control.ts";
import { encodeHello, encodeMarker } from "../../src/codec/data.ts";
import { encodeEnvelope } from "../../src/codec/external-auth.ts";
import { EXTERNAL_MSG, encodeExternal, encodeShrinkRequest } from "../../src/codec/external.ts";
import { Cluster } from "../support/cluster.ts";
import { SequenceWorkload } from "../support/load.ts";
import { HOST, wallaroo } from "../support/process.ts";
import type { Receiver } from "../support/receiver.ts";
import { SequenceValidator } from "../support/validate.ts";
import { cleanUpAfterEach, rawConnection, receiver, sender } from "./fixtures.ts";
import { poll } from "../support/wait.ts";

cleanUpAfterEach();

const dir = mkdtempSync(join(tmpdir(), "wallaroo-security-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
function secretFile(name: string, secret: string): string {
  const f = join(dir, name);
  writeFileSync(f, secret + "\n");
  chmodSync(f, 0o600);
  return f;
}
const SECRET = "4f1c0b8e2a9d7c6b5a4f3e2d1c0b9a8f";
const KEYS = 300;
const RATE = 10_000;

/** Load flows through `during`; afterwards every output must arrive exactly once, in order per key. */
async function exactUnderLoad(c: Cluster, rx: Receiver<SequenceValidator>, wl: SequenceWorkload, during: () => Promise<void>): Promise<void> {
  const s = await sender(c.sourcePort, wl);
  void s.atRate(RATE);
  await rx.waitLines(RATE / 10, 10_000, "load to flow");
  await during();
  await rx.waitLines(s.sent + RATE / 10, 15_000, "outputs after the attacks");
  await s.stop();
  s.close();
  await rx.waitLines(s.sent, 30_000, `all ${s.sent} outputs`);
  await c.shutdown(20_000, rx);
  expect(rx.handler.verify(wl, s.sent).problems).toEqual([]);
  expect(rx.lines).toBe(s.sent);
}

describe("with a cluster secret", () => {
  test("forms, grows and shrinks with signed requests; outsiders and unsigned requests change nothing", async () => {
    const f = secretFile("good", SECRET);
    const rx = receiver(new SequenceValidator(KEYS));
    const c = await new Cluster("sequence_window", rx.port, { extraArgs: ["--cluster-secret-file", f], toolArgs: ["--cluster-secret-file", f] }).start(2);
    const wl = new SequenceWorkload(KEYS);
    await exactUnderLoad(c, rx, wl, async () => {
      // A joiner with the wrong secret, and one with none: refused at the handshake, never members.
      const wrong = secretFile("wrong", "0000000000000000ffffffffffffffff");
      for (const [name, extra] of [["evil1", ["--cluster-secret-file", wrong]], ["evil2", []]] as const) {
        const j = wallaroo(name, ["worker", "--application-module", "sequence_window", "--out", `${HOST}:${rx.port}`, "--name", name, "--join", `${HOST}:${c.initializer.control}`, "--my-control", `${HOST}:0`, ...extra]);
        expect(await j.waitExit(20_000)).not.toBe(0);
        expect(j.tail(20)).toMatch(/handshake|secret/);
      }
      await c.initializer.child.waitForLog(/Refused a control connection from .*it holds another cluster secret/);
      await c.initializer.child.waitForLog(/Refused a control connection from .*did not open with the cluster handshake/);

      // A raw client speaking `join` on the control port, and a data HELLO naming w1: closed unheard.
      const ctl = await rawConnection(c.initializer.control);
      ctl.socket.write(encodeControl("join", { name: "evil", count: 1, host: HOST, controlPort: 1, dataPort: 1 }));
      await ctl.waitClosed();
      expect(ctl.received().length).toBe(0);
      const dataPort = Number((await c.initializer.child.waitForLog(/data: listening on \S+:(\d+)/))[1]);
      const data = await rawConnection(dataPort);
      data.socket.write(encodeHello(0, 0, "w1", 1));
      await data.waitClosed();

      // Unsigned shrink and shutdown: answered with a refusal, nothing changes.
      const shrink = await c.run(["shrink", "--external", `${HOST}:${c.initializer.external}`, "--count", "1"]);
      expect(shrink.code).toBe(4);
      expect(shrink.stdout).toContain("Refused: this cluster has a secret");
      const ext = await rawConnection(c.initializer.external);
      ext.socket.write(encodeExternal(EXTERNAL_MSG.CleanShutdown, "unsigned"));
      await ext.until(() => ext.received().length >= 6, "a refusal of the unsigned shutdown");
      expect(ext.received().readUInt16BE(4)).toBe(EXTERNAL_MSG.RequestRefused);

      // A signed shrink captured and sent again: the second is a replay.
      const envelope = encodeEnvelope(new TextEncoder().encode(SECRET), EXTERNAL_MSG.ShrinkRequest, encodeShrinkRequest({ query: true, node_names: [], node_count: 0 }), Date.now(), "0123456789abcdef0123456789abcdef");
      const replay = await rawConnection(c.initializer.external);
      replay.socket.write(encodeExternal(EXTERNAL_MSG.AuthenticatedRequest, envelope));
      await replay.until(() => replay.received().length >= 6, "the answer to the signed query");
      expect(replay.received().readUInt16BE(4)).toBe(EXTERNAL_MSG.ShrinkQueryResponse);
      const first = replay.received().length;
      replay.socket.write(encodeExternal(EXTERNAL_MSG.AuthenticatedRequest, envelope));
      await replay.until(() => replay.received().length >= first + 6, "the answer to the replay");
      expect(replay.received().readUInt16BE(first + 4)).toBe(EXTERNAL_MSG.RequestRefused);
      expect(replay.received().subarray(first + 6).toString()).toContain("replay");

      expect((await c.status(c.initializer))!.worker_names.sort()).toEqual(["initializer", "w1"]);
      // Members with the secret still grow and shrink the cluster.
      await c.grow(["w2"]);
      const r = await c.shrink(["--workers", "w1"]);
      expect(r.code).toBe(0);
      expect(r.leavers).toEqual(["w1"]);
      expect((await c.status(c.initializer))!.down_workers ?? []).toEqual([]);
    });
  }, 120_000);
});

describe("without a cluster secret", () => {
  test("forged messages from strangers are refused by role, never acted on, and stop no worker", async () => {
    const rx = receiver(new SequenceValidator(KEYS));
    const c = await new Cluster("sequence_window", rx.port).start(2);
    await c.initializer.child.waitForLog(/No cluster secret: this worker's control and data ports accept anyone/);
    const wl = new SequenceWorkload(KEYS);
    await exactUnderLoad(c, rx, wl, async () => {
      const w1 = c.members.get("w1")!;
      // The coordinator's messages from a stranger: a plan with a bad epoch, a refusal, a `complete` telling w1 to leave.
      const ctl = await rawConnection(w1.control);
      ctl.socket.write(encodeControl("plan", { epoch: 0xffffffff, moves: [[1, 0, 9]], participants: [0] }));
      await ctl.waitClosed();
      await w1.child.waitForLog(/Refused control message plan from .* \(not a member\)/);
      for (const frame of [encodeControl("refused", { reason: "go away" }), encodeControl("complete", { members: [], leaving: ["w1"] })]) {
        const l = await rawConnection(w1.control);
        l.socket.write(frame);
        await l.waitClosed();
      }
      // A hello naming a member that has its link already; then a message in its name.
      const dup = await rawConnection(c.initializer.control);
      dup.socket.write(encodeControl("hello", { name: "w1" }));
      await dup.waitClosed();

      // Data: a frame before any hello; a hello under a name nobody admitted; a hello naming the initializer at w1, then closed.
      const dataPort = Number((await w1.child.waitForLog(/data: listening on \S+:(\d+)/))[1]);
      const noHello = await rawConnection(dataPort);
      noHello.socket.write(encodeMarker(0, 1, [5]));
      await noHello.waitClosed();
      const stranger = await rawConnection(dataPort);
      stranger.socket.write(Buffer.concat([encodeHello(0, 1, "evil", 77), encodeMarker(1, 1, [5])]));
      await stranger.waitClosed();
      const asInit = await rawConnection(dataPort);
      asInit.socket.write(encodeHello(0, 1, "initializer", 0));
      await asInit.waitClosed();
      await w1.child.waitForLog(/claims to be worker initializer/);

      // A shutdown reason with a newline cannot forge a line in the text log. (No secret: it is
      // obeyed, so it is sent last, after the load; here only the Print line shows the escaping.)
      const ext = await rawConnection(w1.external);
      ext.socket.write(encodeExternal(EXTERNAL_MSG.Print, "hi\n[initializer] Application has successfully initialized."));
      await w1.child.waitForLog(/ExternalPrint: hi\\n\[initializer\]/);

      // Nobody was declared down, w1 still runs and answers, and the cluster still grows.
      expect(w1.child.exitCode).toBeNull();
      expect((await c.status(c.initializer))!.down_workers ?? []).toEqual([]);
      await c.grow(["w2"]);
    });
  }, 120_000);

  test("a connection that says nothing, or trickles a frame, is closed at the first-frame deadline", async () => {
    const rx = receiver(new SequenceValidator(KEYS));
    const c = await new Cluster("sequence_window", rx.port).start(1);
    const slow = await rawConnection(c.initializer.control);
    slow.socket.write(new Uint8Array([0, 0])); // half a length prefix, then nothing
    await slow.waitClosed(15_000);
    await c.initializer.child.waitForLog(/Closed a control connection from .*nothing said within 10 s/);
    expect(c.initializer.child.exitCode).toBeNull();
    await c.shutdown(20_000, rx);
  }, 60_000);

  test("a port holds at most its cap of connections: more are closed at once, the worker answers on", async () => {
    const rx = receiver(new SequenceValidator(KEYS));
    const c = await new Cluster("sequence_window", rx.port).start(1);
    // The external port's cap is 64 (src/net/port-limits.ts).
    const conns = [];
    for (let i = 0; i < 64; i++) conns.push(await rawConnection(c.initializer.external));
    const over = await rawConnection(c.initializer.external);
    await over.waitClosed();
    await c.initializer.child.waitForLog(/Refused a connection on the external port from .*64 are open already/);
    for (const x of conns.splice(0, 10)) x.socket.end();
    // Room again once some left: a query gets its answer.
    await poll("a status answer once connections were freed", 10_000, async () => (await c.status(c.initializer)) ?? undefined);
    for (const x of conns) x.socket.end();
    await c.shutdown(20_000, rx);
  }, 60_000);
});

describe("TLS", () => {
  const tlsDir = join(import.meta.dir, "../fixtures/tls");
  const member = ["--tls-cert", join(tlsDir, "member.pem"), "--tls-key", join(tlsDir, "member.key"), "--tls-ca", join(tlsDir, "ca.pem")];
  const tool = ["--tls-ca", join(tlsDir, "ca.pem")];

  test("a TLS cluster forms, grows and shrinks exactly; a worker with another authority's certificate, and a plain one, are refused", async () => {
    const rx = receiver(new SequenceValidator(KEYS));
    const c = await new Cluster("sequence_window", rx.port, { extraArgs: member, toolArgs: tool, externalTls: { ca: join(tlsDir, "ca.pem") } }).start(2);
    const wl = new SequenceWorkload(KEYS);
    await exactUnderLoad(c, rx, wl, async () => {
      // It trusts the cluster's authority, but its own certificate is another's: the members refuse it.
      const rogue = ["--tls-cert", join(tlsDir, "rogue.pem"), "--tls-key", join(tlsDir, "rogue.key"), "--tls-ca", join(tlsDir, "ca.pem")];
      for (const [name, extra] of [["rogue", rogue], ["plain", []]] as const) {
        const j = wallaroo(name, ["worker", "--application-module", "sequence_window", "--out", `${HOST}:${rx.port}`, "--name", name, "--join", `${HOST}:${c.initializer.control}`, "--my-control", `${HOST}:0`, ...extra]);
        expect(await j.waitExit(20_000)).not.toBe(0);
      }
      await c.initializer.child.waitForLog(/Refused a TLS connection from .*unable to verify/);
      // A connection that never starts its TLS handshake is closed at the deadline, not kept.
      const silent = await rawConnection(c.initializer.control);
      await silent.waitClosed(10_000);
      await c.initializer.child.waitForLog(/Refused a TLS connection from .*no TLS handshake within 5000 ms/);
      // The tools speak TLS to the external channel; without the authority they cannot verify it.
      const plainQuery = await c.run(["query", "status", "--external", `${HOST}:${c.initializer.external}`, "--timeout", "3"]);
      expect(plainQuery.code).not.toBe(0);
      const status = await c.run(["query", "status", "--json", "--external", `${HOST}:${c.initializer.external}`, ...tool]);
      expect({ code: status.code, stderr: status.stderr }).toEqual({ code: 0, stderr: "" });
      expect(JSON.parse(status.stdout).worker_names.sort()).toEqual(["initializer", "w1"]);
      const top = await c.run(["top", "--json", "--interval", "0.1", "--external", `${HOST}:${c.initializer.external}`, ...tool]);
      expect({ code: top.code, stderr: top.stderr }).toEqual({ code: 0, stderr: "" });
      expect((JSON.parse(top.stdout).workers as { name: string }[]).map((w) => w.name).sort()).toEqual(["initializer", "w1"]);
      await c.grow(["w2"]);
      const r = await c.shrink(["--workers", "w1"]);
      expect(r.leavers).toEqual(["w1"]);
    });
  }, 120_000);
});
