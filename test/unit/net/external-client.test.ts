import { afterEach, describe, expect, test } from "bun:test";
import type { Socket, TCPSocketListener } from "bun";
import { encodeClusterStatus, encodeExternal, EXTERNAL_MAX_REPLY, EXTERNAL_MAX_REQUEST, EXTERNAL_MSG } from "../../../src/codec/external.ts";
import { EXIT, UnreachableError, WallarooError } from "../../../src/errors.ts";
import { externalRequest } from "../../../src/net/external-client.ts";

const HOST = "127.0.0.1";
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

type OnData = (s: Socket<undefined>, data: Uint8Array, all: Uint8Array) => void;

const servers: TCPSocketListener<undefined>[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.stop(true);
});

/** A stand-in worker: records every byte received on the connection and lets the test answer. */
function serve(onData: OnData = () => {}): { port: number; received: () => Uint8Array } {
  let got = new Uint8Array(0);
  const server = Bun.listen<undefined>({
    hostname: HOST,
    port: 0,
    socket: {
      data(s, chunk) {
        const next = new Uint8Array(got.length + chunk.length);
        next.set(got);
        next.set(chunk, got.length);
        got = next;
        onData(s, chunk, got);
      },
    },
  });
  servers.push(server);
  return { port: server.port, received: () => got };
}

async function failure(p: Promise<unknown>): Promise<WallarooError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof WallarooError) return e;
    throw e;
  }
  throw new Error("expected the request to fail");
}

const STATUS = { worker_count: 2, worker_names: ["initializer", "worker1"], processing_messages: true };

