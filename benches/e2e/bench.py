"""End-to-end benchmark: the sync server direct, through HAProxy, through nginx, and through drawbridge,
on 127.0.0.1. HAProxy terminates TLS and relays with no authentication: the floor any TLS proxy pays.

Started by benches/e2e/run.sh, which installs the tools and builds the binaries first. Everything
listens on 127.0.0.1; every load run is bounded in time or count. Layout on the 2-core machine:

  core 0   the proxy under test (drawbridge, HAProxy or nginx, one worker or thread each); idle in the
           direct column
  core 1   the load generator (wrk, e2e-load), the demo sync server and the provider webhook

Each point is measured REPS times, the targets interleaved, and the median is reported.
Before each measurement the harness waits (up to 20 s, 2 minutes in all) for the machine to be
quiet: both cores together under 10 % busy for half a second. On a shared machine, E2E_NICE=-19
gives the benchmark's processes priority over everything else.
Writes the raw runs and medians to --out (JSON) and prints the table BENCHMARKS.md carries.
"""

import argparse
import json
import os
import re
import signal
import socket
import ssl
import statistics
import shutil
import subprocess
import sys
import time
import urllib.request
import resource

CORE_PROXY = "0"
CORE_LOAD = "1"
# E2E_NICE=-10 runs every process of the benchmark at that priority, for a machine that is not idle.
NICE = ["nice", "-n", os.environ["E2E_NICE"]] if os.environ.get("E2E_NICE") else []
HERE = os.path.dirname(os.path.abspath(__file__))

# (row id, label, unit, better)
ROWS = [
    ("login_hit_rps", "auth check / login, cache hit (32 conns)", "req/s", "higher"),
    ("login_miss_rps", "auth check / login, cache miss (32 conns)", "req/s", "higher"),
    ("check_hit_rps", "auth check, no session minted, cache hit (32 conns)", "req/s", "higher"),
    ("login_storm_rps", "login storm: 5,000 clients, a fresh TLS connection each, 64 in flight, cache warm",
     "req/s", "higher"),
    ("http_rps", "proxied GET /api/items (32 conns)", "req/s", "higher"),
    ("http_p50_us", "proxied GET p50 (1 conn)", "µs", "lower"),
    ("http_p99_us", "proxied GET p99 (1 conn)", "µs", "lower"),
    ("h2_rps", "proxied GET over HTTP/2 (h2load, 32 conns × 4 streams)", "req/s", "higher"),
    ("ws_rtt_p50_us", "websocket echo 1 KiB p50", "µs", "lower"),
    ("ws_rtt_p99_us", "websocket echo 1 KiB p99", "µs", "lower"),
    ("ws_tput_mib_s", "websocket echo 64 KiB throughput", "MiB/s", "higher"),
    ("idle_kib_per_ws", "idle websocket, RSS growth per connection", "KiB", "lower"),
    ("decision_bytes", "RSS per cached decision (100,000 distinct tokens logged in)", "B", "lower"),
    ("verified_bytes", "RSS per session the forward-auth door remembers (10,000 sessions checked)", "B", "lower"),
    ("tls_hs_per_s", "full TLS handshakes", "1/s", "higher"),
    ("storm_open_s", "reconnect storm: 5,000 websockets at once, time until all open", "s", "lower"),
    ("storm_p99_ms", "reconnect storm: connect start to 101, p99", "ms", "lower"),
    # Diagnostics: the websocket rows again with the proxy moved onto the load generator's core.
    ("ws_rtt_p50_us_core1", "websocket echo 1 KiB p50, proxy on core 1", "µs", "lower"),
    ("ws_tput_mib_s_core1", "websocket echo 64 KiB throughput, proxy on core 1", "MiB/s", "higher"),
]
DIAGNOSTIC = {"ws_rtt_p50_us_core1", "ws_tput_mib_s_core1"}
# The forward-auth scenario (--only forward_auth), rows added only when it runs so the other runs'
# tables and plots stay as they are. nginx's own auth_request check (proxy_cache as its decision
# cache) is the baseline; direct is the webhook itself.
FORWARD_AUTH_ROWS = [
    ("fwd_token_rps", "forward-auth check, provider token, cache hit (32 conns)", "req/s", "higher"),
    ("fwd_session_rps", "forward-auth check, drawbridge session (32 conns)", "req/s", "higher"),
    ("fwd_session_p50_us", "forward-auth check, drawbridge session p50 (1 conn)", "µs", "lower"),
]
TARGETS = ["direct", "haproxy", "nginx", "drawbridge"]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


GIVEN_PORTS = set()


def free_port():
    """A port nothing listens on now and that this run has not handed out before: the kernel may
    offer a closed port again before the process it was picked for has bound it."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in GIVEN_PORTS:
            GIVEN_PORTS.add(port)
            return port


def wait_port(port, deadline_s=20):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {deadline_s}s")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def children(pid):
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def tree_rss_kib(pid):
    """RSS of a process and its children (nginx: master plus worker)."""
    return rss_kib(pid) + sum(rss_kib(c) for c in children(pid))


class Proc:
    """A process this harness started, pinned to one core; stopped by its own pid only."""

    def __init__(self, name, core, argv, logdir, **kw):
        self.name = name
        self.log_path = os.path.join(logdir, f"{name}.log")
        self.logf = open(self.log_path, "ab")
        self.p = subprocess.Popen(
            ["taskset", "-c", core] + NICE + argv,
            stdout=self.logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            **kw,
        )

    @property
    def pid(self):
        return self.p.pid

    def stop(self, sig=signal.SIGTERM):
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.logf.close()


class Stack:
    """The demo sync server, drawbridge, HAProxy and nginx, all pointing at one sync server and one
    webhook."""

    def __init__(self, args, work, hook_port, tag):
        self.args, self.work, self.hook_port = args, work, hook_port
        logdir = os.path.join(work, "logs")
        # The demo: its sync server is the upstream for everyone; its own gateway stays idle.
        demo_port, demo_admin = free_port(), free_port()
        self.demo = Proc(
            f"demo-{tag}",
            CORE_LOAD,
            [args.drawbridge, "demo", "--addr", f"127.0.0.1:{demo_port}", "--admin-addr", f"127.0.0.1:{demo_admin}"],
            logdir,
        )
        self.sync_port = self._sync_port()
        self.db_port, db_admin = free_port(), free_port()
        self.db_admin = db_admin
        self.nginx_port = free_port()
        self.haproxy_port = free_port()
        fill = {
            "@WORK@": work,
            "@SYNC_PORT@": str(self.sync_port),
            "@HOOK_PORT@": str(hook_port),
            "@DB_PORT@": str(self.db_port),
            "@DB_ADMIN_PORT@": str(db_admin),
            "@NGINX_PORT@": str(self.nginx_port),
            "@HAPROXY_PORT@": str(self.haproxy_port),
            # Two descriptors per proxied connection, within the same limit nginx gets.
            "@HAPROXY_MAXCONN@": str((args.nofile - 200) // 2),
        }
        db_conf = render(os.path.join(HERE, "drawbridge.toml.in"), os.path.join(work, "drawbridge.toml"), fill)
        ngx_conf = render(os.path.join(HERE, "nginx.conf.in"), os.path.join(work, "nginx", "nginx.conf"), fill)
        hap_conf = render(os.path.join(HERE, "haproxy.cfg.in"), os.path.join(work, f"haproxy-{tag}.cfg"), fill)
        self.drawbridge = Proc(f"drawbridge-{tag}", CORE_PROXY, [args.drawbridge, "run", "--config", db_conf], logdir)
        self.nginx = Proc(
            f"nginx-{tag}",
            CORE_PROXY,
            ["nginx", "-p", os.path.join(work, "nginx"), "-c", ngx_conf, "-g", "daemon off;"],
            logdir,
        )
        # -db: in the foreground, one process (no master), so its pid is the one that relays.
        self.haproxy = Proc(f"haproxy-{tag}", CORE_PROXY, ["haproxy", "-db", "-f", hap_conf], logdir)
        wait_port(self.db_port)
        wait_port(self.nginx_port)
        wait_port(self.haproxy_port)
        wait_port(self.sync_port)
        self.session = login(self.db_port, "ws-token")

    def _sync_port(self):
        end = time.monotonic() + 30
        while time.monotonic() < end:
            with open(self.demo.log_path, errors="replace") as f:
                m = re.search(r"sync\s+http://127\.0\.0\.1:(\d+)", f.read())
            if m:
                return int(m.group(1))
            if self.demo.p.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"the demo did not print its sync server address; see {self.demo.log_path}")

    def stop(self):
        self.haproxy.stop()
        self.nginx.stop()
        self.drawbridge.stop()
        self.demo.stop()

    # Where each target is reached, per kind of request.
    def http_base(self, target):
        return {
            "direct": f"http://127.0.0.1:{self.sync_port}",
            "haproxy": f"https://127.0.0.1:{self.haproxy_port}",
            "nginx": f"https://127.0.0.1:{self.nginx_port}",
            "drawbridge": f"https://127.0.0.1:{self.db_port}",
        }[target]

    def ws(self, target):
        """(url, bearer): nginx checks the provider token; drawbridge wants its session; HAProxy
        checks nothing."""
        return {
            "direct": (f"ws://127.0.0.1:{self.sync_port}/sync", None),
            "haproxy": (f"wss://127.0.0.1:{self.haproxy_port}/sync", None),
            "nginx": (f"wss://127.0.0.1:{self.nginx_port}/sync", "ws-token"),
            "drawbridge": (f"wss://127.0.0.1:{self.db_port}/sync", self.session),
        }[target]

    def pid(self, target):
        return {
            "direct": self.demo.pid,
            "haproxy": self.haproxy.pid,
            "nginx": self.nginx.pid,
            "drawbridge": self.drawbridge.pid,
        }[target]

    def port(self, target):
        """The TLS port of a proxy."""
        return {"haproxy": self.haproxy_port, "nginx": self.nginx_port, "drawbridge": self.db_port}[target]


def render(src, dst, fill):
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    with open(src) as f:
        text = f.read()
    for k, v in fill.items():
        text = text.replace(k, v)
    with open(dst, "w") as f:
        f.write(text)
    return dst


def insecure():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def login(db_port, token):
    body = json.dumps({"appID": "bench-app", "provider": "bench", "token": token}).encode()
    req = urllib.request.Request(
        f"https://127.0.0.1:{db_port}/auth/login", data=body, headers={"content-type": "application/json"}
    )
    end = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(req, context=insecure(), timeout=5) as r:
                return json.load(r)["sessionToken"]
        except Exception:
            if time.monotonic() > end:
                raise
            time.sleep(0.1)


def get(url, headers=None, timeout=5):
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, context=insecure(), timeout=timeout) as r:
        return r.status, r.read()


def webhook_calls(hook_port):
    return json.loads(get(f"http://127.0.0.1:{hook_port}/stats")[1])["calls"]


def cpu_busy(interval=0.5):
    """The share of both cores busy over `interval` (between measurements, ours are idle)."""
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return v[3] + v[4], sum(v)  # idle + iowait, total
    i0, t0 = sample()
    time.sleep(interval)
    i1, t1 = sample()
    return 1 - (i1 - i0) / max(t1 - t0, 1)


QUIET = {"waited_s": 0.0, "busy_seen": []}


def wait_quiet(limit_s=20, budget_s=120):
    """Waits (up to `limit_s`, and `budget_s` over the whole run) until something else using the
    machine stops: another process on either core would be measured as the proxy's or the load
    generator's slowness. Past the budget it only records what it saw."""
    start = time.monotonic()
    while True:
        busy = cpu_busy()
        spent = time.monotonic() - start
        if busy < 0.10 or spent > limit_s or QUIET["waited_s"] + spent > budget_s:
            QUIET["waited_s"] += time.monotonic() - start
            QUIET["busy_seen"].append(round(busy, 3))
            return


