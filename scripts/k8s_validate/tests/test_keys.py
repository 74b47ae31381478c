"""keys: from a config key to the chart value that sets it, and back to where the TOML holds it."""

import unittest

from k8s_validate import keys


class ValuePath(unittest.TestCase):
    def test_plain_sections_are_set_under_config_with_their_own_names(self):
        self.assertEqual(keys.value_path("limits.idle_timeout_ms"), ["config", "limits", "idle_timeout_ms"])
        self.assertEqual(keys.value_path("rate_limit.per_second"), ["config", "rate_limit", "per_second"])

    def test_auth_sections_are_set_through_their_camel_case_values(self):
        self.assertEqual(keys.value_path("session.revalidate_seconds"), ["session", "revalidateSeconds"])
        self.assertEqual(keys.value_path("forward_auth.signin_url"), ["forwardAuth", "signinUrl"])

    def test_cluster_keys_map_to_the_cluster_values(self):
        self.assertEqual(keys.value_path("cluster.redis_url"), ["cluster", "redis", "url"])
        self.assertEqual(keys.value_path("cluster.command_timeout_ms"), ["cluster", "commandTimeoutMs"])

    def test_provider_keys_map_to_a_named_provider_or_group(self):
        self.assertEqual(
            keys.value_path("providers.<jwt>.profile_claims.email"), ["providers", "j", "profileClaims", "email"]
        )
        self.assertEqual(keys.value_path("providers.<group>.members"), ["groups", "g", "members"])
        self.assertEqual(keys.toml_path("providers.<group>.members"), ["providers", "g", "members"])

    def test_an_unknown_section_maps_to_nothing(self):
        self.assertIsNone(keys.value_path("bogus.key"))


class RenderArgs(unittest.TestCase):
    def test_a_key_gets_its_sample_and_its_context(self):
        args, want = keys.render_args("native.code_app", "a")
        self.assertEqual(want, "a")
        self.assertIn("--set-json", args)
        joined = " ".join(args)
        self.assertIn('native={"codeProvider": "w", "codeApp": "a"}', joined)
        self.assertIn('providers={"w":', joined)

    def test_a_chart_owned_key_is_set_through_its_own_value(self):
        args, want = keys.render_args("listen.addr", None)
        self.assertEqual(args, ["--set", "ports.gateway=8500"])
        self.assertEqual(want, "0.0.0.0:8500")

    def test_a_secret_reference_reads_the_mounted_file(self):
        _, want = keys.render_args("aggregator.signing_secret", keys.SAMPLES["aggregator.signing_secret"])
        self.assertEqual(want, "${file:/etc/drawbridge/auth/aggregator/signing-secret}")


class Samples(unittest.TestCase):
    def test_a_key_without_a_sample_fails_naming_where_to_add_it(self):
        outcome = keys.check_key(None, "drawbridge", None, "listen.brand_new", 1, "/nonexistent")
        self.assertFalse(outcome.ok)
        self.assertIn("listen.brand_new (default 1) has no sample value", outcome.output)
        self.assertIn("SAMPLES in scripts/k8s_validate/keys.py", outcome.output)

    def test_samples_of_keys_drawbridge_dropped_are_listed(self):
        self.assertIn("listen.backlog", keys.stale_samples([("listen.addr", "0.0.0.0:8443")]))
        self.assertEqual(keys.stale_samples([(k, None) for k in keys.SAMPLES]), [])
