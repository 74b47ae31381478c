"""Offline checks of everything drawbridge ships for Kubernetes.

``scripts/validate-k8s.sh`` installs the tools and runs this package as
``python -m k8s_validate``; :mod:`k8s_validate.suite` lists the checks in the
order they run. The modules:

- :mod:`~k8s_validate.runner`: counting checks, showing a check's output only when it fails;
- :mod:`~k8s_validate.tools`: the external tools (helm, kubernetes-validate, ...) and how they are called;
- :mod:`~k8s_validate.chart`: the Helm chart's renders, and the values it must refuse;
- :mod:`~k8s_validate.manifests`: the properties a set of manifests must have;
- :mod:`~k8s_validate.configs`: drawbridge.toml taken out of the ConfigMaps;
- :mod:`~k8s_validate.dashboard`: the Grafana dashboard's panels and queries.
"""
