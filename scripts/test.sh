#!/usr/bin/env bash
# The test suite: installs the real servers the tests start (Debian's nginx, haproxy and redis-server) and curl when missing, then runs
# `cargo test`. Extra arguments go to cargo test, e.g. `bash scripts/test.sh --test hardening_paths`.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || need+=(redis-server)
# redis-cli joins the Redis Cluster nodes and asks the sentinels (Debian ships it in redis-tools).
command -v redis-cli >/dev/null 2>&1 || [ -x /usr/bin/redis-cli ] || need+=(redis-tools)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
# tests/demo_commands.rs runs the curl lines `drawbridge demo` prints.
command -v curl >/dev/null 2>&1 || need+=(curl)

if [ "${#need[@]}" -gt 0 ]; then
    echo "installing ${need[*]} (the tests start real servers)"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    # The package starts a system nginx on port 80; the tests run their own, so stop it.
    if command -v systemctl >/dev/null 2>&1; then $sudo systemctl stop nginx >/dev/null 2>&1 || true; fi
    $sudo nginx -s stop >/dev/null 2>&1 || true
    # Likewise a system redis on 6379: the tests start theirs on free ports.
    if command -v systemctl >/dev/null 2>&1; then $sudo systemctl stop redis-server >/dev/null 2>&1 || true; fi
    # And a system haproxy: the tests start theirs with their own configs.
    if command -v systemctl >/dev/null 2>&1; then $sudo systemctl stop haproxy >/dev/null 2>&1 || true; fi
fi

exec cargo test --locked "$@"
