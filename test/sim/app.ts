// The simulator runs the built-in sequence_window application: its windows prove that state
// moved intact (a lost or reordered update shows as a window that is not consecutive).
import { build } from "../../src/app/builtins/sequence_window.ts";
import type { AppSpec } from "../../src/app/types.ts";

export function buildSequenceWindow(): AppSpec {
  return build();
}
