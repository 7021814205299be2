// What keeping outsiders out costs (issue 11): the alphabet job on 2 workers flat out (so half
// the messages cross the data channel between them), plain, with a cluster secret (a handshake
// when a connection opens, nothing per message), and with TLS on control, data and external.
//
//   npm run build && bun bench/security.ts [--messages 8000000] [--rounds 3] [--binary dist/wallaroo]
//
// The three run in turn, --rounds times, the order rotating each round so that a drift of the
// shared machine falls on all of them; medians, and each one's ratio to plain. Every run is
// checked: all lines arrived and each letter's last total is the sum of its votes.
import { chmodSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ClusterOptions } from "../test/support/cluster.ts";
import { alphabetMaxThroughput, DEFAULT_BINARY, environment, fmtInt, killChildrenOnSignal, launchCluster, metered, numFlag, parseFlags, runDir, stableBinary, table } from "./lib.ts";

const flags = parseFlags(process.argv.slice(2), {
  messages: "messages per run (default 8000000)",
  rounds: "rounds of (plain, secret, TLS), order rotating (default 3)",
  binary: `the wallaroo executable (default ${DEFAULT_BINARY})`,
});
const N = numFlag(flags, "messages", 8_000_000);
const ROUNDS = numFlag(flags, "rounds", 3);
const STALL_MS = 15_000;

killChildrenOnSignal();
const dir = runDir("security");
const binary = stableBinary(flags.binary ?? DEFAULT_BINARY, dir);
const secretFile = join(dir, "cluster.secret");
writeFileSync(secretFile, "4f1c0b8e2a9d7c6b5a4f3e2d1c0b9a8f\n");
chmodSync(secretFile, 0o600);
const tlsDir = join(import.meta.dir, "../test/fixtures/tls");

const MODES: Record<"plain" | "secret" | "tls", ClusterOptions> = {
  plain: { extraArgs: [], toolArgs: [] },
  secret: { extraArgs: ["--cluster-secret-file", secretFile], toolArgs: ["--cluster-secret-file", secretFile] },
  tls: {
    extraArgs: ["--tls-cert", join(tlsDir, "member.pem"), "--tls-key", join(tlsDir, "member.key"), "--tls-ca", join(tlsDir, "ca.pem")],
    toolArgs: ["--tls-ca", join(tlsDir, "ca.pem")],
    externalTls: { ca: join(tlsDir, "ca.pem") },
  },
};
type Mode = keyof typeof MODES;
const order: Mode[] = ["plain", "secret", "tls"];
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const fmtRate = (r: number) => (Number.isFinite(r) ? `${(r / 1e6).toFixed(2)} M msg/s` : "-");

console.log(`alphabet max throughput, 2 workers, ${fmtInt(N)} messages per run; ${ROUNDS} rounds of ${order.join(", ")}; ${JSON.stringify(environment())}`);
const rates: Record<Mode, number[]> = { plain: [], secret: [], tls: [] };
let failed = 0;
for (let round = 0; round < ROUNDS; round++) {
  for (let i = 0; i < order.length; i++) {
    const mode = order[(i + round) % order.length]!;
    const logDir = join(dir, `${round + 1}-${mode}`);
    mkdirSync(logDir, { recursive: true });
    const r = await metered(() => alphabetMaxThroughput(mode, (rx) => launchCluster("alphabet", 2, rx, { binary, logDir, ...MODES[mode] }, mode), N, STALL_MS));
    if (r.ok) rates[mode].push(r.msg_per_s);
    else failed++;
    console.log(`  round ${round + 1} ${mode.padEnd(6)} ${r.ok ? fmtRate(r.msg_per_s) : "FAILED: " + r.error}  (others' CPU ${r.others_pct}%)`);
  }
}
const plain = median(rates.plain);
console.log(
  "\n" +
    table([
      ["mode", "median", "ratio to plain", "runs"],
      ...order.map((m) => [m, fmtRate(median(rates[m])), (median(rates[m]) / plain).toFixed(3), rates[m].map((x) => (x / 1e6).toFixed(2)).join(" ")]),
    ]),
);
console.log(`RESULT: ${failed === 0 ? "PASS" : `FAIL (${failed} runs failed)`}`);
process.exit(failed === 0 ? 0 : 1);
