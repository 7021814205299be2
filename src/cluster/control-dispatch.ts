// Control links: frames cut, decoded and validated, then handed to the handler the table names
// for their type. The table is typed so that every control message has exactly one handler (a
// new message type does not compile until it gets one). A frame that is oversized, undecodable
// or of the wrong shape closes that connection with a logged reason; nothing else changes.
import { CONTROL_MAX_FRAME, decodeControl, type ControlBody, type ControlName } from "../codec/control.ts";
import { FrameReader } from "../codec/frame.ts";
import { log } from "../log.ts";
import type { Link, LinkHandlers } from "../net/transport.ts";

export type ControlHandler<N extends ControlName> = (link: Link, body: ControlBody<N>) => void;
export type ControlTable = { readonly [N in ControlName]: ControlHandler<N> };

export class ControlLinks {
  /** The member a link speaks for, once it said `hello` or registered. */
  private readonly names = new WeakMap<Link, string>();

  constructor(private readonly table: ControlTable) {}

  nameOf(link: Link): string | undefined {
    return this.names.get(link);
  }

  identify(link: Link, name: string): void {
    this.names.set(link, name);
  }

  /** Handlers for one control link; `closed` runs once when it closes. */
  handlers(closed: (link: Link) => void): LinkHandlers {
    const reader = new FrameReader(CONTROL_MAX_FRAME);
    let current: Link;
    const onFrame = (buf: Uint8Array, start: number, end: number) => {
      if (current.closed) return;
      const d = decodeControl(buf, start, end);
      if (!d.ok) {
        log.error("control_malformed", `Malformed control message from ${current.remote}: ${d.reason}. Closed connection.`);
        current.destroy();
        return;
      }
      (this.table[d.msg.type] as ControlHandler<ControlName>)(current, d.msg.body);
    };
    return {
      data: (link, chunk) => {
        current = link;
        const err = reader.feed(chunk, onFrame);
        if (err) {
          log.error("control_oversized", `Control frame of ${err.claimed} bytes from ${link.remote} exceeds ${err.max}. Closed connection.`);
          link.destroy();
        }
      },
      close: (link) => closed(link),
    };
  }
}
