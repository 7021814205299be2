// One request on a worker's external channel: connect, send one frame, wait for at most one
// reply, close. The whole exchange (connect included) runs under a single deadline, because an
// operator's tool must never hang on a worker that accepts connections and then says nothing
// (the original answers nothing to a request it cannot decode).
import type { Socket } from "bun";
import { formatHostPort, type HostPort } from "../address.ts";
import { encodeEnvelope } from "../codec/external-auth.ts";
import { decodeExternalBody, encodeExternal, EXTERNAL_MAX_REPLY, EXTERNAL_MAX_REQUEST, EXTERNAL_MSG, externalBodyBytes } from "../codec/external.ts";
import { FrameReader } from "../codec/frame.ts";
import { RefusedError, UnreachableError, WallarooError } from "../errors.ts";

export interface ExternalReply {
  readonly type: number;
  readonly payload: string;
}

export interface ExternalRequestOptions {
  /** false: fire and forget (CleanShutdown, Print); resolves null once the frame is handed to the kernel. */
  readonly expectReply: boolean;
  readonly timeoutMs: number;
  /** The cluster secret: the request goes signed (src/codec/external-auth.ts), and a refusal of it is an error. */
  readonly secret?: Uint8Array;
  /** The worker's external channel is TLS: verify it against `ca` (and present `cert` if given). */
  readonly tls?: { ca?: string; cert?: string; key?: string };
}

/** setTimeout's own ceiling; anything longer fires immediately. */
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

function reasonOf(err: unknown): string {
  if (err && typeof err === "object") {
    const e = err as { code?: unknown; message?: unknown };
    if (typeof e.code === "string" && e.code !== "") return e.code;
    if (typeof e.message === "string" && e.message !== "") return e.message;
  }
  return String(err);
}

export async function externalRequest(addr: HostPort, type: number, payload: string, opts: ExternalRequestOptions): Promise<ExternalReply | null> {
  if (!(opts.timeoutMs > 0 && opts.timeoutMs <= MAX_TIMEOUT_MS)) throw new RangeError(`timeoutMs must be in (0, ${MAX_TIMEOUT_MS}], not ${opts.timeoutMs}`);
  const where = formatHostPort(addr);
  // Signed, the request is wrapped: a signed shutdown is answered, so it waits for the answer.
  const expectReply = opts.expectReply || opts.secret !== undefined;
  opts = { ...opts, expectReply };
  if (opts.secret) {
    const nonce = Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString("hex");
    payload = encodeEnvelope(opts.secret, type, payload, Date.now(), nonce);
    type = EXTERNAL_MSG.AuthenticatedRequest;
  }
  const bodyBytes = externalBodyBytes(payload);
  if (bodyBytes > EXTERNAL_MAX_REQUEST) {
    throw new WallarooError(`The request is ${bodyBytes} bytes, over the external channel's limit of ${EXTERNAL_MAX_REQUEST} bytes.`);
  }
  let pending: Uint8Array = encodeExternal(type, payload);
  const t = opts.tls;
  const tls = t && {
    rejectUnauthorized: true,
    serverName: addr.host,
    ...(t.ca ? { ca: Bun.file(t.ca) } : {}),
    ...(t.cert && t.key ? { cert: Bun.file(t.cert), key: Bun.file(t.key) } : {}),
  };

  const { promise, resolve, reject } = Promise.withResolvers<ExternalReply | null>();
  let finished = false;
  let failed = false;
  let sock: Socket<undefined> | null = null;
  const finish = (err: WallarooError | null, reply: ExternalReply | null = null) => {
    if (finished) return;
    finished = true;
    failed = err !== null;
    if (err) reject(err);
    else resolve(reply);
  };

  // Bun keeps nothing of a short write: hold the rest and resume from `drain`.
  const flush = (s: Socket<undefined>) => {
    while (pending.length > 0) {
      const n = s.write(pending);
      if (n < 0) return finish(new UnreachableError(`${where} closed the connection before the request was sent.`));
      if (n === 0) return;
      pending = pending.subarray(n);
    }
    if (!opts.expectReply) finish(null);
  };

  // The 16 KiB limit is for requests: an answer (all the keys of a worker) may be far larger.
  const reader = new FrameReader(EXTERNAL_MAX_REPLY);
  const onData = (chunk: Uint8Array) => {
    const err = reader.feed(chunk, (buf, start, end) => {
      // The server skips zero-length frames; so do we. Only the first real frame is the answer.
      if (finished || end === start) return;
      const d = decodeExternalBody(buf.subarray(start, end));
      if (d.ok && d.type === EXTERNAL_MSG.RequestRefused) finish(new RefusedError(`${where} refused the request: ${d.payload}`));
      else if (d.ok) finish(null, { type: d.type, payload: d.payload });
      else finish(new WallarooError(`Received an invalid message from ${where}: ${d.reason}.`));
    });
    if (err) finish(new WallarooError(`${where} sent a reply of ${err.claimed} bytes, over the external channel's limit of ${err.max} bytes; is that a Wallaroo external channel (one with TLS needs --tls-ca)?`));
  };

  const seconds = opts.timeoutMs / 1000;
  const timer = setTimeout(() => {
    const what = opts.expectReply ? `No answer from ${where} within ${seconds} s.` : `Could not send to ${where} within ${seconds} s.`;
    finish(new UnreachableError(what));
  }, opts.timeoutMs);

  Bun.connect({
    hostname: addr.host,
    port: addr.port,
    ...(tls ? { tls } : {}),
    socket: {
      open(s) {
        sock = s;
        // The deadline may have passed while connecting; the finally below has already run.
        if (finished) return s.terminate();
        // Over TLS nothing goes out before the worker's certificate checked out.
        if (!tls) flush(s);
      },
      handshake(s, success, authorizationError) {
        if (finished) return;
        if (success && !authorizationError) return flush(s);
        finish(new UnreachableError(`TLS with ${where} failed: ${authorizationError?.message ?? "its certificate was not accepted"}.`));
      },
      drain: (s) => flush(s),
      data: (_s, chunk) => {
        if (!finished && opts.expectReply) onData(chunk);
      },
      end: () => finish(new UnreachableError(`${where} closed the connection without answering.`)),
      close: () => finish(new UnreachableError(`${where} closed the connection without answering.`)),
      error: (_s, e) => finish(new UnreachableError(`Connection to ${where} failed: ${reasonOf(e)}`)),
      // Handled here so the rejected promise is not reported as unhandled.
      connectError: (_s, e) => finish(new UnreachableError(`Failed to connect to ${where}: ${reasonOf(e)}`)),
    },
  }).catch((e: unknown) => finish(new UnreachableError(`Failed to connect to ${where}: ${reasonOf(e)}`)));

  try {
    return await promise;
  } finally {
    clearTimeout(timer);
    const s = sock as Socket<undefined> | null;
    if (s) {
      // Success: a graceful FIN after the frame (end() keeps the bytes already accepted).
      // Failure: the peer is not talking sense or not talking at all; drop the connection now.
      if (failed) s.terminate();
      else s.end();
    }
  }
}
