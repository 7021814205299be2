// The transports a worker speaks on, one per channel. Control and data carry the cluster's own
// traffic: with a cluster secret they open with the handshake (src/net/handshake.ts). The
// external channel is the original's operators' protocol and stays as it was on the wire (its
// requests that change the cluster carry their own proof); sources and the sink speak the
// application's framing to programs that know nothing of ours. With TLS files, control and data
// run over mutual TLS and the external channel over TLS; sources and the sink stay plain TCP. Every listening port has its
// limits (src/net/port-limits.ts), taken before any handshake: a connection that never finishes
// one still counts against the cap until its deadline.
import type { Clock } from "../clock.ts";
import { HANDSHAKE_DEADLINE_MS, withHandshake } from "./handshake.ts";
import { PORT_LIMITS, withPortLimits } from "./port-limits.ts";
import { tcpTransportWith, type TlsFiles } from "./tcp.ts";
import type { Transport } from "./transport.ts";

export interface Channels {
  control: Transport;
  data: Transport;
  external: Transport;
  /** Sources and the sink. */
  io: Transport;
}

export interface ChannelOptions {
  secret?: Uint8Array;
  clock: Clock;
  /** Overrides HANDSHAKE_DEADLINE_MS (tests). */
  handshakeDeadlineMs?: number;
  /** `--source-idle-timeout`: overrides PORT_LIMITS.source.idleMs (0: never). */
  sourceIdleMs?: number;
  /** `--tls-*`: control, data (mutual TLS) and external (the server's certificate only) over TLS, not over `base`. */
  tls?: TlsFiles;
}

/** Every channel over `base`, each port limited; control and data authenticated when there is a secret. */
export function channelsOver(base: Transport, o: ChannelOptions): Channels {
  const cluster = o.tls ? tcpTransportWith(o.tls) : base;
  const tools = o.tls ? tcpTransportWith(o.tls, false) : base;
  const limited = (name: keyof typeof PORT_LIMITS, over = base, idleMs: number = PORT_LIMITS[name].idleMs) =>
    withPortLimits(over, { name, maxConnections: PORT_LIMITS[name].maxConnections, idleMs }, o.clock);
  const control = limited("control", cluster);
  const data = limited("data", cluster);
  const deadlineMs = o.handshakeDeadlineMs ?? HANDSHAKE_DEADLINE_MS;
  return {
    control: o.secret ? withHandshake(control, { secret: o.secret, channel: "control", clock: o.clock, deadlineMs }) : control,
    data: o.secret ? withHandshake(data, { secret: o.secret, channel: "data", clock: o.clock, deadlineMs }) : data,
    external: limited("external", tools),
    io: limited("source", base, o.sourceIdleMs),
  };
}
