// Transport over Bun's native TCP. Writes of one event-loop turn are coalesced into one
// `socket.write` (every write is a syscall; Bun does not coalesce). `write` may accept only part
// of the buffer; the rest stays queued and is resumed in `drain`, which Bun fires only after a
// short write.
//
// Reads are made fair here too. Bun reads a socket again at once while its 512 KiB reads come
// back full, so a producer faster than our handler keeps the loop on that one socket: measured,
// the initializer at saturation answered the external channel after ≈ 1 s and no timer fired in
// between. A link whose handler has used YIELD_AFTER_MS since its last yield is paused and
// resumed by setImmediate, which runs after every other ready socket had its turn.
import type { Socket, TCPSocketListener, TLSOptions } from "bun";
import { formatHostPort } from "../address.ts";
import { ioHalted, reportFault } from "../fault.ts";
import { log } from "../log.ts";
import { GrowBuffer } from "./out-buffer.ts";
import { LINK_LIMITS, type Link, type LinkHandlers, type Server, type Transport } from "./transport.ts";

let nextLinkId = 1;

/** Handler time a link may use before it lets the rest of the event loop run. */
export const YIELD_AFTER_MS = 2;

interface SocketData {
  link: TcpLink | undefined;
}

class TcpLink implements Link {
  readonly id = nextLinkId++;
  readonly out = new GrowBuffer();
  private scheduled = false;
  private wasCongested = false;
  private ending = false;
  /** The layer above asked for no input (backpressure); only `resume()` lifts it. */
  private userPaused = false;
  /** Paused by us for fairness until the next setImmediate. */
  private yielding = false;
  private busyMs = 0;
  closed = false;
  sentBytes = 0;
  handlers: LinkHandlers;

  constructor(
    private readonly socket: Socket<SocketData>,
    readonly remote: string,
    handlers: LinkHandlers,
  ) {
    this.handlers = handlers;
  }

  get local(): string {
    return this.socket.localAddress;
  }

  get queuedBytes(): number {
    return this.out.len;
  }

  get congested(): boolean {
    return this.out.len > LINK_LIMITS.highWaterBytes;
  }

  write(bytes: Uint8Array): void {
    if (this.closed) return;
    this.out.append(bytes);
    this.flushSoon();
  }

  flushSoon(): void {
    if (this.scheduled || this.closed) return;
    this.scheduled = true;
    queueMicrotask(this.flushTask);
  }

  private readonly flushTask = () => {
    this.scheduled = false;
    this.flush();
  };

  flush(): void {
    if (ioHalted()) return;
    if (this.closed || this.out.len === 0) {
      if (this.ending && !this.closed) this.socket.end();
      return;
    }
    if (this.out.len > LINK_LIMITS.highWaterBytes) this.wasCongested = true;
    const n = this.socket.write(this.out.buf.subarray(0, this.out.len));
    if (n < 0) return; // closed; the close handler reports it
    this.sentBytes += n;
    if (n === this.out.len) {
      this.out.len = 0;
      // Give back memory after a burst.
      if (this.out.buf.length > 4 * LINK_LIMITS.initialBufferBytes) this.out.buf = new Uint8Array(LINK_LIMITS.initialBufferBytes);
    } else if (n > 0) {
      this.out.buf.copyWithin(0, n, this.out.len);
      this.out.len -= n;
    }
    if (this.out.len === 0 && this.ending) this.socket.end();
    if (this.wasCongested && this.out.len < LINK_LIMITS.lowWaterBytes) {
      this.wasCongested = false;
      const drain = this.handlers.drain;
      if (drain) guard(this, `handling drain of ${this.remote}`, () => drain(this));
    }
  }

  pause(): void {
    this.userPaused = true;
    if (!this.closed) this.socket.pause();
  }
  resume(): void {
    this.userPaused = false;
    if (!this.closed && !this.yielding) this.socket.resume();
  }

  /** Called after each handled chunk with the time it took. */
  spent(ms: number): void {
    this.busyMs += ms;
    if (this.busyMs < YIELD_AFTER_MS || this.yielding || this.closed) return;
    this.yielding = true;
    this.socket.pause();
    setImmediate(this.endYield);
  }

