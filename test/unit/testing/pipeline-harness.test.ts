// The in-process harness application authors test with: outputs are the sink's bytes, state is
// the dataflow's, a moved slot's state goes through the step's codec, and messages for a moved
// slot cross to the other worker the way they cross between processes.
import { describe, expect, test } from "bun:test";
import { application } from "../../../src/app/builder.ts";
import type { AppSpec, StateCodec } from "../../../src/app/types.ts";
import type { WallarooApi } from "../../../src/index.ts";
import { slotOf } from "../../../src/runtime/slot-hash.ts";
import { testPipeline } from "../../../src/testing/pipeline-harness.ts";

const text = (p: Uint8Array) => new TextDecoder().decode(p);

interface Tally {
  total: number;
}

/** "<key> <n>" payloads; a running total per key; "<key>=<total>\n" outputs. */
function totals(opts: { stateCodec?: StateCodec<Tally>; decoded?: () => void } = {}): AppSpec {
  return application("totals")
    .source("in", (p) => {
      opts.decoded?.();
      const [key, n] = text(p).split(" ");
      return key && n ? { key, n: Number(n) } : null;
    })
    .keyBy("key", (m) => m.key)
    .toStateful(
      "sum",
      (): Tally => ({ total: 0 }),
      (m, s, key) => {
        if (m.n < 0) throw new Error("negative amount");
        s.total += m.n;
        return { key, total: s.total };
      },
      opts.stateCodec ? { stateCodec: opts.stateCodec } : undefined,
    )
    .toSink((o) => `${o.key}=${o.total}\n`);
}

/** Two keys whose slots differ, so moving one leaves the other where it is. */
const [A, B] = ["alice", "bob"];
if (slotOf(A) === slotOf(B)) throw new Error("test keys share a slot; pick others");

describe("outputs and state", () => {
  test("send returns the bytes the sink wrote for each output, in order; state is per key", () => {
    const h = testPipeline(totals());
    const out = h.send(`${A} 5`, `${B} 2`, `${A} 3`);
    expect(out.every((b) => b instanceof Uint8Array)).toBe(true);
    expect(out.map(text)).toEqual([`${A}=5\n`, `${B}=2\n`, `${A}=8\n`]);
    expect(h.sendText(`${B} 1`)).toEqual([`${B}=3\n`]);
    expect(h.outputs.map(text)).toEqual([`${A}=5\n`, `${B}=2\n`, `${A}=8\n`, `${B}=3\n`]);
    expect(h.state(A)).toEqual({ total: 8 });
    expect(h.state("carol")).toBeUndefined();
    expect(h.keys()).toEqual([A, B]);
  });

  test("a payload the decoder drops produces nothing and is no error", () => {
    const h = testPipeline(totals());
    expect(h.send("garbage")).toEqual([]);
    expect(h.keys()).toEqual([]);
  });

  test("the writer path of an encoder gives the same bytes as a returned string", () => {
    const app = application("w")
      .source("in", (p) => text(p))
      .keyBy((m) => m)
      .toStateful("n", () => ({ n: 0 }), (m, s) => ({ m, n: ++s.n }))
      .toSink((o, w) => {
        w.text(o.m);
        w.byte(32);
        w.number(o.n);
      });
    expect(testPipeline(app).sendText("x", "x")).toEqual(["x 1", "x 2"]);
  });

  test("a module's (api) => AppSpec export is built with the API; an async one is refused", () => {
    const h = testPipeline((api: WallarooApi) =>
      api
        .application("fn")
        .source("in", (p) => api.utf8Decode(p))
        .toSink((s) => s.toUpperCase()),
    );
    expect(h.sendText("hi")).toEqual(["HI"]);
    expect(() => testPipeline((async () => totals()) as never)).toThrow("the application's builder is async");
  });
});

describe("errors a worker would log make send throw", () => {
  test("a step that throws names the step and the key", () => {
    const h = testPipeline(totals());
    h.send(`${A} 1`);
    expect(() => h.send(`${A} -1`)).toThrow(`step "sum" threw on key "${A}": negative amount`);
  });

  test("a decoder that throws", () => {
    const app = application("d")
      .source("in", () => {
        throw new Error("bad bytes");
      })
      .toSink(() => "");
    expect(() => testPipeline(app).send("x")).toThrow("Unable to decode message at in source: bad bytes");
  });

  test("an encoder that returns a number", () => {
    const app = application("e")
      .source("in", (p) => p.length)
      .toSink((n) => n as unknown as string);
    expect(() => testPipeline(app).send("abc")).toThrow("sink encoder returned number");
  });

  test("an application a worker would refuse at start-up is refused the same way", () => {
    class Counter {
      n = 0;
    }
    const app = application("c")
      .source("in", (p) => text(p))
      .keyBy((m) => m)
      .toStateful("count", () => new Counter(), (m, s) => ++s.n)
      .toSink((n) => `${n}\n`);
    expect(() => testPipeline(app)).toThrow(
      'The pipeline given to testPipeline is not a valid application: application "c": state of step "count" cannot migrate between workers: state is an instance of Counter',
    );
  });
});

