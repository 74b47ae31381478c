"""The Grafana dashboard: the panels it promises, and queries that are sound on their face.

Whether each query parses as PromQL is scripts/promql-check.mjs's job (Prometheus's own grammar);
here: unique panel ids, a query on every panel, balanced brackets, histogram quantiles over
``sum by (le)``, and only drawbridge's own metrics.
"""

import json
import re

# The panels the dashboard promises: what -> the metric its query must use.
WANTED = {
    "logins by result": "drawbridge_logins_total",
    "provider latency": "drawbridge_provider_duration_seconds_bucket",
    "cache hit ratio": "drawbridge_decision_cache_requests_total",
    "tunnels active": "drawbridge_tunnels_active",
    "tunnel closes": "drawbridge_tunnel_closes_total",
    "certificate expiry": "drawbridge_tls_cert_not_after_timestamp_seconds",
    "requests by status class": "drawbridge_http_requests_total",
    "upstream errors": "drawbridge_upstream_errors_total",
    "request latency": "drawbridge_http_request_duration_seconds_bucket",
    "session revalidations": "drawbridge_session_revalidations_total",
}


def check(dash):
    """The problems of the dashboard `dash` (parsed JSON), one line each, and a line that counts
    its panels and queries."""
    errors = []
    if not dash.get("uid") or not dash.get("title"):
        errors.append("no uid or title")
    ids, exprs = set(), []
    for p in dash.get("panels", []):
        if p["id"] in ids:
            errors.append(f"duplicate panel id {p['id']}")
        ids.add(p["id"])
        if p.get("type") == "row":
            continue
        if not p.get("targets"):
            errors.append(f"panel {p.get('title')!r} has no queries")
        for t in p.get("targets", []):
            e = t.get("expr", "")
            exprs.append(e)
            errors += check_expr(p.get("title"), e)
    text = " ".join(exprs)
    for what, metric in WANTED.items():
        if metric not in text:
            errors.append(f"no {what} panel ({metric})")
    if not any("drawbridge_config_reloads_total" in e and 'result="failure"' in e for e in exprs):
        errors.append('no failed config reloads panel (drawbridge_config_reloads_total, result="failure")')
    if "histogram_quantile(0.5," not in text or "histogram_quantile(0.99," not in text:
        errors.append("no p50/p99 quantiles")
    if not any(
        t.get("exemplar") and "drawbridge_http_request_duration_seconds_bucket" in t.get("expr", "")
        for p in dash.get("panels", [])
        for t in p.get("targets", [])
    ):
        errors.append("no request latency panel with exemplars on")
    for name in sorted(set(re.findall(r"\b([a-z_]+)\{", text)) - {"by"}):
        if not name.startswith("drawbridge_"):
            errors.append(f"query on a metric that is not drawbridge's: {name}")
    return errors, f"{len(ids)} panels, {len(exprs)} queries"


def check_expr(title, e):
    """The problems of one query `e` of the panel titled `title`."""
    errors = []
    if e.count("(") != e.count(")") or e.count("{") != e.count("}") or e.count("[") != e.count("]"):
        errors.append(f"panel {title!r}: unbalanced brackets in {e}")
    if "_bucket" in e and "histogram_quantile" not in e:
        errors.append(f"panel {title!r}: bucket series without histogram_quantile")
    if "histogram_quantile" in e:
        groups = [g.replace(" ", "").split(",") for g in re.findall(r"by \(([^)]*)\)", e)]
        if not any("le" in g for g in groups):
            errors.append(f"panel {title!r}: histogram_quantile without sum by (le)")
    return errors


def check_file(path):
    """:func:`check` of the dashboard JSON at `path`."""
    with open(path) as f:
        return check(json.load(f))
