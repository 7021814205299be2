// Which external requests need proof on a cluster with a secret (src/cluster/external-gate.ts).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { refusedUnproven } from "../../../src/cluster/external-gate.ts";
import { EXTERNAL_MSG, encodeShrinkRequest, type ExternalMsgType } from "../../../src/codec/external.ts";
import { configureLog } from "../../../src/log.ts";

beforeAll(() => configureLog({ level: "silent" }));
afterAll(() => configureLog({ level: "info" }));

function ask(secured: boolean, type: ExternalMsgType, payload: string, proven: boolean) {
  const replies: Array<[number, string]> = [];
  const refused = refusedUnproven(secured, type, payload, proven, (t, p) => replies.push([t, p]));
  return { refused, replies };
}
const shrink = (query: boolean) => encodeShrinkRequest({ query, node_names: [], node_count: query ? 0 : 1 });

describe("external gate", () => {
  test("with a secret, unsigned shrink, shutdown and rotate are refused with an answer", () => {
    expect(ask(true, EXTERNAL_MSG.ShrinkRequest, shrink(false), false)).toEqual({
      refused: true,
      replies: [[EXTERNAL_MSG.ShrinkErrorResponse, expect.stringContaining("Refused: this cluster has a secret")]],
    });
    for (const t of [EXTERNAL_MSG.CleanShutdown, EXTERNAL_MSG.RotateLog]) {
      const r = ask(true, t, "", false);
      expect(r.refused).toBe(true);
      expect(r.replies[0]![0]).toBe(EXTERNAL_MSG.RequestRefused);
    }
    // A malformed shrink is not a query: it needs proof too.
    expect(ask(true, EXTERNAL_MSG.ShrinkRequest, "{", false).refused).toBe(true);
  });

  test("queries stay open, signed requests pass, and without a secret nothing is refused", () => {
    for (const t of [EXTERNAL_MSG.ClusterStatusQuery, EXTERNAL_MSG.StateEntityQuery, EXTERNAL_MSG.Print]) expect(ask(true, t, "", false).refused).toBe(false);
    expect(ask(true, EXTERNAL_MSG.ShrinkRequest, shrink(true), false).refused).toBe(false);
    expect(ask(true, EXTERNAL_MSG.ShrinkRequest, shrink(false), true).refused).toBe(false);
    expect(ask(false, EXTERNAL_MSG.CleanShutdown, "", false)).toEqual({ refused: false, replies: [] });
  });
});