# === load generators ===

UNITS = {"us": 1.0, "ms": 1e3, "s": 1e6}


def wrk(url, conns, seconds, lua_args=None, headers=()):
    wait_quiet()
    argv = ["taskset", "-c", CORE_LOAD] + NICE + ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "--timeout", "5s"]
    for h in headers:
        argv += ["-H", h]
    if lua_args:
        argv += ["-s", os.path.join(HERE, "auth.lua")]
    argv.append(url)
    if lua_args:
        argv += ["--"] + lua_args
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30).stdout

    def lat(pct):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        return float(m.group(1)) * UNITS[m.group(2)] if m else float("nan")

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": float(rps.group(1)) if rps else 0.0,
        "requests": int(total.group(1)) if total else 0,
        "p50_us": lat(50),
        "p99_us": lat(99),
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors.group(1).strip() if errors else "",
    }


def load(args, *cmd, timeout=120):
    wait_quiet()
    out = subprocess.run(
        ["taskset", "-c", CORE_LOAD] + NICE + [args.load, *cmd], capture_output=True, text=True, timeout=timeout
    )
    if out.returncode != 0:
        raise RuntimeError(f"e2e-load {cmd[0]} failed: {out.stderr.strip()}")
    return json.loads(out.stdout.strip().splitlines()[-1])


class Results:
    def __init__(self):
        self.runs = {row[0]: {t: [] for t in TARGETS} for row in ROWS}
        self.notes = {}

    def add(self, row, target, value):
        self.runs[row][target].append(value)
        log(f"  {row:18} {target:10} {value:12.1f}")

    def medians(self):
        return {
            row: {t: (statistics.median(v) if v else None) for t, v in targets.items()}
            for row, targets in self.runs.items()
        }


# === the measurements ===


def auth_rows(args, stack, res):
    login = {
        "direct": ("webhook", f"http://127.0.0.1:{stack.hook_port}/auth"),
        "nginx": ("check", stack.http_base("nginx") + "/auth/check"),
        "drawbridge": ("login", stack.http_base("drawbridge") + "/auth/login"),
    }
    # drawbridge's webhook aggregator answers from the same decision cache and mints nothing:
    # the auth check alone, like nginx's auth_request.
    check = dict(login, drawbridge=("aggregator", stack.http_base("drawbridge") + "/auth/webhook"))
    for mode, row, shapes in (
        ("hit", "login_hit_rps", login),
        ("miss", "login_miss_rps", login),
        ("hit", "check_hit_rps", check),
    ):
        log(f"{row}:")
        for t, (shape, url) in shapes.items():
            wrk(url, 8, 1, [shape, mode, f"warm{t}{time.time_ns()}"])  # warm-up; fills the caches on a hit
        for rep in range(args.reps):
            for t, (shape, url) in shapes.items():
                before = webhook_calls(stack.hook_port)
                r = wrk(url, 32, args.seconds, [shape, mode, f"{t}{rep}{time.time_ns()}"])
                calls = webhook_calls(stack.hook_port) - before
                check_wrk(r, row, t)
                res.add(row, t, r["rps"])
                res.notes.setdefault(f"{row}_webhook_calls_per_request", {}).setdefault(t, []).append(
                    round(calls / max(r["requests"], 1), 4)
                )


def forward_auth_rows(args, stack, res):
    """What an ingress's auth subrequest costs: GET /auth/check with the provider token (drawbridge
    with [forward_auth] accept_provider_tokens, nginx's auth_request with its proxy_cache), and with
    a drawbridge session (no provider involved; the same nginx check as its baseline)."""
    token = {
        "direct": ("webhook", f"http://127.0.0.1:{stack.hook_port}/auth"),
        "nginx": ("check", stack.http_base("nginx") + "/auth/check"),
        # The path under the door is the checked path (forward_auth.uri_from = "path").
        "drawbridge": ("check", stack.http_base("drawbridge") + "/auth/check/sync"),
    }
    session = [f"Authorization: Bearer {stack.session}"]
    db_check = stack.http_base("drawbridge") + "/auth/check/sync"
    log("forward_auth:")
    for t, (shape, url) in token.items():
        wrk(url, 8, 1, [shape, "hit", f"warm{t}"])  # fills the caches
    for rep in range(args.reps):
        for t, (shape, url) in token.items():
            before = webhook_calls(stack.hook_port)
            r = wrk(url, 32, args.seconds, [shape, "hit", f"fwd{t}{rep}"])
            calls = webhook_calls(stack.hook_port) - before
            check_wrk(r, "fwd_token_rps", t)
            res.add("fwd_token_rps", t, r["rps"])
            res.notes.setdefault("fwd_token_rps_webhook_calls_per_request", {}).setdefault(t, []).append(
                round(calls / max(r["requests"], 1), 4)
            )
        r = wrk(db_check, 32, args.seconds, headers=session)
        check_wrk(r, "fwd_session_rps", "drawbridge")
        res.add("fwd_session_rps", "drawbridge", r["rps"])
        r = wrk(token["nginx"][1], 32, args.seconds, ["check", "hit", f"fwdn{rep}"])
        check_wrk(r, "fwd_session_rps", "nginx")
        res.add("fwd_session_rps", "nginx", r["rps"])
        r = wrk(db_check, 1, args.seconds, headers=session)
        check_wrk(r, "fwd_session_p50_us", "drawbridge")
        res.add("fwd_session_p50_us", "drawbridge", r["p50_us"])
        r = wrk(token["nginx"][1], 1, args.seconds, ["check", "hit", f"fwdn1{rep}"])
        check_wrk(r, "fwd_session_p50_us", "nginx")
        res.add("fwd_session_p50_us", "nginx", r["p50_us"])


def check_wrk(r, row, t):
    if r["requests"] == 0 or r["non2xx"] > 0.01 * r["requests"] or r["socket_errors"]:
        raise RuntimeError(f"{row} {t}: wrk saw failures: {r}")


def http_rows(args, stack, res):
    log("http:")
    for t in TARGETS:
        wrk(stack.http_base(t) + "/api/items", 32, 1)
    for rep in range(args.reps):
        for t in TARGETS:
            url = stack.http_base(t) + "/api/items"
            cpu = tree_cpu_s(stack.pid(t))
            r = wrk(url, 32, args.seconds)
            check_wrk(r, "http_rps", t)
            res.add("http_rps", t, r["rps"])
            # That the target's own process carried the load (a proxy answering from elsewhere would not).
            res.notes.setdefault("http_rps_target_cpu_s", {}).setdefault(t, []).append(
                round(tree_cpu_s(stack.pid(t)) - cpu, 2)
            )
            r = wrk(url, 1, args.seconds)
            check_wrk(r, "http_latency", t)
            res.add("http_p50_us", t, r["p50_us"])
            res.add("http_p99_us", t, r["p99_us"])


def h2load(url, conns, streams, seconds):
    """h2load (nghttp2) over TLS with ALPN h2: `conns` connections, `streams` requests in flight on
    each, for `seconds` after a one-second warm-up. Returns requests per second and the counts."""
    wait_quiet()
    argv = ["taskset", "-c", CORE_LOAD] + NICE + [
        "h2load", "-c", str(conns), "-m", str(streams), "-t", "1", "-D", str(seconds),
        "--warm-up-time", "1", url,
    ]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60).stdout
    rps = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out)
    done = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
    codes = re.search(r"status codes: (\d+) 2xx", out)
    proto = re.search(r"Application protocol: (\S+)", out)
    return {
        "rps": float(rps.group(1)) if rps else 0.0,
        "requests": int(done.group(2)) if done else 0,
        "failed": int(done.group(4)) + int(done.group(5)) if done else 0,
        "ok_2xx": int(codes.group(1)) if codes else 0,
        "protocol": proto.group(1) if proto else "",
    }


def h2_rows(args, stack, res):
    """The proxied GET over HTTP/2, what browsers speak: every TLS target negotiates h2 by ALPN
    (direct is plain HTTP/1.1 and has no row). A run that fell back to HTTP/1.1 or saw a failure
    is an error, not a figure."""
    log("http/2:")
    tls = [t for t in TARGETS if t != "direct"]
    for t in tls:
        h2load(stack.http_base(t) + "/api/items", 8, 4, 1)
    for rep in range(args.reps):
        for t in tls:
            r = h2load(stack.http_base(t) + "/api/items", 32, 4, args.seconds)
            if r["protocol"] != "h2" or r["requests"] == 0 or r["failed"] or r["ok_2xx"] < r["requests"]:
                raise RuntimeError(f"h2_rps {t}: h2load saw failures or no h2: {r}")
            res.add("h2_rps", t, r["rps"])


