"""manifests.check: each property the manifests promise, broken one way at a time."""

import os
import tempfile
import unittest

import yaml

from k8s_validate import manifests
from k8s_validate.tests.fixtures import EDGE_TOML, container, edge, of_kind, pod, service_monitor, with_toml


def problems(docs, helm=False):
    return manifests.check(docs, helm)


class ManifestChecks(unittest.TestCase):
    def assertReported(self, docs, fragment, helm=False):
        found = problems(docs, helm)
        self.assertTrue(any(fragment in p for p in found), f"{fragment!r} not among {found}")

    def test_edge_manifests_that_keep_every_promise_pass(self):
        self.assertEqual(problems(edge()), [])
        self.assertEqual(problems(edge() + [service_monitor()], helm=True), [])

    def test_no_deployment_is_reported(self):
        docs = [d for d in edge() if d["kind"] == "ConfigMap"]
        self.assertEqual(problems(docs), ["no Deployment"])

    def test_weak_security_context_is_reported(self):
        variants = [
            ("runAsNonRoot", False, "runAsNonRoot is not true"),
            ("runAsUser", 0, "runAsUser is not 65532"),
            ("readOnlyRootFilesystem", False, "readOnlyRootFilesystem is not true"),
            ("allowPrivilegeEscalation", True, "allowPrivilegeEscalation is not false"),
            ("capabilities", {"drop": ["NET_RAW"]}, "capabilities do not drop ALL"),
            ("seccompProfile", {"type": "Unconfined"}, "seccompProfile is not RuntimeDefault"),
        ]
        for key, value, fragment in variants:
            with self.subTest(key=key, value=value):
                docs = edge()
                container(docs)["securityContext"][key] = value
                self.assertReported(docs, fragment)
            with self.subTest(key=key, missing=True):
                docs = edge()
                del container(docs)["securityContext"][key]
                self.assertReported(docs, fragment)

    def test_pod_security_context_counts_where_the_container_is_silent(self):
        docs = edge()
        csc = container(docs)["securityContext"]
        pod(docs)["securityContext"] = {k: csc.pop(k) for k in ("runAsNonRoot", "runAsUser", "seccompProfile")}
        self.assertEqual(problems(docs), [])

    def test_auth_secret_file_without_its_mount_is_reported(self):
        toml = EDGE_TOML + '[session]\nkey_file = "/etc/drawbridge/auth/sess/session.key"\n'
        docs = with_toml(edge(), toml)
        self.assertReported(docs, "/etc/drawbridge/auth/sess/session.key: no secret is mounted")
        c = container(docs)
        c["volumeMounts"].append({"name": "auth-sess", "mountPath": "/etc/drawbridge/auth/sess"})
        pod(docs)["volumes"].append({"name": "auth-sess", "secret": {"secretName": "sess"}})
        self.assertEqual(problems(docs), [])
        self.assertEqual(
            manifests.auth_files(
                {"p": {"s": "${file:/etc/drawbridge/auth/gh/key}"}, "l": ["/etc/drawbridge/auth/x/y"]}
            ),
            ["/etc/drawbridge/auth/gh/key", "/etc/drawbridge/auth/x/y"],
        )

    def test_subpath_mount_is_reported(self):
        for key in ("subPath", "subPathExpr"):
            with self.subTest(key=key):
                docs = edge()
                container(docs)["volumeMounts"][1][key] = "tls.crt"
                self.assertReported(docs, "mounts /etc/drawbridge/tls with subPath")

    def test_probe_off_its_path_or_port_is_reported(self):
        variants = [
            ("livenessProbe", {"path": "/", "port": "admin"}, "livenessProbe is not an httpGet of /healthz"),
            ("readinessProbe", {"path": "/healthz", "port": "admin"}, "readinessProbe is not an httpGet of /readyz"),
            ("readinessProbe", {"path": "/readyz", "port": "gateway"}, "readinessProbe does not probe the admin port"),
            ("livenessProbe", {"path": "/healthz", "port": 8443}, "livenessProbe does not probe the admin port"),
        ]
        for probe, get, fragment in variants:
            with self.subTest(probe=probe, get=get):
                docs = edge()
                container(docs)[probe] = {"httpGet": get}
                self.assertReported(docs, fragment)
        docs = edge()
        container(docs)["livenessProbe"] = {"httpGet": {"path": "/healthz", "port": 9090}}
        self.assertEqual(problems(docs), [], "the admin port by number is the admin port")

    def test_termination_grace_not_above_prestop_and_drain_is_reported(self):
        for term in (30, 20, None):
            with self.subTest(term=term):
                docs = edge()
                if term is None:
                    del pod(docs)["terminationGracePeriodSeconds"]  # Kubernetes' default: 30
                else:
                    pod(docs)["terminationGracePeriodSeconds"] = term
                self.assertReported(docs, "<= preStop sleep 5 + grace_seconds 25")
        docs = edge()
        pod(docs)["terminationGracePeriodSeconds"] = 31
        self.assertEqual(problems(docs), [])

    def test_config_not_mounted_where_the_args_say_is_reported(self):
        variants = [
            ["run", "--config", "/etc/drawbridge/elsewhere/drawbridge.toml"],
            ["run"],  # the default path, /etc/drawbridge/drawbridge.toml, is not mounted
        ]
        for args in variants:
            with self.subTest(args=args):
                docs = edge()
                container(docs)["args"] = args
                self.assertReported(docs, "no ConfigMap with drawbridge.toml is mounted")

    def test_render_without_config_checksum_passes(self):
        # drawbridge reloads its mounted config live; rolling the pods is opt-in.
        docs = edge()
        of_kind(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"] = {}
        self.assertEqual(problems(docs, helm=True), [])
        self.assertEqual(problems(docs, helm=False), [])

    def test_addr_off_the_container_port_or_on_loopback_is_reported(self):
        variants = [
            ('addr = "0.0.0.0:8443"', 'addr = "0.0.0.0:9443"', "[listen] addr '0.0.0.0:9443' is not on container port"),
            ('addr = "0.0.0.0:8443"', 'addr = "127.0.0.1:8443"', "[listen] addr '127.0.0.1:8443' is loopback"),
            ('addr = "0.0.0.0:9090"', 'addr = "[::1]:9090"', "[admin] addr '[::1]:9090' is loopback"),
            ('addr = "0.0.0.0:9090"', 'addr = "0.0.0.0:9091"', "[admin] addr '0.0.0.0:9091' is not on container port"),
        ]
        for old, new, fragment in variants:
            with self.subTest(new=new):
                self.assertReported(with_toml(edge(), EDGE_TOML.replace(old, new)), fragment)

    def test_tls_file_outside_a_mounted_secret_is_reported(self):
        variants = [
            ('cert_file = "/etc/drawbridge/tls/tls.crt"', 'cert_file = "/etc/ssl/tls.crt"', "/etc/ssl/tls.crt"),
            (
                'key_file = "/etc/drawbridge/tls/tls.key"',
                'key_file = "/etc/drawbridge/tls/tls.key"\nclient_ca_file = "/etc/drawbridge/client-ca/ca.crt"',
                "/etc/drawbridge/client-ca/ca.crt",
            ),
            # Mounted, but from the ConfigMap, not a secret.
            (
                'key_file = "/etc/drawbridge/tls/tls.key"',
                'key_file = "/etc/drawbridge/config/tls.key"',
                "/etc/drawbridge/config/tls.key",
            ),
        ]
        for old, new, path in variants:
            with self.subTest(new=new):
                self.assertReported(with_toml(edge(), EDGE_TOML.replace(old, new)), f"{path}: no secret is mounted")

    def test_tls_listener_without_tls_section_is_reported(self):
        text = EDGE_TOML.split("[tls]")[0] + "[admin]" + EDGE_TOML.split("[admin]")[1]
        self.assertReported(with_toml(edge(), text), "TLS listener without a [tls] section")

    def test_plaintext_listener_with_tls_leftovers_is_reported(self):
        text = EDGE_TOML.replace('addr = "0.0.0.0:8443"', 'addr = "0.0.0.0:8443"\nplaintext = true')
        found = problems(with_toml(edge(), text))
        self.assertIn("Deployment drawbridge: plaintext listener with a [tls] section", found)
        self.assertIn("Deployment drawbridge: plaintext, but a TLS secret is still mounted", found)

    def test_sidecar_with_an_upstream_off_the_pod_is_reported(self):
        def sidecar(url):
            docs = with_toml(edge(), EDGE_TOML.replace("http://sync-server:8080", url))
            pod(docs)["containers"].append({"name": "sync-server", "image": "sync", "ports": []})
            return docs

        for url in ("http://sync-server:8080", "http://10.0.0.1:8080", "http://localhost"):
            with self.subTest(url=url):
                self.assertReported(sidecar(url), "is not the loopback sync server")
        for url in ("http://127.0.0.1:8080", "http://localhost:8080", "https://[::1]:8443"):
            with self.subTest(url=url):
                self.assertEqual(problems(sidecar(url)), [])

    def test_selector_that_selects_no_pods_is_reported(self):
        variants = [
            ("Deployment", "Deployment drawbridge: selector does not match the pod labels"),
            ("Service", "Service drawbridge: selects no Deployment's pods"),
            ("PodDisruptionBudget", "PDB drawbridge: selects no pods"),
        ]
        for kind, message in variants:
            with self.subTest(kind=kind):
                docs = edge()
                spec = of_kind(docs, kind)["spec"]
                spec["selector"] = {"matchLabels": {"app": "other"}} if kind != "Service" else {"app": "other"}
                self.assertIn(message, problems(docs))
        docs = edge() + [
            {
                "kind": "NetworkPolicy",
                "metadata": {"name": "np"},
                "spec": {"podSelector": {"matchLabels": {"app": "other"}}},
            }
        ]
        self.assertIn("NetworkPolicy np: selects no pods", problems(docs))

    def test_service_port_off_the_pod_or_around_drawbridge_is_reported(self):
        docs = edge()
        of_kind(docs, "Service")["spec"]["ports"][0]["targetPort"] = "https"
        self.assertIn("Service drawbridge: targetPort https is no container port", problems(docs))
        docs = edge()
        container(docs)["ports"].append({"name": "sync", "containerPort": 8080})
        of_kind(docs, "Service")["spec"]["ports"][0]["targetPort"] = "sync"
        self.assertIn("Service drawbridge: exposes the sync server around drawbridge", problems(docs))

    def test_autoscaler_without_its_deployment_or_fighting_it_is_reported(self):
        docs = edge()
        of_kind(docs, "Deployment")["spec"]["replicas"] = 2
        self.assertIn("HPA drawbridge: Deployment also sets replicas (they would fight)", problems(docs))
        docs = edge()
        of_kind(docs, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["name"] = "gone"
        self.assertIn("HPA drawbridge: no Deployment gone", problems(docs))

    def test_service_monitor_off_its_shape_is_reported(self):
        def variant(edit):
            sm = service_monitor()
            edit(sm)
            return problems(edge() + [sm], helm=True)

        def set_key(key, value):
            return lambda sm: sm.__setitem__(key, value)

        def set_spec(key, value):
            return lambda sm: sm["spec"].__setitem__(key, value)

        def set_endpoint(key, value):
            return lambda sm: sm["spec"]["endpoints"][0].__setitem__(key, value)

        variants = [
            (set_key("apiVersion", "monitoring.coreos.com/v1beta1"), "apiVersion monitoring.coreos.com/v1beta1"),
            (set_spec("podMetricsEndpoints", []), "unexpected spec.podMetricsEndpoints"),
            (set_endpoint("port", "https-typo"), "port 'https-typo' is on no selected Service"),
            (set_endpoint("path", "/stats"), "path /stats"),
            (set_spec("selector", {"matchLabels": {"app": "x"}}), "port 'metrics' is on no selected Service"),
        ]
        for edit, fragment in variants:
            with self.subTest(fragment=fragment):
                found = variant(edit)
                self.assertTrue(any(f"ServiceMonitor drawbridge: {fragment}" == p for p in found), found)

    def test_split_builtin_leaves_out_crd_kinds_only(self):
        with tempfile.TemporaryDirectory() as tmp:
            render = os.path.join(tmp, "render.yaml")
            core = os.path.join(tmp, "render.core.yaml")
            with open(render, "w") as f:
                yaml.safe_dump_all(edge() + [service_monitor()], f)
            manifests.split_builtin(render, core)
            kinds = [d["kind"] for d in manifests.load([core])]
        self.assertEqual(
            kinds, ["Deployment", "ConfigMap", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"]
        )

    def test_toml_of_reads_the_named_configmap_only(self):
        docs = edge()
        self.assertEqual(manifests.toml_of(docs, "drawbridge")["shutdown"]["grace_seconds"], 25)
        self.assertIsNone(manifests.toml_of(docs, "other"))
        of_kind(docs, "ConfigMap")["data"] = {"other.toml": ""}
        self.assertIsNone(manifests.toml_of(docs, "drawbridge"))


if __name__ == "__main__":
    unittest.main()
