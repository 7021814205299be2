// What the dataflow needs from the cluster around it: the routing table (read only: the cluster
// layer's RoutingTable is its one writer) and a way to send a record to another worker.
//
// Slot status on this worker (DESIGN §4):
//   OWNED     the state is here; messages are applied.
//   OUTGOING  the table now names another owner, but upstreams' markers have not all arrived:
//             messages that still arrive for it were routed under the old table and are applied.
//   INCOMING  the table names this worker but the state has not arrived: messages wait, in
//             arrival order, only for this slot.
//   NONE      another worker's slot.

export const SLOT_STATUS = { none: 0, owned: 1, outgoing: 2, incoming: 3 } as const;
export type SlotStatus = (typeof SLOT_STATUS)[keyof typeof SLOT_STATUS];

export interface Router {
  readonly selfId: number;
  readonly initializerId: number;
  readonly isInitializer: boolean;
  /** slot → owner id under the current table */
  readonly owners: Int32Array;
  /** slot → SLOT_STATUS on this worker */
  readonly status: Uint8Array;
  /** Sends one record to a peer; a record for a peer that is gone is dropped and counted. */
  forward(peerId: number, stage: number, raw: boolean, slot: number, key: string, payload: Uint8Array, start: number, end: number): void;
}
