// Parse an AsyncAPI document with the official parser (@asyncapi/parser) and print
// its diagnostics as JSON lines; exit 1 when any has error severity (0).
// Usage: node validate.mjs FILE   (FILE "-" reads standard input)
import { readFileSync } from "node:fs";
import { Parser } from "@asyncapi/parser";

const path = process.argv[2];
const text = readFileSync(path === "-" ? 0 : path, "utf8");
const parser = new Parser();
const { diagnostics } = await parser.parse(text, { source: path === "-" ? undefined : path });
for (const d of diagnostics) {
  console.log(JSON.stringify({ severity: d.severity, code: d.code, message: d.message, path: d.path }));
}
process.exit(diagnostics.some((d) => d.severity === 0) ? 1 : 0);
