"""Every config key through the chart's values.

drawbridge lists its own config keys with their defaults (`drawbridge config-keys`, derived from the
structs it parses the file with). For each key, one render sets it through a chart value to a
value other than its default; the check passes when the render's drawbridge.toml holds that value
at that key and `drawbridge check --skip-files` accepts the file. A key drawbridge gains without a
value here, or without a chart value the schema accepts, fails the check.

To wire a new key: add its sample value to SAMPLES (and the chart value to values.yaml,
values.schema.json and the template, unless the generic `config.<section>.<key>` covers it).
"""

import json
import os
import subprocess

from k8s_validate import configs
from k8s_validate.runner import Outcome

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

# Sections the chart renders from `config.<section>.<key>`, keys as in the file.
PLAIN = (
    "listen",
    "upstream",
    "limits",
    "shutdown",
    "log",
    "rate_limit",
    "cors",
    "aggregator",
    "audit",
    "tracing",
    "reload",
)
# Sections with camelCase values of their own: TOML section -> value.
CAMEL = {"session": "session", "cache": "cache", "ditto": "ditto", "forward_auth": "forwardAuth", "native": "native"}

# A webhook and a jwt provider, and an app, that other keys need to refer to.
WEBHOOK = {"kind": "webhook", "url": "https://auth.example.com/hook"}
JWT = {
    "kind": "jwt",
    "issuer": "https://issuer.example.com/",
    "audiences": ["sync"],
    "jwksUrl": "https://issuer.example.com/jwks",
}
PROVIDERS = {"providers": {"w": WEBHOOK}}

