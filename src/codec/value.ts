// Plain values as bytes: the default codec for keyed state (migration, checkpoints) and for
// messages that cross workers, when an application gives none. bun:jsc's serialize costs about
// 2.4 µs per call even for [0,0,0,0] (measured; a million keys took 5.9 s to image), so plain
// data — what state almost always is — takes this compact form instead:
//
//   encoded = MAGIC:u8(0xC5) value
//   value   = UNDEFINED | NULL | FALSE | TRUE
//           | INT32 i32le | FLOAT64 f64le
//           | STRING len:varuint utf8[len]
//           | ARRAY n:varuint value{n}
//           | OBJECT n:varuint (klen:varuint key:utf8[klen] value){n}
//   varuint = LEB128: 7 bits per byte, least significant first, high bit = more (< 2^32)
//
// Anything else — Map, Set, Date, typed arrays, bigint, class instances, arrays with holes,
// strings with lone surrogates, shared or cyclic references, nesting deeper than MAX_DEPTH —
// makes the whole value go through bun:jsc's serialize, which keeps it exactly as before.
// Decoding tells the two apart by the first byte: jsc's format starts with its version (14 in
// Bun 1.4), never 0xC5. Values decode to what structured cloning would give, with one
// exception: named properties on an array (`arr.extra = 1`) are not kept. Finding them costs an
// Object.keys per array, 200 ns for [0,0,0,0] (most of the encoding); the start-up check refuses
// an initial state that has them (src/app/validate.ts) and docs/app-authors.md says so.
import { serialize, deserialize } from "bun:jsc";
import { readUtf8, writeUtf8 } from "./data.ts";
import { ByteBuilder, type ByteSink } from "./bytes.ts";

export const VALUE_MAGIC = 0xc5;

export const VALUE_TAG = {
  undefined: 0,
  null: 1,
  false: 2,
  true: 3,
  int32: 4,
  float64: 5,
  string: 6,
  array: 7,
  object: 8,
} as const;

/** Deeper values go to jsc's serialize (encoding) or are refused (decoding). */
export const MAX_DEPTH = 64;
/** Containers one compact value may hold before it goes to jsc (reference tracking is linear). */
const MAX_CONTAINERS = 256;

/** Thrown inside the encoder when the value needs jsc's serialize; never escapes this module. */
const UNSUPPORTED = Symbol("unsupported");

/** Where `encodeValue` builds its bytes before copying them out. */
const scratch = new ByteBuilder(1024);
/** The buffer being written (its `len` is only brought up to date when it must grow), and where. */
let target: ByteSink = scratch;
let buf = scratch.buf;
let pos = 0;
/** Containers of the value being encoded: a second sight means a shared or cyclic reference. */
const seen: object[] = [];
let busy = false;
/** 8 bytes seen as a float64 both ways (no DataView over the buffers written or read). */
const f64View = new DataView(new ArrayBuffer(8));
const f64Bytes = new Uint8Array(f64View.buffer);

function room(n: number): void {
  if (pos + n <= buf.length) return;
  target.len = pos;
  target.ensure(n);
  buf = target.buf;
}

function putVarUint(n: number): void {
  room(5);
  while (n >= 0x80) {
    buf[pos++] = (n & 0x7f) | 0x80;
    n >>>= 7;
  }
  buf[pos++] = n;
}