  private readonly endYield = () => {
    this.yielding = false;
    this.busyMs = 0;
    if (!this.closed && !this.userPaused) this.socket.resume();
  };
  end(): void {
    if (this.closed) return;
    this.ending = true;
    this.flushSoon();
    if (this.out.len === 0) this.socket.end();
  }
  destroy(): void {
    if (this.closed) return;
    this.out.len = 0;
    this.socket.terminate();
  }

  onClosed(error?: Error): void {
    if (this.closed) return;
    this.closed = true;
    guard(this, `handling close of ${this.remote}`, () => this.handlers.close(this, error));
  }

  /** The handler above broke: this connection's state cannot be trusted, so it goes, unflushed. */
  fail(err: unknown): void {
    this.failure = err;
    this.out.len = 0;
    try {
      this.onClosed(err instanceof Error ? err : new Error(String(err)));
    } finally {
      // Even when the close handler throws too (and the fault handler rethrows that).
      this.socket.terminate();
    }
  }

  /** What a handler threw, once `fail` closed the link for it. */
  failure: unknown = undefined;
}

/**
 * A handler that throws has broken an invariant of the code above us (codecs return errors,
 * they do not throw). The link is closed at once and the fault reported; what happens to the
 * process is not ours to decide (src/fault.ts): the worker stops with code 70.
 */
function guard(link: TcpLink, where: string, f: () => void): void {
  try {
    f();
  } catch (err) {
    // Report first: a worker halts its I/O there, before this link's close handler can act on
    // other connections with state that is no longer trusted.
    try {
      reportFault(where, err);
    } finally {
      if (link.closed) link.failure = err;
      else link.fail(err);
    }
  }
}

const socketHandlers = {
  data(socket: Socket<SocketData>, chunk: Uint8Array) {
    const link = socket.data?.link;
    if (!link || link.closed || ioHalted()) return;
    const t0 = performance.now();
    guard(link, `handling data from ${link.remote}`, () => link.handlers.data(link, chunk));
    link.spent(performance.now() - t0);
  },
  drain(socket: Socket<SocketData>) {
    socket.data?.link?.flush();
  },
  close(socket: Socket<SocketData>, error?: Error) {
    socket.data?.link?.onClosed(error);
  },
  error(socket: Socket<SocketData>, error: Error) {
    const link = socket.data?.link;
    // Bun routes an exception that escapes a handler here. Ours only escape when the fault
    // handler rethrew them (the default): let it surface as uncaught, as from a timer.
    if (link && link.failure !== undefined && link.failure === error) {
      queueMicrotask(() => {
        throw error;
      });
      return;
    }
    link?.onClosed(error);
  },
};

/**
 * TLS for the channels between members and for operators' tools: PEM files. Both ends present a
 * certificate and verify the other's against `ca` (mutual TLS); a dialler also checks that the
 * listener's certificate names the host it dialled.
 */
export interface TlsFiles {
  cert: string;
  key: string;
  /** The authority that signed every member's certificate; without it, the system's. */
  ca?: string;
}

/**
 * The transport over plain TCP, or over TLS with `tls`; `clientCerts: false` for a listener whose
 * clients need not present one (operators' tools on the external channel).
 */
export function tcpTransportWith(tls?: TlsFiles, clientCerts = true): Transport {
  const files = tls && { cert: Bun.file(tls.cert), key: Bun.file(tls.key), ...(tls.ca ? { ca: Bun.file(tls.ca) } : {}) };
  return {
    listen: (host, port, accept) => listenOn(host, port, accept, files && { ...files, requestCert: clientCerts, rejectUnauthorized: clientCerts }),
    connect: (host, port, handlers, timeoutMs) => connectTo(host, port, handlers, timeoutMs, files && { ...files, rejectUnauthorized: true, serverName: host }),
  };
}

export const tcpTransport: Transport = tcpTransportWith();

export const TLS_LIMITS = {
  /** Connections of one listener in their TLS handshake at once; more are closed as they come. */
  maxHandshaking: 256,
  handshakeMs: 5000,
} as const;