# The one list to extend: config key -> a value that is not its default. The render sets it through
# the chart value the key maps to (see value_path), in its TOML form unless EXPECTED says otherwise.
SAMPLES = {
    "admin.addr": None,  # chart-owned, see CHART_OWNED
    "aggregator.allow_unsigned": True,
    "aggregator.max_signature_age_seconds": 120,
    "aggregator.signing_secret": {"secretName": "aggregator", "key": "signing-secret"},
    "apps.<appID>.providers": ["w"],
    "audit.path": "-",
    "audit.queue_lines": 1024,
    "cache.max_entries": 5000,
    "cache.max_ttl_seconds": 60,
    "cache.negative_ttl_seconds": 2,
    "cache.stale_if_error_seconds": 30,
    "cluster.command_timeout_ms": 250,
    "cluster.connect_timeout_ms": 2500,
    "cluster.key_prefix": "sync-a:",
    "cluster.password": "redis-password",  # chart: cluster.redis.existingSecret, see CHART_OWNED
    "cluster.redis_url": "redis://redis.example:6379/1",
    "cluster.required": True,
    "cluster.resync_interval_ms": 7000,
    "cluster.sentinels": ["redis://redis-node-0.redis-headless:26379", "redis://redis-node-1.redis-headless:26379"],
    "cluster.sentinel_master": "mymaster",
    "cluster.sentinel_username": "sentinel-user",
    "cluster.sentinel_password": "sentinel-password",  # chart: cluster.redis.sentinelExistingSecret, see CHART_OWNED
    "cluster.tls_server_name": "redis.internal",
    "cluster.cluster_nodes": ["redis://redis-cluster-0:6379", "redis://redis-cluster-1:6379"],
    "cluster.shared_decisions": False,
    "cluster.username": "drawbridge",
    "cors.allowed_origins": ["https://app.example.com"],
    "ditto.enabled": True,
    "ditto.path_prefix": "/sync-gw",
    "ditto.require_known_token": True,
    "forward_auth.accept_provider_tokens": True,
    "forward_auth.app": "a",
    "forward_auth.provider": "w",
    "forward_auth.signin_url": "https://login.example.com/",
    "forward_auth.uri_from": "header:x-forwarded-uri",
    "forward_auth.assertion": True,
    "limits.header_read_timeout_ms": 5000,
    "limits.http2_keep_alive_interval_ms": 15000,
    "limits.http2_keep_alive_timeout_ms": 10000,
    "limits.idle_timeout_ms": 120000,
    "limits.max_connections": 123456789,
    "limits.max_connections_per_client": 64,
    "limits.max_request_body_bytes": 104857600,
    "limits.max_request_head_bytes": 65536,
    "limits.tls_handshake_timeout_ms": 5000,
    "listen.addr": None,  # chart-owned
    "listen.backlog": 1024,
    "listen.plaintext": None,  # chart-owned
    "listen.proxy_protocol": True,
    "listen.trusted_proxies": ["10.0.0.0/8"],
    "log.access": True,
    "log.access_path": "/var/log/drawbridge/access.log",
    "log.access_queue_lines": 2048,
    "log.format": "json",
    "log.level": "info,drawbridge=debug",
    "native.code_app": "a",
    "native.code_provider": "w",
    "native.token_field": "token",
    "providers.<name>.kind": "jwt",
    "providers.<group>.fallthrough_on_error": True,
    "providers.<group>.members": ["w"],
    "providers.<group>.strategy": "ordered",
    "providers.<jwt>.algorithms": ["ES256"],
    "providers.<jwt>.audiences": ["sync-b"],
    "providers.<jwt>.issuer": "https://other-issuer.example.com/",
    "providers.<jwt>.jwks_refresh_seconds": 600,
    "providers.<jwt>.jwks_url": "https://other-issuer.example.com/jwks",
    "providers.<jwt>.keys_file": "/etc/drawbridge/jwks/keys.json",
    "providers.<jwt>.leeway_seconds": 30,
    "providers.<jwt>.permissions.read.everything": True,
    "providers.<jwt>.permissions.read.queriesByCollection": {"tasks": ["_id.userID == '{sub}'"]},
    "providers.<jwt>.permissions.remoteQuery": True,
    "providers.<jwt>.permissions.write.everything": True,
    "providers.<jwt>.permissions.write.queriesByCollection": {"notes": ["true"]},
    "providers.<jwt>.profile_claims.displayname": "nickname",
    "providers.<jwt>.profile_claims.email": "mail",
    "providers.<jwt>.profile_claims.image": "",
    "providers.<jwt>.user_claim": "email",
    "providers.<webhook>.circuit_cooldown_ms": 30000,
    "providers.<webhook>.circuit_failures": 9,
    "providers.<webhook>.headers": {"x-tenant": "a"},
    "providers.<webhook>.max_concurrency": 128,
    "providers.<webhook>.request_format": "v1",
    "providers.<webhook>.retries": 3,
    "providers.<webhook>.signing_secret": {"secretName": "hook", "key": "signing-secret"},
    "providers.<webhook>.timeout_ms": 4000,
    "providers.<webhook>.url": "https://other.example.com/hook",
    "rate_limit.burst": 50,
    "rate_limit.enabled": False,
    "rate_limit.per_second": 5,
    "reload.settle_ms": 1500,
    "session.algorithm": "HS256",
    "session.audience": "sync-clients",
    "session.close_grace_seconds": 5,
    "session.issuer": "drawbridge-prod",
    "session.key_file": {"secretName": "session", "key": "ed25519.pem"},
    "session.max_ttl_seconds": 1800,
    "session.previous_key_files": [{"secretName": "session", "key": "previous.pem"}],
    "session.revalidate_seconds": 300,
    "session.ticket_ttl_seconds": 20,
    "session.token_signing": "key",
    "shutdown.grace_seconds": 20,
    "tls.cert_file": None,  # chart-owned
    "tls.client_ca_file": None,  # chart-owned
    "tls.key_file": None,  # chart-owned
    "tracing.export_timeout_ms": 5000,
    "tracing.otlp_endpoint": "http://otel-collector:4318",
    "tracing.sample_ratio": 0.25,
    "tracing.service_name": "drawbridge-edge",
    "upstream.connect_timeout_ms": 1500,
    "upstream.public_upgrade_paths": ["/public/ws"],
    "upstream.request_timeout_ms": 60000,
    "upstream.sync_paths": ["/sync"],
    "upstream.url": "https://sync.internal.example.com",
}

