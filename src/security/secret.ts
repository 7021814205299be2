// The cluster secret: from `--cluster-secret-file PATH`, or the environment variable
// WALLAROO_CLUSTER_SECRET (for orchestrators that hand secrets in as variables). Every member,
// and every tool that shrinks or stops the cluster, must be given the same one. Generate one with
// `openssl rand -hex 32 > cluster.secret && chmod 600 cluster.secret`.
import { statSync } from "node:fs";
import { UsageError } from "../errors.ts";
import { log } from "../log.ts";

export const SECRET_ENV = "WALLAROO_CLUSTER_SECRET";
/** Shorter secrets can be guessed offline from one recorded handshake. */
export const MIN_SECRET_BYTES = 16;
/** A secret file is a few dozen bytes; a large one is the wrong file. */
const MAX_SECRET_FILE_BYTES = 4096;

/**
 * The secret as bytes (surrounding whitespace trimmed: `echo` and editors add a newline), or
 * undefined when neither source is given. Both at once is refused: which one wins would be a
 * guess.
 */
export async function readClusterSecret(file: string | undefined, env: Record<string, string | undefined> = process.env): Promise<Uint8Array | undefined> {
  const fromEnv = env[SECRET_ENV];
  if (file !== undefined && fromEnv !== undefined) throw new UsageError(`Give the cluster secret once: --cluster-secret-file or ${SECRET_ENV}, not both.`);
  let text: string;
  let where: string;
  if (file !== undefined) {
    if (file === "") throw new UsageError("--cluster-secret-file needs the path of a file holding the secret.");
    where = `the secret file ${file}`;
    let size: number;
    let mode: number;
    try {
      const st = statSync(file);
      size = st.size;
      mode = st.mode;
    } catch (err) {
      throw new UsageError(`Cannot read ${where}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}.`);
    }
    if (size > MAX_SECRET_FILE_BYTES) throw new UsageError(`${where} is ${size} bytes; a cluster secret file holds one line (see docs/security.md).`);
    text = await Bun.file(file).text();
    if ((mode & 0o077) !== 0) log.warn("secret_file_mode", `The cluster secret file ${file} can be read by other users (mode ${(mode & 0o777).toString(8)}); chmod 600 it.`);
  } else if (fromEnv !== undefined) {
    where = SECRET_ENV;
    text = fromEnv;
  } else return undefined;
  const secret = new TextEncoder().encode(text.trim());
  if (secret.length < MIN_SECRET_BYTES)
    throw new UsageError(`The cluster secret in ${where} is ${secret.length} bytes; it must be at least ${MIN_SECRET_BYTES} (generate one with: openssl rand -hex 32).`);
  return secret;
}
