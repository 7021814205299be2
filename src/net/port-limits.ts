// Limits on a listening port, whoever connects: at most `maxConnections` open at once (more are
// closed as they arrive, so a flood of idle connections cannot take the worker's memory or file
// descriptors), and, where the channel has no use for a silent connection, one that has sent
// nothing for `idleMs` is closed. Connections this worker dials are not limited here.
import type { Clock, Timer } from "../clock.ts";
import { log } from "../log.ts";
import type { Link, LinkHandlers, Transport } from "./transport.ts";

export interface PortLimits {
  /** Names the port in log lines ("control", "external", "source in@127.0.0.1:7000"). */
  name: string;
  maxConnections: number;
  /** Close a connection that has sent nothing for this long (0: never). */
  idleMs: number;
}

/** Per channel. Members hold two links each way per peer; tools and producers open a few. */
export const PORT_LIMITS = {
  control: { maxConnections: 256, idleMs: 0 },
  data: { maxConnections: 256, idleMs: 0 },
  /** Operators' tools ask and go; `wallaroo top` reconnects for each refresh. */
  external: { maxConnections: 64, idleMs: 60_000 },
  /** A producer that has sent nothing for 10 minutes is gone (Kafka's connections.max.idle.ms). */
  source: { maxConnections: 1024, idleMs: 600_000 },
} as const;

/** Connections refused over the cap are logged at the first and then every this many. */
const REFUSALS_PER_LOG_LINE = 100;

export function withPortLimits(inner: Transport, limits: PortLimits, clock: Clock): Transport {
  return {
    connect: (host, port, handlers, timeoutMs) => inner.connect(host, port, handlers, timeoutMs),
    async listen(host, port, accept) {
      const open = new Map<Link, number>(); // link → when it last sent something
      let refused = 0;
      let sweep: Timer | undefined;
      const sweepEvery = Math.max(50, Math.floor(limits.idleMs / 4));
      const closeIdle = () => {
        sweep = undefined;
        const now = clock.now();
        for (const [link, at] of open) {
          if (now - at < limits.idleMs) continue;
          log.info("idle_closed", `Closed a connection on the ${limits.name} port from ${link.remote}: nothing received for ${Math.round(limits.idleMs / 1000)} s`);
          open.delete(link);
          link.destroy();
        }
        if (open.size > 0) sweep = clock.setTimeout(closeIdle, sweepEvery);
      };
      const server = await inner.listen(host, port, (link): LinkHandlers => {
        if (open.size >= limits.maxConnections) {
          if (refused++ % REFUSALS_PER_LOG_LINE === 0)
            log.warn("connections_capped", `Refused a connection on the ${limits.name} port from ${link.remote}: ${limits.maxConnections} are open already (${refused} refused so far)`);
          link.destroy();
          return { data() {}, close() {} };
        }
        open.set(link, clock.now());
        if (limits.idleMs > 0 && sweep === undefined) sweep = clock.setTimeout(closeIdle, sweepEvery);
        const upper = accept(link);
        return {
          data(l, chunk) {
            if (limits.idleMs > 0) open.set(l, clock.now());
            upper.data(l, chunk);
          },
          drain: (l) => upper.drain?.(l),
          close(l, err) {
            open.delete(l);
            upper.close(l, err);
          },
        };
      });
      return {
        host: server.host,
        port: server.port,
        stop() {
          clock.clearTimeout(sweep);
          sweep = undefined;
          server.stop();
        },
      };
    },
  };
}
