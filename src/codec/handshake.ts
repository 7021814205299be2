// The cluster handshake: with a cluster secret, every control and data connection opens with a
// mutual challenge-response before any other frame is read. Each side proves it holds the secret
// with an HMAC over fresh nonces from both sides, so a recorded handshake proves nothing on a
// new connection and neither side can be used as an oracle for the other's proof.
//
//   hello     = magic:"WLRH" version:u8 channel:u8 nonceC:byte[16]              ; dialler → listener, 22 bytes
//   challenge = magic:"WLRH" version:u8 channel:u8 nonceS:byte[16] macS:byte[32] ; listener → dialler, 54 bytes
//   proof     = macC:byte[32]                                                     ; dialler → listener
//   accept    = 0x01                                                              ; listener → dialler
//
//   macS = HMAC-SHA256(secret, "wallaroo/1 listener" channel nonceC nonceS)
//   macC = HMAC-SHA256(secret, "wallaroo/1 dialler"  channel nonceC nonceS)
//
// `channel` is 1 for control and 2 for data: a proof made for one port is worth nothing on the
// other. After `accept` the connection carries that channel's own frames. A listener that does
// not accept the proof closes the connection without a word; so does a dialler that does not
// accept the listener's.
import { createHmac, timingSafeEqual } from "node:crypto";

export const HANDSHAKE_CHANNEL = { control: 1, data: 2 } as const;
export type HandshakeChannel = keyof typeof HANDSHAKE_CHANNEL;

export const HANDSHAKE_VERSION = 1;
export const NONCE_BYTES = 16;
export const MAC_BYTES = 32;
const MAGIC = [0x57, 0x4c, 0x52, 0x48]; // "WLRH"
export const HELLO_BYTES = 4 + 1 + 1 + NONCE_BYTES;
export const CHALLENGE_BYTES = HELLO_BYTES + MAC_BYTES;
export const PROOF_BYTES = MAC_BYTES;
export const ACCEPT_BYTE = 0x01;

const LABEL = { listener: "wallaroo/1 listener", dialler: "wallaroo/1 dialler" } as const;

function head(out: Uint8Array, channel: HandshakeChannel, nonce: Uint8Array): void {
  out.set(MAGIC, 0);
  out[4] = HANDSHAKE_VERSION;
  out[5] = HANDSHAKE_CHANNEL[channel];
  out.set(nonce, 6);
}

export function encodeHello(channel: HandshakeChannel, nonceC: Uint8Array): Uint8Array {
  const out = new Uint8Array(HELLO_BYTES);
  head(out, channel, nonceC);
  return out;
}

export function encodeChallenge(channel: HandshakeChannel, nonceS: Uint8Array, macS: Uint8Array): Uint8Array {
  const out = new Uint8Array(CHALLENGE_BYTES);
  head(out, channel, nonceS);
  out.set(macS, HELLO_BYTES);
  return out;
}

/** False as soon as the first bytes received (`got[0..n)`) cannot begin a hello or a challenge. */
export function couldBeHandshake(got: Uint8Array, n: number): boolean {
  for (let i = 0; i < Math.min(n, 4); i++) if (got[i] !== MAGIC[i]) return false;
  return true;
}

export type HandshakeHead = { ok: true; nonce: Uint8Array } | { ok: false; reason: string };

/** Reads the common head of a hello or challenge; `bytes` holds at least HELLO_BYTES. */
export function decodeHead(bytes: Uint8Array, channel: HandshakeChannel): HandshakeHead {
  for (let i = 0; i < 4; i++) if (bytes[i] !== MAGIC[i]) return { ok: false, reason: "it did not open with the cluster handshake (is a cluster secret set on one side only?)" };
  if (bytes[4] !== HANDSHAKE_VERSION) return { ok: false, reason: `handshake version ${bytes[4]}, where ${HANDSHAKE_VERSION} is spoken here` };
  if (bytes[5] !== HANDSHAKE_CHANNEL[channel]) return { ok: false, reason: `a handshake for channel ${bytes[5]} on the ${channel} port` };
  return { ok: true, nonce: bytes.slice(6, HELLO_BYTES) };
}

export function handshakeMac(secret: Uint8Array, who: keyof typeof LABEL, channel: HandshakeChannel, nonceC: Uint8Array, nonceS: Uint8Array): Uint8Array {
  const h = createHmac("sha256", secret);
  h.update(LABEL[who]);
  h.update(new Uint8Array([HANDSHAKE_CHANNEL[channel]]));
  h.update(nonceC);
  h.update(nonceS);
  return new Uint8Array(h.digest());
}

/** Constant time in the length of `expected`: how much of a guess was right never shows. */
export function macEquals(got: Uint8Array, expected: Uint8Array): boolean {
  return got.length === expected.length && timingSafeEqual(got, expected);
}