async function listenOn(host: string, port: number, accept: (link: Link) => LinkHandlers, tls: TLSOptions | undefined): Promise<Server> {
  const where = formatHostPort({ host, port });
  const opened = (socket: Socket<SocketData>) => {
    const link = new TcpLink(socket, `${socket.remoteAddress}`, { data() {}, close() {} });
    socket.data = { link };
    guard(link, `accepting a connection from ${link.remote}`, () => {
      link.handlers = accept(link);
    });
  };
  // Over TLS a connection reaches the layers above (and their limits) only after its handshake:
  // until then it is counted and timed here, or a flood of silent connections would go unseen.
  const handshaking = new Set<Socket<SocketData>>();
  let listener: TCPSocketListener<SocketData>;
  try {
    listener = Bun.listen<SocketData>({
      hostname: host,
      port,
      ...(tls ? { tls } : {}),
      socket: {
        ...socketHandlers,
        open(socket) {
          socket.data = { link: undefined };
          if (!tls) return opened(socket);
          if (handshaking.size >= TLS_LIMITS.maxHandshaking) {
            log.warn("tls_refused", `Refused a TLS connection from ${socket.remoteAddress} on ${where}: ${TLS_LIMITS.maxHandshaking} are in their handshake already`);
            return void socket.terminate();
          }
          handshaking.add(socket);
          setTimeout(() => {
            if (!handshaking.delete(socket)) return;
            log.warn("tls_refused", `Refused a TLS connection from ${socket.remoteAddress} on ${where}: no TLS handshake within ${TLS_LIMITS.handshakeMs} ms`);
            socket.terminate();
          }, TLS_LIMITS.handshakeMs);
        },
        close(socket, error) {
          handshaking.delete(socket);
          socketHandlers.close(socket, error);
        },
        // Over TLS the layer above sees a connection only once its certificate checked out.
        handshake(socket, success, authorizationError) {
          handshaking.delete(socket);
          // A listener that asks no certificate (the external channel) has none to judge.
          if (success && (!authorizationError || !tls?.requestCert)) return opened(socket);
          log.warn("tls_refused", `Refused a TLS connection from ${socket.remoteAddress} on ${where}: ${authorizationError?.message ?? "its certificate was not accepted"}`);
          socket.terminate();
        },
        error(socket, error) {
          if (socket.data?.link) return socketHandlers.error(socket, error);
          log.warn("tls_refused", `Refused a TLS connection from ${socket.remoteAddress} on ${where}: ${error.message}`);
        },
      },
    });
  } catch (err) {
    // Name the address: the operator has several listen flags and needs to know which one.
    const code = (err as { code?: string }).code;
    const why = code === "EADDRINUSE" ? "the address is already in use" : (err as Error).message;
    throw Object.assign(new Error(`cannot listen on ${formatHostPort({ host, port })}: ${why}`), { code });
  }
  const server: Server = {
    host: listener.hostname,
    port: listener.port,
    stop: () => listener.stop(true),
  };
  return server;
}

function connectTo(host: string, port: number, handlers: LinkHandlers, timeoutMs: number, tls: TLSOptions | undefined): Promise<Link> {
  return new Promise<Link>((resolve, reject) => {
    let settled = false;
    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      reject(new Error(`connect to ${host}:${port} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    const opened = (socket: Socket<SocketData>) => {
      if (settled) {
        socket.terminate();
        return;
      }
      settled = true;
      clearTimeout(timer);
      const link = new TcpLink(socket, `${host}:${port}`, handlers);
      socket.data.link = link;
      resolve(link);
    };
    Bun.connect<SocketData>({
      hostname: host,
      port,
      data: { link: undefined },
      ...(tls ? { tls } : {}),
      socket: {
        ...socketHandlers,
        open(socket) {
          if (!tls) opened(socket);
        },
        // Over TLS the link exists only once the listener's certificate checked out.
        handshake(socket, success, authorizationError) {
          if (success && !authorizationError) return opened(socket);
          if (settled) return void socket.terminate();
          settled = true;
          clearTimeout(timer);
          socket.terminate();
          reject(new Error(`TLS with ${host}:${port} failed: ${authorizationError?.message ?? "the certificate was not accepted"}`));
        },
        connectError(_socket, error) {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          reject(error);
        },
      },
    }).catch((error: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(error);
    });
  });
}
