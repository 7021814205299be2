// The alphabet example of the original Wallaroo (reference §6), and the benchmark path.
//
//   payload = letter:u8 votes:u32be            (exactly 5 bytes; anything else is dropped)
//   output  = "<letter> => <running total>\n"
//
// source "alphabet" → keyBy letter → stateful "add votes" (state { total }) → sink.
import { application } from "../builder.ts";
import type { AppSpec } from "../types.ts";

export interface Vote {
  readonly letter: string;
  readonly votes: number;
}
export interface LetterTotal {
  readonly letter: string;
  readonly total: number;
}
export interface VoteState {
  total: number;
}

const PAYLOAD_BYTES = 5;
/** One-character strings for every byte, so decoding a letter allocates nothing. */
const CHARS: readonly string[] = Array.from({ length: 256 }, (_, b) => String.fromCharCode(b));

/** Decodes one vote; the view is only valid during the call, so only numbers and strings leave it. */
export function decodeVote(p: Uint8Array): Vote | null {
  if (p.length !== PAYLOAD_BYTES) return null;
  return { letter: CHARS[p[0]!]!, votes: p[1]! * 0x1000000 + ((p[2]! << 16) | (p[3]! << 8) | p[4]!) };
}

export function build(): AppSpec {
  return application("alphabet")
    .source("alphabet", decodeVote)
    .keyBy("letter", (v) => v.letter)
    .toStateful(
      "add votes",
      (): VoteState => ({ total: 0 }),
      (v, state): LetterTotal => {
        state.total += v.votes;
        return { letter: v.letter, total: state.total };
      },
    )
    .toSink((o, w) => {
      // `${o.letter} => ${o.total}\n`, written without building the string.
      w.text(o.letter);
      w.text(" => ");
      w.number(o.total);
      w.byte(10);
    });
}

export default build();
