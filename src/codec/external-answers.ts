// The JSON of the external channel's distribution answers (reference §3.2): which steps, keys
// and counts a worker holds. Pure values → text; src/cluster/external-requests.ts gathers them.
//
//   8  PartitionQueryResponse        {"state_partitions":{S:{W:[id…]}},"stateless_partitions":{P:{W:[id…]}}}
//   13 PartitionCountQueryResponse   {"state_partitions":{S:{W:n}},"stateless_partitions":{P:{W:n}}}
//   18 StateEntityQueryResponse      {S:[key…]}
//   20 StatelessPartitionResponse    {P:{W:[id…]}}                    ({} without parallel steps)
//   22 StateEntityCountResponse      {S:n}
//   24 StatelessPartitionCountResp.  {P:{W:n}}
//   26 ClusterStateEntityCountResp.  {W:{S:{id:n}}}
//
//   S = a stateful step's name, P = a parallel stateless step's name, W = a worker's name,
//   id = a step id: a decimal string, as the original's routing ids were (a slot number for a
//   stateful step; see statelessStepId for a stateless one), n = a JSON integer.
//
// Every value has the JSON type the original's had: ids are strings even though they are
// numbers here, so a strict client written against the original parses ours. Objects are built
// with Object.fromEntries, which defines own keys, so a name like "__proto__" stays a key.

/** [name, value] in the order the answer lists them (pipeline order, cluster order). */
export type Named<T> = ReadonlyArray<readonly [string, T]>;

/** What one worker holds, per step: the ids of its step instances here. */
export interface LocalSteps {
  readonly worker: string;
  /** Stateful step → slots this worker owns. */
  readonly state: Named<readonly number[]>;
  /** Parallel stateless step → its step ids on this worker. */
  readonly stateless: Named<readonly string[]>;
}

const ids = (slots: readonly number[]): string[] => slots.map(String);
const obj = <T>(entries: Named<T>): Record<string, T> => Object.fromEntries(entries);
const byWorker = <T>(worker: string, steps: Named<T>) => obj(steps.map(([step, v]) => [step, obj([[worker, v]])] as const));

/**
 * A parallel stateless step has one instance per worker here (the original had `parallelism`):
 * its id is unique in the cluster and stable while the member lives, like the original's.
 */
export function statelessStepId(memberId: number, stageIndex: number): string {
  if (!(Number.isInteger(memberId) && memberId >= 0 && memberId <= 0xffff)) throw new RangeError(`member id ${memberId} is not a u16`);
  if (!(Number.isInteger(stageIndex) && stageIndex >= 0 && stageIndex <= 0xffff)) throw new RangeError(`stage index ${stageIndex} is not a u16`);
  return String(memberId * 0x10000 + stageIndex);
}

/** 8 */
export function encodePartitions(l: LocalSteps): string {
  return JSON.stringify({
    state_partitions: byWorker(l.worker, l.state.map(([s, slots]) => [s, ids(slots)] as const)),
    stateless_partitions: byWorker(l.worker, l.stateless),
  });
}

/** 13 */
export function encodePartitionCounts(l: LocalSteps): string {
  return JSON.stringify({
    state_partitions: byWorker(l.worker, l.state.map(([s, slots]) => [s, slots.length] as const)),
    stateless_partitions: byWorker(l.worker, l.stateless.map(([s, steps]) => [s, steps.length] as const)),
  });
}

/** 18: keys are strings already (a key is a string here, as in the original). */
export function encodeStateEntities(keys: Readonly<Record<string, readonly string[]>>): string {
  return JSON.stringify(keys);
}

/** 20 */
export function encodeStatelessPartitions(l: LocalSteps): string {
  return JSON.stringify(byWorker(l.worker, l.stateless));
}

/** 22 */
export function encodeStateEntityCounts(counts: Readonly<Record<string, number>>): string {
  return JSON.stringify(counts);
}

/** 24 */
export function encodeStatelessPartitionCounts(l: LocalSteps): string {
  return JSON.stringify(byWorker(l.worker, l.stateless.map(([s, steps]) => [s, steps.length] as const)));
}

/** One worker's part of 26: stateful step → slot → keys, slots without keys left out. */
export type SlotKeyCounts = Readonly<Record<string, Readonly<Record<string, number>>>>;

/** 26: every member that answered, in the order given (the asked worker first). */
export function encodeClusterStateEntityCounts(workers: Named<SlotKeyCounts>): string {
  return JSON.stringify(obj(workers));
}
