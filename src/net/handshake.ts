// A Transport that lets a connection through only once both ends proved they hold the cluster
// secret (the exchange is in src/codec/handshake.ts). It wraps any other transport, so the
// cluster code above never sees an unauthenticated byte and never knows a handshake happened:
// `listen` hands a link to `accept` only after the dialler's proof checked out, and `connect`
// resolves only after the listener accepted ours. A connection that fails, stalls or says
// anything else first is closed with a logged reason and changes nothing above.
import { formatHostPort } from "../address.ts";
import type { Clock, Timer } from "../clock.ts";
import {
  ACCEPT_BYTE,
  CHALLENGE_BYTES,
  HELLO_BYTES,
  NONCE_BYTES,
  PROOF_BYTES,
  couldBeHandshake,
  decodeHead,
  encodeChallenge,
  encodeHello,
  handshakeMac,
  macEquals,
  type HandshakeChannel,
} from "../codec/handshake.ts";
import { log } from "../log.ts";
import type { Link, LinkHandlers, Transport } from "./transport.ts";

export interface HandshakeOptions {
  secret: Uint8Array;
  channel: HandshakeChannel;
  clock: Clock;
  /** A connection must finish the handshake within this (a stalled one holds a slot otherwise). */
  deadlineMs: number;
}

export const HANDSHAKE_DEADLINE_MS = 5000;

/** Collects exactly `n` bytes across chunks; what follows them is handed back. */
class Exact {
  private buf: Uint8Array;
  private len = 0;
  constructor(n: number) {
    this.buf = new Uint8Array(n);
  }
  /** What arrived so far, and how much. */
  get sofar(): [Uint8Array, number] {
    return [this.buf, this.len];
  }
  /** The `n` bytes once complete, and the rest of the chunk; undefined while more are needed. */
  take(chunk: Uint8Array): { got: Uint8Array; rest: Uint8Array } | undefined {
    const n = Math.min(this.buf.length - this.len, chunk.length);
    this.buf.set(chunk.subarray(0, n), this.len);
    this.len += n;
    if (this.len < this.buf.length) return undefined;
    return { got: this.buf, rest: chunk.subarray(n) };
  }
}

function nonce(): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(NONCE_BYTES));
}

export function withHandshake(inner: Transport, o: HandshakeOptions): Transport {
  return {
    listen(host, port, accept) {
      return inner.listen(host, port, (link) => listenerSide(link, accept, o));
    },
    connect(host, port, handlers, timeoutMs) {
      return dialSide(inner, host, port, handlers, timeoutMs, o);
    },
  };
}

function listenerSide(link: Link, accept: (link: Link) => LinkHandlers, o: HandshakeOptions): LinkHandlers {
  let step: "hello" | "proof" | "live" = "hello";
  let hello: Exact | undefined = new Exact(HELLO_BYTES);
  let proof: Exact | undefined;
  let expected: Uint8Array | undefined;
  let upper: LinkHandlers | undefined;
  const refuse = (why: string) => {
    log.warn("handshake_refused", `Refused a ${o.channel} connection from ${link.remote}: ${why}`);
    o.clock.clearTimeout(timer);
    link.destroy();
  };
  const timer: Timer = o.clock.setTimeout(() => {
    if (step !== "live" && !link.closed) refuse(`no cluster handshake within ${o.deadlineMs} ms`);
  }, o.deadlineMs);
  return {
    data(l, chunk) {
      if (step === "live") return upper!.data(l, chunk);
      if (step === "hello") {
        const t = hello!.take(chunk);
        // A worker without the secret speaks its own frames at once: say so now, not at the deadline.
        if (!couldBeHandshake(...hello!.sofar)) return refuse("it did not open with the cluster handshake (has it no cluster secret?)");
        if (!t) return;
        hello = undefined;
        const h = decodeHead(t.got, o.channel);
        if (!h.ok) return refuse(h.reason);
        const nonceS = nonce();
        expected = handshakeMac(o.secret, "dialler", o.channel, h.nonce, nonceS);
        l.write(encodeChallenge(o.channel, nonceS, handshakeMac(o.secret, "listener", o.channel, h.nonce, nonceS)));
        step = "proof";
        proof = new Exact(PROOF_BYTES);
        chunk = t.rest;
        if (chunk.length === 0) return;
      }
      const t = proof!.take(chunk);
      if (!t) return;
      proof = undefined;
      if (!macEquals(t.got, expected!)) return refuse("its proof of the cluster secret is wrong (a different secret, or none)");
      o.clock.clearTimeout(timer);
      l.write(new Uint8Array([ACCEPT_BYTE]));
      step = "live";
      upper = accept(l);
      if (t.rest.length > 0 && !l.closed) upper.data(l, t.rest);
    },
    drain(l) {
      upper?.drain?.(l);
    },
    close(l, err) {
      o.clock.clearTimeout(timer);
      // The dialler checks our proof before giving its own: one that leaves here holds another secret.
      if (step === "proof") log.warn("handshake_refused", `Refused a ${o.channel} connection from ${link.remote}: it left during the handshake (it holds another cluster secret)`);
      upper?.close(l, err);
    },
  };
}

