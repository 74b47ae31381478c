"""The forward-auth examples in deploy/forward-auth/: each one asks drawbridge's /auth/check and
hands every identity header on.

Only the ingress-nginx Ingress is a built-in kind with a schema kubernetes-validate can check; the
Envoy Gateway (SecurityPolicy, BackendTLSPolicy, HTTPRoute) and Traefik (Middleware, IngressRoute)
kinds are CRDs without one offline, so they are parsed as YAML and their fields checked here.
The nginx snippet is checked with `nginx -t` inside a throwaway main config (tests/forward_auth.rs
also runs it through a real nginx).
"""

import os
import subprocess
import tempfile

from k8s_validate.manifests import find, load
from k8s_validate.runner import Outcome

DIR = "deploy/forward-auth"
CHECK_PATH = "/auth/check"

# What a passing check answers, and every example must hand on to the sync server.
IDENTITY_HEADERS = (
    "x-drawbridge-user",
    "x-drawbridge-app",
    "x-drawbridge-provider",
    "x-drawbridge-permissions",
    "x-drawbridge-assertion",
)

# Files whose kinds kubernetes-validate has a schema for.
BUILTIN_FILES = ("ingress-nginx.yaml",)

# Where Debian keeps a CA bundle, for the snippet's proxy_ssl_trusted_certificate under `nginx -t`.
CA_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")


def lower(names):
    return {n.strip().lower() for n in names if n.strip()}


def missing_headers(names):
    """The identity headers not among `names` (case-insensitive)."""
    have = lower(names)
    return [h for h in IDENTITY_HEADERS if h not in have]


def check_envoy(docs):
    errors = []
    policies = find(docs, "SecurityPolicy")
    if not policies:
        return ["envoy-gateway.yaml: no SecurityPolicy"]
    routes = {r["metadata"]["name"] for r in find(docs, "HTTPRoute")}
    for sp in policies:
        name = sp["metadata"]["name"]
        spec = sp.get("spec", {})
        ext = spec.get("extAuth") or {}
        http = ext.get("http") or {}
        if ext.get("failOpen", False) is not False:
            errors.append(f"SecurityPolicy {name}: failOpen must be false")
        if http.get("path") != CHECK_PATH:
            errors.append(f"SecurityPolicy {name}: extAuth.http.path is not {CHECK_PATH}")
        if not http.get("backendRefs"):
            errors.append(f"SecurityPolicy {name}: extAuth.http has no backendRefs")
        if "headersToExtAuth" in ext:
            errors.append(f"SecurityPolicy {name}: headersToExtAuth would keep session carriers from drawbridge")
        if miss := missing_headers(http.get("headersToBackend", [])):
            errors.append(f"SecurityPolicy {name}: headersToBackend lacks {', '.join(miss)}")
        for ref in spec.get("targetRefs", []):
            if ref.get("kind") == "HTTPRoute" and ref.get("name") not in routes:
                errors.append(f"SecurityPolicy {name}: targets HTTPRoute {ref.get('name')}, not in the file")
    return errors


def check_traefik(docs):
    errors = []
    mws = find(docs, "Middleware")
    if not mws:
        return ["traefik.yaml: no Middleware"]
    names = set()
    for mw in mws:
        name = mw["metadata"]["name"]
        names.add(name)
        fa = (mw.get("spec") or {}).get("forwardAuth") or {}
        if not str(fa.get("address", "")).endswith(CHECK_PATH):
            errors.append(f"Middleware {name}: forwardAuth.address does not end in {CHECK_PATH}")
        if fa.get("trustForwardHeader", False) is not False:
            errors.append(f"Middleware {name}: trustForwardHeader would let clients choose the checked path")
        if miss := missing_headers(fa.get("authResponseHeaders", [])):
            errors.append(f"Middleware {name}: authResponseHeaders lacks {', '.join(miss)}")
    for ir in find(docs, "IngressRoute"):
        for route in ir["spec"]["routes"]:
            used = {m["name"] for m in route.get("middlewares", [])}
            if not used & names:
                errors.append(f"IngressRoute {ir['metadata']['name']}: a route without the forward-auth Middleware")
    return errors


def check_ingress_nginx(docs):
    errors = []
    ingresses = find(docs, "Ingress")
    if not ingresses:
        return ["ingress-nginx.yaml: no Ingress"]
    for ing in ingresses:
        name = ing["metadata"]["name"]
        ann = ing["metadata"].get("annotations") or {}
        url = ann.get("nginx.ingress.kubernetes.io/auth-url", "")
        if not url.endswith(CHECK_PATH):
            errors.append(f"Ingress {name}: auth-url does not end in {CHECK_PATH}")
        headers = ann.get("nginx.ingress.kubernetes.io/auth-response-headers", "").split(",")
        if miss := missing_headers(headers):
            errors.append(f"Ingress {name}: auth-response-headers lacks {', '.join(miss)}")
    return errors


CHECKS = {
    "envoy-gateway.yaml": check_envoy,
    "traefik.yaml": check_traefik,
    "ingress-nginx.yaml": check_ingress_nginx,
}


def check_files(directory=DIR):
    """Every problem of the YAML examples in `directory`, one line each."""
    errors = []
    for file, fn in CHECKS.items():
        path = os.path.join(directory, file)
        if not os.path.exists(path):
            errors.append(f"{path}: missing")
            continue
        errors += fn(load([path]))
    return errors


def nginx_test_config(snippet, work, ca_bundle):
    """A whole nginx.conf around the snippet, every path under `work`, resolvable names."""
    text = (
        snippet.replace("https://drawbridge.internal:8443", "https://127.0.0.1:8443")
        .replace("http://sync-server:8080", "http://127.0.0.1:8080")
        .replace("/etc/nginx/drawbridge-ca.crt", ca_bundle)
    )
    temp = "".join(
        f"    {kind}_temp_path {os.path.join(work, kind)};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"pid {os.path.join(work, 'nginx.pid')};\n"
        f"error_log {os.path.join(work, 'error.log')};\n"
        "events {}\n"
        f"http {{\n    access_log off;\n{temp}{text}\n}}\n"
    )


SNIPPET = os.path.join(DIR, "nginx.conf")


def nginx_t(nginx, snippet_path=SNIPPET):
    """`nginx -t` on the snippet inside a throwaway main config."""
    ca = next((c for c in CA_BUNDLES if os.path.exists(c)), None)
    if ca is None:
        return Outcome(False, f"no CA bundle at any of {', '.join(CA_BUNDLES)} (install ca-certificates)")
    with open(snippet_path) as f:
        snippet = f.read()
    with tempfile.TemporaryDirectory(prefix="drawbridge-nginx.") as work:
        conf = os.path.join(work, "nginx.conf")
        with open(conf, "w") as f:
            f.write(nginx_test_config(snippet, work, ca))
        argv = [nginx, "-t", "-q", "-p", work, "-c", conf, "-e", os.path.join(work, "error.log")]
        proc = subprocess.run(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False
        )
        return Outcome(proc.returncode == 0, proc.stdout)
