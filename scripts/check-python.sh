#!/usr/bin/env bash
# Lints and tests the Python under scripts/ (the k8s_validate package run by
# validate-k8s.sh): `ruff check`, `ruff format --check`, and its unit tests
# with `python -m unittest`. Uses the venv validate-k8s.sh uses, installing
# it on the first run (scripts/k8s-tools.sh). Reads no stdin.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# shellcheck source=scripts/k8s-tools.sh
source scripts/k8s-tools.sh

install_venv

"$VENV/bin/ruff" --version
"$VENV/bin/ruff" check --no-cache scripts/
"$VENV/bin/ruff" format --no-cache --check scripts/
"$VENV/bin/python" -B -m unittest discover --start-directory scripts --top-level-directory scripts </dev/null
