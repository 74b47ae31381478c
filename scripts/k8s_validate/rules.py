"""The PrometheusRule the chart renders (prometheusRule.enabled): the alerts it promises, each on a
metric drawbridge exports."""

import glob
import json
import re
import subprocess

from k8s_validate import chart, manifests
from k8s_validate.runner import Outcome

# The alerts the rule promises: what -> the metric its expression must use.
WANTED = {
    "config reload failures": "drawbridge_config_reloads_total",
    "cluster store down": "drawbridge_cluster_up",
    "a provider's circuit breaker open": "drawbridge_provider_circuit_open",
    "certificate expiring": "drawbridge_tls_cert_not_after_timestamp_seconds",
}
VALUES = ["--set", "prometheusRule.enabled=true", "--set", "prometheusRule.certificateExpiryDays=7"]


def exported_metrics(src="src"):
    """Every drawbridge_* name in the Rust sources (where the metrics are registered)."""
    names = set()
    for path in glob.glob(f"{src}/**/*.rs", recursive=True):
        with open(path) as f:
            names |= set(re.findall(r"\bdrawbridge_[a-z0-9_]+", f.read()))
    return names


def render_rules(tools):
    """The alerting rules of the render with the PrometheusRule on."""
    out = subprocess.run(
        chart.template_argv(tools, *VALUES), stdin=subprocess.DEVNULL, capture_output=True, text=True, check=True
    ).stdout
    docs = [d for d in manifests.yaml.safe_load_all(out) if d]
    found = [d for d in docs if d.get("kind") == "PrometheusRule"]
    return [r for d in found for g in d["spec"]["groups"] for r in g["rules"]]


def check(tools):
    problems = []
    rules = render_rules(tools)
    exprs = " ".join(r["expr"] for r in rules)
    for what, metric in WANTED.items():
        if metric not in exprs:
            problems.append(f"no alert for {what} ({metric})")
    known = exported_metrics()
    for r in rules:
        for name in re.findall(r"\bdrawbridge_[a-z0-9_]+", r["expr"]):
            if name not in known:
                problems.append(f"{r['alert']}: {name} is not a metric drawbridge exports")
    expiry = [r for r in rules if "drawbridge_tls_cert_not_after_timestamp_seconds" in r["expr"]]
    if expiry and f"< {7 * 86400}" not in expiry[0]["expr"]:
        problems.append(f"certificate alert is not at 7 days: {expiry[0]['expr']}")
    off = subprocess.run(
        chart.template_argv(tools), stdin=subprocess.DEVNULL, capture_output=True, text=True, check=True
    )
    if "kind: PrometheusRule" in off.stdout:
        problems.append("the PrometheusRule is rendered by default (it needs the Prometheus Operator's CRDs)")
    return Outcome.of_problems(problems, f"{len(rules)} alerts")


def as_dashboard(tools, path):
    """Writes the alert expressions as the panels scripts/promql-check.mjs reads."""
    rules = render_rules(tools)
    panels = [{"title": r["alert"], "targets": [{"expr": r["expr"]}]} for r in rules]
    with open(path, "w") as f:
        json.dump({"panels": panels}, f)
    return Outcome(bool(panels), "" if panels else "no alerts rendered")
