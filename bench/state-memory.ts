// Bytes per key of keyed state, and what they are spent on: --keys keys of an application's state
// (default sequence_window: key "key-N", state a window of 4 numbers) created through the real
// KeyedState, with the JS heap measured (after a full GC) before and after each part:
//   1. the key strings alone (they exist anyway: they arrive in messages and are kept as Map keys),
//   2. the per-slot Maps holding them (hash table entries),
//   3. the state objects (as resident memory: the JS heap figure leaves out arrays' elements),
// and the process's RSS growth for the whole. A slot image for checkpoints and migration is
// measured too (bytes per key on the wire and on disk).
//
//   bun bench/state-memory.ts [--keys 1000000] [--app sequence_window|alphabet]
import { heapStats } from "bun:jsc";
import { KeyedState } from "../src/runtime/keyed-state.ts";
import { slotOf } from "../src/runtime/slot-hash.ts";
import { unpackEntries } from "../src/codec/data.ts";
import sequenceWindow from "../src/app/builtins/sequence_window.ts";
import alphabet from "../src/app/builtins/alphabet.ts";
import { fmtInt, numFlag, parseFlags, table } from "./lib.ts";

const flags = parseFlags(process.argv.slice(2), {
  keys: "keys (default 1000000)",
  app: "sequence_window or alphabet (default sequence_window)",
});
const KEYS = numFlag(flags, "keys", 1_000_000);
const app = (flags.app ?? "sequence_window") === "alphabet" ? alphabet : sequenceWindow;
const stage = app.stages.findIndex((s) => s.kind === "stateful");

function heap(): number {
  Bun.gc(true);
  Bun.gc(true);
  return heapStats().heapSize;
}
const rss = () => process.memoryUsage().rss;

// The state objects on their own: as many fresh init() results, held by one array (8 bytes each).
const init = (app.stages[stage] as { init: () => unknown }).init;
// The JS heap figure leaves out arrays' element storage (JSC's butterflies), so this part is
// measured as resident memory instead.
let alone: unknown[] = new Array(KEYS).fill(null);
heap();
const r4 = rss();
for (let i = 0; i < KEYS; i++) alone[i] = init();
heap();
const r5 = rss();
alone = [];
const rss0 = rss();
const h0 = heap();
const keys: string[] = new Array(KEYS);
for (let i = 0; i < KEYS; i++) keys[i] = `key-${i}`;
const slots = new Uint16Array(KEYS);
for (let i = 0; i < KEYS; i++) slots[i] = slotOf(keys[i]!);
const h1 = heap();

// Maps with the keys but a shared value: the hash tables alone.
const bare = new KeyedState({ ...app, stages: app.stages.map((s) => (s.kind === "stateful" ? { ...s, init: () => true } : s)) });
for (let i = 0; i < KEYS; i++) bare.get(stage, slots[i]!, keys[i]!);
const h2 = heap();
const bareCount = bare.totalKeys();

const state = new KeyedState(app);
for (let i = 0; i < KEYS; i++) state.get(stage, slots[i]!, keys[i]!);
const h3 = heap();
if (bareCount !== KEYS || state.totalKeys() !== KEYS) throw new Error("keys went missing");

// A checkpoint writes every dirty slot's image; a migration packs slots and the new owner installs them.
let imageBytes = 0;
let t0 = performance.now();
for (const { image } of state.dirtyImages(() => true)) imageBytes += image.length;
const imageMs = performance.now() - t0;
const packs: { slot: number; count: number; bytes: Uint8Array }[] = [];
t0 = performance.now();
for (let s = 0; s < 1024; s++) packs.push({ slot: s, ...state.takePacked(s) });
const packMs = performance.now() - t0;
const receiver = new KeyedState(app);
t0 = performance.now();
for (const p of packs) for (const e of unpackEntries(p.bytes, p.count)) receiver.install(e.stage, p.slot, e.key, e.state);
const installMs = performance.now() - t0;
if (receiver.totalKeys() !== KEYS) throw new Error(`installed ${receiver.totalKeys()} of ${KEYS} keys`);
const rss1 = rss();

const per = (b: number) => (b / KEYS).toFixed(1);
const keyStrings = h1 - h0;
const maps = h2 - h1;
const objects = r5 - r4;
void h3;
console.log(`keyed state of ${app.name}, ${fmtInt(KEYS)} keys, Bun ${Bun.version}\n`);
console.log(
  table([
    ["part", "bytes/key", "MiB"],
    ["key strings (and the slot cache's copies)", per(keyStrings), (keyStrings / 2 ** 20).toFixed(1)],
    ["per-slot Map entries", per(maps), (maps / 2 ** 20).toFixed(1)],
    ["state objects (resident memory)", per(objects), (objects / 2 ** 20).toFixed(1)],
    ["total", per(keyStrings + maps + objects), ((keyStrings + maps + objects) / 2 ** 20).toFixed(1)],
    ["slot images (checkpoint / migration bytes)", per(imageBytes), (imageBytes / 2 ** 20).toFixed(1)],
  ]),
);
const ns = (ms: number) => ((ms * 1e6) / KEYS).toFixed(0);
console.log(`\nRSS grew ${((rss1 - rss0) / 2 ** 20).toFixed(0)} MiB (three KeyedStates and the images' garbage included)`);
console.log(`every key: checkpoint images ${imageMs.toFixed(0)} ms (${ns(imageMs)} ns/key), packed for migration ${packMs.toFixed(0)} ms (${ns(packMs)} ns/key), installed ${installMs.toFixed(0)} ms (${ns(installMs)} ns/key)`);
console.log(JSON.stringify({ bench: "state-memory", app: app.name, keys: KEYS, key_bytes: keyStrings / KEYS, map_bytes: maps / KEYS, state_bytes: objects / KEYS, image_bytes: imageBytes / KEYS, image_ns_per_key: (imageMs * 1e6) / KEYS, pack_ns_per_key: (packMs * 1e6) / KEYS, install_ns_per_key: (installMs * 1e6) / KEYS }));
