// Parses every query of a Grafana dashboard as PromQL, with the grammar Prometheus's own editor
// uses (@prometheus-io/lezer-promql), after filling in the Grafana variables the queries use.
//
//   node scripts/promql-check.mjs --modules DIR DASHBOARD.json
//
// DIR holds the node_modules with the parser (scripts/validate-k8s.sh installs it in its cache).
// Prints one line per query that does not parse and a count; exits 1 if any does not.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

const args = process.argv.slice(2);
const at = args.indexOf("--modules");
if (at < 0 || args.length !== 3) {
  console.error("usage: node promql-check.mjs --modules DIR DASHBOARD.json");
  process.exit(2);
}
const modules = args[at + 1];
const dashboard = args.filter((_, i) => i !== at && i !== at + 1)[0];

// Resolved from DIR, not from this file's directory, so the parser stays out of the repository.
const require = createRequire(join(modules, "package.json"));
const { parser } = require("@prometheus-io/lezer-promql");

// Grafana's variables, replaced with what they stand for in one panel.
const VARIABLES = { $__rate_interval: "5m", $__range: "1h" };

const dash = JSON.parse(readFileSync(dashboard, "utf8"));
let bad = 0;
let n = 0;
for (const p of dash.panels) {
  for (const t of p.targets ?? []) {
    let expr = t.expr;
    for (const [name, value] of Object.entries(VARIABLES)) {
      expr = expr.replaceAll(name, value);
    }
    const errors = [];
    parser.parse(expr).iterate({
      enter: (node) => {
        if (node.type.isError) errors.push(node.from);
      },
    });
    n++;
    if (errors.length) {
      bad++;
      console.log(`${p.title}: PromQL syntax error at ${errors[0]}: ${expr}`);
    }
  }
}
console.log(`${n} queries, ${bad} with errors`);
process.exit(bad ? 1 : 0);
