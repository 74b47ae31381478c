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

# What a passing check answers, and every example must copy over the client's own on the
# forwarded request: who the client is, and its credentials without drawbridge's session.
IDENTITY_HEADERS = (
    "x-drawbridge-user",
    "x-drawbridge-app",
    "x-drawbridge-provider",
    "x-drawbridge-permissions",
    "x-drawbridge-assertion",
    "x-auth-request-user",
    "x-auth-request-email",
    "authorization",
    "cookie",
    "sec-websocket-protocol",
)

# drawbridge as the Helm chart installs it (helm install drawbridge ... --namespace drawbridge).
SERVICE, NAMESPACE, PORT = "drawbridge", "drawbridge", 443
SERVICE_HOST = f"{SERVICE}.{NAMESPACE}.svc"

# The login API routes a browser reaches on the app's host; never the door or the aggregator.
LOGIN_PATHS = {"/auth/login", "/auth/token", "/auth/userinfo", "/auth/logout", "/auth/ticket"}

# The forward_auth.uri_from each example says drawbridge needs: the source its ingress really sends.
URI_FROM = {
    "envoy-gateway.yaml": "path",
    "traefik.yaml": "header:x-forwarded-uri",
    "ingress-nginx.yaml": "header:x-original-url",
    "nginx.conf": "header:x-original-uri",
}

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
        for ref in http.get("backendRefs", []):
            if (ref.get("name"), ref.get("namespace"), ref.get("port")) != (SERVICE, NAMESPACE, PORT):
                errors.append(f"SecurityPolicy {name}: backendRef is not the chart's Service {SERVICE_HOST}:{PORT}")
        if "headersToExtAuth" in ext:
            errors.append(f"SecurityPolicy {name}: headersToExtAuth would keep session carriers from drawbridge")
        if miss := missing_headers(http.get("headersToBackend", [])):
            errors.append(f"SecurityPolicy {name}: headersToBackend lacks {', '.join(miss)}")
        for ref in spec.get("targetRefs", []):
            if ref.get("kind") == "HTTPRoute" and ref.get("name") not in routes:
                errors.append(f"SecurityPolicy {name}: targets HTTPRoute {ref.get('name')}, not in the file")
    login = set()
    for route in find(docs, "HTTPRoute"):
        for rule in route["spec"].get("rules", []):
            if any(b.get("name") == SERVICE for b in rule.get("backendRefs", [])):
                login |= {m.get("path", {}).get("value") for m in rule.get("matches", [])}
    errors += login_route_problems("envoy-gateway.yaml", login)
    return errors


def login_route_problems(file, paths):
    """The browser routing: exactly the login API's paths go to drawbridge."""
    if paths != LOGIN_PATHS:
        return [f"{file}: routes {sorted(p for p in paths if p)} to drawbridge, not {sorted(LOGIN_PATHS)}"]
    return []


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
        if f"//{SERVICE_HOST}:{PORT}/" not in str(fa.get("address", "")):
            errors.append(f"Middleware {name}: forwardAuth.address is not the chart's Service {SERVICE_HOST}:{PORT}")
        if fa.get("trustForwardHeader", False) is not False:
            errors.append(f"Middleware {name}: trustForwardHeader would let clients choose the checked path")
        if miss := missing_headers(fa.get("authResponseHeaders", [])):
            errors.append(f"Middleware {name}: authResponseHeaders lacks {', '.join(miss)}")
    login = set()
    for ir in find(docs, "IngressRoute"):
        for route in ir["spec"]["routes"]:
            services = route.get("services", [])
            if services and all(svc.get("name") == SERVICE for svc in services):
                # The login routes: to the chart's Service, the paths named in the rule's regexp.
                ir_name = ir["metadata"]["name"]
                if any(svc.get("port") != PORT or ir["metadata"].get("namespace") != NAMESPACE for svc in services):
                    errors.append(f"IngressRoute {ir_name}: not the chart's Service {SERVICE_HOST}:{PORT}")
                match = route.get("match", "")
                if "(login|token|userinfo|logout|ticket)" in match:
                    login |= LOGIN_PATHS
                continue
            used = {m["name"] for m in route.get("middlewares", [])}
            if not used & names:
                errors.append(f"IngressRoute {ir['metadata']['name']}: a route without the forward-auth Middleware")
    errors += login_route_problems("traefik.yaml", login)
    return errors


def check_ingress_nginx(docs):
    errors = []
    ingresses = find(docs, "Ingress")
    if not ingresses:
        return ["ingress-nginx.yaml: no Ingress"]
    login = set()
    for ing in ingresses:
        name = ing["metadata"]["name"]
        ann = ing["metadata"].get("annotations") or {}
        paths = [p for rule in ing["spec"].get("rules", []) for p in rule.get("http", {}).get("paths", [])]
        backends = {(p["backend"]["service"]["name"], p["backend"]["service"]["port"].get("number")) for p in paths}
        if paths and {b[0] for b in backends} == {SERVICE}:
            # The login routes, beside drawbridge's Service (an Ingress reaches its own namespace only).
            if backends != {(SERVICE, PORT)} or ing["metadata"].get("namespace") != NAMESPACE:
                errors.append(f"Ingress {name}: not the chart's Service {SERVICE_HOST}:{PORT}")
            if ann.get("nginx.ingress.kubernetes.io/backend-protocol") != "HTTPS":
                errors.append(f"Ingress {name}: drawbridge serves TLS: backend-protocol must be HTTPS")
            login |= {p["path"] for p in paths}
            continue
        url = ann.get("nginx.ingress.kubernetes.io/auth-url", "")
        if not url.endswith(CHECK_PATH):
            errors.append(f"Ingress {name}: auth-url does not end in {CHECK_PATH}")
        if not url.startswith((f"https://{SERVICE_HOST}:{PORT}/", f"https://{SERVICE_HOST}.cluster.local:{PORT}/")):
            errors.append(f"Ingress {name}: auth-url is not the chart's Service {SERVICE_HOST}:{PORT}")
        headers = ann.get("nginx.ingress.kubernetes.io/auth-response-headers", "").split(",")
        if miss := missing_headers(headers):
            errors.append(f"Ingress {name}: auth-response-headers lacks {', '.join(miss)}")
    errors += login_route_problems("ingress-nginx.yaml", login)
    return errors


CHECKS = {
    "envoy-gateway.yaml": check_envoy,
    "traefik.yaml": check_traefik,
    "ingress-nginx.yaml": check_ingress_nginx,
}


def uri_from_problems(file, text):
    """The example names the forward_auth.uri_from its ingress needs, in a comment line."""
    want = f'uri_from = "{URI_FROM[file]}"'
    if not any(line.lstrip("# ").startswith(want) for line in text.splitlines()):
        return [f"{file}: does not say drawbridge needs {want}"]
    return []


def check_files(directory=DIR):
    """Every problem of the examples in `directory`, one line each."""
    errors = []
    for file in URI_FROM:
        path = os.path.join(directory, file)
        if not os.path.exists(path):
            errors.append(f"{path}: missing")
            continue
        with open(path) as f:
            errors += uri_from_problems(file, f.read())
        if file in CHECKS:
            errors += CHECKS[file](load([path]))
    return errors


def nginx_test_config(snippet, work, ca_bundle):
    """A whole nginx.conf around the snippet, every path under `work`, resolvable names."""
    text = (
        snippet.replace(f"https://{SERVICE_HOST}.cluster.local", "https://127.0.0.1:8443")
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
