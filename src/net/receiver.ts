// The socket side of `wallaroo receive` (and of test sinks): accepts any number of connections
// and hands over what they send, either as raw chunks or, when `framed`, as the payloads of whole
// u32-BE-length frames. A frame claiming more than RECEIVER_MAX_FRAME closes that connection
// (logged) and nothing else: the other connections carry on.
//
// Backpressure: when `onData` returns a promise (its output is backed up), that connection stops
// reading until the promise settles, so a slow stdout bounds memory instead of growing it.
import type { Socket, TCPSocketListener } from "bun";
import { formatHostPort } from "../address.ts";
import { FrameReader } from "../codec/frame.ts";
import { WallarooError } from "../errors.ts";
import { log } from "../log.ts";

export const RECEIVER_MAX_FRAME = 16 * 1024 * 1024;

export interface ReceiverOptions {
  readonly host: string;
  readonly port: number;
  readonly framed: boolean;
  /**
   * A raw chunk, or one frame's payload when `framed`. A payload is a view into a buffer that is
   * reused: copy it to keep it beyond the call.
   */
  readonly onData: (connId: number, chunk: Uint8Array) => void | Promise<unknown>;
  readonly onOpen?: (connId: number) => void;
  readonly onClose?: (connId: number) => void;
}

export interface Receiver {
  readonly port: number;
  readonly host: string;
  /** Stops listening and closes every connection; idempotent. */
  stop(): void;
  /** Connections open now. */
  connections(): number;
}

interface Conn {
  readonly id: number;
  readonly reader: FrameReader | null;
  /** A pending onData promise has paused this connection. */
  waiting: boolean;
}

export async function startReceiver(opts: ReceiverOptions): Promise<Receiver> {
  let nextId = 1;
  const open = new Set<Socket<Conn>>();
  let stopped = false;

  const deliver = (sock: Socket<Conn>, chunk: Uint8Array): void => {
    const conn = sock.data;
    let pending: Promise<unknown> | undefined;
    if (conn.reader === null) {
      pending = opts.onData(conn.id, chunk) ?? undefined;
    } else {
      // Already refused and closing: whatever is still in flight is dropped.
      if (conn.reader.failed) return;
      const err = conn.reader.feed(chunk, (buf, start, end) => {
        const p = opts.onData(conn.id, buf.subarray(start, end));
        if (p) pending = p;
      });
      if (err) {
        log.error(
          "receiver_bad_frame",
          `Connection ${conn.id} from ${sock.remoteAddress} sent a frame claiming ${err.claimed} bytes, over the ${err.max}-byte limit; closing it.`,
          { conn: conn.id, claimed: err.claimed, max: err.max },
        );
        sock.end();
        return;
      }
    }
    if (pending && !conn.waiting) {
      conn.waiting = true;
      sock.pause();
      const resume = () => {
        conn.waiting = false;
        if (open.has(sock)) sock.resume();
      };
      pending.then(resume, resume);
    }
  };

  let listener: TCPSocketListener<Conn>;
  try {
    listener = Bun.listen<Conn>({
      hostname: opts.host,
      port: opts.port,
      socket: {
        open(sock) {
          if (stopped) {
            sock.end();
            return;
          }
          sock.data = { id: nextId++, reader: opts.framed ? new FrameReader(RECEIVER_MAX_FRAME) : null, waiting: false };
          open.add(sock);
          opts.onOpen?.(sock.data.id);
        },
        data(sock, chunk) {
          if (sock.data) deliver(sock, chunk);
        },
        close(sock) {
          if (!open.delete(sock)) return;
          opts.onClose?.(sock.data.id);
        },
        error(sock, err) {
          log.debug("receiver_socket_error", `Connection ${sock.data?.id ?? "?"}: ${err.message}`);
        },
      },
    });
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    throw new WallarooError(`Could not listen on ${formatHostPort({ host: opts.host, port: opts.port })}: ${why}`);
  }

  return {
    port: listener.port,
    host: listener.hostname,
    stop() {
      if (stopped) return;
      stopped = true;
      listener.stop(true);
      // stop(true) closes them too; ending here makes sure none is left whatever the Bun version.
      for (const s of open) s.end();
    },
    connections: () => open.size,
  };
}
