#!/usr/bin/env bash
# End-to-end benchmark: the demo sync server direct, through HAProxy (TLS only, no auth), through
# nginx and through drawbridge, all on 127.0.0.1 (see BENCHMARKS.md). Installs what it needs (nginx,
# haproxy and wrk from Debian, matplotlib in a venv), builds drawbridge and the load client in release
# mode, measures (bench.py prints its estimate first: about 15 min with the defaults, up to 2 more
# on a busy machine), and writes benches/e2e/results.json and benches/e2e/plots/*.png.
#
#   bash benches/e2e/run.sh                 # everything
#   bash benches/e2e/run.sh --only ws,tls   # some rows (auth, http, h2, ws, tls, storm, login_storm,
#                                           # forward_auth, idle, decisions, verified);
#                                           # --reps N, --seconds N, --storm N (clients per storm)
#   bash benches/e2e/run.sh --only storm,login_storm   # the reconnect storm and the login storm
#   bash benches/e2e/run.sh --only observability   # audit, access log and tracing against off
#   (--only cluster: cluster mode off vs on and revocation propagation, with redis-server; see BENCHMARKS.md)
#   bash benches/e2e/run.sh --only head_to_head --reps 6   # the 64 KiB and GET latency rows with
#                                           # drawbridge and HAProxy alternating, round by round
#   bash benches/e2e/run.sh --only decisions,verified --reps 1   # RSS per cached decision (100,000
#                                           # logins) and per remembered forward-auth session;
#                                           # they and the idle row write benches/e2e/costs.json
#   E2E_NICE=-19 bash benches/e2e/run.sh    # on a machine something else is using: the benchmark first
#   E2E_DRAWBRIDGE=/path/to/drawbridge bash benches/e2e/run.sh --out before.json
#                                           # measure a drawbridge built elsewhere (an older commit, for a
#                                           # before column); the load client is still built here
#
# CARGO_TARGET_DIR is honoured (default: target/). Needs root for apt-get, or nginx, haproxy and wrk
# installed.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
e2e=$root/benches/e2e
target=${CARGO_TARGET_DIR:-$root/target}

if ! command -v nginx >/dev/null || ! command -v haproxy >/dev/null || ! command -v wrk >/dev/null \
    || ! command -v taskset >/dev/null || ! command -v redis-server >/dev/null \
    || ! command -v valgrind >/dev/null || ! command -v h2load >/dev/null; then
    echo "== installing nginx, haproxy, wrk, h2load, redis-server and valgrind (apt; redis-server for --only cluster, valgrind for --only observability)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx haproxy wrk nghttp2-client openssl util-linux \
        redis-server valgrind >/dev/null
fi
venv=${E2E_VENV:-$HOME/.cache/drawbridge-e2e/venv}
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
    echo "== installing matplotlib into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q matplotlib
fi

drawbridge=${E2E_DRAWBRIDGE:-}
if [ -z "$drawbridge" ]; then
    echo "== building drawbridge and the load client (release)"
    cargo build --release --locked --bin drawbridge --target-dir "$target"
    drawbridge=$target/release/drawbridge
else
    echo "== measuring $drawbridge ($("$drawbridge" --version)); building the load client (release)"
fi
# Separately: built together, the two would unify their dependencies' features, and the
# drawbridge measured would not be the one `cargo build --bin drawbridge` makes.
cargo build --release --locked -p drawbridge-e2e-load --target-dir "$target"

# Idle tunnels and the storms need descriptors: two per proxied websocket in the proxy.
ulimit -n "$(ulimit -Hn)"
work=$(mktemp -d /tmp/drawbridge-e2e.XXXXXX)
echo "== measuring (logs and configs in $work)"
"$venv/bin/python" "$e2e/bench.py" \
    --drawbridge "$drawbridge" \
    --load "$target/release/e2e-load" \
    --work "$work" \
    --out "$e2e/results.json" "$@" | tee "$work/table.md"
"$venv/bin/python" "$e2e/plots.py" "$e2e/results.json" "$e2e/plots"
echo "== plots in $e2e/plots, table in $work/table.md"
