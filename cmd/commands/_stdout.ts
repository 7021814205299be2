// Data on stdout, written out before the command returns: the CLI wrapper exits right after a
// command, and a write to a pipe still under way would be cut off (a pipe takes 64 KiB at once).
export async function writeStdout(text: string): Promise<void> {
  await Bun.write(Bun.stdout, text);
}
