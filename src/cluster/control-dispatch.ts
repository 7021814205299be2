// Control links: frames cut, decoded and validated, then handed to the handler the table names
// for their type. The table is typed so that every control message has exactly one handler (a
// new message type does not compile until it gets one). A frame that is oversized, undecodable
// or of the wrong shape closes that connection with a logged reason; nothing else changes. So does
// a message from a sender whose role may not send it (control-roles.ts), except that a member's
// own link is kept (closing it would count as that member's loss): its message is only ignored.
import { CONTROL_MAX_FRAME, decodeControl, type ControlBody, type ControlName } from "../codec/control.ts";
import { FrameReader } from "../codec/frame.ts";
import { log } from "../log.ts";
import type { Link, LinkHandlers } from "../net/transport.ts";
import { senderAllowed, type SenderRole } from "./control-roles.ts";

export type ControlHandler<N extends ControlName> = (link: Link, body: ControlBody<N>) => void;
export type ControlTable = { readonly [N in ControlName]: ControlHandler<N> };

const REFUSALS_LOGGED_PER_LINK = 10;

export class ControlLinks {
  /** Control connections closed for a malformed or oversized frame (for the metrics). */
  malformed = 0;
  /** The member a link speaks for, once it said `hello` or registered. */
  private readonly names = new WeakMap<Link, string>();
  /** The one open link that speaks for each name. */
  private readonly byName = new Map<string, Link>();
  /** name → when a frame from it last arrived (for the failure timeout). */
  private readonly heard = new Map<string, number>();

  /** Links that sent at least one frame their role allowed. */
  private readonly spoke = new WeakSet<Link>();
  /** Refusals logged per link, so a flood of forged frames cannot flood the log. */
  private readonly refusalsLogged = new WeakMap<Link, number>();

  constructor(
    private readonly table: ControlTable,
    private readonly now: () => number = () => 0,
    /** The role a link speaks in (who may send what: control-roles.ts). */
    private readonly roleOf: (link: Link) => SenderRole = () => "initializer",
  ) {}

  /** When a control frame from `name` last arrived, on any link that speaks for it. */
  lastHeard(name: string): number | undefined {
    return this.heard.get(name);
  }

  /** Whether `link` has sent a frame it was allowed to send (a connection that never does is closed). */
  hasSpoken(link: Link): boolean {
    return this.spoke.has(link);
  }

  nameOf(link: Link): string | undefined {
    return this.names.get(link);
  }

  /**
   * Binds `link` to the member `name`. Refused (false) while another open link speaks for that
   * name: nobody reconnects here, so a second one is an impostor or a stale process, and its
   * close must never count as the member's.
   */
  identify(link: Link, name: string): boolean {
    const had = this.names.get(link);
    if (had !== undefined && had !== name) return false; // one link, one member
    const bound = this.byName.get(name);
    if (bound && bound !== link && !bound.closed) return false;
    this.byName.set(name, link);
    this.names.set(link, name);
    return true;
  }

  /**
   * A link this worker dialed to the member `name`: what comes back on it speaks for that member
   * (it is not the member's own link, so its close is handled by whoever dialed it).
   */
  dialed(link: Link, name: string): void {
    if (!this.names.has(link)) this.names.set(link, name);
  }

  /**
   * The member `name` left or was removed: its link, still open while it finishes, speaks for
   * nobody any more, so its late close is no one's and a new worker may take the name.
   */
  release(name: string): void {
    this.byName.delete(name);
    this.heard.delete(name);
  }

  /** The open link that speaks for `name`, if any. */
  linkOf(name: string): Link | undefined {
    const l = this.byName.get(name);
    return l && !l.closed ? l : undefined;
  }

  /** True when `link` is the one bound to its name (its close is that member's). */
  isBound(link: Link): boolean {
    const name = this.names.get(link);
    return name !== undefined && this.byName.get(name) === link;
  }

  private refuse(link: Link, type: ControlName, role: SenderRole): void {
    const n = this.refusalsLogged.get(link) ?? 0;
    this.refusalsLogged.set(link, n + 1);
    const who = this.names.get(link) ?? link.remote;
    if (n < REFUSALS_LOGGED_PER_LINK)
      log.warn("control_refused", `Refused control message ${type} from ${who} (${role === "stranger" ? "not a member" : `a ${role}`}): it may not send it${role === "stranger" ? "; closed the connection" : ""}`);
    if (role === "stranger") link.destroy();
  }

  /** Handlers for one control link; `closed` runs once when it closes. */
  handlers(closed: (link: Link) => void): LinkHandlers {
    const reader = new FrameReader(CONTROL_MAX_FRAME);
    let current: Link;
    const onFrame = (buf: Uint8Array, start: number, end: number) => {
      if (current.closed) return;
      const d = decodeControl(buf, start, end);
      if (!d.ok) {
        this.malformed++;
        log.error("control_malformed", `Malformed control message from ${current.remote}: ${d.reason}. Closed connection.`);
        current.destroy();
        return;
      }
      const role = this.roleOf(current);
      if (!senderAllowed(d.msg.type, role)) return this.refuse(current, d.msg.type, role);
      this.spoke.add(current);
      (this.table[d.msg.type] as ControlHandler<ControlName>)(current, d.msg.body);
      const name = this.names.get(current);
      if (name !== undefined) this.heard.set(name, this.now());
    };
    return {
      data: (link, chunk) => {
        current = link;
        const err = reader.feed(chunk, onFrame);
        if (err) {
          this.malformed++;
          log.error("control_oversized", `Control frame of ${err.claimed} bytes from ${link.remote} exceeds ${err.max}. Closed connection.`);
          link.destroy();
        }
      },
      close: (link) => closed(link),
    };
  }
}
