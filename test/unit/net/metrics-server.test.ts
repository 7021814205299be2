// The --metrics listener: its four paths, 404 and 405, and a server that survives whatever bytes
// a client sends.
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { configureLog } from "../../../src/log.ts";
import { answer, startMetricsServer, type MetricsEndpoints, type MetricsServer } from "../../../src/net/metrics-server.ts";

beforeAll(() => configureLog({ level: "silent" }));
afterAll(() => configureLog({ level: "info" }));

let ready: { ready: boolean; why?: string } = { ready: true };
const endpoints: MetricsEndpoints = {
  metrics: () => "# TYPE wallaroo_x gauge\nwallaroo_x 1\n",
  status: () => ({ name: "w1" }),
  readiness: () => ready,
};
const servers: MetricsServer[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.stop();
  ready = { ready: true };
});

function serve(): string {
  const s = startMetricsServer("w1", { host: "127.0.0.1", port: 0 }, endpoints);
  servers.push(s);
  expect(s.port).toBeGreaterThan(0);
  return `http://127.0.0.1:${s.port}`;
}

describe("answer", () => {
  test("paths, content types, 404 and 405", async () => {
    const m = answer("GET", "/metrics", endpoints);
    expect(m.status).toBe(200);
    expect(m.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
    expect(await m.text()).toBe("# TYPE wallaroo_x gauge\nwallaroo_x 1\n");
    expect(await answer("GET", "/status", endpoints).json()).toEqual({ name: "w1" });
    expect(await answer("GET", "/healthz", endpoints).text()).toBe("ok\n");
    expect(answer("GET", "/metricsx", endpoints).status).toBe(404);
    expect(answer("GET", "/", endpoints).status).toBe(404);
    const post = answer("POST", "/metrics", endpoints);
    expect(post.status).toBe(405);
    expect(post.headers.get("allow")).toBe("GET, HEAD");
  });

  test("readyz: 200 when ready, 503 with the reason when not", async () => {
    expect(answer("GET", "/readyz", endpoints).status).toBe(200);
    ready = { ready: false, why: "leaving the cluster" };
    const r = answer("GET", "/readyz", endpoints);
    expect(r.status).toBe(503);
    expect(await r.text()).toBe("not ready: leaving the cluster\n");
  });
});

describe("the server", () => {
  test("answers over HTTP; an unknown path is 404", async () => {
    const base = serve();
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect(await (await fetch(`${base}/metrics?x=1`)).text()).toContain("wallaroo_x 1");
    expect((await fetch(`${base}/nope`)).status).toBe(404);
  });

  test("garbage, a half request and an oversized body leave it answering", async () => {
    const base = serve();
    const port = Number(new URL(base).port);
    for (const bytes of ["GARBAGE\r\n\r\n", "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\nabc", "\x00\x01\x02\xff\r\n\r\n", "GET /" + "a".repeat(100_000) + " HTTP/1.1\r\n\r\n"]) {
      let closed!: () => void;
      const done = new Promise<void>((r) => (closed = r));
      const sock = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {}, close: () => closed(), error: () => closed() } });
      sock.write(bytes);
      sock.end();
      await Promise.race([done, Bun.sleep(2000)]);
    }
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
  });

  test("an address in use is an error naming it", () => {
    const base = serve();
    const port = Number(new URL(base).port);
    expect(() => startMetricsServer("w1", { host: "127.0.0.1", port }, endpoints)).toThrow(`cannot listen on 127.0.0.1:${port}`);
  });
});
