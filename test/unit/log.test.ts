// A log line is one line whatever the network put into it (src/log.ts `printable`).
import { expect, test } from "bun:test";
import { printable } from "../../src/log.ts";

test("newlines, carriage returns, escapes and Unicode line separators are shown escaped", () => {
  expect(printable("Shutting down: bye\n[initializer] Application has successfully initialized.")).toBe("Shutting down: bye\\n[initializer] Application has successfully initialized.");
  expect(printable("a\rb\tc\u001b[31md\u0000e\u007ff\u0085g\u2028h")).toBe("a\\rb\\tc\\u001b[31md\\u0000e\\u007ff\\u0085g\\u2028h");
});

test("ordinary text, accents and quotes stay as they are", () => {
  const s = `Worker w1 at 127.0.0.1:4000 said "héllo" — ok`;
  expect(printable(s)).toBe(s);
});
