// One typed error per failure a user can act on. The CLI wrapper maps `exitCode` to the process
// exit status, so every command shares the same contract:
// 0 success, 1 runtime failure, 2 usage, 3 cluster unreachable, 4 request refused.
export const EXIT = {
  ok: 0,
  runtime: 1,
  usage: 2,
  unreachable: 3,
  refused: 4,
} as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

export class WallarooError extends Error {
  readonly exitCode: ExitCode;
  constructor(message: string, exitCode: ExitCode = EXIT.runtime) {
    super(message);
    this.name = "WallarooError";
    this.exitCode = exitCode;
  }
}

/** A flag or combination of flags the command cannot run with. */
export class UsageError extends WallarooError {
  constructor(message: string) {
    super(message, EXIT.usage);
    this.name = "UsageError";
  }
}

/** Nothing answered at the address, or it stopped answering before the deadline. */
export class UnreachableError extends WallarooError {
  constructor(message: string) {
    super(message, EXIT.unreachable);
    this.name = "UnreachableError";
  }
}

/** The cluster answered and said no (shrink refused, join refused). */
export class RefusedError extends WallarooError {
  constructor(message: string) {
    super(message, EXIT.refused);
    this.name = "RefusedError";
  }
}

/** The application module is missing, fails to load, or builds an invalid pipeline. */
export class AppError extends WallarooError {
  constructor(message: string) {
    super(message, EXIT.runtime);
    this.name = "AppError";
  }
}
