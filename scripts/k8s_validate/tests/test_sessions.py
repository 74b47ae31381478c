"""sessions: rewriting only ports and file paths of a rendered config."""

import unittest

from k8s_validate import sessions

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

RENDERED = """
[listen]
addr = "0.0.0.0:8443"
plaintext = false

[tls]
cert_file = "/etc/drawbridge/tls/tls.crt"
key_file = "/etc/drawbridge/tls/tls.key"

[providers."hook"]
kind = "webhook"
url = "http://127.0.0.1:1/hook"

[session]
key_file = "/etc/drawbridge/auth/drawbridge-session/session.key"
"""


class Rewrite(unittest.TestCase):
    def test_only_the_listed_keys_change_each_in_its_own_table(self):
        out = sessions.rewrite(
            RENDERED,
            {
                ("listen", "addr"): "127.0.0.1:5000",
                ("session", "key_file"): "/tmp/k",
                ("providers.hook", "url"): sessions.replace_port("http://127.0.0.1:1/hook", 7000),
            },
        )
        before, after = tomllib.loads(RENDERED), tomllib.loads(out)
        self.assertEqual(after["listen"]["addr"], "127.0.0.1:5000")
        self.assertEqual(after["session"]["key_file"], "/tmp/k")
        self.assertEqual(after["providers"]["hook"]["url"], "http://127.0.0.1:7000/hook")
        # The TLS key_file, same key name in another table, is untouched.
        self.assertEqual(after["tls"], before["tls"])
        self.assertEqual(after["listen"]["plaintext"], before["listen"]["plaintext"])

    def test_a_key_the_render_lacks_is_an_error(self):
        with self.assertRaisesRegex(ValueError, "cluster"):
            sessions.rewrite(RENDERED, {("cluster", "redis_url"): "redis://127.0.0.1:1"})

    def test_ports_are_replaced_and_hosts_kept(self):
        self.assertEqual(sessions.replace_port("redis://127.0.0.1:1/0", 6400), "redis://127.0.0.1:6400/0")
        self.assertEqual(sessions.replace_addr_port("0.0.0.0:9090", 9191), "127.0.0.1:9191")


class Rollout(unittest.TestCase):
    def test_pods_during_a_rollout_are_replicas_plus_surge(self):
        dep = {"kind": "Deployment", "spec": {"replicas": 3, "strategy": {"rollingUpdate": {"maxSurge": 1}}}}
        self.assertEqual(sessions.pods_during_rollout([dep]), (3, 4))
