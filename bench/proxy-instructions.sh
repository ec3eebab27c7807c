#!/usr/bin/env bash
# Instructions per proxied request, counted by callgrind: a figure that does
# not move with the load on this shared machine, so a change to the request
# path can be judged before (and beside) the wall-clock benchmark.
#
# gatehouse runs under `valgrind --tool=callgrind` with one worker; after a
# warm-up, instrumentation is switched on for a fixed wrk load and the
# instructions counted are divided by the requests wrk completed.
#
#   bench/proxy-instructions.sh                  # release build
#   PROFILE=quick bench/proxy-instructions.sh    # faster to build, not for records
#
# Installs wrk and valgrind from Debian if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE=${PROFILE:-release}
DURATION=${DURATION:-6s}
UPSTREAM_PORT=${UPSTREAM_PORT:-19010}
GATEHOUSE_PORT=${GATEHOUSE_PORT:-19092}

. bench/need.sh
need wrk wrk
need valgrind valgrind

cargo build --profile "$PROFILE" --quiet --bin gatehouse --example upstream
dir=target/$PROFILE
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -n "${KEEP:-}" ] && cp "$work/cg.out" "$KEEP"
    rm -rf "$work"
}
trap cleanup EXIT

"$dir/examples/upstream" --port "$UPSTREAM_PORT" --name static >/dev/null &
pids+=($!)
cat >"$work/routes.yaml" <<EOF
listen:
  gateway: { bind: "127.0.0.1:$GATEHOUSE_PORT" }
  admin: off
workers: 1
log: { access: false, level: warn }
upstreams:
  static: { targets: ["http://127.0.0.1:$UPSTREAM_PORT"] }
routes:
  - { name: all, path: /*, upstream: static }
EOF
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/cg.out" \
    "$dir/gatehouse" serve --config "$work/routes.yaml" >"$work/gatehouse.log" 2>&1 &
vg=$!
pids+=($vg)
for _ in $(seq 300); do
    curl -fs -o /dev/null "http://127.0.0.1:$GATEHOUSE_PORT/healthz" && break
    sleep 0.1
done
url="http://127.0.0.1:$GATEHOUSE_PORT/healthz"
wrk -t1 -c4 -d2s "$url" >/dev/null
callgrind_control -i on "$vg" >/dev/null
requests=$(wrk -t1 -c4 -d"$DURATION" "$url" | awk '/requests in/ { print $1 }')
callgrind_control -i off "$vg" >/dev/null
kill -INT "$vg"
wait "$vg" 2>/dev/null || true
total=$(callgrind_annotate "$work/cg.out" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
awk -v t="$total" -v n="$requests" 'BEGIN { printf "%d requests, %.0f instructions per request\n", n, t / n }'
