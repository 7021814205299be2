// Example application module: the longest word seen so far, per first letter.
//
//   payload = UTF-8 text
//   output  = "<letter> <longest word so far> <its length>\n"   (one line per word)
//
// Written the way docs/app-authors.md says, in its second form: the default export is a function
// that receives the public API, and only types are imported from "wallaroo" (erased at run time;
// in this repository tsconfig.json maps "wallaroo" to src/index.ts, next to an application it is
// wallaroo.d.ts). Run it with
//
//   dist/wallaroo worker --application-module ./examples/word_lengths.ts --in 127.0.0.1:7010 ...
import type { WallarooApi } from "wallaroo";

interface Word {
  readonly word: string;
}
interface Longest {
  word: string;
}
interface Out {
  readonly letter: string;
  readonly word: string;
}

export default (api: WallarooApi) =>
  api
    .application("word_lengths")
    .source("text", (payload) => api.utf8Decode(payload))
    // Parallel: splitting runs on whichever worker holds the text, not only on the initializer.
    .toMulti("split", (text): Word[] => text.toLowerCase().split(/[^\p{L}\p{N}]+/u).filter((w) => w.length > 0).map((word) => ({ word })), {
      parallel: true,
    })
    .keyBy("first letter", (w) => w.word[0]!)
    .toStateful(
      "longest",
      (): Longest => ({ word: "" }),
      (w, state, letter): Out => {
        // Longer wins; among equally long words the alphabetically first, so the result does not
        // depend on arrival order across sources.
        if (w.word.length > state.word.length || (w.word.length === state.word.length && w.word < state.word)) state.word = w.word;
        return { letter, word: state.word };
      },
    )
    .toSink((o) => `${o.letter} ${o.word} ${o.word.length}\n`);