def ws_rows(args, stack, res):
    log("websocket:")
    for rep in range(args.reps):
        for t in TARGETS:
            url, bearer = stack.ws(t)
            auth = ["--bearer", bearer] if bearer else []
            r = load(args, "ws-rtt", "--url", url, *auth, "--size", "1024", "--count", str(args.rtt_count), "--warmup", "1000")
            res.add("ws_rtt_p50_us", t, r["p50_us"])
            res.add("ws_rtt_p99_us", t, r["p99_us"])
            r = load(
                args, "ws-tput", "--url", url, *auth, "--size", "65536", "--conns", "4", "--window", "4",
                "--seconds", str(args.seconds), "--warmup", "1",
            )
            res.add("ws_tput_mib_s", t, r["mib_per_s"])


def head_to_head_rows(args, stack, res):
    """The websocket 64 KiB throughput and the 1-connection GET latency, drawbridge and HAProxy
    alternating round by round (HAProxy first in even rounds), so each ratio compares moments
    seconds apart: on a shared machine HAProxy's own figure moves more between the harness's
    target-after-target runs than the difference measured."""
    log("head to head, drawbridge and HAProxy alternating:")
    runs = {row: {"drawbridge": [], "haproxy": []} for row in ("ws_tput_mib_s", "http_p50_us", "http_p99_us")}
    for rep in range(args.reps):
        order = ["haproxy", "drawbridge"] if rep % 2 == 0 else ["drawbridge", "haproxy"]
        for t in order:
            url, bearer = stack.ws(t)
            auth = ["--bearer", bearer] if bearer else []
            r = load(
                args, "ws-tput", "--url", url, *auth, "--size", "65536", "--conns", "4", "--window", "4",
                "--seconds", str(args.seconds), "--warmup", "1",
            )
            runs["ws_tput_mib_s"][t].append(r["mib_per_s"])
            r = wrk(stack.http_base(t) + "/api/items", 1, args.seconds)
            check_wrk(r, "http_latency", t)
            runs["http_p50_us"][t].append(r["p50_us"])
            runs["http_p99_us"][t].append(r["p99_us"])
            log(f"  round {rep} {t:10} 64 KiB {runs['ws_tput_mib_s'][t][-1]:8.1f} MiB/s   "
                f"GET p50 {r['p50_us']:8.1f} µs  p99 {r['p99_us']:8.1f} µs")
    ratios = {
        row: [round(d / h, 3) for d, h in zip(sides["drawbridge"], sides["haproxy"])]
        for row, sides in runs.items()
    }
    medians = {row: round(statistics.median(r), 3) for row, r in ratios.items()}
    res.notes["head_to_head"] = {"runs": runs, "ratios_per_round": ratios, "median_ratio": medians}
    print("\n| drawbridge ÷ HAProxy, alternating | median of the rounds' ratios | per round |\n|---|---|---|")
    for row, label in (("ws_tput_mib_s", "websocket 64 KiB throughput ↑ (target ≥ 1.3)"),
                       ("http_p50_us", "GET p50, 1 connection ↓"),
                       ("http_p99_us", "GET p99, 1 connection ↓ (target ≤ 1.0)")):
        print(f"| {label} | {medians[row]:.3f} | {', '.join(f'{x:.2f}' for x in ratios[row])} |")
    print()


def repin(stack, core):
    """Moves the proxies (every thread; nginx's master and worker) onto `core`."""
    for pid in [stack.drawbridge.pid, stack.haproxy.pid, stack.nginx.pid] + children(stack.nginx.pid):
        subprocess.run(["taskset", "-apc", core, str(pid)], check=True, capture_output=True)


def ws_core1_rows(args, stack, res):
    """Diagnostic: the websocket rows with the proxy on the load generator's core, so no message
    crosses between cores; the difference to the main rows is the cost of the crossing itself."""
    log("websocket, proxy on core 1:")
    repin(stack, CORE_LOAD)
    try:
        for rep in range(args.reps):
            for t in TARGETS:
                url, bearer = stack.ws(t)
                auth = ["--bearer", bearer] if bearer else []
                r = load(args, "ws-rtt", "--url", url, *auth, "--size", "1024", "--count", str(args.rtt_count), "--warmup", "1000")
                res.add("ws_rtt_p50_us_core1", t, r["p50_us"])
                r = load(
                    args, "ws-tput", "--url", url, *auth, "--size", "65536", "--conns", "4", "--window", "4",
                    "--seconds", str(args.seconds), "--warmup", "1",
                )
                res.add("ws_tput_mib_s_core1", t, r["mib_per_s"])
    finally:
        repin(stack, CORE_PROXY)


def tls_rows(args, stack, res):
    log("tls handshakes:")
    for rep in range(args.reps):
        for t in ("haproxy", "nginx", "drawbridge"):
            r = load(args, "tls-handshakes", "--addr", f"127.0.0.1:{stack.port(t)}", "--seconds", str(args.seconds), "--parallel", "16")
            if r["failed"]:
                res.notes.setdefault("tls_failed", {}).setdefault(t, []).append(r["failed"])
            res.add("tls_hs_per_s", t, r["handshakes_per_s"])


def check_sessions(port, sessions):
    """One forward-auth check per session, over one kept-alive TLS connection; each must pass."""
    import http.client
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=insecure(), timeout=10)
    try:
        for s in sessions:
            conn.request("GET", "/auth/check/sync", headers={"Authorization": f"Bearer {s}"})
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                raise RuntimeError(f"verified: a check answered {r.status}")
    finally:
        conn.close()


def verified_rows(args, work, hook_port, res):
    """RSS per session the forward-auth door remembers: a fresh drawbridge logs in `args.verified`
    distinct tokens (their decisions and sessions are made first, outside the measurement), then
    each session is checked once at `/auth/check`, which verifies it and keeps it in the door's
    verified-session cache (at most 10,000 per generation). VmRSS before and after the checks,
    (after − before) / checks. The first 100 checks warm the path and are not counted."""
    n = args.verified
    log(f"RSS per verified session, {n:,} sessions:")
    runs = []
    for rep in range(args.reps):
        stack = Stack(args, work, hook_port, f"verified{rep}")
        try:
            out = os.path.join(work, f"verified-sessions-{rep}.txt")
            load(args, "login-many", "--url", stack.http_base("drawbridge") + "/auth/login", "--shape", "login",
                 "--prefix", f"vs-{time.time_ns()}", "--count", str(n), "--parallel", "64", "--seconds-max", "300",
                 "--out", out, timeout=360)
            with open(out) as f:
                sessions = [line for line in f.read().splitlines() if line]
            if len(sessions) != n:
                raise RuntimeError(f"verified: {n - len(sessions)} logins failed")
            check_sessions(stack.db_port, sessions[:100])
            time.sleep(1)
            pid = stack.drawbridge.pid
            before = rss_kib(pid)
            check_sessions(stack.db_port, sessions[100:])
            misses = admin_metric(stack, 'drawbridge_forward_auth_cache_requests_total{result="miss"}')
            time.sleep(1)
            after = rss_kib(pid)
            measured = len(sessions) - 100
            per = (after - before) * 1024 / measured
            res.add("verified_bytes", "drawbridge", per)
            runs.append({"n": measured, "rss_kib": [before, after], "misses": misses, "bytes": round(per)})
        finally:
            stack.stop()
    res.notes["verified_runs"] = runs
    write_costs(args, {"bytes_per_verified_session": round(statistics.median(r["bytes"] for r in runs))},
                {"verified": runs})


# === storms: thousands of clients at once, each on its own fresh connection ===


