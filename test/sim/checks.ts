// The invariants a simulated run is held to (docs/simulation.md). Each returns a description of
// the first problem, or undefined. `checkStep` is cheap and runs after every event; the others
// run at quiescent points and at the end.
import { INIT, STATUS } from "./casualties.ts";
import type { SimCluster } from "./sim-cluster.ts";

/** Slot statuses in which a worker holds the slot's state (DESIGN §4: owned, or outgoing until markers arrive). */
const HOLDS = new Uint8Array(4);
HOLDS[STATUS.owned] = 1;
HOLDS[STATUS.outgoing] = 1;

/**
 * Live workers that count as holders: not stopping (a leaving, shutting-down or failed worker
 * processes nothing more, whatever it holds), and not removed from the cluster. A member the
 * coordinator declared dead while it was cut off (a zombie behind a partition) still holds its
 * slots until it hears, but receives nothing to apply them to; it is not a member any more (nor
 * is a joiner the initializer fenced).
 * Joiners count from the start (they receive slots before the membership names them).
 */
function working(c: SimCluster) {
  const init = c.initializer;
  // With resilience a joiner of an event that was undone (or that a rollback predates) is not
  // known to the initializer any more: whatever it still holds is never routed to or read.
  if (c.resilient && init && c.isAlive(INIT)) {
    // A member that has not applied the initializer's last rollback yet holds what the rollback
    // replaces: nothing it does before then survives.
    const known = new Set(init.knownMembers);
    return c.live().filter((w) => !w.isStopping && !c.lost.fenced.has(w) && known.has(w.name) && w.epoch >= init.floor);
  }
  const members = init ? new Set(init.membership) : undefined;
  return c.live().filter((w) => {
    if (w.isStopping || c.lost.fenced.has(w)) return false;
    if (!members || members.has(w.name)) {
      c.lost.everMember.add(w);
      return true;
    }
    return !c.lost.everMember.has(w);
  });
}

/** (a, cheap) No slot is held by two live workers at once. */
export function checkStep(c: SimCluster): string | undefined {
  const ws = working(c);
  if (ws.length < 2) return undefined;
  const n = ws[0]!.dataflow.status.length;
  const statuses = ws.map((w) => w.dataflow.status);
  for (let s = 0; s < n; s++) {
    let holders = 0;
    for (let i = 0; i < statuses.length; i++) holders += HOLDS[statuses[i]![s]!]!;
    if (holders > 1) {
      const who = ws.filter((w) => HOLDS[w.dataflow.status[s]!]).map((w) => `${w.name} (status ${w.dataflow.status[s]})`);
      return `slot ${s} is held by ${who.join(" and ")} at ${c.now.toFixed(3)} ms`;
    }
  }
  return undefined;
}

/** The live workers that are ready members of the cluster. */
function members(c: SimCluster) {
  const init = c.initializer!;
  const names = new Set(init.membership);
  return working(c).filter((w) => w.isReady && names.has(w.name));
}

/**
 * The cluster is at rest: the coordinator idle, every live member ready, agreeing on membership
 * and epoch. (A dead member may still be listed until the next event removes it.)
 */
export function quiescent(c: SimCluster): boolean {
  const init = c.initializer;
  if (!init || !c.isAlive(init.name) || !init.isReady || init.autoscaling) return false;
  const ms = members(c);
  const names = init.membership.join();
  return ms.every((w) => w.membership.join() === names && w.epoch === init.epoch);
}

/**
 * (a, b) At rest: every slot held by exactly one live member (or still owned by a dead member
 * nobody removed yet), every member with the same membership, epoch and table, and every key's
 * state on one member only.
 */
export function checkQuiescent(c: SimCluster): string | undefined {
  const init = c.initializer!;
  const ms = members(c);
  for (const w of ms) {
    if (w.membership.join() !== init.membership.join()) return `${w.name} has membership ${w.membership} where the initializer has ${init.membership}`;
    if (w.epoch !== init.epoch) return `${w.name} is at epoch ${w.epoch} where the initializer is at ${init.epoch}`;
    for (let s = 0; s < init.owners.length; s++) if (w.owners[s] !== init.owners[s]) return `${w.name} has slot ${s} at worker ${w.owners[s]}, the initializer at ${init.owners[s]}`;
  }
  const liveIds = new Map(ms.map((w) => [w.selfId, w]));
  // Gone, or going: ended processes, and workers stopping or declared dead (not holders).
  const deadIds = new Set(c.lost.deadIds);
  for (const w of c.live()) if (!ms.includes(w) && w.selfId >= 0 && (w.isStopping || c.lost.fenced.has(w))) deadIds.add(w.selfId);
  for (let s = 0; s < init.owners.length; s++) {
    const owner = init.owners[s]!;
    const holders = ms.filter((w) => HOLDS[w.dataflow.status[s]!]);
    if (deadIds.has(owner) && holders.length === 0) continue;
    if (!liveIds.has(owner)) return `slot ${s} is owned by worker ${owner}, which is not a live member`;
    if (holders.length !== 1 || holders[0]!.selfId !== owner)
      return `slot ${s}: table says worker ${owner}, held by [${holders.map((w) => w.name).join(",")}]`;
  }
  const holder = new Map<string, string>();
  for (const w of working(c)) {
    for (const k of Object.values(w.dataflow.state.keys()).flat()) {
      const h = holder.get(k);
      if (h) return `key ${k} has state on ${h} and ${w.name}`;
      holder.set(k, w.name);
    }
  }
  return undefined;
}

/**
 * (c) Per-key outputs: exact (every value once, windows consecutive) for every key whose owner
 * never died; for the others no duplicate and no reorder (checked as outputs arrive), and any
 * loss announced by a log line.
 */
export function checkOutputs(c: SimCluster): string | undefined {
  const out = c.outputs;
  if (out.problems.length > 0) return out.problems.join("; ");
  let lossyKeys = 0;
  for (let k = 0; k < c.sentPerKey.length; k++) {
    const sent = c.sentPerKey[k]!;
    const missing = out.missing(k, sent);
    if (c.keyTainted(k)) {
      if (missing > 0) lossyKeys++;
      continue;
    }
    if (missing > 0) return `key-${k}: ${missing} of ${sent} outputs missing (its owner never died)`;
    const bad = out.badWindows.get(k);
    if (bad) return bad + " (its owner never died)";
  }
  // Once the initializer is dead only safety counts: there may be nobody left to say what is lost.
  if (lossyKeys > 0 && c.lost.lossLines.size === 0 && !c.initializerDied) return `${lossyKeys} keys lost messages and no log line said so`;
  return undefined;
}
