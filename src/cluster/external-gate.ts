// Which external requests must prove they come from a holder of the cluster secret: those that
// change the cluster (shrink, shutdown, rotate). Queries stay open, as the original's tools
// expect; so does Print, which only writes a line to the log.
import { EXTERNAL_MSG, decodeShrinkRequest, type ExternalMsgType } from "../codec/external.ts";
import { log } from "../log.ts";
import type { ExternalReply } from "../runtime/external-server.ts";

function changesCluster(type: ExternalMsgType, payload: string): boolean {
  if (type === EXTERNAL_MSG.CleanShutdown || type === EXTERNAL_MSG.RotateLog) return true;
  // A shrink query only lists; anything else asking to shrink (malformed included) must prove itself.
  if (type === EXTERNAL_MSG.ShrinkRequest) {
    const d = decodeShrinkRequest(payload);
    return !(d.ok && d.value.query);
  }
  return false;
}

const WHY = "this cluster has a secret: requests that change it must be signed with it (wallaroo shrink/shutdown --cluster-secret-file)";

/** True when the request was refused (and answered) for want of proof. */
export function refusedUnproven(secured: boolean, type: ExternalMsgType, payload: string, proven: boolean, reply: ExternalReply): boolean {
  if (!secured || proven || !changesCluster(type, payload)) return false;
  log.warn("external_refused", `Refused an unsigned request of type ${type}: ${WHY}`);
  // Shrink tools read type 6 for any refusal; the others get our refusal type.
  if (type === EXTERNAL_MSG.ShrinkRequest) reply(EXTERNAL_MSG.ShrinkErrorResponse, `Refused: ${WHY}.`);
  else reply(EXTERNAL_MSG.RequestRefused, `Refused: ${WHY}.`);
  return true;
}
