// The `--metrics host:port` listener: HTTP with Bun.serve, for Prometheus and an orchestrator's
// probes. Four read-only paths; anything else is 404 (405 for another method). What each path
// says comes from the worker through MetricsEndpoints, so this file decides nothing about it.
// Bun parses the requests: a malformed one is answered 400 by Bun itself and never reaches us.
import { formatHostPort, type HostPort } from "../address.ts";
import { EXPOSITION_CONTENT_TYPE } from "../metrics/exposition.ts";
import { log } from "../log.ts";

export interface MetricsEndpoints {
  /** The exposition text (`/metrics`). */
  metrics(): string;
  /** The worker's status as JSON (`/status`). */
  status(): unknown;
  /** What `/readyz` answers; `why` says what it waits for. */
  readiness(): { ready: boolean; why?: string };
}

export const METRICS_SERVER_LIMITS = {
  /** A connection with no request for this long is closed. */
  idleTimeoutS: 10,
  /** No path takes a body: anything larger is refused before it is read. */
  maxRequestBodyBytes: 1024,
} as const;

export const METRICS_PATHS = ["/metrics", "/status", "/healthz", "/readyz"] as const;

export interface MetricsServer {
  readonly host: string;
  readonly port: number;
  stop(): void;
}

const text = (body: string, status = 200) => new Response(body, { status, headers: { "content-type": "text/plain; charset=utf-8" } });

/** The answer to one request: pure, so it is tested without a socket. */
export function answer(method: string, path: string, e: MetricsEndpoints): Response {
  if (!(METRICS_PATHS as readonly string[]).includes(path)) return text(`Not found: ${path}. Paths: ${METRICS_PATHS.join(", ")}.\n`, 404);
  if (method !== "GET" && method !== "HEAD") return new Response(`Method ${method} not allowed: use GET.\n`, { status: 405, headers: { allow: "GET, HEAD" } });
  switch (path) {
    case "/metrics":
      return new Response(e.metrics(), { headers: { "content-type": EXPOSITION_CONTENT_TYPE } });
    case "/status":
      return Response.json(e.status());
    case "/healthz":
      return text("ok\n");
    default: {
      const r = e.readiness();
      return r.ready ? text("ready\n") : text(`not ready: ${r.why ?? "unknown"}\n`, 503);
    }
  }
}

/** Listens on `addr`; throws naming the address when it cannot. */
export function startMetricsServer(workerName: string, addr: HostPort, endpoints: MetricsEndpoints): MetricsServer {
  let server: ReturnType<typeof Bun.serve>;
  try {
    server = Bun.serve({
      hostname: addr.host,
      port: addr.port,
      idleTimeout: METRICS_SERVER_LIMITS.idleTimeoutS,
      maxRequestBodySize: METRICS_SERVER_LIMITS.maxRequestBodyBytes,
      fetch: (req) => answer(req.method, new URL(req.url).pathname, endpoints),
      error: (err) => {
        // A failure to answer is the request's, never the worker's: say it and carry on.
        log.error("metrics_failed", `Metrics request failed: ${err.message}`);
        return text("internal error\n", 500);
      },
    });
  } catch (err) {
    const code = (err as { code?: string }).code;
    const why = code === "EADDRINUSE" ? "the address is already in use" : (err as Error).message;
    throw new Error(`cannot listen on ${formatHostPort(addr)}: ${why}`);
  }
  const host = server.hostname ?? addr.host;
  const port = server.port ?? addr.port;
  log.info("metrics_listening", `${workerName} metrics: listening on ${formatHostPort({ host, port })}`, { metrics: formatHostPort({ host, port }) });
  return { host, port, stop: () => void server.stop(true) };
}
