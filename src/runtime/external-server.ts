// The external channel listener (`--external`): Wallaroo-compatible requests from operators'
// tools. Zero-length frames are skipped, bodies over 16 KiB close the connection, undecodable
// bodies are logged and answered with nothing, and the connection stays open for more requests.
import type { HostPort } from "../address.ts";
import { formatHostPort } from "../address.ts";
import { FrameReader } from "../codec/frame.ts";
import { EXTERNAL_MAX_FRAME, decodeExternalBody, encodeExternal, type ExternalMsgType } from "../codec/external.ts";
import { InvariantError } from "../assert.ts";
import { log } from "../log.ts";
import type { Server, Transport } from "../net/transport.ts";

export type ExternalReply = (type: ExternalMsgType, payload: string) => void;
export type ExternalHandler = (type: ExternalMsgType, payload: string, reply: ExternalReply) => void;

/** Requests refused on the external port (for the metrics): undecodable ones, and oversized ones (connection closed). */
export interface ExternalStats {
  undecodable: number;
  oversized: number;
}

export async function startExternalServer(
  workerName: string,
  addr: HostPort,
  transport: Transport,
  handle: ExternalHandler,
  stats: ExternalStats = { undecodable: 0, oversized: 0 },
): Promise<Server> {
  const server = await transport.listen(addr.host, addr.port, (link) => {
    const reader = new FrameReader(EXTERNAL_MAX_FRAME);
    const reply: ExternalReply = (type, payload) => {
      if (!link.closed) link.write(encodeExternal(type, payload));
    };
    const onFrame = (buf: Uint8Array, start: number, end: number) => {
      if (end === start) return;
      const d = decodeExternalBody(buf.subarray(start, end));
      if (!d.ok) {
        stats.undecodable++;
        log.warn("external_undecodable", `Error decoding External Message on external channel. (${d.reason})`);
        return;
      }
      try {
        handle(d.type, d.payload, reply);
      } catch (err) {
        // A broken invariant is the worker's failure, not the request's (src/fault.ts decides).
        if (err instanceof InvariantError) throw err;
        log.error("external_failed", `External request of type ${d.type} failed: ${(err as Error).message}`);
      }
    };
    return {
      data: (l, chunk) => {
        const err = reader.feed(chunk, onFrame);
        if (err) {
          stats.oversized++;
          log.warn("external_oversized", `Received expect greater than 16kb on External Channel (${err.claimed} bytes from ${l.remote}). Closed connection.`);
          l.destroy();
        }
      },
      close: () => {},
    };
  });
  log.info("external_listening", `${workerName} external: listening on ${formatHostPort({ host: server.host, port: server.port })}`);
  return server;
}