def children_cpu_s():
    """CPU seconds of every child this harness has waited for (the load generator's runs)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def open_fds(pid):
    """Descriptors a process and its children hold (nginx: master plus worker)."""
    n = 0
    for p in [pid] + children(pid):
        try:
            n += len(os.listdir(f"/proc/{p}/fd"))
        except OSError:
            pass
    return n


def listen_drops():
    """The kernel's count of connection attempts dropped at a full listen queue (TcpExt
    ListenDrops): a storm that overflows a backlog waits for SYN retransmits, a second or more."""
    with open("/proc/net/netstat") as f:
        lines = [l.split() for l in f if l.startswith("TcpExt:")]
    return int(dict(zip(lines[0][1:], lines[1][1:])).get("ListenDrops", 0))


def wait_fds(pids, baseline, deadline_s=30):
    """Polls until the processes hold no more descriptors than before a storm (plus slack for
    pooled connections), so one storm's teardown is not measured as the next one's slowness."""
    end = time.monotonic() + deadline_s
    while any(open_fds(p) > baseline[p] + 64 for p in pids):
        if time.monotonic() > end:
            log(f"  descriptors still held {deadline_s}s after a storm: "
                f"{ {p: (open_fds(p), baseline[p]) for p in pids} }")
            return
        time.sleep(0.1)


def login_many(args, url, shape, prefix, out=None, parallel=64):
    """`e2e-load login-many`: `args.storm` distinct tokens, each on a fresh connection; fails on
    any failed login, and on a session given twice."""
    cmd = ["login-many", "--url", url, "--shape", shape, "--prefix", prefix, "--count", str(args.storm),
           "--parallel", str(parallel), "--seconds-max", "240"]
    if out:
        cmd += ["--out", out]
    r = load(args, *cmd, timeout=300)
    if r["failed"]:
        raise RuntimeError(f"login-many {shape} {url}: {r['failed']} of {args.storm} failed: {r['first_error']}")
    if shape == "login" and r["distinct_sessions"] != args.storm:
        raise RuntimeError(f"login-many {url}: {r['distinct_sessions']} distinct sessions for {args.storm} logins")
    return r


def storm_rows(args, stack, res):
    """A reconnect storm, as after a replica dies: `args.storm` websocket clients holding valid
    credentials open at once, each with a fresh TCP connection, a full TLS handshake (no
    resumption) and the upgrade. drawbridge: each client its own session (logged in first);
    nginx: each client its own provider token, its auth cache warmed first; HAProxy and direct:
    no credentials. The load generator's CPU time is recorded beside the wall time, to show
    whether it, rather than the target, set the pace."""
    n = args.storm
    creds = {
        "drawbridge": os.path.join(stack.work, "storm-sessions.txt"),
        "nginx": os.path.join(stack.work, "storm-nginx-tokens.txt"),
    }
    log(f"reconnect storm, {n} websockets:")
    stamp = time.time_ns()
    login_many(args, stack.http_base("drawbridge") + "/auth/login", "login", f"storm-db-{stamp}", creds["drawbridge"])
    nginx_check = stack.http_base("nginx") + "/auth/check"
    for rep in range(args.reps):
        for t in TARGETS:
            if t == "nginx":
                # Before each repetition, so every token is in the cache (proxy_cache_valid 300 s)
                # when the storm starts: the first pass asks the webhook, later ones are cache hits.
                login_many(args, nginx_check, "check", f"storm-ngx-{stamp}", creds["nginx"])
            url, _ = stack.ws(t)
            auth = ["--tokens", creds[t]] if t in creds else []
            pids = [stack.pid(t), stack.demo.pid]
            baseline = {p: open_fds(p) for p in pids}
            cpu, drops = children_cpu_s(), listen_drops()
            r = load(args, "ws-storm", "--url", url, *auth, "--count", str(n), "--parallel", str(n),
                     "--seconds-max", "60", timeout=120)
            cpu, drops = children_cpu_s() - cpu, listen_drops() - drops
            if r["failed"]:
                raise RuntimeError(f"storm {t}: {r['failed']} of {n} websockets failed: {r['first_error']}")
            res.add("storm_open_s", t, r["seconds_to_all_open"])
            res.add("storm_p99_ms", t, r["p99_us"] / 1e3)
            res.notes.setdefault("storm_p50_ms", {}).setdefault(t, []).append(round(r["p50_us"] / 1e3, 2))
            res.notes.setdefault("storm_load_cpu_s", {}).setdefault(t, []).append(round(cpu, 2))
            res.notes.setdefault("storm_listen_drops", {}).setdefault(t, []).append(drops)
            wait_fds(pids, baseline)


def login_storm_rows(args, stack, res):
    """A login storm: `args.storm` distinct clients, each token logged in once before (so
    drawbridge's decision cache and nginx's proxy_cache hold it), then each logs in again on its
    own fresh TLS connection, 64 in flight; drawbridge must hand each its own session. direct is
    the webhook itself over plain HTTP, a fresh connection each."""
    shapes = {
        "direct": ("webhook", f"http://127.0.0.1:{stack.hook_port}/auth"),
        "nginx": ("check", stack.http_base("nginx") + "/auth/check"),
        "drawbridge": ("login", stack.http_base("drawbridge") + "/auth/login"),
    }
    log(f"login storm, {args.storm} clients, {args.login_parallel} in flight:")
    for rep in range(args.reps):
        for t, (shape, url) in shapes.items():
            prefix = f"ls-{t}-{rep}-{time.time_ns()}"
            if t != "direct":
                login_many(args, url, shape, prefix)  # fills the decision cache
            before = webhook_calls(stack.hook_port)
            r = login_many(args, url, shape, prefix, parallel=args.login_parallel)
            calls = webhook_calls(stack.hook_port) - before
            res.add("login_storm_rps", t, r["logins_per_s"])
            res.notes.setdefault("login_storm_p99_ms", {}).setdefault(t, []).append(round(r["p99_ms"], 2))
            res.notes.setdefault("login_storm_webhook_calls_per_login", {}).setdefault(t, []).append(
                round(calls / args.storm, 4)
            )


# === the observability scenario (--only observability) ===

# drawbridge with each observability output, beside one with none, all in the same run: the cost of
# each is its rows divided by the "off" rows. Each variant is its own drawbridge process on the
# proxy core (the others idle meanwhile), measured in turn, the order rotated per repetition.
OBS_VARIANTS = [
    ("off", ""),
    # The logs go to their own directory, as they would in production (not beside the config).
    ("audit", '[audit]\npath = "@WORK@/logs/obs-audit.log"\n'),
    ("access", '[log]\naccess = true\naccess_path = "@WORK@/logs/obs-access.log"\n'),
    ("trace_1", '[tracing]\notlp_endpoint = "http://127.0.0.1:@OTLP_PORT@"\nsample_ratio = 1.0\n'),
    ("trace_0.01", '[tracing]\notlp_endpoint = "http://127.0.0.1:@OTLP_PORT@"\nsample_ratio = 0.01\n'),
]
OBS_ROWS = [
    ("obs_login_hit_rps", "login, cache hit (32 conns)", "req/s"),
    ("obs_http_rps", "proxied GET /api/items (32 conns)", "req/s"),
]
# A collector that accepts every OTLP/HTTP export and counts them (GET /stats), on the load core.
OTLP_SINK = r"""
import http.server, sys, threading
n = {"exports": 0, "bytes": 0}
lock = threading.Lock()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        with lock:
            n["exports"] += 1
            n["bytes"] += len(body)
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()
    def do_GET(self):
        with lock:
            out = ('{"exports": %d, "bytes": %d}' % (n["exports"], n["bytes"])).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def obs_config(work, name, extra, fill):
    """drawbridge's benchmark config for one observability variant, with `extra` appended."""
    conf = render(os.path.join(HERE, "drawbridge.toml.in"), os.path.join(work, f"obs-{name}.toml"), fill)
    with open(conf, "a") as f:
        text = extra
        for k, v in fill.items():
            text = text.replace(k, v)
        f.write("\n" + text)
    return conf


# Instructions per request, counted by callgrind: the machine's noise cannot move them, so they
# show a cost of a few per cent that throughput runs on a shared machine cannot resolve. They
# count what drawbridge executes in user space (its threads, its libraries), not the kernel's
# work, and count a large memcpy more heavily than a CPU pays for it.
OBS_INSTR_ROWS = [
    ("obs_login_instructions", "login, cache hit (8 conns)"),
    ("obs_http_instructions", "proxied GET /api/items (8 conns)"),
]


def callgrind_instructions(args, conf, port, name, logdir, seconds):
    """Starts drawbridge under callgrind with counting off, warms it, counts while wrk runs the
    login row and then the GET row, and returns instructions per request for each."""
    out_dir = os.path.join(logdir, "callgrind")
    os.makedirs(out_dir, exist_ok=True)
    out = os.path.join(out_dir, f"{name}.out")
    p = Proc(
        f"callgrind-{name}",
        CORE_PROXY,
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}.%p",
         args.drawbridge, "run", "--config", conf],
        logdir,
    )
    per_request = {}
    try:
        wait_port(port, deadline_s=120)  # valgrind starts slowly
        base = f"https://127.0.0.1:{port}"
        shapes = {
            "obs_login_instructions": (base + "/auth/login", ["login", "hit", f"cg{name}"]),
            "obs_http_instructions": (base + "/api/items", None),
        }
        for row, (url, lua) in shapes.items():
            wrk(url, 8, 3, lua)  # warm: connections, caches
            subprocess.run(["callgrind_control", "--zero", str(p.pid)], check=True, capture_output=True)
            subprocess.run(["callgrind_control", "-i", "on", str(p.pid)], check=True, capture_output=True)
            r = wrk(url, 8, seconds, lua)
            subprocess.run(["callgrind_control", "-i", "off", str(p.pid)], check=True, capture_output=True)
            dump = subprocess.run(["callgrind_control", "--dump", str(p.pid)], check=True, capture_output=True)
            if r["requests"] == 0 or r["non2xx"]:
                raise RuntimeError(f"callgrind {name} {row}: {r}")
            per_request[row] = (dump, r["requests"])
    finally:
        p.stop()
    # One dump file per --dump, numbered in order, beside the final one written at exit.
    dumps = sorted(
        (f for f in os.listdir(out_dir) if f.startswith(f"{name}.out.{p.pid}.")),
        key=lambda f: int(f.rsplit(".", 1)[1]),
    )
    if len(dumps) < len(per_request):
        raise RuntimeError(f"callgrind {name}: {len(dumps)} dumps for {len(per_request)} rows")
    result = {}
    for (row, (_, requests)), dump in zip(per_request.items(), dumps):
        with open(os.path.join(out_dir, dump)) as f:
            totals = int(re.search(r"^totals: (\d+)", f.read(), re.M).group(1))
        result[row] = round(totals / requests)
    return result


