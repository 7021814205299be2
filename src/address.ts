// Addresses as operators type them: `host:port`, and sources as `[name@]host:port[:maxsize]`.
import { UsageError } from "./errors.ts";

export interface HostPort {
  readonly host: string;
  readonly port: number;
}
export interface SourceAddress extends HostPort {
  readonly name: string | undefined;
  readonly maxFrame: number;
}

export const DEFAULT_SOURCE_MAX_FRAME = 16 * 1024;
export const MAX_SOURCE_MAX_FRAME = 64 * 1024 * 1024;

function parsePort(s: string, flag: string, text: string): number {
  if (!/^\d+$/.test(s)) throw new UsageError(`${flag} expects host:port, and "${text}" has no valid port.`);
  const port = Number(s);
  if (port > 65535) throw new UsageError(`${flag} expects a port from 0 to 65535, not ${s}.`);
  return port;
}

/** `host:port`; an empty host means any interface (0.0.0.0), as in the original. */
export function parseHostPort(text: string, flag: string): HostPort {
  const i = text.lastIndexOf(":");
  if (i < 0) throw new UsageError(`${flag} expects host:port, not "${text}".`);
  const host = text.slice(0, i);
  const port = parsePort(text.slice(i + 1), flag, text);
  return { host: host === "" ? "0.0.0.0" : host.replace(/^\[|\]$/g, ""), port };
}

export function parseSourceAddress(text: string, flag = "--in"): SourceAddress {
  const bad = () =>
    new UsageError(`Inputs must be in the \`source_name@host:service\` or \`source_name@host:service:max_size\` format! Got "${text}".`);
  let rest = text;
  let name: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    name = rest.slice(0, at);
    if (name === "" || rest.indexOf("@", at + 1) >= 0) throw bad();
    rest = rest.slice(at + 1);
  }
  // An IPv6 host comes in brackets, as in every other address flag: `[::1]:7000:1024`.
  let bracketed: string | undefined;
  if (rest.startsWith("[")) {
    const close = rest.indexOf("]");
    if (close < 2 || rest[close + 1] !== ":") throw bad();
    bracketed = rest.slice(1, close);
    rest = `${rest.slice(close + 1)}`;
  }
  const parts = rest.split(":");
  if (bracketed !== undefined) parts[0] = bracketed;
  if (parts.length < 2 || parts.length > 3) throw bad();
  const [host, portText, maxText] = parts as [string, string, string | undefined];
  if (!/^\d+$/.test(portText)) throw bad();
  const port = parsePort(portText, flag, text);
  let maxFrame = DEFAULT_SOURCE_MAX_FRAME;
  if (maxText !== undefined) {
    if (!/^\d+$/.test(maxText)) throw bad();
    maxFrame = Number(maxText);
    if (maxFrame < 1 || maxFrame > MAX_SOURCE_MAX_FRAME) throw new UsageError(`${flag} max size must be from 1 to ${MAX_SOURCE_MAX_FRAME} bytes, not ${maxText}.`);
  }
  return { name, host: host === "" ? "0.0.0.0" : host, port, maxFrame };
}

export function formatHostPort(a: HostPort): string {
  return a.host.includes(":") ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}
