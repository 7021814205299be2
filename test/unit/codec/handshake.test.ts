// The cluster handshake's bytes (src/codec/handshake.ts): golden frames, and MACs checked against
// Python's hmac module (computed once, pasted here), so a change of label, order or channel shows.
import { describe, expect, test } from "bun:test";
import { decodeHead, encodeChallenge, encodeHello, handshakeMac, macEquals } from "../../../src/codec/handshake.ts";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const range = (from: number, n: number) => Uint8Array.from({ length: n }, (_, i) => from + i);
const secret = new TextEncoder().encode("0123456789abcdef0123456789abcdef");
const nonceC = range(0, 16);
const nonceS = range(16, 16);

describe("handshake codec", () => {
  test("hello: magic, version, channel, nonce", () => {
    expect(hex(encodeHello("control", nonceC))).toBe("574c52480101" + hex(nonceC));
    expect(hex(encodeHello("data", nonceC))).toBe("574c52480102" + hex(nonceC));
  });

  test("challenge: the hello's head with the listener's nonce, then its MAC", () => {
    const mac = range(100, 32);
    expect(hex(encodeChallenge("data", nonceS, mac))).toBe("574c52480102" + hex(nonceS) + hex(mac));
  });

  test("MACs equal HMAC-SHA256 over label, channel and both nonces (golden from Python's hmac)", () => {
    expect(hex(handshakeMac(secret, "listener", "control", nonceC, nonceS))).toBe("b0d0b225b73904645b24d7cee84d4ca73a9551ed22e520660795ae62a7e77844");
    expect(hex(handshakeMac(secret, "dialler", "data", nonceC, nonceS))).toBe("82939b46019125ea2cf102dce46bfca23dcdb8f2b74a26e68395b02974314e4d");
  });

  test("the two sides' proofs differ, so one cannot be reflected as the other", () => {
    expect(macEquals(handshakeMac(secret, "listener", "control", nonceC, nonceS), handshakeMac(secret, "dialler", "control", nonceC, nonceS))).toBe(false);
    expect(macEquals(handshakeMac(secret, "dialler", "control", nonceC, nonceS), handshakeMac(secret, "dialler", "data", nonceC, nonceS))).toBe(false);
  });

  test("decodeHead refuses other bytes, other versions and the other channel", () => {
    expect(decodeHead(encodeHello("control", nonceC), "control")).toEqual({ ok: true, nonce: nonceC });
    const frame = new Uint8Array(22);
    new DataView(frame.buffer).setUint32(0, 30); // a control frame's length prefix
    expect(decodeHead(frame, "control")).toMatchObject({ ok: false, reason: expect.stringContaining("did not open with the cluster handshake") });
    const v2 = encodeHello("control", nonceC);
    v2[4] = 2;
    expect(decodeHead(v2, "control")).toMatchObject({ ok: false, reason: expect.stringContaining("version 2") });
    expect(decodeHead(encodeHello("data", nonceC), "control")).toMatchObject({ ok: false, reason: expect.stringContaining("channel 2 on the control port") });
  });

  test("macEquals is false for another length", () => {
    expect(macEquals(range(0, 31), range(0, 32))).toBe(false);
  });
});
