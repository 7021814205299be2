// The external listener (src/runtime/external-server.ts) on real sockets: a client that asks and
// never reads its answers is cut off before its answers can grow the worker's memory to the
// link's hard limit (which would stop the worker), and the listener answers others on.
import { afterAll, afterEach, beforeAll, expect, test } from "bun:test";
import { EXTERNAL_MSG, encodeExternal } from "../../../src/codec/external.ts";
import { setFaultHandler } from "../../../src/fault.ts";
import { configureLog } from "../../../src/log.ts";
import { externalRequest } from "../../../src/net/external-client.ts";
import { tcpTransport } from "../../../src/net/tcp.ts";
import type { Server } from "../../../src/net/transport.ts";
import { EXTERNAL_MAX_QUEUED_BYTES, startExternalServer } from "../../../src/runtime/external-server.ts";
import { Conditions } from "../../support/wait.ts";

beforeAll(() => configureLog({ level: "silent" }));
afterAll(() => configureLog({ level: "info" }));
const servers: Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.stop();
});

test("a client that never reads its answers is closed; no fault; others are answered", async () => {
  const faults: unknown[] = [];
  const restore = setFaultHandler((_where, err) => void faults.push(err));
  try {
    const big = "k".repeat(1024 * 1024);
    const server = await startExternalServer("w1", { host: "127.0.0.1", port: 0 }, tcpTransport, (type, _p, reply) => {
      if (type === EXTERNAL_MSG.StateEntityQuery) reply(EXTERNAL_MSG.StateEntityQueryResponse, big);
    });
    servers.push(server);
    const changes = new Conditions();
    let closed = false;
    const greedy = await Bun.connect({
      hostname: "127.0.0.1",
      port: server.port,
      socket: {
        open: (s) => s.pause(), // never reads
        data() {},
        close: () => ((closed = true), changes.changed()),
      },
    });
    const ask = encodeExternal(EXTERNAL_MSG.StateEntityQuery, "");
    const asks = Math.ceil((2 * EXTERNAL_MAX_QUEUED_BYTES) / big.length);
    for (let i = 0; i < asks; i++) greedy.write(ask);
    await changes.until(() => closed, 10_000, "the greedy client to be closed");
    expect(faults).toEqual([]);
    const r = await externalRequest({ host: "127.0.0.1", port: server.port }, EXTERNAL_MSG.StateEntityQuery, "", { expectReply: true, timeoutMs: 5000 });
    expect(r?.payload.length).toBe(big.length);
  } finally {
    restore();
  }
});