describe("moving a key's slot", () => {
  test("state moves through the step's state codec and the key's messages then run on w1", () => {
    const calls = { serialize: 0, deserialize: 0 };
    // A codec that keeps only the total as text: a state rebuilt from bytes shows it went through.
    const codec: StateCodec<Tally> = {
      serialize: (s) => {
        calls.serialize++;
        return new TextEncoder().encode(String(s.total));
      },
      deserialize: (b) => {
        calls.deserialize++;
        return { total: Number(text(b)) };
      },
    };
    const h = testPipeline(totals({ stateCodec: codec }));
    h.send(`${A} 5`, `${B} 1`);
    const before = h.state<Tally>(A);
    const counted = { ...calls };
    expect(h.workerOf(A)).toBe("initializer");
    expect(h.moveKey(A)).toEqual([A]);
    expect(h.workerOf(A)).toBe("w1");
    expect(h.workerOf(B)).toBe("initializer");
    expect({ serialize: calls.serialize - counted.serialize, deserialize: calls.deserialize - counted.deserialize }).toEqual({ serialize: 1, deserialize: 1 });
    expect(h.state<Tally>(A)).not.toBe(before);
    expect(h.state(A)).toEqual({ total: 5 });
    expect(h.sendText(`${A} 2`, `${B} 1`)).toEqual([`${A}=7\n`, `${B}=2\n`]);
    expect(h.moveKey(A)).toEqual([A]);
    expect(h.workerOf(A)).toBe("initializer");
    expect(h.sendText(`${A} 1`)).toEqual([`${A}=8\n`]);
  });

  test("a codec that loses part of the state shows in the outputs after the move", () => {
    const forgetful: StateCodec<Tally> = { serialize: () => new Uint8Array(0), deserialize: () => ({ total: 0 }) };
    const h = testPipeline(totals({ stateCodec: forgetful }));
    h.send(`${A} 5`);
    h.moveKey(A);
    expect(h.sendText(`${A} 1`)).toEqual([`${A}=1\n`]);
  });

  test("the default codec (bun:jsc) carries a Map across; a moved key's frame is decoded again on w1", () => {
    let decodes = 0;
    const app = application("m")
      .source("in", (p) => {
        decodes++;
        return text(p);
      })
      .keyBy((w) => w[0]!)
      .toStateful(
        "words",
        () => ({ seen: new Map<string, number>() }),
        (w, s) => {
          s.seen.set(w, (s.seen.get(w) ?? 0) + 1);
          return `${w}:${s.seen.get(w)}`;
        },
      )
      .toSink((o) => o);
    const h = testPipeline(app);
    h.send("apple", "avocado", "apple");
    h.moveKey("a");
    expect(h.state<{ seen: Map<string, number> }>("a")!.seen).toEqual(new Map([["apple", 2], ["avocado", 1]]));
    decodes = 0;
    expect(h.sendText("apple")).toEqual(["apple:3"]);
    // Only keyBy between source and state: the initializer forwards the raw frame and w1 decodes it.
    expect(decodes).toBe(2);
  });

  test("messages for a moved slot use the message codec, also back to a non-parallel step", () => {
    const codec = { encoded: 0, decoded: 0 };
    const app = application("c")
      .source("in", (p) => text(p))
      .to("wrap", (s) => ({ s }), { parallel: true })
      .keyBy((m) => m.s)
      .toStateful("n", () => ({ n: 0 }), (m, st) => ({ s: m.s, n: ++st.n }))
      .to("format", (o) => `${o.s}#${o.n}`)
      .messageCodec({
        encode: (m) => {
          codec.encoded++;
          return new TextEncoder().encode(JSON.stringify(m));
        },
        decode: (b) => {
          codec.decoded++;
          return JSON.parse(text(b));
        },
      })
      .toSink((s) => s);
    const h = testPipeline(app);
    expect(h.sendText("k")).toEqual(["k#1"]);
    expect(codec).toEqual({ encoded: 0, decoded: 0 });
    h.moveKey("k");
    expect(h.sendText("k")).toEqual(["k#2"]);
    // To w1 for the state, back to the initializer for the non-parallel "format".
    expect(codec).toEqual({ encoded: 2, decoded: 2 });
  });

  test("keys sharing a slot move together; keys() spans both workers", () => {
    const h = testPipeline(totals());
    const slot = slotOf(A);
    let twin = "";
    for (let i = 0; !twin; i++) if (slotOf(`k${i}`) === slot) twin = `k${i}`;
    h.send(`${A} 1`, `${twin} 2`, `${B} 3`);
    expect(h.moveKey(A)).toEqual([A, twin].sort());
    expect(h.workerOf(twin)).toBe("w1");
    expect(h.keys()).toEqual([A, B, twin].sort());
  });

  test("a state the codec cannot serialise is reported when it moves", () => {
    const h = testPipeline(
      totals({
        stateCodec: {
          serialize: (s) => {
            if (s.total > 3) throw new Error("too big");
            return new Uint8Array([s.total]);
          },
          deserialize: (b) => ({ total: b[0]! }),
        },
      }),
    );
    h.send(`${A} 5`);
    expect(() => h.moveKey(A)).toThrow(`the state of the slot of key "${A}" cannot be serialised to move: too big`);
  });
});

describe("naming the stateful step", () => {
  const two = application("two")
    .source("in", (p) => text(p))
    .keyBy((m) => m)
    .toStateful("first", () => ({ a: 0 }), (m, s) => (++s.a, m))
    .toStateful("second", () => ({ b: 0 }), (m, s) => (++s.b, m))
    .toSink((m) => m);

  test("with several stateful steps, state and keys need the step's name", () => {
    const h = testPipeline(two);
    h.send("x");
    expect(() => h.state("x")).toThrow('application "two" has several stateful steps: name one ("first", "second")');
    expect(h.state("x", "second")).toEqual({ b: 1 });
    expect(() => h.keys("nope")).toThrow('"nope" is not a stateful step of application "two"');
  });
});
