// Word count: UTF-8 text in, one running count per word out.
//
//   payload = UTF-8 text
//   output  = "<word> => <count>\n"   (one line per occurrence)
//
// source "text" → parallel toMulti "split" (lower-case words; any run of characters that are not
// letters or digits separates words) → keyBy word → stateful "count" (state { count }) → sink.
import { application } from "../builder.ts";
import type { AppSpec } from "../types.ts";

export interface WordCount {
  readonly word: string;
  readonly count: number;
}
export interface CountState {
  count: number;
}

const decoder = new TextDecoder();
const SEPARATORS = /[^\p{L}\p{N}]+/u;

/** Lower-case words of `text`, in order, without empties. */
export function splitWords(text: string): string[] {
  return text.toLowerCase().split(SEPARATORS).filter((w) => w.length > 0);
}

export function build(): AppSpec {
  return application("word_count")
    .source("text", (p) => decoder.decode(p))
    .toMulti("split", splitWords, { parallel: true })
    .keyBy("word", (w) => w)
    .toStateful(
      "count",
      (): CountState => ({ count: 0 }),
      (word, state): WordCount => {
        state.count += 1;
        return { word, count: state.count };
      },
    )
    .toSink((o, w) => {
      w.text(o.word);
      w.text(" => ");
      w.number(o.count);
      w.byte(10);
    });
}

export default build();
