"""dashboard.check: the promised panels, and queries sound on their face."""

import unittest

from k8s_validate import dashboard


def good():
    """A dashboard with every promised panel: one query per metric, and the two quantiles."""
    panels = [{"id": 1, "type": "row", "title": "gateway"}]
    for i, metric in enumerate(dashboard.WANTED.values(), start=2):
        if metric.endswith("_bucket"):
            exprs = [
                f'histogram_quantile({q}, sum by (le) (rate({metric}{{provider=~"$provider"}}[$__rate_interval])))'
                for q in ("0.5", "0.99")
            ]
        else:
            exprs = [f'sum by (result) (rate({metric}{{job="drawbridge"}}[$__rate_interval]))']
        # Request latency carries exemplars (trace links).
        exemplar = metric == "drawbridge_http_request_duration_seconds_bucket"
        targets = [{"expr": e, "exemplar": exemplar} for e in exprs]
        panels.append({"id": i, "type": "timeseries", "title": metric, "targets": targets})
    failed = 'sum(increase(drawbridge_config_reloads_total{result="failure"}[$__rate_interval]))'
    panels.append({"id": len(panels) + 1, "type": "timeseries", "title": "failed", "targets": [{"expr": failed}]})
    return {"uid": "drawbridge", "title": "drawbridge", "panels": panels}


def problems(dash):
    return dashboard.check(dash)[0]


class Dashboard(unittest.TestCase):
    def test_dashboard_with_every_panel_passes_and_counts(self):
        errors, counts = dashboard.check(good())
        self.assertEqual(errors, [])
        dash = good()
        queries = sum(len(p.get("targets", [])) for p in dash["panels"])
        self.assertEqual(counts, f"{len(dash['panels'])} panels, {queries} queries")

    def test_latency_without_exemplars_is_reported(self):
        dash = good()
        for p in dash["panels"]:
            for t in p.get("targets", []):
                t["exemplar"] = False
        self.assertIn("no request latency panel with exemplars on", problems(dash))

    def test_missing_failed_reloads_panel_is_reported(self):
        dash = good()
        dash["panels"] = [p for p in dash["panels"] if p["title"] != "failed"]
        self.assertIn(
            'no failed config reloads panel (drawbridge_config_reloads_total, result="failure")', problems(dash)
        )

    def test_missing_identity_is_reported(self):
        for key in ("uid", "title"):
            with self.subTest(key=key):
                dash = good()
                del dash[key]
                self.assertIn("no uid or title", problems(dash))

    def test_missing_promised_panel_is_reported(self):
        for what, metric in dashboard.WANTED.items():
            with self.subTest(what=what):
                dash = good()
                dash["panels"] = [p for p in dash["panels"] if p["title"] != metric]
                self.assertIn(f"no {what} panel ({metric})", problems(dash))

    def test_panel_without_queries_or_with_a_taken_id_is_reported(self):
        dash = good()
        dash["panels"][2]["id"] = dash["panels"][1]["id"]
        dash["panels"].append({"id": 99, "type": "stat", "title": "empty"})
        found = problems(dash)
        self.assertIn(f"duplicate panel id {dash['panels'][1]['id']}", found)
        self.assertIn("panel 'empty' has no queries", found)

    def test_unsound_query_is_reported(self):
        variants = [
            ("sum(rate(drawbridge_logins_total[5m])", "unbalanced brackets"),
            ('sum(rate(drawbridge_logins_total{job="x"[5m]))', "unbalanced brackets"),
            ("sum(rate(drawbridge_logins_total[5m)))", "unbalanced brackets"),
            ("sum(rate(drawbridge_provider_duration_seconds_bucket[5m]))", "bucket series without histogram_quantile"),
            (
                "histogram_quantile(0.9, sum by (provider) (rate(drawbridge_provider_duration_seconds_bucket[5m])))",
                "histogram_quantile without sum by (le)",
            ),
            (
                'sum(rate(process_cpu_seconds_total{job="drawbridge"}[5m]))',
                "not drawbridge's: process_cpu_seconds_total",
            ),
        ]
        for expr, fragment in variants:
            with self.subTest(expr=expr):
                dash = good()
                dash["panels"].append({"id": 99, "title": "extra", "targets": [{"expr": expr}]})
                found = problems(dash)
                self.assertTrue(any(fragment in p for p in found), found)

    def test_le_in_a_wider_grouping_passes(self):
        dash = good()
        expr = "histogram_quantile(0.9, sum by (provider, le) (rate(drawbridge_provider_duration_seconds_bucket[5m])))"
        dash["panels"].append({"id": 99, "title": "extra", "targets": [{"expr": expr}]})
        self.assertEqual(problems(dash), [])

    def test_missing_quantile_is_reported(self):
        for q in ("0.5", "0.99"):
            with self.subTest(q=q):
                dash = good()
                for p in dash["panels"]:
                    p["targets"] = [t for t in p.get("targets", []) if f"histogram_quantile({q}," not in t["expr"]]
                self.assertIn("no p50/p99 quantiles", problems(dash))


if __name__ == "__main__":
    unittest.main()
