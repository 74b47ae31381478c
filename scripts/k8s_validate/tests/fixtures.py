"""Small, valid manifests to break one property at a time."""

import copy

LABELS = {"app.kubernetes.io/name": "drawbridge"}

EDGE_TOML = """\
[listen]
addr = "0.0.0.0:8443"

[tls]
cert_file = "/etc/drawbridge/tls/tls.crt"
key_file = "/etc/drawbridge/tls/tls.key"

[admin]
addr = "0.0.0.0:9090"

[upstream]
url = "http://sync-server:8080"

[shutdown]
grace_seconds = 25
"""


def edge():
    """An edge gateway: Deployment, its ConfigMap and TLS secret mounts, a Service, an HPA, a PDB."""
    container = {
        "name": "drawbridge",
        "image": "drawbridge:0.1.0",
        "args": ["run", "--config", "/etc/drawbridge/config/drawbridge.toml"],
        "ports": [
            {"name": "gateway", "containerPort": 8443},
            {"name": "admin", "containerPort": 9090},
        ],
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "admin"}},
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "admin"}},
        "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/drawbridge/config"},
            {"name": "tls", "mountPath": "/etc/drawbridge/tls"},
        ],
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "drawbridge"},
        "spec": {
            "selector": {"matchLabels": dict(LABELS)},
            "template": {
                "metadata": {"labels": dict(LABELS), "annotations": {"checksum/config": "0"}},
                "spec": {
                    "terminationGracePeriodSeconds": 35,
                    "containers": [container],
                    "volumes": [
                        {"name": "config", "configMap": {"name": "drawbridge"}},
                        {"name": "tls", "secret": {"secretName": "drawbridge-tls"}},
                    ],
                },
            },
        },
    }
    return [
        deployment,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "drawbridge"},
            "data": {"drawbridge.toml": EDGE_TOML},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "drawbridge", "labels": dict(LABELS)},
            "spec": {
                "selector": dict(LABELS),
                "ports": [
                    {"name": "https", "port": 443, "targetPort": "gateway"},
                    {"name": "metrics", "port": 9090, "targetPort": "admin"},
                ],
            },
        },
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "drawbridge"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "drawbridge"}},
        },
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "drawbridge"},
            "spec": {"selector": {"matchLabels": dict(LABELS)}},
        },
    ]


def service_monitor():
    """A ServiceMonitor scraping the edge Service's metrics port."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "drawbridge"},
        "spec": {
            "selector": {"matchLabels": dict(LABELS)},
            "endpoints": [{"port": "metrics", "path": "/metrics"}],
        },
    }


def of_kind(docs, kind):
    """The first document of `kind` in `docs` (to edit in place)."""
    return next(d for d in docs if d["kind"] == kind)


def container(docs):
    """The drawbridge container of the Deployment in `docs`."""
    return of_kind(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def pod(docs):
    """The pod spec of the Deployment in `docs`."""
    return of_kind(docs, "Deployment")["spec"]["template"]["spec"]


def with_toml(docs, text):
    """`docs` with drawbridge.toml replaced by `text`."""
    docs = copy.deepcopy(docs)
    of_kind(docs, "ConfigMap")["data"]["drawbridge.toml"] = text
    return docs
