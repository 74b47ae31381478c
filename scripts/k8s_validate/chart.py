"""The Helm chart helm/drawbridge: its renders, the features they cover, the values it refuses."""

import glob
import os
import re
import subprocess

from k8s_validate import manifests
from k8s_validate.runner import Abort, Outcome, run

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

CHART = "helm/drawbridge"

# What the renders of all value sets together must contain: every feature is switched on by some
# ci/*-values.yaml.
FEATURES = (
    "kind: HorizontalPodAutoscaler",
    "kind: ServiceMonitor",
    "kind: NetworkPolicy",
    "kind: PodDisruptionBudget",
    "kind: Secret",
    "client_ca_file =",
    "plaintext = true",
    "name: sync-server",
    "secretName: sync-auth-secrets",
    "type: LoadBalancer",
    "checksum/config:",
    "checksum/secret:",
    "# --- extraConfig ---",
    'kind = "group"',
    "[forward_auth]",
    "[native]",
    "[apps.",
    "profile_claims]",
    "${file:/etc/drawbridge/auth/",
    "mountPath: /etc/drawbridge/auth/",
    "kind: PrometheusRule",
    "startupProbe:",
    "matchLabelKeys:",
    "[cluster]",
    "command_timeout_ms =",
    "revalidate_seconds =",
    "[tracing]",
    "backlog =",
    "idle_timeout_ms =",
)

# Values the chart must refuse: (check name, the error `helm template` must fail with, its arguments).
REFUSALS = (
    (
        "typo at the top level fails (--set bogusKey=1)",
        r"additional properties 'bogusKey' not allowed",
        ["--set", "bogusKey=1"],
    ),
    (
        "typo in config fails (--set config.upstream.urll=...)",
        r"'urll' not allowed",
        ["--set", "config.upstream.urll=http://x:1"],
    ),
    (
        "typo in a nested block fails (--set tls.clientCa.key=x)",
        r"'clientCa' not allowed",
        ["--set", "tls.clientCa.key=x"],
    ),
    (
        "string for an integer fails (--set-string config.shutdown.grace_seconds=25)",
        r"grace_seconds.*want integer",
        ["--set-string", "config.shutdown.grace_seconds=25"],
    ),
    (
        "unknown mode fails (--set mode=gateway)",
        r"/mode",
        ["--set", "mode=gateway"],
    ),
    (
        "termination grace <= preStop + drain fails",
        r"terminationGracePeriodSeconds \(30\) must be greater",
        ["--set", "terminationGracePeriodSeconds=30"],
    ),
    (
        "sidecar mode without a sync server image fails",
        r"needs sidecar.syncServer.image.repository",
        ["--set", "mode=sidecar"],
    ),
    (
        "mTLS with plaintext fails",
        r"mutual TLS\) needs TLS",
        ["--set", "plaintext=true", "--set", "tls.clientCA.existingSecret=ca"],
    ),
    (
        "both secrets.existingSecret and secrets.files fails",
        r"not both",
        ["--set", "secrets.existingSecret=s", "--set", "secrets.files.k=v"],
    ),
    (
        "sidecar HPA on CPU without a sync server CPU request fails",
        r"needs sidecar.syncServer.resources.requests.cpu",
        [
            "--set",
            "mode=sidecar",
            "--set",
            "sidecar.syncServer.image.repository=sync",
            "--set",
            "autoscaling.enabled=true",
        ],
    ),
    (
        "typo in a provider fails (--set providers.p.urll=...)",
        r"urll",
        ["--set", "providers.p.kind=webhook", "--set", "providers.p.url=https://h/", "--set", "providers.p.urll=x"],
    ),
    (
        "a provider secret without its key fails",
        r"key",
        [
            "--set",
            "providers.p.kind=webhook",
            "--set",
            "providers.p.url=https://h/",
            "--set",
            "providers.p.signingSecret.secretName=s",
        ],
    ),
    (
        "string for an integer in the auth values fails (--set-string cache.maxEntries=5)",
        r"maxEntries.*want integer",
        ["--set-string", "cache.maxEntries=5"],
    ),
    (
        "a group without members fails",
        r"members",
        ["--set", "groups.g.strategy=all"],
    ),
    (
        "several replicas without cluster mode fail, naming what to set",
        r"replicaCount 3 without cluster mode.*cluster.enabled=true",
        ["--set", "replicaCount=3"],
    ),
    (
        "autoscaling without cluster mode fails",
        r"autoscaling.enabled without cluster mode",
        ["--set", "autoscaling.enabled=true"],
    ),
    (
        "extraConfig repeating a table the chart renders fails, naming it",
        r"extraConfig repeats \[session\].*session\.\*",
        ["--set-string", 'extraConfig=[session]\nkey_file = "/k"\n'],
    ),
    (
        "extraConfig repeating a config section fails",
        r"extraConfig repeats \[limits\].*config\.limits",
        ["--set-string", "extraConfig=[limits]\nidle_timeout_ms = 5\n"],
    ),
    (
        "extraConfig starting without a table header fails",
        r"must start with a \[table\] header",
        ["--set-string", "extraConfig=backlog = 5\n"],
    ),
    (
        "an ES256 session without a keySecret fails (the chart makes only EdDSA and HS256 keys)",
        r"session.algorithm ES256: the chart generates only",
        ["--set", "session.algorithm=ES256"],
    ),
    (
        "a secret file name Kubernetes refuses fails",
        r"'bad/name' does not match pattern",
        ["--set", "secrets.files.bad/name=v"],
    ),
)

