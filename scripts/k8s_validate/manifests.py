"""The properties a set of drawbridge manifests must have, beyond what the schemas say.

:func:`check` takes the documents of one chart render or one deploy/ directory and returns one
line per problem: the drawbridge container's security context and probes, the config mounted
where the arguments say, a termination grace longer than preStop plus drain, no subPath mounts,
TLS files on mounted secrets, selectors that select, and the ServiceMonitor's shape.
"""

import os
import re

import yaml

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

# Kinds kubernetes-validate has no schema for; checked here instead.
CRD_GROUPS = ("monitoring.coreos.com/",)

# The drawbridge image's non-root user.
RUN_AS_USER = 65532

# What the ServiceMonitor spec may hold.
SERVICE_MONITOR_KEYS = {
    "selector",
    "namespaceSelector",
    "endpoints",
    "jobLabel",
    "targetLabels",
    "podTargetLabels",
    "sampleLimit",
}


def load(paths):
    """Every non-empty YAML document in `paths`, in order."""
    docs = []
    for path in paths:
        with open(path) as f:
            docs += [d for d in yaml.safe_load_all(f) if d]
    return docs


def split_builtin(render, core_out):
    """Writes the built-in kinds of `render` to `core_out`, leaving out the CRD kinds."""
    docs = load([render])
    core = [d for d in docs if not d.get("apiVersion", "").startswith(CRD_GROUPS)]
    with open(core_out, "w") as f:
        yaml.safe_dump_all(core, f, sort_keys=False)


def matches(selector, labels):
    """A non-empty equality selector that `labels` satisfy."""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def find(docs, kind, name=None):
    """The documents of `kind` (named `name`, if given)."""
    return [d for d in docs if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)]


def toml_of(docs, cm_name):
    """drawbridge.toml of the ConfigMap `cm_name`, parsed; None when there is none."""
    for cm in find(docs, "ConfigMap", cm_name):
        text = (cm.get("data") or {}).get("drawbridge.toml")
        if text is not None:
            return tomllib.loads(text)
    return None


def check_deployment(docs, dep, helm, errors):
    """Appends to `errors` what is wrong with the Deployment `dep`; `helm` for a chart render."""
    name = dep["metadata"]["name"]

    def err(msg):
        errors.append(f"Deployment {name}: {msg}")

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
    check_security_context(pod.get("securityContext", {}), db.get("securityContext", {}), err)
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
    grace = cfg.get("shutdown", {}).get("grace_seconds", 0)
    sleep = (((db.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}).get("seconds", 0)
    term = pod.get("terminationGracePeriodSeconds", 30)
    if term <= grace + sleep:
        err(f"terminationGracePeriodSeconds {term} <= preStop sleep {sleep} + grace_seconds {grace}")
    check_files(cfg, vols, mounts, err)
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


def check_security_context(psc, csc, err):
    """The drawbridge container's security context (`csc`), falling back to the pod's (`psc`)."""

    def eff(key):
        return csc.get(key, psc.get(key))

    if eff("runAsNonRoot") is not True:
        err("runAsNonRoot is not true")
    if eff("runAsUser") != RUN_AS_USER:
        err(f"runAsUser is not {RUN_AS_USER}")
    if csc.get("readOnlyRootFilesystem") is not True:
        err("readOnlyRootFilesystem is not true")
    if csc.get("allowPrivilegeEscalation") is not False:
        err("allowPrivilegeEscalation is not false")
    if "ALL" not in (csc.get("capabilities") or {}).get("drop", []):
        err("capabilities do not drop ALL")
    if (eff("seccompProfile") or {}).get("type") != "RuntimeDefault":
        err("seccompProfile is not RuntimeDefault")


def check_files(cfg, vols, mounts, err):
    """Every file the config `cfg` names lives in a directory a secret is mounted as."""
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
    files += auth_files(cfg)
    for f in filter(None, files):
        vol = vols.get(mounts.get(os.path.dirname(f), ""))
        if not vol or "secret" not in vol:
            err(f"{f}: no secret is mounted as the directory {os.path.dirname(f)}")


AUTH_DIR = "/etc/drawbridge/auth/"
FILE_REF = re.compile(r"\$\{file:(/etc/drawbridge/auth/[^}]+)\}")


def auth_files(value):
    """Every file under /etc/drawbridge/auth/ the config `value` names (as a path, or read through
    ${file:..}), wherever it is."""
    if isinstance(value, dict):
        return [f for v in value.values() for f in auth_files(v)]
    if isinstance(value, list):
        return [f for v in value for f in auth_files(v)]
    if isinstance(value, str):
        if value.startswith(AUTH_DIR):
            return [value]
        return FILE_REF.findall(value)
    return []


def check(docs, helm):
    """Every problem of the manifests `docs` (one render, or one deploy/ directory), one line each;
    `helm` for a chart render."""
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
        names = {
            p.get("name")
            for d in targets
            for c in d["spec"]["template"]["spec"]["containers"]
            for p in c.get("ports", [])
        }
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
        check_service_monitor(docs, sm, errors)
    return errors


def check_service_monitor(docs, sm, errors):
    """Appends to `errors` what is wrong with the ServiceMonitor `sm` (a CRD: no schema checks it)."""
    name = sm["metadata"]["name"]
    if sm.get("apiVersion") != "monitoring.coreos.com/v1":
        errors.append(f"ServiceMonitor {name}: apiVersion {sm.get('apiVersion')}")
    spec = sm.get("spec") or {}
    for key in set(spec) - SERVICE_MONITOR_KEYS:
        errors.append(f"ServiceMonitor {name}: unexpected spec.{key}")
    sel = (spec.get("selector") or {}).get("matchLabels") or {}
    svcs = [s for s in find(docs, "Service") if matches(sel, s["metadata"].get("labels", {}))]
    svc_ports = {p.get("name") for s in svcs for p in s["spec"]["ports"]}
    for ep in spec.get("endpoints") or [{}]:
        if ep.get("port") not in svc_ports:
            errors.append(f"ServiceMonitor {name}: port {ep.get('port')!r} is on no selected Service")
        if ep.get("path", "/metrics") != "/metrics":
            errors.append(f"ServiceMonitor {name}: path {ep.get('path')}")
