"""forward_auth: the shipped examples pass, and each promise broken one way at a time is reported."""

import copy
import os
import shutil
import tempfile
import unittest

from k8s_validate import forward_auth
from k8s_validate.manifests import load

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def shipped(file):
    return load([os.path.join(ROOT, forward_auth.DIR, file)])


class ForwardAuthChecks(unittest.TestCase):
    def test_shipped_examples_pass(self):
        self.assertEqual(forward_auth.check_files(os.path.join(ROOT, forward_auth.DIR)), [])

    def test_envoy_policy_that_fails_open_or_drops_a_header_is_reported(self):
        docs = shipped("envoy-gateway.yaml")
        for change, fragment in (
            (lambda ext: ext.update(failOpen=True), "failOpen must be false"),
            (lambda ext: ext["http"].update(path="/auth"), "extAuth.http.path"),
            (lambda ext: ext["http"]["headersToBackend"].remove("x-drawbridge-user"), "lacks x-drawbridge-user"),
            (lambda ext: ext.update(headersToExtAuth=["authorization"]), "headersToExtAuth"),
        ):
            broken = copy.deepcopy(docs)
            change(broken[0]["spec"]["extAuth"])
            found = forward_auth.check_envoy(broken)
            self.assertTrue(any(fragment in p for p in found), f"{fragment!r} not among {found}")

    def test_traefik_middleware_that_trusts_clients_or_drops_a_header_is_reported(self):
        docs = shipped("traefik.yaml")
        for change, fragment in (
            (lambda fa: fa.update(trustForwardHeader=True), "trustForwardHeader"),
            (lambda fa: fa.update(address="https://drawbridge:8443/"), "does not end in /auth/check"),
            (lambda fa: fa["authResponseHeaders"].remove("x-drawbridge-assertion"), "lacks x-drawbridge-assertion"),
        ):
            broken = copy.deepcopy(docs)
            change(broken[0]["spec"]["forwardAuth"])
            found = forward_auth.check_traefik(broken)
            self.assertTrue(any(fragment in p for p in found), f"{fragment!r} not among {found}")
        broken = copy.deepcopy(docs)
        broken[1]["spec"]["routes"][0]["middlewares"] = []
        self.assertTrue(any("without the forward-auth" in p for p in forward_auth.check_traefik(broken)))

    def test_ingress_without_auth_url_or_headers_is_reported(self):
        docs = shipped("ingress-nginx.yaml")
        broken = copy.deepcopy(docs)
        del broken[0]["metadata"]["annotations"]["nginx.ingress.kubernetes.io/auth-url"]
        self.assertTrue(any("auth-url" in p for p in forward_auth.check_ingress_nginx(broken)))
        broken = copy.deepcopy(docs)
        broken[0]["metadata"]["annotations"]["nginx.ingress.kubernetes.io/auth-response-headers"] = "x-drawbridge-user"
        self.assertTrue(any("lacks x-drawbridge-app" in p for p in forward_auth.check_ingress_nginx(broken)))

    def test_examples_off_the_charts_service_or_login_routes_are_reported(self):
        docs = shipped("envoy-gateway.yaml")
        broken = copy.deepcopy(docs)
        broken[0]["spec"]["extAuth"]["http"]["backendRefs"][0]["port"] = 8443
        self.assertTrue(any("chart's Service" in p for p in forward_auth.check_envoy(broken)))
        broken = copy.deepcopy(docs)
        login = next(d for d in broken if d["metadata"]["name"] == "drawbridge-login")
        login["spec"]["rules"][0]["matches"].append({"path": {"type": "PathPrefix", "value": "/auth/check"}})
        self.assertTrue(any("routes" in p for p in forward_auth.check_envoy(broken)))
        docs = shipped("traefik.yaml")
        broken = copy.deepcopy(docs)
        broken[0]["spec"]["forwardAuth"]["address"] = "https://drawbridge.sync.svc:8443/auth/check"
        self.assertTrue(any("chart's Service" in p for p in forward_auth.check_traefik(broken)))
        docs = shipped("ingress-nginx.yaml")
        broken = copy.deepcopy(docs)
        broken[1]["spec"]["rules"][0]["http"]["paths"].pop()
        self.assertTrue(any("routes" in p for p in forward_auth.check_ingress_nginx(broken)))
        broken = copy.deepcopy(docs)
        del broken[1]["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"]
        self.assertTrue(any("backend-protocol" in p for p in forward_auth.check_ingress_nginx(broken)))

    def test_example_without_its_uri_from_is_reported(self):
        good = '#   uri_from = "header:x-forwarded-uri"\n'
        self.assertEqual(forward_auth.uri_from_problems("traefik.yaml", good), [])
        for text in ("", '#   uri_from = "path"\n'):
            self.assertTrue(forward_auth.uri_from_problems("traefik.yaml", text))

    @unittest.skipUnless(shutil.which("nginx") or os.path.exists("/usr/sbin/nginx"), "nginx not installed")
    def test_nginx_snippet_passes_nginx_t_and_a_broken_one_fails(self):
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        snippet = os.path.join(ROOT, forward_auth.DIR, "nginx.conf")
        outcome = forward_auth.nginx_t(nginx, snippet)
        self.assertTrue(outcome.ok, outcome.output)
        with open(snippet) as f:
            text = f.read()
        broken = os.path.join(self.tmp(), "nginx.conf")
        with open(broken, "w") as f:
            f.write(text.replace("auth_request /_drawbridge/check;", "auth_request;"))
        self.assertFalse(forward_auth.nginx_t(nginx, broken).ok)

    def tmp(self):
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d)
        return d
