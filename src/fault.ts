// Where a broken invariant goes. Code that catches an exception it cannot have caused by bad
// input (a socket handler that threw, say) reports it here instead of deciding what to do: a
// library must not exit the process, but a worker must stop rather than run on with state it can
// no longer trust. The worker command installs the one policy (FATAL line, exit 70); everything
// else (the other commands, unit tests) keeps the default, which rethrows to the caller as if
// nothing had caught it.

/** Gets the place the fault was detected (for the FATAL line) and what was thrown. */
export type FaultHandler = (where: string, err: unknown) => void;

const rethrow: FaultHandler = (_where, err) => {
  throw err;
};

let handler: FaultHandler = rethrow;
let halted = false;

/**
 * Reports a fault. May return (a handler that stops the process asynchronously, or a test's):
 * the caller then treats what it was doing as broken, e.g. closes the connection.
 */
export function reportFault(where: string, err: unknown): void {
  handler(where, err);
}

/** Installs `h` for the whole process; returns a function that puts the previous one back. */
export function setFaultHandler(h: FaultHandler): () => void {
  const previous = handler;
  handler = h;
  return () => {
    handler = previous;
  };
}

/**
 * The process is stopping because of a fault: src/net reads and writes nothing more, so the time
 * spent flushing the FATAL line cannot carry suspect state to a peer or the sink.
 */
export function haltIo(): () => void {
  halted = true;
  // Only a test lifts it: a process that halted is on its way out.
  return () => {
    halted = false;
  };
}

export function ioHalted(): boolean {
  return halted;
}

/** The one format of the line a fatal stop prints: `FATAL: <where>: <stack>`. */
export function fatalLine(where: string, err: unknown): string {
  const what = err instanceof Error ? (err.stack ?? `${err.name}: ${err.message}`) : String(err);
  return `FATAL: ${where}: ${what}\n`;
}