# Large integers that must reach the TOML verbatim: Helm reads YAML numbers as float64, and a
# float renders as 1.23456789e+08.
BIG_INTS = (
    '{"max_connections":123456789,"header_read_timeout_ms":10000,'
    '"tls_handshake_timeout_ms":10000,"max_request_body_bytes":104857600}'
)
BIG_INT_LINE = re.compile(r"^\s+(max_connections = 123456789|max_request_body_bytes = 104857600)$", re.MULTILINE)
FLOAT_LINE = re.compile(r"^\s+[a-z_]+ = [0-9.]+e\+[0-9]+$", re.MULTILINE)


def value_sets(chart=CHART):
    """(name, helm arguments) of the default values and of every ci/*-values.yaml."""
    sets = [("default", [])]
    for f in sorted(glob.glob(os.path.join(chart, "ci", "*-values.yaml"))):
        sets.append((os.path.basename(f).removesuffix("-values.yaml"), ["-f", f]))
    if len(sets) < 4:
        raise Abort(f"expected at least three {chart}/ci/*-values.yaml")
    return sets


def template_argv(tools, *args):
    """`helm template` of the chart as release "drawbridge"."""
    return [tools.helm, "template", "drawbridge", CHART, *args]


def render(tools, vargs, out, err_out):
    """Renders the chart with `vargs` into the file `out` (errors into `err_out`); whether it did."""
    with open(out, "w") as stdout, open(err_out, "w") as stderr:
        proc = subprocess.run(
            template_argv(tools, "--namespace", "drawbridge", *vargs),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            check=False,
        )
    return proc.returncode == 0


def lint(tools, vargs):
    """`helm lint --strict` with `vargs`."""
    return run([tools.helm, "lint", "--strict", CHART, *vargs])


def features(renders):
    """Every entry of FEATURES appears in some render."""
    text = "".join(read(r) for r in renders)
    return Outcome.of_problems([f"no value set renders: {w}" for w in FEATURES if w not in text])


def big_ints(tools, renders):
    """Integers stay TOML integers, in a render made for it and in every render of the value sets."""
    outcome = run(template_argv(tools, "--set-json", f"config.limits={BIG_INTS}"))
    if not outcome.ok:
        return outcome
    n = len(BIG_INT_LINE.findall(outcome.output))
    if n != 2:
        return Outcome(False, f"expected both large integers verbatim in the TOML, found {n}")
    floats = [m for r in renders for m in FLOAT_LINE.findall(read(r))]
    return Outcome.of_problems(floats)


def read(path):
    with open(path) as f:
        return f.read()


def shared_session_key(renders):
    """Every render's config names a session key file on a mounted Secret: no pod of any shape signs
    with an ephemeral key of its own."""
    problems = []
    for r in renders:
        docs = manifests.load([r])
        for cm in manifests.find(docs, "ConfigMap"):
            text = (cm.get("data") or {}).get("drawbridge.toml")
            if text is None:
                continue
            key_file = tomllib.loads(text).get("session", {}).get("key_file")
            if not key_file:
                problems.append(f"{os.path.basename(r)}: no session.key_file (an ephemeral key per pod)")
                continue
            for dep in manifests.find(docs, "Deployment"):
                pod = dep["spec"]["template"]["spec"]
                (gw,) = [c for c in pod["containers"] if c["name"] == "drawbridge"]
                mounts = {m["mountPath"]: m["name"] for m in gw.get("volumeMounts", [])}
                vol = {v["name"]: v for v in pod.get("volumes", [])}.get(mounts.get(os.path.dirname(key_file)))
                if not vol or "secret" not in vol:
                    problems.append(f"{os.path.basename(r)}: {key_file} is on no mounted Secret")
    return Outcome.of_problems(problems)


def no_key_without_cluster(renders):
    """`helm template` cannot look the session key Secret up, so it must not render one: a key made
    here would replace the live one at every render (Argo CD), logging everyone out."""
    problems = []
    for r in renders:
        for s in manifests.find(manifests.load([r]), "Secret"):
            if s["metadata"]["name"].endswith("-session"):
                problems.append(f"{os.path.basename(r)}: renders Secret {s['metadata']['name']} without a cluster")
    return Outcome.of_problems(problems)