def observability_rows(args, work, hook_port, res):
    logdir = os.path.join(work, "logs")
    otlp_port = free_port()
    sink = Proc("otlp-sink", CORE_LOAD, [sys.executable, "-c", OTLP_SINK, str(otlp_port)], logdir)
    stack = Stack(args, work, hook_port, "obs")  # its demo sync server is the upstream
    procs = {}

    def fill_for(port, admin):
        return {
            "@WORK@": work,
            "@SYNC_PORT@": str(stack.sync_port),
            "@HOOK_PORT@": str(hook_port),
            "@DB_PORT@": str(port),
            "@DB_ADMIN_PORT@": str(admin),
            "@OTLP_PORT@": str(otlp_port),
        }

    try:
        wait_port(otlp_port)
        ports = {}
        for name, extra in OBS_VARIANTS:
            port, admin = free_port(), free_port()
            conf = obs_config(work, name, extra, fill_for(port, admin))
            procs[name] = Proc(f"drawbridge-obs-{name}", CORE_PROXY, [args.drawbridge, "run", "--config", conf], logdir)
            ports[name] = port
        for name, port in ports.items():
            wait_port(port)
            base = f"https://127.0.0.1:{port}"
            wrk(base + "/auth/login", 8, 1, ["login", "hit", f"warm{name}"])
            wrk(base + "/api/items", 8, 1)
        runs = {row: {name: [] for name, _ in OBS_VARIANTS} for row, _, _ in OBS_ROWS}
        order = [name for name, _ in OBS_VARIANTS]
        log("observability:")
        for rep in range(args.reps):
            for name in order[rep % len(order):] + order[: rep % len(order)]:
                base = f"https://127.0.0.1:{ports[name]}"
                r = wrk(base + "/auth/login", 32, args.seconds, ["login", "hit", f"obs{name}{rep}"])
                check_wrk(r, "obs_login_hit_rps", name)
                runs["obs_login_hit_rps"][name].append(r["rps"])
                r = wrk(base + "/api/items", 32, args.seconds)
                check_wrk(r, "obs_http_rps", name)
                runs["obs_http_rps"][name].append(r["rps"])
                log(f"  {name:10} login {runs['obs_login_hit_rps'][name][-1]:10.0f}  get {r['rps']:10.0f}")
        with urllib.request.urlopen(f"http://127.0.0.1:{otlp_port}/stats", timeout=5) as resp:
            exported = json.loads(resp.read())
        med = {row: {n: statistics.median(v) for n, v in by.items()} for row, by in runs.items()}
        res.notes["observability"] = {
            "runs": runs,
            "medians": med,
            "ratio_to_off": {row: {n: round(v / m["off"], 4) for n, v in m.items()} for row, m in med.items()},
            "otlp_exports_received": exported,
        }
        if args.instructions and shutil.which("valgrind"):
            for p in procs.values():
                p.stop()
            procs.clear()
            log("observability, instructions per request (callgrind):")
            instr = {row: {} for row, _ in OBS_INSTR_ROWS}
            for name, extra in OBS_VARIANTS:
                port, admin = free_port(), free_port()
                conf = obs_config(work, f"cg-{name}", extra, fill_for(port, admin))
                got = callgrind_instructions(args, conf, port, name, logdir, args.instructions)
                for row, n in got.items():
                    instr[row][name] = n
                log(f"  {name:10} login {got['obs_login_instructions']:8}  get {got['obs_http_instructions']:8}")
            res.notes["observability"]["instructions_per_request"] = instr
            res.notes["observability"]["instructions_ratio_to_off"] = {
                row: {n: round(v / by["off"], 4) for n, v in by.items()} for row, by in instr.items()
            }
        elif args.instructions:
            log("observability: valgrind is not installed; no instruction counts")
    finally:
        for p in procs.values():
            p.stop()
        stack.stop()
        sink.stop()