# Keys the chart sets from values of its own: key -> (helm arguments, the TOML value they give).
CHART_OWNED = {
    "listen.addr": (["--set", "ports.gateway=8500"], "0.0.0.0:8500"),
    "listen.plaintext": (["--set", "plaintext=true"], True),
    "admin.addr": (["--set", "ports.admin=9100"], "0.0.0.0:9100"),
    "tls.cert_file": (["--set", "tls.existingSecret=gw-tls"], "/etc/drawbridge/tls/tls.crt"),
    "tls.key_file": (["--set", "tls.existingSecret=gw-tls"], "/etc/drawbridge/tls/tls.key"),
    "tls.client_ca_file": (["--set", "tls.clientCA.existingSecret=ca"], "/etc/drawbridge/client-ca/ca.crt"),
    "cluster.password": (
        [
            "--set",
            "cluster.enabled=true",
            "--set",
            "cluster.redis.url=redis://r:6379",
            "--set",
            "cluster.redis.existingSecret=redis",
        ],
        "${file:/etc/drawbridge/cluster/password}",
    ),
    "cluster.sentinel_password": (
        [
            "--set",
            "cluster.enabled=true",
            "--set-json",
            'cluster.redis.sentinels=["redis://s:26379"]',
            "--set",
            "cluster.redis.sentinelMaster=mymaster",
            "--set",
            "cluster.redis.sentinelExistingSecret=sentinel",
        ],
        "${file:/etc/drawbridge/cluster-sentinel/password}",
    ),
    "session.key_file": (
        ["--set-json", 'session.keySecret={"secretName":"session","key":"ed25519.pem"}'],
        "/etc/drawbridge/auth/session/ed25519.pem",
    ),
    "session.previous_key_files": (
        ["--set-json", 'session.previousKeySecrets=[{"secretName":"session","key":"previous.pem"}]'],
        ["/etc/drawbridge/auth/session/previous.pem"],
    ),
}

# The TOML value when it is not the sample itself.
EXPECTED = {
    "aggregator.signing_secret": "${file:/etc/drawbridge/auth/aggregator/signing-secret}",
    "providers.<webhook>.signing_secret": "${file:/etc/drawbridge/auth/hook/signing-secret}",
}

# Other values a key needs to be valid at all: key prefix -> extra values (merged in).
CONTEXT = {
    "cluster.": {"cluster": {"enabled": True, "redis": {"url": "redis://r:6379"}}},
    "cluster.username": {"cluster": {"enabled": True, "redis": {"url": "redis://r:6379", "existingSecret": "redis"}}},
    "cluster.sentinel": {
        "cluster": {"enabled": True, "redis": {"sentinels": ["redis://s:26379"], "sentinelMaster": "m"}}
    },
    "cluster.sentinel_username": {
        "cluster": {
            "enabled": True,
            "redis": {"sentinels": ["redis://s:26379"], "sentinelMaster": "m", "sentinelExistingSecret": "sentinel"},
        }
    },
    "cluster.cluster_nodes": {"cluster": {"enabled": True, "redis": {}}},
    "cluster.tls_server_name": {
        "cluster": {"enabled": True, "redis": {"sentinels": ["rediss://s:26379"], "sentinelMaster": "m"}}
    },
    "forward_auth.app": {
        **PROVIDERS,
        "forwardAuth": {"acceptProviderTokens": True, "provider": "w"},
        "apps": {"a": {"providers": ["w"]}},
    },
    "forward_auth.provider": {
        **PROVIDERS,
        "forwardAuth": {"acceptProviderTokens": True, "app": "a"},
        "apps": {"a": {"providers": ["w"]}},
    },
    "forward_auth.accept_provider_tokens": {
        **PROVIDERS,
        "forwardAuth": {"app": "a", "provider": "w"},
        "apps": {"a": {"providers": ["w"]}},
    },
    "native.": {**PROVIDERS, "native": {"codeProvider": "w", "codeApp": "a"}, "apps": {"a": {"providers": ["w"]}}},
    "ditto.require_known_token": {"ditto": {"enabled": True}},
    "apps.": PROVIDERS,
    "log.access_path": {"config": {"log": {"access": True}}},
    "providers.<group>.": {
        "providers": {"w": WEBHOOK, "w2": WEBHOOK},
        "groups": {"g": {"members": ["w", "w2"], "strategy": "first_success"}},
    },
    "providers.<name>.": {"providers": {"j": JWT}},
    "providers.<jwt>.": {"providers": {"j": JWT}},
    "providers.<jwt>.keys_file": {
        "providers": {"j": {"kind": "jwt", "issuer": JWT["issuer"], "audiences": JWT["audiences"]}}
    },
    "providers.<webhook>.": {"providers": {"w": WEBHOOK}},
}


