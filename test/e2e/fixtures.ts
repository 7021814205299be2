// Per-test set-up for the e2e files only: kept apart from test/support so that importing the
// harness never registers hooks in a file that did not ask for them.
import { afterEach } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LoadSender, type Workload } from "../support/load.ts";
import { HOST, killAll } from "../support/process.ts";
import { Receiver, type OutputHandler } from "../support/receiver.ts";
import { Conditions } from "../support/wait.ts";

const receivers: Receiver<OutputHandler>[] = [];
const senders: LoadSender[] = [];
const paths: string[] = [];

/**
 * Whatever happens in a test, every child is killed and every receiver and sender closed at its
 * end, and every path given to `removeAfterTest` removed (after the workers: one still running
 * could write into a directory being removed).
 */
export function cleanUpAfterEach(): void {
  afterEach(async () => {
    for (const s of senders.splice(0)) s.close();
    await killAll();
    for (const r of receivers.splice(0)) r.stop();
    for (const p of paths.splice(0)) rmSync(p, { recursive: true, force: true });
  });
}

/** Removes `path` (a file or a directory) when the test ends. */
export function removeAfterTest(path: string): string {
  paths.push(path);
  return path;
}

/** A fresh directory under the system's temporary one (a --resilience-dir), removed when the test ends. */
export function tempDir(prefix: string): string {
  return removeAfterTest(mkdtempSync(join(tmpdir(), prefix)));
}

/** A receiver listening on a port from the OS (or `port`), stopped when the test ends. */
export function receiver<H extends OutputHandler>(handler: H, port = 0): Receiver<H> {
  const r = new Receiver(handler);
  r.listen(port);
  receivers.push(r);
  return r;
}

/** A sender connected to `port`, closed when the test ends. */
export async function sender(port: number, wl: Workload): Promise<LoadSender> {
  const s = new LoadSender(wl);
  senders.push(s);
  return s.connect(port);
}

/** Sends `count` messages of `wl` at `rate` msg/s and resolves once they are all in the kernel. */
export async function sendAll(port: number, wl: Workload, count: number, rate: number): Promise<LoadSender> {
  const s = await sender(port, wl);
  await s.atRate(rate, count);
  return s;
}

/** A port nothing listens on (the OS gave it and it was closed again): for "unreachable" cases. */
export function closedPort(): number {
  const l = Bun.listen({ hostname: HOST, port: 0, socket: { data() {} } });
  const port = l.port;
  l.stop(true);
  return port;
}

/** A plain client connection (bad frames, raw requests) whose replies and close can be awaited. */
export async function rawConnection(port: number) {
  const got: Uint8Array[] = [];
  let closed = false;
  const changes = new Conditions();
  const socket = await Bun.connect({
    hostname: HOST,
    port,
    socket: {
      data: (_s, d) => {
        got.push(new Uint8Array(d));
        changes.changed();
      },
      close: () => {
        closed = true;
        changes.changed();
      },
    },
  });
  return {
    socket,
    received: () => Buffer.concat(got),
    /** Resolves once `test()` holds, checked whenever something arrives. */
    until: (test: () => boolean, what: string, deadline_ms = 5000) => changes.until(test, deadline_ms, what),
    waitClosed: (deadline_ms = 5000) => changes.until(() => closed, deadline_ms, `port ${port} to close the connection`),
  };
}

/** The whole external-channel frames in `buf` (a trailing partial frame is left out). */
export function externalFrames(buf: Uint8Array): Array<{ type: number; payload: string }> {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: Array<{ type: number; payload: string }> = [];
  for (let at = 0; at + 4 <= b.length; ) {
    const len = b.readUInt32BE(at);
    if (at + 4 + len > b.length) break;
    out.push({ type: b.readUInt16BE(at + 4), payload: b.toString("utf8", at + 6, at + 4 + len) });
    at += 4 + len;
  }
  return out;
}
