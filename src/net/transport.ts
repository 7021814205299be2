// The seam between the cluster logic and the network. Only src/net implements it; everything
// above sees links and servers, so a whole cluster can run against another implementation.

/** Outbound bytes of one link: encoders write in place at `len`, then call `link.flushSoon()`. */
export interface OutBuffer {
  buf: Uint8Array;
  len: number;
  /** Makes room for `n` more bytes at `len` (may replace `buf`). */
  ensure(n: number): void;
}

export interface Link {
  readonly id: number;
  readonly remote: string;
  /** This end's address (host only): where the other side reached this worker. */
  readonly local: string;
  readonly out: OutBuffer;
  /** Bytes accepted from us but not yet by the kernel. */
  readonly queuedBytes: number;
  /** Bytes the kernel has taken from this link so far (they survive this process's crash). */
  readonly sentBytes: number;
  /** True above the high-water mark; producers must stop until `onDrain`. */
  readonly congested: boolean;
  readonly closed: boolean;
  /** Copies `bytes` to the outbound buffer; sent within this event-loop turn. */
  write(bytes: Uint8Array): void;
  /** Schedules a flush of `out` (coalesces every write of this turn into one syscall). */
  flushSoon(): void;
  /** Hands what `out` holds to the kernel now (a long turn must not hold it back). */
  flush(): void;
  pause(): void;
  resume(): void;
  /** Flushes what is queued, then closes. */
  end(): void;
  /** Closes now, dropping what is queued. */
  destroy(): void;
}

export interface LinkHandlers {
  data(link: Link, chunk: Uint8Array): void;
  /** The outbound queue fell below the low-water mark after being congested. */
  drain?(link: Link): void;
  close(link: Link, error?: Error): void;
}

export interface Server {
  readonly host: string;
  readonly port: number;
  stop(): void;
}

export interface Transport {
  listen(host: string, port: number, accept: (link: Link) => LinkHandlers): Promise<Server>;
  /** Rejects when the peer cannot be reached within `timeoutMs`. */
  connect(host: string, port: number, handlers: LinkHandlers, timeoutMs: number): Promise<Link>;
}

export const LINK_LIMITS = {
  /** Producers pause above this many queued bytes… */
  highWaterBytes: 4 * 1024 * 1024,
  /** …and resume below this. */
  lowWaterBytes: 1 * 1024 * 1024,
  initialBufferBytes: 64 * 1024,
  /** A link whose queue passes this is a bug in flow control: an InvariantError, never more memory. */
  hardLimitBytes: 256 * 1024 * 1024,
} as const;