def camel(name):
    """timeout_ms -> timeoutMs; names that are camelCase already stay."""
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def value_path(key):
    """The chart value (a list of path segments) that sets the config `key`, or None."""
    section, _, rest = key.partition(".")
    parts = rest.split(".")
    if section in PLAIN:
        return ["config", section, *parts]
    if section in CAMEL:
        return [CAMEL[section], *map(camel, parts)]
    if section == "cluster":
        return {
            "redis_url": ["cluster", "redis", "url"],
            "username": ["cluster", "redis", "username"],
            "sentinels": ["cluster", "redis", "sentinels"],
            "sentinel_master": ["cluster", "redis", "sentinelMaster"],
            "sentinel_username": ["cluster", "redis", "sentinelUsername"],
            "cluster_nodes": ["cluster", "redis", "clusterNodes"],
            "tls_server_name": ["cluster", "redis", "tlsServerName"],
        }.get(rest, ["cluster", camel(rest)])
    if key.startswith("providers.<group>."):
        return ["groups", "g", camel(parts[1])]
    if key.startswith(("providers.<jwt>.", "providers.<name>.")):
        return ["providers", "j", *map(camel, parts[1:])]
    if key.startswith("providers.<webhook>."):
        return ["providers", "w", *map(camel, parts[1:])]
    if key.startswith("apps.<appID>."):
        return ["apps", "a", *parts[1:]]
    return None


def toml_path(key):
    """Where the key's value sits in the parsed drawbridge.toml."""
    return (
        key.replace("providers.<group>.", "providers.g.")
        .replace("providers.<jwt>.", "providers.j.")
        .replace("providers.<name>.", "providers.j.")
        .replace("providers.<webhook>.", "providers.w.")
        .replace("apps.<appID>.", "apps.a.")
        .split(".")
    )


def merge(into, more):
    for k, v in more.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            merge(into[k], v)
        else:
            into[k] = v
    return into


def nest(path, value):
    out = value
    for p in reversed(path):
        out = {p: out}
    return out


def render_args(key, sample):
    """The helm arguments that set `key` (with its context), and the TOML value they must give."""
    # The most specific context only (the longest prefix that matches).
    matching = sorted((p for p in CONTEXT if key.startswith(p)), key=len)
    values = json.loads(json.dumps(CONTEXT[matching[-1]])) if matching else {}
    if key in CHART_OWNED:
        args, want = CHART_OWNED[key]
        return values_args(values) + args, want
    path = value_path(key)
    if path is None:
        return None, None
    merge(values, nest(path, sample))
    return values_args(values), EXPECTED.get(key, sample)


def values_args(values):
    return [a for k, v in values.items() for a in ("--set-json", f"{k}={json.dumps(v)}")]


def lookup(doc, path):
    for p in path:
        if not isinstance(doc, dict) or p not in doc:
            return KeyError
        doc = doc[p]
    return doc


def config_keys(bin_):
    """`drawbridge config-keys`: [(key, default)]."""
    out = subprocess.run(
        [bin_, "config-keys"], stdin=subprocess.DEVNULL, capture_output=True, text=True, check=True
    ).stdout
    return [(d["key"], d["default"]) for d in map(json.loads, out.splitlines())]


def check_key(tools, bin_, template_argv, key, default, work):
    """One key: set through the chart, in place in the render, accepted by `drawbridge check`."""
    if key not in SAMPLES:
        return Outcome(
            False,
            f"{key} (default {json.dumps(default)}) has no sample value: give it a chart value and add it "
            "to SAMPLES in scripts/k8s_validate/keys.py",
        )
    args, want = render_args(key, SAMPLES[key])
    if args is None:
        return Outcome(False, f"{key}: no chart value maps to it (value_path in keys.py)")
    if want == default:
        return Outcome(False, f"{key}: the sample is the default ({json.dumps(default)}), so it proves nothing")
    proc = subprocess.run(
        template_argv(tools, *args), stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        return Outcome(False, f"helm template {' '.join(args)}:\n{proc.stderr.strip()}")
    render = os.path.join(work, "key-render.yaml")
    with open(render, "w") as f:
        f.write(proc.stdout)
    tomls = configs.extract(work, [render])
    if len(tomls) != 1:
        return Outcome(False, f"expected one drawbridge.toml in the render, found {len(tomls)}")
    with open(tomls[0], "rb") as f:
        got = lookup(tomllib.load(f), toml_path(key))
    if got != want:
        return Outcome(False, f"{key}: the render has {got!r}, want {want!r} (values: {' '.join(args)})")
    check = subprocess.run(
        [bin_, "check", "--skip-files", "--config", tomls[0]],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if check.returncode != 0:
        return Outcome(False, f"{key}: drawbridge check refused the render:\n{check.stderr.strip()}")
    return Outcome(True)


def stale_samples(keys):
    """Samples for keys drawbridge no longer has."""
    known = {k for k, _ in keys}
    return sorted(k for k in SAMPLES if k not in known)
