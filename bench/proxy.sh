#!/usr/bin/env bash
# Proxy benchmark: the same wrk load against
#   (a) a small static upstream directly,
#   (b) nginx proxying to it with upstream keep-alive,
#   (c) gatehouse proxying to it,
# interleaved round by round, several rounds, medians reported, plus the
# gatehouse/nginx ratios. Both proxies do equivalent work: HTTP/1.1
# keep-alive to the upstream, X-Forwarded-For/-Proto/-Host and X-Request-Id
# set, access logs off (ACCESS_LOG=on turns them on for both).
#
#   bench/proxy.sh                         # defaults below
#   RUNS=7 DURATION=15s CONNS=64 bench/proxy.sh
#
# Installs wrk and nginx from Debian if missing. Release build.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-5}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
ACCESS_LOG=${ACCESS_LOG:-off}
UPSTREAM_PORT=${UPSTREAM_PORT:-19000}
NGINX_PORT=${NGINX_PORT:-19081}
GATEHOUSE_PORT=${GATEHOUSE_PORT:-19082}
PATH_UNDER_TEST=/healthz

. bench/need.sh
. bench/nginx-proxy.sh
. bench/gatehouse-proxy.sh
need wrk wrk
need nginx nginx

cargo build --release --quiet --bin gatehouse --example upstream
. bench/work.sh

./target/release/examples/upstream --port "$UPSTREAM_PORT" --name static >/dev/null &
pids+=($!)

nginx_log="access_log off;"
[ "$ACCESS_LOG" = on ] && nginx_log="access_log $work/access.log;"
nginx_proxy_conf "$work/nginx.conf" "$work" "$NGINX_PORT" "$UPSTREAM_PORT" "$nginx_log" "worker_processes auto;"
nginx -c "$work/nginx.conf" -p "$work" &
pids+=($!)

gh_log=false
[ "$ACCESS_LOG" = on ] && gh_log=true
gatehouse_proxy_conf "$work/routes.yaml" "$GATEHOUSE_PORT" "$UPSTREAM_PORT" "$gh_log"
./target/release/gatehouse serve --config "$work/routes.yaml" >"$work/gatehouse.log" 2>&1 &
pids+=($!)

wait_for "http://127.0.0.1:$UPSTREAM_PORT$PATH_UNDER_TEST"
wait_for "http://127.0.0.1:$NGINX_PORT$PATH_UNDER_TEST"
wait_for "http://127.0.0.1:$GATEHOUSE_PORT$PATH_UNDER_TEST"

# Warm up every path (connection pools, caches).
for port in "$UPSTREAM_PORT" "$NGINX_PORT" "$GATEHOUSE_PORT"; do
    wrk -t"$THREADS" -c"$CONNS" -d2s "http://127.0.0.1:$port$PATH_UNDER_TEST" >/dev/null
done

echo "# wrk -t$THREADS -c$CONNS -d$DURATION, $RUNS interleaved rounds (proxies alternate going first), access logs $ACCESS_LOG, $(nproc) cores"
printf '%-6s %-10s %12s %10s\n' round target "req/s" "p99 ms"
for round in $(seq "$RUNS"); do
    # The proxies take turns going first, so neither always runs in the
    # wake of the other (its closing connections, its idle pool).
    order="direct nginx gatehouse"
    [ $((round % 2)) -eq 0 ] && order="direct gatehouse nginx"
    for t in $order; do
        case $t in
            direct) port=$UPSTREAM_PORT ;;
            nginx) port=$NGINX_PORT ;;
            gatehouse) port=$GATEHOUSE_PORT ;;
        esac
        read -r rps p99 < <(measure "http://127.0.0.1:$port$PATH_UNDER_TEST")
        echo "$rps" >>"$work/$t.rps"
        echo "$p99" >>"$work/$t.p99"
        printf '%-6s %-10s %12s %10s\n' "$round" "$t" "$rps" "$p99"
    done
done

echo
printf '%-10s %14s %14s\n' target "median req/s" "median p99 ms"
for t in direct nginx gatehouse; do
    printf '%-10s %14s %14s\n' "$t" "$(median <"$work/$t.rps")" "$(median <"$work/$t.p99")"
done
n_rps=$(median <"$work/nginx.rps")
g_rps=$(median <"$work/gatehouse.rps")
n_p99=$(median <"$work/nginx.p99")
g_p99=$(median <"$work/gatehouse.p99")
echo
awk -v g="$g_rps" -v n="$n_rps" 'BEGIN { printf "gatehouse/nginx requests/s: %.2fx\n", g / n }'
awk -v g="$g_p99" -v n="$n_p99" 'BEGIN { printf "gatehouse/nginx p99:        %.2fx (below 1 is better)\n", g / n }'
# The same ratios taken within each round (the two proxies measured back to
# back), then their median: less exposed to the machine's load drifting
# between rounds than the ratio of the medians.
r_rps=$(paste "$work/gatehouse.rps" "$work/nginx.rps" | awk '{ printf "%.4f\n", $1 / $2 }' | median)
r_p99=$(paste "$work/gatehouse.p99" "$work/nginx.p99" | awk '{ printf "%.4f\n", $1 / $2 }' | median)
awk -v r="$r_rps" -v p="$r_p99" 'BEGIN { printf "median of per-round ratios: requests/s %.2fx, p99 %.2fx\n", r, p }'