def observability_table(obs):
    names = [n for n, _ in OBS_VARIANTS]
    lines = [
        "| row | unit | " + " | ".join(names) + " |",
        "|---|---|" + "---:|" * len(names),
    ]
    for row, label, unit in OBS_ROWS:
        m, r = obs["medians"][row], obs["ratio_to_off"][row]
        cells = [fmt(m["off"])] + [f"{fmt(m[n])} ({r[n]:.3f})" for n in names[1:]]
        lines.append(f"| {label} ↑ | {unit} | " + " | ".join(cells) + " |")
    instr = obs.get("instructions_per_request")
    for row, label in OBS_INSTR_ROWS if instr else ():
        m, r = instr[row], obs["instructions_ratio_to_off"][row]
        cells = [f"{m['off']:,}"] + [f"{m[n]:,} ({r[n]:.3f})" for n in names[1:]]
        lines.append(f"| {label} ↓ | instructions/req | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# === per-item memory costs, written to benches/e2e/costs.json ===

# Where the harness records what one cached decision and one idle tunnel cost: the chart's memory
# limit is checked against it (tests/chart_memory.rs), so the check reads measured figures.
COSTS = os.path.join(HERE, "costs.json")


def commit_id(drawbridge):
    """The commit measured: the revision the binary says it was built from, else the checkout's
    (with "-dirty" when it held uncommitted changes)."""
    version = subprocess.run([drawbridge, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"revision ([0-9a-f]{7,}\S*)\)", version)
    if m:
        return m.group(1)

    def git(*a):
        return subprocess.run(["git", "-C", HERE, *a], capture_output=True, text=True).stdout.strip()
    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def write_costs(args, figures, detail):
    """Merges `figures` (top-level numbers) and `detail` (under "runs") into the costs file, keeping
    what a row not run this time recorded before."""
    path = args.costs
    try:
        with open(path) as f:
            costs = json.load(f)
    except (OSError, ValueError):
        costs = {}
    costs.update(figures)
    costs["measured_at"] = {"commit": commit_id(args.drawbridge), "date": time.strftime("%Y-%m-%d %H:%M:%S %z")}
    costs.setdefault("runs", {}).update(detail)
    with open(path, "w") as f:
        json.dump(costs, f, indent=1, ensure_ascii=False)
        f.write("\n")


def purge_decisions(admin_port):
    req = urllib.request.Request(f"http://127.0.0.1:{admin_port}/cache/purge", data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=5) as r:
        r.read()


def decision_rows(args, work, hook_port, res):
    """RSS per cached decision: a fresh drawbridge (the harness config, so `cache.max_entries` is its
    default, 100,000) logs in `args.decisions` distinct tokens, each on its own TLS connection, 64 in
    flight; every login is a miss the webhook allows and the cache keeps. VmRSS before and after,
    (after − before) / N. Warmed first with 1,000 logins (connections, TLS, pools), whose decisions are
    purged so the cache starts empty and the N logins fit in it."""
    n = args.decisions
    log(f"RSS per cached decision, {n:,} distinct tokens:")
    runs = []
    for rep in range(args.reps):
        stack = Stack(args, work, hook_port, f"decisions{rep}")
        try:
            url = stack.http_base("drawbridge") + "/auth/login"
            stamp = time.time_ns()
            load(args, "login-many", "--url", url, "--shape", "login", "--prefix", f"dw-{stamp}",
                 "--count", "1000", "--parallel", "64", "--seconds-max", "120", timeout=180)
            purge_decisions(stack.db_admin)
            time.sleep(1)
            pid = stack.drawbridge.pid
            before = rss_kib(pid)
            r = load(args, "login-many", "--url", url, "--shape", "login", "--prefix", f"dm-{stamp}",
                     "--count", str(n), "--parallel", "64", "--seconds-max", "900", timeout=960)
            if r["failed"] or r["distinct_sessions"] != n:
                raise RuntimeError(f"decisions: {r['failed']} failed, {r['distinct_sessions']} sessions: "
                                   f"{r['first_error']}")
            # The cache's count settles once its pending writes are applied (each miss updates it).
            entries, end = 0.0, time.monotonic() + 10
            while time.monotonic() < end:
                entries = admin_metric(stack, "drawbridge_decision_cache_entries")
                if entries >= n:
                    break
                time.sleep(0.2)
            after = rss_kib(pid)
            per = (after - before) * 1024 / n
            res.add("decision_bytes", "drawbridge", per)
            runs.append({"n": n, "rss_kib": [before, after], "cache_entries": entries, "bytes": round(per),
                         "logins_per_s": round(r["logins_per_s"])})
        finally:
            stack.stop()
    res.notes["decision_runs"] = runs
    write_costs(args, {
        "bytes_per_cached_decision": round(statistics.median(r["bytes"] for r in runs)),
        "baseline_rss_bytes": round(statistics.median(r["rss_kib"][0] for r in runs) * 1024),
    }, {"decisions": runs})


def idle_rows(args, work, hook_port, res):
    """A fresh stack per repetition, so each target's growth starts from a process that has never
    held a tunnel (an allocator keeps freed memory, and a second round would look cheaper)."""
    # Descriptors per idle websocket in each process: the sync server holds one; drawbridge and
    # HAProxy two (client, upstream); nginx three, because the auth subrequest's cache file stays
    # open for as long as the websocket request lives. Each gets as many as fit in the same limit.
    per_ws = (("direct", 1), ("haproxy", 2), ("nginx", 3), ("drawbridge", 2))
    counts = {t: min(args.idle, (args.nofile - 200) // k) for t, k in per_ws}
    log(f"idle websockets, per target: {counts}:")
    for rep in range(args.reps):
        stack = Stack(args, work, hook_port, f"idle{rep}")
        try:
            for t in TARGETS:
                url, bearer = stack.ws(t)
                auth = ["--bearer", bearer] if bearer else []
                # A few tunnels first, so lazily built state (pools, TLS caches) is not counted.
                load(args, "ws-idle", "--url", url, *auth, "--count", "16", "--hold-max", "0")
                time.sleep(1)
                pid = stack.pid(t)
                before = tree_rss_kib(pid)
                p = subprocess.Popen(
                    ["taskset", "-c", CORE_LOAD] + NICE + [args.load, "ws-idle", "--url", url, *auth,
                     "--count", str(counts[t]), "--parallel", "32", "--open-max", "90", "--hold-max", "120"],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                )
                opened = json.loads(p.stderr.readline())
                time.sleep(3)  # let the last handshakes settle
                after = tree_rss_kib(pid)
                out, err = p.communicate("done\n", timeout=60)
                if opened["open"] == 0:
                    raise RuntimeError(f"idle {t}: no websocket opened: {opened}")
                per = (after - before) / opened["open"]
                res.add("idle_kib_per_ws", t, per)
                res.notes.setdefault("idle_open", {}).setdefault(t, []).append(opened)
                res.notes.setdefault("idle_rss_kib", {}).setdefault(t, []).append([before, after])
                time.sleep(2)
        finally:
            stack.stop()
    per_ws = res.runs["idle_kib_per_ws"]["drawbridge"]
    if per_ws:
        write_costs(args, {"bytes_per_idle_tunnel": round(statistics.median(per_ws) * 1024)},
                    {"idle_tunnels": {"kib_per_tunnel": [round(v, 2) for v in per_ws],
                                      "open": res.notes["idle_open"]["drawbridge"],
                                      "rss_kib": res.notes["idle_rss_kib"]["drawbridge"]}})


# === the reload scenario (drawbridge only; --only reload) ===

# What the reload scenario measured, saved under "reload" in the report.
RELOAD = {}


def proc_cpu_s(pid):
    """User + system CPU seconds `pid` has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid):
    """CPU seconds of a process and its children (nginx: the worker does the work)."""
    return proc_cpu_s(pid) + sum(proc_cpu_s(c) for c in children(pid))


def admin_metric(stack, sample):
    text = get(f"http://127.0.0.1:{stack.db_admin}/metrics")[1].decode()
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return 0.0


def reload_lines(stack):
    with open(stack.drawbridge.log_path, errors="replace") as f:
        lines = [re.sub(r"\x1b\[[0-9;]*m", "", l) for l in f]  # the text log is coloured
    return [l for l in lines if "config reloaded" in l and "took_us" in l]


def reload_rows(args, work, hook_port):
    """Live reconfiguration: how long a reload takes to apply, login p99 while the config is being
    reloaded ten times a second against the same run without reloads, and the cost of re-checking
    every open tunnel (session.revalidate_seconds = 60) against the same tunnels without it."""
    stack = Stack(args, work, hook_port, "reload")
    conf = os.path.join(work, "drawbridge.toml")
    with open(conf) as f:
        base = f.read()
    # Re-checks reach the provider: allows are cached for less than the interval.
    base = base.replace("[session]\n", "[session]\nrevalidate_seconds = 60\n") + "\n[cache]\nmax_ttl_seconds = 30\n"

    def variant(i, revalidate=True):
        text = base if revalidate else base.replace("revalidate_seconds = 60", "revalidate_seconds = 0")
        if i % 2:
            # An unrelated provider comes and goes: the bench provider and its cached answers stay.
            text += f"\n[providers.spare]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{hook_port}/auth\"\n"
        return text

    def apply(text):
        tmp = conf + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, conf)
        os.kill(stack.drawbridge.pid, signal.SIGHUP)

    try:
        # 1. Time to apply: from the SIGHUP to the reload's log line (which carries the time the
        #    swap itself took). The file watch also reloads ~200 ms later; that one is left to pass.
        log("reload: time to apply")
        e2e_ms, took_us = [], []
        for i in range(30):
            before = len(reload_lines(stack))
            t0 = time.monotonic()
            apply(variant(i))
            while len(reload_lines(stack)) == before and time.monotonic() - t0 < 5:
                time.sleep(0.001)
            e2e_ms.append((time.monotonic() - t0) * 1e3)
            time.sleep(0.5)
        for line in reload_lines(stack):
            m = re.search(r'took_us["=:]+(\d+)', line)
            if m:
                took_us.append(int(m.group(1)))
        RELOAD["apply_us"] = {"median": statistics.median(took_us), "max": max(took_us), "n": len(took_us)}
        RELOAD["sighup_to_applied_ms"] = {"median": statistics.median(e2e_ms), "max": max(e2e_ms), "n": len(e2e_ms)}
        RELOAD["reload_failures"] = admin_metric(stack, 'drawbridge_config_reloads_total{result="failure"}')
        log(f"  apply {RELOAD['apply_us']} µs; SIGHUP to applied {RELOAD['sighup_to_applied_ms']} ms")

        # 2. Login p99 with and without reloads (8 connections, cache hits), interleaved.
        log("reload: login p99 during reloads")
        url = stack.http_base("drawbridge") + "/auth/login"
        wrk(url, 8, 1, ["login", "hit", "warm"])
        quiet, busy = [], []
        for rep in range(args.reps):
            quiet.append(wrk(url, 8, args.seconds, ["login", "hit", f"q{rep}"]))
            stop = __import__("threading").Event()

            def churn():
                i = 0
                while not stop.is_set():
                    apply(variant(i))
                    i += 1
                    stop.wait(0.1)

            t = __import__("threading").Thread(target=churn)
            before = admin_metric(stack, 'drawbridge_config_reloads_total{result="success"}')
            t.start()
            busy.append(wrk(url, 8, args.seconds, ["login", "hit", f"b{rep}"]))
            stop.set()
            t.join()
            reloads = admin_metric(stack, 'drawbridge_config_reloads_total{result="success"}') - before
            busy[-1]["reloads"] = reloads
            for r, name in ((quiet[-1], "quiet"), (busy[-1], "reloading")):
                check_wrk(r, f"reload login {name}", "drawbridge")
            log(f"  quiet p99 {quiet[-1]['p99_us']:.0f} µs, reloading p99 {busy[-1]['p99_us']:.0f} µs ({reloads:.0f} reloads)")
            time.sleep(1)
        med = lambda rs, k: statistics.median(r[k] for r in rs)
        RELOAD["login"] = {
            "quiet": {"p99_us": med(quiet, "p99_us"), "p50_us": med(quiet, "p50_us"), "rps": med(quiet, "rps")},
            "reloading": {"p99_us": med(busy, "p99_us"), "p50_us": med(busy, "p50_us"), "rps": med(busy, "rps"),
                          "reloads_per_s": med(busy, "reloads") / args.seconds},
            "runs": {"quiet": quiet, "reloading": busy},
        }
        apply(variant(0))

        # 3. Re-checking open tunnels: the same tunnels with revalidation on, then off.
        count = min(args.idle, (args.nofile - 200) // 2)
        log(f"reload: revalidation with {count} open tunnels")
        session = login(stack.db_port, "reval-token")  # minted with revalidation on: its login is kept
        p = subprocess.Popen(
            ["taskset", "-c", CORE_LOAD] + NICE + [args.load, "ws-idle", "--url", stack.ws("drawbridge")[0],
             "--bearer", session, "--count", str(count), "--parallel", "32", "--open-max", "120",
             "--hold-max", str(2 * args.reval_window + 120)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        opened = json.loads(p.stderr.readline())
        RELOAD["revalidation_open"] = opened

        def window(label):
            pid = stack.drawbridge.pid
            calls0, cpu0 = webhook_calls(hook_port), proc_cpu_s(pid)
            checks0 = sum(admin_metric(stack, f'drawbridge_session_revalidations_total{{result="{r}"}}')
                          for r in ("allow", "narrowed", "deny", "error"))
            t0 = time.monotonic()
            time.sleep(args.reval_window)
            dt = time.monotonic() - t0
            checks = sum(admin_metric(stack, f'drawbridge_session_revalidations_total{{result="{r}"}}')
                         for r in ("allow", "narrowed", "deny", "error")) - checks0
            out = {
                "seconds": round(dt, 1),
                "provider_calls_per_s": (webhook_calls(hook_port) - calls0) / dt,
                "rechecks_per_s": checks / dt,
                "cpu_percent_of_one_core": 100 * (proc_cpu_s(pid) - cpu0) / dt,
                "tunnels_open": admin_metric(stack, "drawbridge_tunnels_active"),
            }
            log(f"  {label}: {out}")
            return out

        on = window("revalidate_seconds = 60")
        apply(variant(0, revalidate=False))
        time.sleep(1)
        off = window("revalidate_seconds = 0")
        p.communicate("done\n", timeout=120)
        RELOAD["revalidation"] = {"tunnels": opened.get("open"), "on": on, "off": off}
    finally:
        stack.stop()


def reload_table():
    a, s, l = RELOAD["apply_us"], RELOAD["sighup_to_applied_ms"], RELOAD["login"]
    v = RELOAD.get("revalidation", {})
    lines = [
        "| row | value |",
        "|---|---:|",
        f"| reload applied (swap of every part), median / max of {a['n']} | {a['median']:.0f} / {a['max']:.0f} µs |",
        f"| SIGHUP to reload logged, median / max | {s['median']:.1f} / {s['max']:.1f} ms |",
        f"| login p99, no reloads (8 conns, cache hit) | {l['quiet']['p99_us']:.0f} µs |",
        f"| login p99, {l['reloading']['reloads_per_s']:.1f} reloads/s | {l['reloading']['p99_us']:.0f} µs |",
        f"| login p99 ratio, reloading / quiet | {ratio(l['reloading']['p99_us'], l['quiet']['p99_us']):.2f} |",
        f"| login req/s ratio, reloading / quiet | {ratio(l['reloading']['rps'], l['quiet']['rps']):.2f} |",
    ]
    if v:
        on, off = v["on"], v["off"]
        lines += [
            f"| open tunnels (one session) | {v['tunnels']} |",
            f"| re-checks/s at revalidate_seconds = 60 | {on['rechecks_per_s']:.0f} |",
            f"| provider calls/s, on / off | {on['provider_calls_per_s']:.2f} / {off['provider_calls_per_s']:.2f} |",
            f"| drawbridge CPU (% of a core), on / off | {on['cpu_percent_of_one_core']:.1f} / {off['cpu_percent_of_one_core']:.1f} |",
        ]
    return "\n".join(lines)


# === report ===


# === cluster mode (--only cluster): its own scenario, its own rows ===

CLUSTER_ROWS = [
    ("cluster_login_hit_rps", "login, cache hit (32 conns)", "req/s", "higher"),
    ("cluster_tunnel_open_per_s", "tunnel open: TLS + upgrade + 101, one at a time", "1/s", "higher"),
    ("cluster_http_rps", "proxied GET /api/items (32 conns)", "req/s", "higher"),
    ("cluster_ws_rtt_p50_us", "websocket echo 1 KiB p50 on an open tunnel", "µs", "lower"),
]


def cluster_conf(work, name, fill, redis_port):
    """drawbridge.toml.in with its own ports, plus [cluster] when `redis_port` is given."""
    path = render(os.path.join(HERE, "drawbridge.toml.in"), os.path.join(work, f"{name}.toml"), fill)
    if redis_port:
        with open(path, "a") as f:
            f.write(f'\n[cluster]\nredis_url = "redis://127.0.0.1:{redis_port}"\n')
    return path


def tunnel_opens(port, bearer, count):
    """Opens `count` tunnels one after another (new TLS connection, upgrade, 101, close); opens/s."""
    ctx = insecure()
    req = (
        "GET /sync HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        f"Authorization: Bearer {bearer}\r\n\r\n"
    ).encode()
    started = time.monotonic()
    for _ in range(count):
        with socket.create_connection(("127.0.0.1", port)) as raw, ctx.wrap_socket(raw) as tls:
            tls.sendall(req)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = tls.recv(4096)
                if not chunk:
                    break
                head += chunk
            if not head.startswith(b"HTTP/1.1 101"):
                raise RuntimeError(f"tunnel open refused: {head[:80]!r}")
    return count / (time.monotonic() - started)


class Keep:
    """One keep-alive HTTPS connection to a replica, for polling."""

    def __init__(self, port):
        import http.client
        self.c = http.client.HTTPSConnection("127.0.0.1", port, context=insecure(), timeout=5)

    def status(self, method, path, bearer=None, body=None):
        headers = {"content-type": "application/json"}
        if bearer:
            headers["authorization"] = f"Bearer {bearer}"
        self.c.request(method, path, body=body, headers=headers)
        r = self.c.getresponse()
        data = r.read()
        return r.status, data


def propagation(replicas, admin_a, samples):
    """Revokes a fresh session by sid on replica A's admin port, then polls B and C until both
    refuse it: the time from sending the revocation to the last refusal, per sample (ms)."""
    import base64
    a, b, c = (Keep(p) for p in replicas)
    times = []
    for i in range(samples):
        st, data = a.status("POST", "/auth/login", body=json.dumps(
            {"appID": "bench-app", "provider": "bench", "token": f"prop-{i}-{time.time_ns()}"}))
        token = json.loads(data)["sessionToken"]
        payload = token.split(".")[1]
        sid = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sid"]
        for k in (b, c):
            assert k.status("GET", "/auth/userinfo", token)[0] == 200
        body = json.dumps({"sid": sid}).encode()
        t0 = time.monotonic()
        urllib.request.urlopen(urllib.request.Request(
            f"http://127.0.0.1:{admin_a}/sessions/revoke", data=body), timeout=5).read()
        pending = {b, c}
        deadline = t0 + 10
        while pending and time.monotonic() < deadline:
            for k in list(pending):
                if k.status("GET", "/auth/userinfo", token)[0] == 401:
                    pending.discard(k)
        if pending:
            raise RuntimeError("a revocation did not propagate within 10 s")
        times.append((time.monotonic() - t0) * 1000)
    return times


def cluster_rows(args, work, hook_port, res):
    """Cluster mode off against on in the same run (same demo sync server, webhook and Redis), then
    revocation propagation across three replicas sharing one Redis."""
    logdir = os.path.join(work, "logs")
    redis_port = free_port()
    redis = Proc("redis", CORE_LOAD, ["redis-server", "--bind", "127.0.0.1", "--port", str(redis_port),
                                       "--save", "", "--appendonly", "no"], logdir)
    stack = Stack(args, work, hook_port, "cluster")  # its drawbridge is "off"
    procs = []
    try:
        wait_port(redis_port)
        ports = []
        for i in range(3):
            port, admin = free_port(), free_port()
            fill = {"@WORK@": work, "@SYNC_PORT@": str(stack.sync_port), "@HOOK_PORT@": str(hook_port),
                    "@DB_PORT@": str(port), "@DB_ADMIN_PORT@": str(admin)}
            conf = cluster_conf(work, f"drawbridge-cluster-{i}", fill, redis_port)
            procs.append(Proc(f"drawbridge-cluster-{i}", CORE_PROXY, [args.drawbridge, "run", "--config", conf], logdir))
            ports.append((port, admin))
        for port, admin in ports:
            wait_port(port)
            end = time.monotonic() + 20
            while b"drawbridge_cluster_up 1" not in get(f"http://127.0.0.1:{admin}/metrics")[1]:
                if time.monotonic() > end:
                    raise RuntimeError("a cluster replica never reached Redis")
                time.sleep(0.1)
        on_port = ports[0][0]
        on_session = login(on_port, "ws-token")
        sides = {"off": (stack.db_port, stack.session), "on": (on_port, on_session)}
        runs = {row[0]: {"off": [], "on": []} for row in CLUSTER_ROWS}

        def add(row, side, v):
            runs[row][side].append(v)
            log(f"  {row:28} {side:4} {v:12.1f}")

        log("cluster, off vs on:")
        for side, (port, _) in sides.items():
            wrk(f"https://127.0.0.1:{port}/auth/login", 8, 1, ["login", "hit", f"warm{side}"])
        for rep in range(args.reps):
            for side, (port, session) in sides.items():
                r = wrk(f"https://127.0.0.1:{port}/auth/login", 32, args.seconds, ["login", "hit", f"c{side}{rep}"])
                check_wrk(r, "cluster_login_hit_rps", side)
                add("cluster_login_hit_rps", side, r["rps"])
                wait_quiet()
                add("cluster_tunnel_open_per_s", side, tunnel_opens(port, session, 300))
                r = wrk(f"https://127.0.0.1:{port}/api/items", 32, args.seconds)
                check_wrk(r, "cluster_http_rps", side)
                add("cluster_http_rps", side, r["rps"])
                r = load(args, "ws-rtt", "--url", f"wss://127.0.0.1:{port}/sync", "--bearer", session,
                         "--size", "1024", "--count", str(args.rtt_count), "--warmup", "1000")
                add("cluster_ws_rtt_p50_us", side, r["p50_us"])
        wait_quiet()
        times = propagation([p for p, _ in ports], ports[0][1], 200)
        times.sort()
        q = lambda f: times[min(len(times) - 1, int(f * len(times)))]
        med = {row: {s: statistics.median(v) for s, v in sides_.items()} for row, sides_ in runs.items()}
        res.notes["cluster"] = {
            "rows": [{"id": r, "label": l, "unit": u, "better": b} for r, l, u, b in CLUSTER_ROWS],
            "runs": runs,
            "medians": med,
            "ratios_on_over_off": {row: round(m["on"] / m["off"], 3) for row, m in med.items()},
            "propagation_ms": {"samples": len(times), "p50": round(q(0.5), 2), "p99": round(q(0.99), 2),
                               "max": round(times[-1], 2)},
        }
        print("\n| cluster mode | off | on | on / off |\n|---|---|---|---|")
        for row, label, unit, _ in CLUSTER_ROWS:
            m = med[row]
            print(f"| {label} ({unit}) | {fmt(m['off'])} | {fmt(m['on'])} | {m['on'] / m['off']:.3f} |")
        p = res.notes["cluster"]["propagation_ms"]
        print(f"\nrevocation propagation, 3 replicas, {p['samples']} samples: p50 {p['p50']} ms, "
              f"p99 {p['p99']} ms, max {p['max']} ms (revoke sent on A -> B and C both refuse)")
    finally:
        for proc in procs:
            proc.stop()
        stack.stop()
        redis.stop()


def fmt(v):
    if v is None:
        return "—"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.1f}"


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def table(med):
    """Every target's median, then drawbridge's over each other column's ("—" where a target does
    not apply: HAProxy has no auth, direct no TLS)."""
    others = [t for t in TARGETS if t != "drawbridge"]
    lines = [
        "| row | unit | " + " | ".join(TARGETS) + " | " + " | ".join(f"drawbridge ÷ {t}" for t in others) + " |",
        "|---|---|" + "---:|" * (len(TARGETS) + len(others)),
    ]
    for row, label, unit, better in ROWS:
        m = med[row]
        if row in DIAGNOSTIC:
            label = f"*diagnostic:* {label}"
        cells = [fmt(m.get(t)) for t in TARGETS]
        rs = [ratio(m.get("drawbridge"), m.get(t)) for t in others]
        cells += ["—" if r is None else f"{r:.2f}" for r in rs]
        arrow = "↑" if better == "higher" else "↓"
        lines.append(f"| {label} {arrow} | {unit} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets(med):
    """The targets in BENCHMARKS.md, each (name, met, detail), from this run's medians: drawbridge
    against HAProxy (the TLS floor) where it applies, against nginx on the auth rows, and against
    direct. A target whose rows this run did not measure is left out."""
    units = {row: unit for row, _, unit, _ in ROWS}
    out = []

    def vs(row, base, factor, better, name):
        d, b = med.get(row, {}).get("drawbridge"), med.get(row, {}).get(base)
        if d is None or not b:
            return
        r = d / b
        met = r >= factor if better == "higher" else r <= factor
        out.append((name, met, f"{r:.2f}× ({fmt(d)} vs {fmt(b)} {units[row]})"))

    vs("http_rps", "haproxy", 1.0, "higher", "proxied GET throughput ≥ 1.0× HAProxy")
    vs("http_p99_us", "haproxy", 1.0, "lower", "proxied GET p99 ≤ 1.0× HAProxy")
    vs("h2_rps", "haproxy", 1.0, "higher", "proxied GET over HTTP/2 ≥ 1.0× HAProxy")
    vs("ws_tput_mib_s", "haproxy", 1.3, "higher", "websocket 64 KiB throughput ≥ 1.3× HAProxy")
    vs("ws_rtt_p50_us", "haproxy", 0.9, "lower", "websocket 1 KiB p50 ≤ 0.9× HAProxy")
    vs("ws_rtt_p99_us", "haproxy", 0.9, "lower", "websocket 1 KiB p99 ≤ 0.9× HAProxy")
    vs("login_storm_rps", "nginx", 1.0, "higher", "login storm ≥ 1.0× nginx auth_request + proxy_cache")
    vs("login_hit_rps", "nginx", 1.0, "higher", "cache-hit login (keep-alive) ≥ 1.0× nginx auth_request + proxy_cache")
    vs("fwd_session_rps", "nginx", 1.0, "higher", "forward-auth check with a session ≥ 1.0× nginx's cached check")
    vs("storm_open_s", "haproxy", 0.8, "lower", "reconnect storm, time until all open ≤ 0.8× HAProxy")
    vs("idle_kib_per_ws", "haproxy", 0.5, "lower", "memory per idle tunnel ≤ 0.5× HAProxy's")
    per_decision = med.get("decision_bytes", {}).get("drawbridge")
    if per_decision is not None:
        out.append(("≤ 300 B RSS per cached decision", per_decision <= 300, f"{per_decision:.0f} B"))
    wt = med.get("ws_tput_mib_s", {})
    if wt.get("drawbridge") is not None and wt.get("direct"):
        out.append(("websocket throughput ≥ 90 % of direct", wt["drawbridge"] >= 0.9 * wt["direct"],
                    f"{100 * wt['drawbridge'] / wt['direct']:.0f} %"))
    rt = med.get("ws_rtt_p50_us", {})
    if rt.get("drawbridge") is not None and rt.get("direct") is not None:
        added = rt["drawbridge"] - rt["direct"]
        out.append(("added websocket p50 ≤ 30 µs over direct", added <= 30, f"{added:+.1f} µs"))
    return out


def estimate_s(args, only):
    """A rough duration of the measuring, per section, from the settings (fitted to runs on the
    2-core reference machine; a busy machine adds the quiet gates' waiting, up to 2 minutes)."""
    q = 0.7  # the quiet gate and a process start per measurement
    n, reps, sec = args.storm, args.reps, args.seconds
    idle = {t: min(args.idle, (args.nofile - 200) // k) for t, k in (("direct", 1), ("haproxy", 2), ("nginx", 3),
                                                                       ("drawbridge", 2))}
    parts = {
        "auth": 3 * (3 * (1 + q) + reps * 3 * (sec + q)),
        "http": 4 * (1 + q) + reps * 4 * 2 * (sec + q),
        "h2": 3 * (2 + q) + reps * 3 * (sec + 1 + q),
        "forward_auth": 3 * (1 + q) + reps * (3 + 4) * (sec + q),
        # ws-rtt: the echoes at ~150 µs each; ws-tput: the seconds plus a second of warm-up; twice
        # (the core-1 diagnostic).
        "ws": 2 * reps * 4 * (args.rtt_count * 150e-6 + 2 * q + sec + 1),
        "tls": reps * 3 * (sec + q),
        # Sessions for every drawbridge client, nginx's cache warmed per repetition, four storms.
        "storm": n / 1200 + reps * (n / 2000 + 4 * (n / 2000 + q + 2)),
        # Per repetition: the webhook once, nginx and drawbridge twice (warm, then the storm).
        "login_storm": reps * (n / 5000 + 2 * 2 * n / 1500 + 5 * q),
        "idle": reps * (4 + sum(q + 7 + c / 1500 for c in idle.values())),
        # A stack start, 1,000 warm-up logins, then N logins at about 1,500 a second.
        "decisions": reps * (5 + 1000 / 1500 + args.decisions / 1500),
        "verified": reps * (5 + args.verified / 1500 + args.verified / 1000),
        "head_to_head": reps * 2 * (2 * sec + 1 + 2 * q),
    }
    return sum(v for k, v in parts.items() if k in only) + 5


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--drawbridge", required=True)
    ap.add_argument("--load", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rtt-count", type=int, default=20000)
    ap.add_argument("--idle", type=int, default=10000, help="idle websockets per target, at most (fewer if they do not fit)")
    ap.add_argument("--decisions", type=int, default=100000,
                    help="distinct tokens logged in for the RSS per cached decision (at most cache.max_entries)")
    ap.add_argument("--verified", type=int, default=10000,
                    help="sessions checked for the RSS per verified forward-auth session (at most 10,000)")
    ap.add_argument("--costs", default=COSTS, help="where the per-item memory costs are written (JSON)")
    ap.add_argument(
        "--only",
        default="auth,http,h2,ws,tls,storm,login_storm,forward_auth,idle,decisions,verified",
        help="rows: auth, http, h2, ws, tls, storm, login_storm, forward_auth, idle, decisions, verified; "
        "observability, "
        "reload, cluster and head_to_head (the 64 KiB and GET latency rows, drawbridge and HAProxy "
        "alternating) run only when named",
    )
    ap.add_argument("--reval-window", type=int, default=90, help="seconds each revalidation window is measured")
    ap.add_argument("--storm", type=int, default=5000, help="clients in the reconnect and login storms")
    ap.add_argument("--login-parallel", type=int, default=64, help="logins in flight in the login storm")
    ap.add_argument(
        "--instructions",
        type=int,
        default=20,
        help="seconds each observability variant runs under callgrind to count instructions per request "
        "(0: none)",
    )
    args = ap.parse_args()
    only = set(args.only.split(","))
    for i, (row, label, unit, better) in enumerate(ROWS):
        ROWS[i] = (row, label.replace("5,000", f"{args.storm:,}").replace("100,000", f"{args.decisions:,}"), unit,
                   better)
    if "forward_auth" in only:
        ROWS.extend(FORWARD_AUTH_ROWS)

    work = args.work
    os.makedirs(os.path.join(work, "logs"), exist_ok=True)
    for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        os.makedirs(os.path.join(work, "nginx", "tmp", d), exist_ok=True)
    with open(os.path.join(work, "nginx", "ok.json"), "w") as f:
        f.write('{"result":"success"}\n')
    # nginx's worker runs as nobody: it must reach its temp and cache directories.
    for root, dirs, files in os.walk(work):
        os.chmod(root, 0o777)
    os.chmod(work, 0o755)

    hard = __import__("resource").getrlimit(__import__("resource").RLIMIT_NOFILE)[1]
    args.nofile = hard

    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-days", "2",
         "-keyout", os.path.join(work, "tls.key"), "-out", os.path.join(work, "tls.crt")],
        check=True, capture_output=True,
    )
    os.chmod(os.path.join(work, "tls.key"), 0o600)
    # HAProxy reads certificate and key from one PEM.
    with open(os.path.join(work, "haproxy.pem"), "w") as pem:
        for part in ("tls.crt", "tls.key"):
            with open(os.path.join(work, part)) as f:
                pem.write(f.read())
    os.chmod(os.path.join(work, "haproxy.pem"), 0o600)
    session_key = os.path.join(work, "session.pem")
    if not os.path.exists(session_key):
        subprocess.run([args.drawbridge, "keygen", "--out", session_key], check=True, capture_output=True)

    log(f"== about {estimate_s(args, only) / 60:.1f} min of measuring ({args.only}, {args.reps} reps)")
    hook_port = free_port()
    hook = Proc("webhook", CORE_LOAD, [args.load, "webhook", "--addr", f"127.0.0.1:{hook_port}"], os.path.join(work, "logs"))
    res = Results()
    started = time.time()
    load_start = open("/proc/loadavg").read().split()[:3]

    def save():
        """Writes what has been measured so far (a run stopped halfway keeps its rows)."""
        med = res.medians()
        report = {
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "seconds_taken": round(time.time() - started),
            "machine": machine(),
            "loadavg": {"start": load_start, "end": open("/proc/loadavg").read().split()[:3]},
            "settings": {
                "reps": args.reps, "seconds": args.seconds, "rtt_count": args.rtt_count, "idle_max": args.idle,
                "storm_clients": args.storm, "login_storm_parallel": args.login_parallel,
                "nofile_hard_limit": hard, "nice": os.environ.get("E2E_NICE", "0"),
                "core_proxy": CORE_PROXY, "core_load": CORE_LOAD,
            },
            "rows": [{"id": r, "label": l, "unit": u, "better": b} for r, l, u, b in ROWS],
            "runs": res.runs,
            "medians": med,
            "notes": res.notes,
            "quiet": {"waited_s": round(QUIET["waited_s"], 1), "max_busy_seen": max(QUIET["busy_seen"], default=0),
                      "gates": len(QUIET["busy_seen"]), "gates_over_10pct": sum(b >= 0.10 for b in QUIET["busy_seen"])},
        }
        try:
            report["targets"] = [{"target": n, "met": m, "value": d} for n, m, d in targets(med)]
        except (TypeError, ZeroDivisionError, KeyError):
            report["targets"] = []  # a partial run (--only)
        if RELOAD:
            report["reload"] = RELOAD
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1, ensure_ascii=False)
        return report

    try:
        wait_port(hook_port)
        # The parts measured on the main stack, in order; the report is saved after each.
        on_stack = [
            ("auth", [auth_rows]),
            ("http", [http_rows]),
            ("h2", [h2_rows]),
            ("ws", [ws_rows, ws_core1_rows]),
            ("tls", [tls_rows]),
            ("storm", [storm_rows]),
            ("login_storm", [login_storm_rows]),
            ("forward_auth", [forward_auth_rows]),
            ("head_to_head", [head_to_head_rows]),
        ]
        if only & {name for name, _ in on_stack}:
            stack = Stack(args, work, hook_port, "main")
            try:
                for name, parts in on_stack:
                    if name in only:
                        for part in parts:
                            part(args, stack, res)
                        save()
            finally:
                stack.stop()
        if "idle" in only:
            idle_rows(args, work, hook_port, res)
            save()
        if "decisions" in only:
            decision_rows(args, work, hook_port, res)
            save()
        if "verified" in only:
            verified_rows(args, work, hook_port, res)
            save()
        if "observability" in only:
            observability_rows(args, work, hook_port, res)
        if "reload" in only:
            reload_rows(args, work, hook_port)
        if "cluster" in only:
            cluster_rows(args, work, hook_port, res)
            save()
    finally:
        hook.stop()

    report = save()
    if RELOAD:
        print(reload_table())
        print()
    med = report["medians"]
    print(table(med))
    print()
    if "observability" in report["notes"]:
        print(observability_table(report["notes"]["observability"]))
        print()
    for t in report["targets"]:
        print(f"- {'met ' if t['met'] else 'MISSED'} {t['target']}: {t['value']}")
    print(f"\n{report['seconds_taken']} s of measuring; raw runs in {args.out}")


def machine():
    def sh(*cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/etc/debian_version") as f:
        debian = f.read().strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": sh("uname", "-r"),
        "debian": debian,
        "nginx": sh("nginx", "-v") or sh("sh", "-c", "nginx -v 2>&1"),
        "haproxy": sh("sh", "-c", "haproxy -v 2>&1 | head -1"),
        "openssl": sh("openssl", "version"),
        "wrk": sh("sh", "-c", "wrk -v 2>&1 | head -1"),
        "rustc": sh("rustc", "--version"),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    }


if __name__ == "__main__":
    main()
