// Nonces of signed external requests (src/codec/external-auth.ts) seen within the proof window:
// a second request with one of them is a replay.
import { PROOF_WINDOW_MS } from "../codec/external-auth.ts";

/**
 * Bounded:
 * nonces older than the window are forgotten (their envelopes are stale anyway), and past `max`
 * live nonces new requests are refused rather than memory grown.
 */
export class NonceWindow {
  private readonly seen = new Map<string, number>();
  constructor(private readonly max = 10_000) {}

  /** Records `nonce` of time `ts`; a reason when the envelope must be refused, else undefined. */
  admit(nonce: string, ts: number, now: number): string | undefined {
    if (Math.abs(now - ts) > PROOF_WINDOW_MS) return `its time is ${Math.round((ts - now) / 1000)} s from this worker's clock (at most ${PROOF_WINDOW_MS / 1000} s allowed)`;
    for (const [n, t] of this.seen) {
      if (now - t <= PROOF_WINDOW_MS) break; // insertion order is near time order; the rest are younger
      this.seen.delete(n);
    }
    if (this.seen.has(nonce)) return "it was sent before (a replay)";
    if (this.seen.size >= this.max) return "too many signed requests within a minute";
    this.seen.set(nonce, ts);
    return undefined;
  }
}
