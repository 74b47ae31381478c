"""The external tools the checks call, as scripts/validate-k8s.sh installed them."""

import os
import subprocess
from dataclasses import dataclass

from k8s_validate import manifests
from k8s_validate.runner import Outcome, run

# The Kubernetes release whose schemas the manifests must satisfy.
K8S_VERSION = "1.34.0"

# The file that parses the dashboard's queries with Prometheus's own PromQL grammar.
PROMQL_CHECK = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "promql-check.mjs")


@dataclass(frozen=True)
class Tools:
    """Where each tool is."""

    helm: str
    kubernetes_validate: str
    hadolint: str
    shellcheck: str
    # A directory whose node_modules holds @prometheus-io/lezer-promql.
    promql_modules: str
    node: str = "node"

    def versions(self):
        """The line that says which helm and which schemas this run uses."""
        helm = subprocess.run(
            [self.helm, "version", "--template", "{{.Version}}"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        kv = subprocess.run(
            [self.kubernetes_validate, "--version"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.replace("\n", "")
        return f"helm {helm}, kubernetes-validate {kv} (Kubernetes {K8S_VERSION} schemas)"

    def kubevalidate(self, *paths):
        """kubernetes-validate --strict against the K8S_VERSION schemas.

        kubernetes-validate exits 0 on a kind it has no schema for and only prints
        "WARN ... Couldn't find schema for kind X" (there is no flag to make that an error;
        --no-warn would only hide it), so a misspelled kind would pass: any WARN is a failure."""
        outcome = run([self.kubernetes_validate, "-k", K8S_VERSION, "--strict", "--quiet", *paths])
        if any(line.startswith("WARN") for line in outcome.output.splitlines()):
            return Outcome(
                False,
                outcome.output.rstrip("\n")
                + "\nkubernetes-validate has no schema for a kind above: a typo, or a CRD this script does not know",
            )
        return outcome

    def kubevalidate_render(self, render):
        """kubevalidate for a chart render: the CRD kinds (ServiceMonitor) have no schema there, so
        they are split out first (the property checks look at them instead)."""
        core = render.removesuffix(".yaml") + ".core.yaml"
        manifests.split_builtin(render, core)
        return self.kubevalidate(core)

    def promql_check(self, dashboard):
        """Parses every query of `dashboard` as PromQL."""
        return run([self.node, PROMQL_CHECK, "--modules", self.promql_modules, dashboard])