describe("externalRequest", () => {
  test("gets the status reply, even split across writes and after a zero-length frame", async () => {
    const reply = encodeExternal(EXTERNAL_MSG.ClusterStatusQueryResponse, encodeClusterStatus(STATUS));
    const srv = serve((s, _chunk, all) => {
      if (all.length < 6) return;
      s.write(new Uint8Array([0, 0, 0, 0])); // skipped, as the server skips them
      s.write(reply.subarray(0, 3));
      setTimeout(() => s.write(reply.subarray(3)), 20);
    });
    const got = await externalRequest({ host: HOST, port: srv.port }, EXTERNAL_MSG.ClusterStatusQuery, "", { expectReply: true, timeoutMs: 2000 });
    expect(got).toEqual({ type: EXTERNAL_MSG.ClusterStatusQueryResponse, payload: encodeClusterStatus(STATUS) });
    expect(hex(srv.received())).toBe("000000020009");
  });

  test("fire and forget: the frame arrives and the promise resolves null", async () => {
    const arrived = Promise.withResolvers<Uint8Array>();
    const srv = serve((_s, _chunk, all) => {
      if (all.length >= 6) arrived.resolve(all);
    });
    const got = await externalRequest({ host: HOST, port: srv.port }, EXTERNAL_MSG.CleanShutdown, "", { expectReply: false, timeoutMs: 2000 });
    expect(got).toBeNull();
    expect(hex(await arrived.promise)).toBe("000000020003");
  });

  test("fire and forget delivers a maximum-size frame whole", async () => {
    const payload = "p".repeat(EXTERNAL_MAX_REQUEST - 2);
    const arrived = Promise.withResolvers<number>();
    const srv = serve((_s, _chunk, all) => {
      if (all.length >= 4 + EXTERNAL_MAX_REQUEST) arrived.resolve(all.length);
    });
    await externalRequest({ host: HOST, port: srv.port }, EXTERNAL_MSG.Print, payload, { expectReply: false, timeoutMs: 2000 });
    expect(await arrived.promise).toBe(4 + EXTERNAL_MAX_REQUEST);
  });

  test("a server that never answers is unreachable within the deadline", async () => {
    const srv = serve();
    const t0 = performance.now();
    const err = await failure(externalRequest({ host: HOST, port: srv.port }, EXTERNAL_MSG.ClusterStatusQuery, "", { expectReply: true, timeoutMs: 300 }));
    const elapsed = performance.now() - t0;
    expect(err).toBeInstanceOf(UnreachableError);
    expect(err.exitCode).toBe(EXIT.unreachable);
    expect(err.message).toBe(`No answer from ${HOST}:${srv.port} within 0.3 s.`);
    expect(elapsed).toBeGreaterThanOrEqual(290);
    expect(elapsed).toBeLessThan(1500);
  });

  test("a closed port is unreachable", async () => {
    const tmp = Bun.listen({ hostname: HOST, port: 0, socket: { data() {} } });
    const port = tmp.port;
    tmp.stop(true);
    const err = await failure(externalRequest({ host: HOST, port }, EXTERNAL_MSG.ClusterStatusQuery, "", { expectReply: true, timeoutMs: 2000 }));
    expect(err).toBeInstanceOf(UnreachableError);
    expect(err.message).toStartWith(`Failed to connect to ${HOST}:${port}: `);
  });

  test("a server that hangs up without answering is unreachable", async () => {
    const srv = serve((s) => s.end());
    const err = await failure(externalRequest({ host: HOST, port: srv.port }, EXTERNAL_MSG.ClusterStatusQuery, "", { expectReply: true, timeoutMs: 2000 }));
    expect(err).toBeInstanceOf(UnreachableError);
    expect(err.message).toContain("closed the connection without answering");
  });

  test("a reply far over 16 KiB (the request limit) arrives whole, in pieces", async () => {
    // 30 000 keys (about 330 KB of JSON): the limit that once dropped `query keys` was the request's.
    const payload = JSON.stringify({ "add votes": Array.from({ length: 30_000 }, (_, i) => `key-${i}`) });
    const reply = encodeExternal(EXTERNAL_MSG.StateEntityQueryResponse, payload);
    expect(reply.length).toBeGreaterThan(16 * EXTERNAL_MAX_REQUEST);
    const srv = serve((s, _chunk, all) => {
      if (all.length < 6) return;
      // Three writes: the header alone, then the body in two unequal halves.
      s.write(reply.subarray(0, 4));
      setTimeout(() => s.write(reply.subarray(4, 1000)), 10);
      setTimeout(() => s.write(reply.subarray(1000)), 20);
    });
    const got = await externalRequest({ host: HOST, port: srv.port }, EXTERNAL_MSG.StateEntityQuery, "", { expectReply: true, timeoutMs: 5000 });
    expect(got).toEqual({ type: EXTERNAL_MSG.StateEntityQueryResponse, payload });
  });

  test("a reply claiming more than any answer is a runtime error, caught from its header alone", async () => {
    const srv = serve((s) => {
      const header = new Uint8Array(4);
      new DataView(header.buffer).setUint32(0, EXTERNAL_MAX_REPLY + 1);
      s.write(header);
    });
    const err = await failure(externalRequest({ host: HOST, port: srv.port }, EXTERNAL_MSG.ClusterStatusQuery, "", { expectReply: true, timeoutMs: 2000 }));
    expect(err).not.toBeInstanceOf(UnreachableError);
    expect(err.exitCode).toBe(EXIT.runtime);
    expect(err.message).toContain(`${EXTERNAL_MAX_REPLY + 1} bytes`);
  });

  for (const [name, body] of [
    ["an unknown type", [0, 99]],
    ["invalid UTF-8", [0, 10, 0xff]],
    ["a one-byte body", [7]],
  ] as const) {
    test(`a reply with ${name} is a runtime error`, async () => {
      const srv = serve((s) => {
        s.write(new Uint8Array([0, 0, 0, body.length, ...body]));
      });
      const err = await failure(externalRequest({ host: HOST, port: srv.port }, EXTERNAL_MSG.ClusterStatusQuery, "", { expectReply: true, timeoutMs: 2000 }));
      expect(err).not.toBeInstanceOf(UnreachableError);
      expect(err.exitCode).toBe(EXIT.runtime);
      expect(err.message).toStartWith(`Received an invalid message from ${HOST}:${srv.port}: `);
    });
  }

  test("a request over the request limit is refused before connecting", async () => {
    const err = await failure(externalRequest({ host: HOST, port: 1 }, EXTERNAL_MSG.Print, "x".repeat(EXTERNAL_MAX_REQUEST - 1), { expectReply: false, timeoutMs: 2000 }));
    expect(err.exitCode).toBe(EXIT.runtime);
    expect(err.message).toContain("over the external channel's limit");
  });
});