function dialSide(inner: Transport, host: string, port: number, handlers: LinkHandlers, timeoutMs: number, o: HandshakeOptions): Promise<Link> {
  const where = formatHostPort({ host, port });
  return new Promise<Link>((resolve, reject) => {
    let step: "challenge" | "accept" | "live" | "failed" = "challenge";
    let challenge: Exact | undefined = new Exact(CHALLENGE_BYTES);
    const nonceC = nonce();
    let timer: Timer | undefined;
    const fail = (link: Link | undefined, why: string) => {
      if (step === "live" || step === "failed") return;
      step = "failed";
      o.clock.clearTimeout(timer);
      link?.destroy();
      reject(new Error(`${where} ${why}`));
    };
    const hs: LinkHandlers = {
      data(l, chunk) {
        if (step === "live") return handlers.data(l, chunk);
        if (step === "failed") return;
        if (step === "challenge") {
          const t = challenge!.take(chunk);
          if (!t) return;
          challenge = undefined;
          const h = decodeHead(t.got, o.channel);
          if (!h.ok) return fail(l, `did not answer with the cluster handshake: ${h.reason}`);
          const macS = t.got.subarray(HELLO_BYTES, CHALLENGE_BYTES);
          if (!macEquals(macS, handshakeMac(o.secret, "listener", o.channel, nonceC, h.nonce)))
            return fail(l, "does not hold this cluster's secret (its proof is wrong): closed the connection");
          l.write(handshakeMac(o.secret, "dialler", o.channel, nonceC, h.nonce));
          step = "accept";
          chunk = t.rest;
          if (chunk.length === 0) return;
        }
        if (chunk[0] !== ACCEPT_BYTE) return fail(l, "answered the handshake with something else than its acceptance");
        step = "live";
        o.clock.clearTimeout(timer);
        resolve(l);
        if (chunk.length > 1 && !l.closed) handlers.data(l, chunk.subarray(1));
      },
      drain(l) {
        if (step === "live") handlers.drain?.(l);
      },
      close(l, err) {
        if (step === "live") return handlers.close(l, err);
        fail(undefined, "closed the connection during the cluster handshake (is the cluster secret the same on both workers?)");
      },
    };
    const started = o.clock.now();
    inner.connect(host, port, hs, timeoutMs).then(
      (link) => {
        if (step === "failed") return link.destroy();
        const left = Math.round(Math.max(1, Math.min(o.deadlineMs, timeoutMs - (o.clock.now() - started))));
        timer = o.clock.setTimeout(() => fail(link, `did not finish the cluster handshake within ${left} ms`), left);
        link.write(encodeHello(o.channel, nonceC));
      },
      (err: Error) => {
        if (step === "failed") return;
        step = "failed";
        reject(err);
      },
    );
  });
}
