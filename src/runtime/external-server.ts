// The external channel listener (`--external`): Wallaroo-compatible requests from operators'
// tools. Zero-length frames are skipped, requests over 16 KiB close the connection, and so does
// an undecodable body (the original answered it with nothing, and its client waited for ever);
// otherwise the connection stays open for more requests. Replies may be of any size. A signed
// request (src/codec/external-auth.ts) is unwrapped here: the handler learns whether it was
// proven to come from a holder of the cluster secret, and decides what needs that.
import type { HostPort } from "../address.ts";
import { formatHostPort } from "../address.ts";
import { FrameReader } from "../codec/frame.ts";
import { EXTERNAL_MAX_REQUEST, EXTERNAL_MSG, decodeExternalBody, encodeExternal, isExternalMsgType, type ExternalMsgType } from "../codec/external.ts";
import { envelopeSigned, parseEnvelope } from "../codec/external-auth.ts";
import { InvariantError } from "../assert.ts";
import { log } from "../log.ts";
import type { Server, Transport } from "../net/transport.ts";
import { NonceWindow } from "../security/nonce-window.ts";

export type ExternalReply = (type: ExternalMsgType, payload: string) => void;
/** Ends the connection after what was written (a request that cannot be answered). */
export type ExternalClose = () => void;
/** A signed request's time and nonce, once checked against the cluster secret this worker holds. */
export interface Proof {
  readonly nonce: string;
  readonly ts: number;
}
/** `proof`: the request came signed with the cluster secret (undefined otherwise). */
export type ExternalHandler = (type: ExternalMsgType, payload: string, reply: ExternalReply, close: ExternalClose, proof: Proof | undefined) => void;

export interface ExternalServerOptions {
  /** The cluster secret: signed requests are checked against it. */
  secret?: Uint8Array;
  /** Wall-clock milliseconds since the epoch (a signed request carries its sender's). */
  now?: () => number;
  /** Counted for the metrics. */
  stats?: ExternalStats;
}

/** Requests refused on the external port (for the metrics): undecodable ones, and oversized ones (connection closed). */
export interface ExternalStats {
  undecodable: number;
  oversized: number;
}

/** Answers waiting for a client to read them, at most; past it the client is cut off. */
export const EXTERNAL_MAX_QUEUED_BYTES = 32 * 1024 * 1024;

/** Requests that have no answer of their own: a signed one is acknowledged, so its sender knows. */
const NO_ANSWER: ReadonlySet<number> = new Set([EXTERNAL_MSG.Print, EXTERNAL_MSG.RotateLog, EXTERNAL_MSG.CleanShutdown, EXTERNAL_MSG.ReportStatus]);

export async function startExternalServer(
  workerName: string,
  addr: HostPort,
  transport: Transport,
  handle: ExternalHandler,
  opts: ExternalServerOptions = {},
): Promise<Server> {
  const nonces = new NonceWindow();
  const stats = opts.stats ?? { undecodable: 0, oversized: 0 };
  const now = opts.now ?? Date.now;
  const server = await transport.listen(addr.host, addr.port, (link) => {
    const reader = new FrameReader(EXTERNAL_MAX_REQUEST);
    let ended = false;
    const reply: ExternalReply = (type, payload) => {
      if (link.closed || ended) return;
      const frame = encodeExternal(type, payload);
      // A client that asks and never reads must not grow this worker's memory (its link's
      // buffer would reach the hard limit, a fault that stops the worker): it is cut off.
      if (link.queuedBytes + frame.length > EXTERNAL_MAX_QUEUED_BYTES) {
        ended = true;
        log.warn("external_not_reading", `Closed the external connection from ${link.remote}: it does not read its answers (${link.queuedBytes} bytes waiting)`);
        return link.destroy();
      }
      link.write(frame);
    };
    const close: ExternalClose = () => {
      ended = true;
      link.end();
    };
    const dispatch = (type: number, payload: string, proof: Proof | undefined) => {
      if (!isExternalMsgType(type)) {
        log.warn("external_unhandled", `Incoming External Message type not handled by external channel. (type ${type}) Closed connection.`);
        return close();
      }
      try {
        handle(type, payload, reply, close, proof);
      } catch (err) {
        // A broken invariant is the worker's failure, not the request's (src/fault.ts decides).
        if (err instanceof InvariantError) throw err;
        log.error("external_failed", `External request of type ${type} failed: ${(err as Error).message}. Closed connection.`);
        close();
      }
    };
    const signed = (json: string) => {
      const e = parseEnvelope(json);
      if (!e) {
        reply(EXTERNAL_MSG.RequestRefused, "Refused: the signed request is malformed.");
        return close();
      }
      if (opts.secret) {
        const why = !envelopeSigned(opts.secret, e) ? "it is not signed with this cluster's secret" : nonces.admit(e.nonce, e.ts, now());
        if (why) {
          log.warn("external_refused", `Refused a signed request of type ${e.type} from ${link.remote}: ${why}`);
          return reply(EXTERNAL_MSG.RequestRefused, `Refused: ${why}.`);
        }
      }
      if (NO_ANSWER.has(e.type)) reply(EXTERNAL_MSG.RequestAccepted, "");
      dispatch(e.type, e.payload, opts.secret ? { nonce: e.nonce, ts: e.ts } : undefined);
    };
    const onFrame = (buf: Uint8Array, start: number, end: number) => {
      // Requests after one that closed the connection are not read.
      if (end === start || ended) return;
      const d = decodeExternalBody(buf.subarray(start, end));
      if (!d.ok) {
        stats.undecodable++;
        log.warn("external_undecodable", `Error decoding External Message on external channel. (${d.reason}) Closed connection.`);
        return close();
      }
      if (d.type === EXTERNAL_MSG.AuthenticatedRequest) signed(d.payload);
      else dispatch(d.type, d.payload, undefined);
    };
    return {
      data: (l, chunk) => {
        const err = reader.feed(chunk, onFrame);
        if (err) {
          stats.oversized++;
          log.warn("external_oversized", `Received expect greater than 16kb on External Channel (${err.claimed} bytes from ${l.remote}). Closed connection.`);
          l.destroy();
          return;
        }
        // Answers pile up unread: read no more requests until they drained.
        if (l.congested) l.pause();
      },
      drain: (l) => l.resume(),
      close: () => {},
    };
  });
  log.info("external_listening", `${workerName} external: listening on ${formatHostPort({ host: server.host, port: server.port })}`);
  return server;
}
