"""Sessions across the pods of a render, with real drawbridge processes.

A render of the chart is run as its pods would run it: its drawbridge.toml, with the session key the
chart would put in its Secret, in as many drawbridge processes as the Deployment runs during a
rolling update (replicas + maxSurge), with one real redis-server when the render is in cluster mode.
Only ports and file paths are rewritten. A session minted on the first process must be accepted on
every other; in cluster mode a logout on the first must be honoured on every other.

`helm template` has no cluster, so the chart leaves its session key Secret out of the render (see
templates/session-key.yaml). The key comes from the chart's own "drawbridge.newSessionKey"
template instead, rendered in a scratch chart: the same code that fills the Secret on install.
"""

import contextlib
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from k8s_validate import configs, manifests
from k8s_validate.runner import Outcome

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

CHART = "helm/drawbridge"
# A webhook provider for the logins (the chart has none by default; without one every login is
# denied). Its URL's port is rewritten to the local webhook's.
PROVIDER = ["--set", "providers.hook.kind=webhook", "--set", "providers.hook.url=http://127.0.0.1:1/hook"]
# The two shapes: the default values, and three replicas in cluster mode (its Redis port rewritten).
SHAPES = (
    ("default values", []),
    (
        "replicaCount=3, cluster mode",
        [
            "--set",
            "replicaCount=3",
            "--set",
            "cluster.enabled=true",
            "--set",
            "cluster.redis.url=redis://127.0.0.1:1/0",
        ],
    ),
)
DEADLINE = 20.0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, fn, deadline=DEADLINE):
    """Polls `fn` until it returns a true value, or raises naming `what`."""
    end = time.monotonic() + deadline
    while True:
        got = fn()
        if got:
            return got
        if time.monotonic() > end:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


def generated_key(tools, work, algorithm="EdDSA"):
    """A session key made by the chart's own template, as the Secret would hold it."""
    scratch = os.path.join(work, "keychart")
    os.makedirs(os.path.join(scratch, "templates"), exist_ok=True)
    with open(os.path.join(scratch, "Chart.yaml"), "w") as f:
        f.write("apiVersion: v2\nname: keychart\nversion: 0.0.1\n")
    shutil.copy(os.path.join(CHART, "templates", "_helpers.tpl"), os.path.join(scratch, "templates"))
    with open(os.path.join(scratch, "templates", "key.yaml"), "w") as f:
        f.write('key: {{ include "drawbridge.newSessionKey" ' + json.dumps(algorithm) + " | toJson }}\n")
    out = subprocess.run(
        [tools.helm, "template", "k", scratch], stdin=subprocess.DEVNULL, capture_output=True, text=True, check=True
    ).stdout
    (doc,) = [d for d in manifests.yaml.safe_load_all(out) if d]
    return doc["key"]


class Hook(BaseHTTPRequestHandler):
    """The Ditto webhook contract: every token is user "u", for an hour."""

    def do_POST(self):  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers.get("content-length") or 0))
        body = json.dumps(
            {
                "authenticated": True,
                "expirationSeconds": 3600,
                "userID": "u",
                "permissions": {"read": {"everything": True, "queriesByCollection": {}}},
            }
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def webhook():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def redis_server(work):
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", work],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def pong():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    return s.recv(16).startswith(b"+PONG")
            except OSError:
                return False

        wait_for("redis-server", pong)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def self_signed(work):
    """A certificate and key for 127.0.0.1, for the TLS listener the render asks for."""
    cert, key = os.path.join(work, "tls.crt"), os.path.join(work, "tls.key")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1"]
        + ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=True,
    )
    return cert, key


def rewrite(text, replacements):
    """`text` with each `key = "old"` line's value replaced: {(table, key): new}. Only the listed keys
    change; each must be found exactly once."""
    out, table, seen = [], None, set()
    for line in text.splitlines():
        m = re.match(r"^\s*\[([^\]]+)\]\s*$", line)
        if m:
            table = m.group(1).replace('"', "")
        kv = re.match(r"^(\s*)([A-Za-z_]+) = (.*)$", line)
        if kv and (table, kv.group(2)) in replacements:
            seen.add((table, kv.group(2)))
            line = f"{kv.group(1)}{kv.group(2)} = {json.dumps(replacements[(table, kv.group(2))])}"
        out.append(line)
    missing = set(replacements) - seen
    if missing:
        raise ValueError(f"not in the rendered config: {sorted(missing)}")
    return "\n".join(out) + "\n"


def replace_port(url, port):
    return re.sub(r":\d+(/|$)", f":{port}\\1", url, count=1)


def replace_addr_port(addr, port):
    return re.sub(r"^.*:\d+$", f"127.0.0.1:{port}", addr)


class Gateway:
    """One drawbridge process on its own ports."""

    def __init__(self, bin_, config):
        self.config = config
        with open(config, "rb") as f:
            cfg = tomllib.load(f)
        self.url = f"{'http' if cfg['listen'].get('plaintext') else 'https'}://{cfg['listen']['addr']}"
        self.admin = f"http://{cfg['admin']['addr']}"
        self.log = open(config + ".log", "w")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [bin_, "run", "--config", config], stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT
        )

    def ready(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"drawbridge exited with {self.proc.returncode}:\n{self.output()}")
        return request(self.admin + "/readyz")[0] == 200

    def output(self):
        self.log.flush()
        with open(self.config + ".log") as f:
            return f.read()[-3000:]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


