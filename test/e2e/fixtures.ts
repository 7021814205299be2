// Per-test set-up for the e2e files only: kept apart from harness.ts so that importing a helper
// never registers hooks in a file that did not ask for them.
import { afterEach, beforeEach } from "bun:test";
import { killAll, Receiver } from "./harness.ts";

/**
 * Gives each test a fresh receiver and, whatever happens, kills every child process and stops
 * the receiver when the test ends.
 */
export function withReceiver(set: (rx: Receiver) => void): void {
  let rx: Receiver | undefined;
  beforeEach(async () => {
    rx = new Receiver();
    await rx.start();
    set(rx);
  });
  afterEach(async () => {
    await killAll();
    rx?.stop();
  });
}