/** UTF-8 length of `s`, or -1 if it holds a lone surrogate (UTF-8 cannot carry it; jsc can). */
function utf8Bytes(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdfff) {
      if (c > 0xdbff || i + 1 >= s.length || (s.charCodeAt(i + 1) & 0xfc00) !== 0xdc00) return -1;
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

function putString(s: string): void {
  const n = utf8Bytes(s);
  if (n < 0) throw UNSUPPORTED;
  putVarUint(n);
  room(n);
  pos = writeUtf8(buf, pos, s);
}

function put(v: unknown, depth: number): void {
  switch (typeof v) {
    case "number":
      if ((v | 0) === v && (v !== 0 || 1 / v > 0)) {
        room(5);
        buf[pos] = VALUE_TAG.int32;
        buf[pos + 1] = v;
        buf[pos + 2] = v >> 8;
        buf[pos + 3] = v >> 16;
        buf[pos + 4] = v >> 24;
        pos += 5;
      } else {
        room(9);
        buf[pos++] = VALUE_TAG.float64;
        f64View.setFloat64(0, v, true);
        for (let i = 0; i < 8; i++) buf[pos + i] = f64Bytes[i]!;
        pos += 8;
      }
      return;
    case "string":
      room(1);
      buf[pos++] = VALUE_TAG.string;
      putString(v);
      return;
    case "boolean":
      room(1);
      buf[pos++] = v ? VALUE_TAG.true : VALUE_TAG.false;
      return;
    case "undefined":
      room(1);
      buf[pos++] = VALUE_TAG.undefined;
      return;
    case "object": {
      if (v === null) {
        room(1);
        buf[pos++] = VALUE_TAG.null;
        return;
      }
      if (depth >= MAX_DEPTH || seen.length >= MAX_CONTAINERS || seen.includes(v)) throw UNSUPPORTED;
      seen.push(v);
      const proto = Object.getPrototypeOf(v);
      if (Array.isArray(v)) {
        if (proto !== Array.prototype) throw UNSUPPORTED;
        const n = v.length;
        room(1);
        buf[pos++] = VALUE_TAG.array;
        putVarUint(n);
        for (let i = 0; i < n; i++) {
          const x = v[i];
          // A hole reads as undefined; jsc keeps it a hole.
          if (x === undefined && !(i in v)) throw UNSUPPORTED;
          put(x, depth + 1);
        }
        return;
      }
      if (proto !== Object.prototype) throw UNSUPPORTED;
      const keys = Object.keys(v);
      room(1);
      buf[pos++] = VALUE_TAG.object;
      putVarUint(keys.length);
      for (const k of keys) {
        putString(k);
        put((v as Record<string, unknown>)[k], depth + 1);
      }
      return;
    }
    default:
      throw UNSUPPORTED;
  }
}

/** jsc's form, copied out of the SharedArrayBuffer it comes in (a socket or a file takes a plain one). */
function jscBytes(v: unknown): Uint8Array {
  return new Uint8Array(serialize(v) as SharedArrayBuffer).slice();
}

/**
 * Appends `v`'s bytes to `o`. Throws what jsc's serialize throws for what neither form can hold
 * (functions, symbols), with `o` as it was.
 */
export function encodeValueInto(o: ByteSink, v: unknown): void {
  // A getter that encodes a value itself would share the encoder's state: it gets jsc's form.
  if (busy) return appendJsc(o, v);
  busy = true;
  const start = o.len;
  target = o;
  buf = o.buf;
  pos = start;
  try {
    room(1);
    buf[pos++] = VALUE_MAGIC;
    put(v, 0);
    o.len = pos;
  } catch (err) {
    o.len = start;
    if (err !== UNSUPPORTED) throw err;
    appendJsc(o, v);
  } finally {
    seen.length = 0;
    target = scratch;
    buf = scratch.buf;
    busy = false;
  }
}

function appendJsc(o: ByteSink, v: unknown): void {
  const b = jscBytes(v);
  o.ensure(b.length);
  o.buf.set(b, o.len);
  o.len += b.length;
}

/** `v` as bytes (a new array); see `encodeValueInto`. */
export function encodeValue(v: unknown): Uint8Array {
  if (busy) return jscBytes(v);
  scratch.len = 0;
  encodeValueInto(scratch, v);
  return scratch.buf.slice(0, scratch.len);
}

class Reader {
  // No DataView over `b`: asking a small typed array for its `.buffer` makes JSC allocate one,
  // and that cost more than the rest of decoding together (measured).
  constructor(
    private readonly b: Uint8Array,
    public pos: number,
    private readonly end: number,
  ) {}

  need(n: number): void {
    if (this.pos + n > this.end) throw new Error(`value ends early: ${n} more bytes needed at ${this.pos} of ${this.end}`);
  }

  varUint(): number {
    let n = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      this.need(1);
      const c = this.b[this.pos++]!;
      n += (c & 0x7f) * 2 ** shift;
      if (c < 0x80) {
        if (n > 0xffffffff) throw new Error("value length exceeds 2^32");
        return n;
      }
    }
    throw new Error("value length runs past 5 bytes");
  }

  string(): string {
    const n = this.varUint();
    this.need(n);
    const s = readUtf8(this.b, this.pos, this.pos + n);
    this.pos += n;
    return s;
  }

  value(depth: number): unknown {
    if (depth > MAX_DEPTH) throw new Error(`value nested deeper than ${MAX_DEPTH}`);
    this.need(1);
    const tag = this.b[this.pos++]!;
    switch (tag) {
      case VALUE_TAG.undefined:
        return undefined;
      case VALUE_TAG.null:
        return null;
      case VALUE_TAG.false:
        return false;
      case VALUE_TAG.true:
        return true;
      case VALUE_TAG.int32: {
        this.need(4);
        const b = this.b;
        const p = this.pos;
        this.pos += 4;
        return b[p]! | (b[p + 1]! << 8) | (b[p + 2]! << 16) | (b[p + 3]! << 24);
      }
      case VALUE_TAG.float64: {
        this.need(8);
        for (let i = 0; i < 8; i++) f64Bytes[i] = this.b[this.pos + i]!;
        this.pos += 8;
        return f64View.getFloat64(0, true);
      }
      case VALUE_TAG.string:
        return this.string();
      case VALUE_TAG.array: {
        const n = this.varUint();
        // Every element takes at least a byte: a length the bytes cannot hold is refused before allocating.
        this.need(n);
        const a = new Array(n);
        for (let i = 0; i < n; i++) a[i] = this.value(depth + 1);
        return a;
      }
      case VALUE_TAG.object: {
        const n = this.varUint();
        this.need(2 * n);
        const o: Record<string, unknown> = {};
        for (let i = 0; i < n; i++) {
          const k = this.string();
          const v = this.value(depth + 1);
          // An own "__proto__" is data, as structured cloning keeps it; assignment would set the prototype.
          if (k === "__proto__") Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
          else o[k] = v;
        }
        return o;
      }
      default:
        throw new Error(`unknown value tag ${tag} at ${this.pos - 1}`);
    }
  }
}

/** What `encodeValue` (or, for older bytes, jsc's serialize) made. Throws on damaged bytes. */
export function decodeValue(b: Uint8Array): unknown {
  return decodeValueAt(b, 0, b.length);
}

/** `decodeValue` of `b[start…end)`, without a view or a copy for the compact form. */
export function decodeValueAt(b: Uint8Array, start: number, end: number): unknown {
  if (end <= start || b[start] !== VALUE_MAGIC) return deserialize(b.slice(start, end));
  const r = new Reader(b, start + 1, end);
  const v = r.value(0);
  if (r.pos !== end) throw new Error(`${end - r.pos} bytes after the value`);
  return v;
}