INSECURE = ssl.create_default_context()
INSECURE.check_hostname = False
INSECURE.verify_mode = ssl.CERT_NONE


def request(url, body=None, token=None):
    """(status, parsed JSON body or None); a refused connection is status 0."""
    headers = {"content-type": "application/json"} if body is not None else {}
    if token:
        headers["authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else (b"" if token and "/logout" in url else None)
    req = urllib.request.Request(url, data=data, headers=headers, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=5, context=INSECURE) as r:
            raw = r.read()
            is_json = r.headers.get("content-type", "").startswith("application/json")
            return r.status, json.loads(raw) if raw and is_json else None
    except urllib.error.HTTPError as e:
        return e.code, None
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, None


def pods_during_rollout(docs):
    """replicas + maxSurge of the render's Deployment: the pods that serve at once during a rollout."""
    (dep,) = manifests.find(docs, "Deployment")
    replicas = int(dep["spec"].get("replicas", 1))
    surge = dep["spec"].get("strategy", {}).get("rollingUpdate", {}).get("maxSurge", 0)
    return replicas, replicas + int(surge)


def run_shape(tools, bin_, work, vargs):
    """Renders the chart with `vargs` and checks sessions across its pods; an Outcome."""
    proc = subprocess.run(
        [tools.helm, "template", "drawbridge", CHART, "--namespace", "drawbridge", *PROVIDER, *vargs],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        return Outcome(False, proc.stderr)
    render = os.path.join(work, "render.yaml")
    with open(render, "w") as f:
        f.write(proc.stdout)
    docs = manifests.load([render])
    (toml_path,) = configs.extract(work, [render])
    with open(toml_path) as f:
        text = f.read()
    cfg = tomllib.loads(text)
    key_file = cfg.get("session", {}).get("key_file")
    if not key_file:
        return Outcome(False, "the rendered config has no session.key_file: each pod would sign with its own key")
    replicas, n = pods_during_rollout(docs)
    key = os.path.join(work, "session.key")
    with open(key, "w") as f:
        f.write(generated_key(tools, work, cfg["session"].get("algorithm", "EdDSA")))
    cert, tls_key = self_signed(work)
    cluster = "cluster" in cfg
    with contextlib.ExitStack() as stack:
        hook_port = stack.enter_context(webhook())
        redis_port = stack.enter_context(redis_server(work)) if cluster else None
        gws = []
        for i in range(n):
            repl = {
                ("listen", "addr"): replace_addr_port(cfg["listen"]["addr"], free_port()),
                ("admin", "addr"): replace_addr_port(cfg["admin"]["addr"], free_port()),
                ("session", "key_file"): key,
                ("providers.hook", "url"): replace_port(cfg["providers"]["hook"]["url"], hook_port),
            }
            if not cfg["listen"].get("plaintext"):
                repl[("tls", "cert_file")] = cert
                repl[("tls", "key_file")] = tls_key
            if cluster:
                repl[("cluster", "redis_url")] = replace_port(cfg["cluster"]["redis_url"], redis_port)
            path = os.path.join(work, f"pod-{i}.toml")
            with open(path, "w") as f:
                f.write(rewrite(text, repl))
            gw = Gateway(bin_, path)
            stack.callback(gw.stop)
            gws.append(gw)
        for i, gw in enumerate(gws):
            wait_for(f"pod {i} ready", gw.ready)
        return sessions_cross(gws, cluster, replicas)


def sessions_cross(gws, cluster, replicas):
    first, others = gws[0], gws[1:]
    status, body = request(first.url + "/auth/login", {"appID": "app", "provider": "hook", "token": "t"})
    if status != 200 or not body or not body.get("sessionToken"):
        return Outcome(False, f"login on pod 0 answered {status}:\n{first.output()}")
    token = body["sessionToken"]
    problems = []
    for i, gw in enumerate(others, 1):
        status, info = request(gw.url + "/auth/userinfo", token=token)
        if status != 200 or (info or {}).get("userID") != "u":
            problems.append(f"pod {i} refused the session minted on pod 0: {status}")
    note = f"{replicas} replica(s): {len(gws)} drawbridge processes (replicas + maxSurge)"
    if not cluster:
        # Without cluster mode a logout stays on its pod; the chart allows that only at one replica.
        return Outcome.of_problems(problems, note)
    status, _ = request(first.url + "/auth/logout", token=token)
    if status not in (200, 204):
        return Outcome(False, f"logout on pod 0 answered {status}")
    for i, gw in enumerate(others, 1):
        try:
            wait_for(
                f"pod {i} to honour the logout", lambda gw=gw: request(gw.url + "/auth/userinfo", token=token)[0] == 401
            )
        except TimeoutError as e:
            problems.append(str(e))
    return Outcome.of_problems(problems, note)


def check_shape(tools, bin_, vargs):
    work = tempfile.mkdtemp(prefix="drawbridge-sessions.")
    try:
        return run_shape(tools, bin_, work, vargs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
