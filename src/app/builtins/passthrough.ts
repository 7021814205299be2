// Passthrough: every payload goes to the sink unchanged (no stages). Measures the runtime itself.
//
//   payload = any bytes
//   output  = the same bytes (no framing added)
import { application } from "../builder.ts";
import type { AppSpec } from "../types.ts";

export function build(): AppSpec {
  return (
    application("passthrough")
      // The runtime's view is only valid during the call: keep a copy.
      .source("passthrough", (p) => p.slice())
      .toSink((bytes) => bytes)
  );
}

export default build();
