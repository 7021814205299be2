// Proof on the external channel. With a cluster secret, a request that changes the cluster
// (shrink, shutdown, rotate) must show it was made by someone holding the secret; queries stay
// open, as the original's tools expect. The request travels inside an envelope that names the
// time and a fresh nonce and is signed with the secret, so a captured envelope cannot be sent
// again (the worker remembers nonces for as long as it accepts their time).
//
//   request  = frame of type 100 (EXTERNAL_MSG.AuthenticatedRequest), payload = json
//   json     = {"type":T,"payload":P,"ts":MS,"nonce":N,"mac":M}
//     T      = the inner request's type (an EXTERNAL_MSG id)
//     P      = the inner request's payload, as it would travel alone
//     MS     = the sender's clock, milliseconds since the Unix epoch
//     N      = 32 hex digits, fresh per request
//     M      = hex HMAC-SHA256(secret, "wallaroo/1 external\n" T "\n" MS "\n" N "\n" P)
//   answers  = the inner request's own answer; type 102 (RequestAccepted, empty payload) for a
//              request that has none (shutdown, rotate); type 101 (RequestRefused, payload = the
//              reason) when the proof is missing, wrong, stale or replayed.
//
// A worker without a secret reads the envelope too (it checks nothing): tools configured with a
// secret work against any cluster.
import { createHmac, timingSafeEqual } from "node:crypto";
import * as v from "valibot";

/** How far a request's time may be from the worker's clock (either way). */
export const PROOF_WINDOW_MS = 60_000;

const Envelope = v.object({
  type: v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(0xffff)),
  payload: v.string(),
  ts: v.pipe(v.number(), v.integer(), v.minValue(0)),
  nonce: v.pipe(v.string(), v.regex(/^[0-9a-f]{32}$/)),
  mac: v.pipe(v.string(), v.regex(/^[0-9a-f]{64}$/)),
});
export type Envelope = v.InferOutput<typeof Envelope>;

export function externalMac(secret: Uint8Array, type: number, payload: string, ts: number, nonce: string): string {
  return createHmac("sha256", secret).update(`wallaroo/1 external\n${type}\n${ts}\n${nonce}\n${payload}`).digest("hex");
}

/** The envelope's payload for `type`/`payload`, signed now. */
export function encodeEnvelope(secret: Uint8Array, type: number, payload: string, ts: number, nonce: string): string {
  return JSON.stringify({ type, payload, ts, nonce, mac: externalMac(secret, type, payload, ts, nonce) });
}

export function parseEnvelope(json: string): Envelope | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch {
    return undefined;
  }
  const r = v.safeParse(Envelope, raw);
  return r.success ? r.output : undefined;
}

/** Whether `e` is signed with `secret` (constant time in the MAC's length). */
export function envelopeSigned(secret: Uint8Array, e: Envelope): boolean {
  const want = Buffer.from(externalMac(secret, e.type, e.payload, e.ts, e.nonce), "hex");
  const got = Buffer.from(e.mac, "hex");
  return got.length === want.length && timingSafeEqual(got, want);
}
