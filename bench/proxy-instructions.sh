#!/usr/bin/env bash
# Instructions per proxied request, counted by callgrind: a figure that does
# not move with the load on this shared machine, so a change to the request
# path can be judged before (and beside) the wall-clock benchmark.
#
# The proxy runs under `valgrind --tool=callgrind` with one worker; after a
# warm-up, instrumentation is switched on for a fixed wrk load and the
# instructions counted are divided by the requests wrk completed.
#
#   bench/proxy-instructions.sh                  # gatehouse, release build
#   PROFILE=quick bench/proxy-instructions.sh    # faster to build, not for records
#   PEER=nginx bench/proxy-instructions.sh       # nginx, counted the same way
#   PROTECT=throttle bench/proxy-instructions.sh # the route throttled (admitting all),
#   PROTECT=jwt ...                              # or with RS256 JWT (one token, cached),
#   PROTECT=both ...                             # or both, as bench/protect.sh's b1, c1, d
#   PROTECT=waf LOAD=get ...                     # the shipped WAF rules, under one of
#                                                # bench/waf.sh's loads (get, post, unique)
#
# nginx runs with one worker and no master process, configured as in
# bench/proxy.sh (bench/nginx-proxy.sh). BIN=path counts another gatehouse
# binary (an older build, to compare). KEEP=path keeps the callgrind output.
# CONNS sets wrk's connections (4). CALLGRIND_OPTS adds callgrind options:
# with "--cache-sim=yes" (and/or "--branch-sim=yes") every simulated event
# is printed per request too (cache misses of a modelled cache, not this
# machine's: the VM exposes no hardware counters).
#
# Installs wrk and valgrind (and nginx for PEER=nginx) from Debian if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE=${PROFILE:-release}
PEER=${PEER:-gatehouse}
DURATION=${DURATION:-6s}
UPSTREAM_PORT=${UPSTREAM_PORT:-19010}
PROXY_PORT=${PROXY_PORT:-19092}
CONNS=${CONNS:-4}
read -r -a extra <<<"${CALLGRIND_OPTS:-}"

. bench/need.sh
. bench/nginx-proxy.sh
. bench/gatehouse-proxy.sh
need wrk wrk
need valgrind valgrind
if [ "$PEER" = nginx ]; then need nginx nginx; fi

cargo build --profile "$PROFILE" --quiet --bin gatehouse --example upstream --example mint-token
dir=target/$PROFILE
open_limit=", throttle: { rate: 1000000/s, burst: 1000000 }"
jwt_top="auth: { jwt: { demo: { issuer: https://id.example.test/, audiences: [orders-api], jwks_file: $PWD/examples/jwt/jwks.json } } }"
case ${PROTECT:-none} in
    none) ;;
    throttle) ROUTE_KEYS=$open_limit ;;
    jwt) ROUTE_KEYS=", auth: demo" TOP=$jwt_top ;;
    both) ROUTE_KEYS=", auth: demo$open_limit" TOP=$jwt_top ;;
    waf) TOP="waf: { rules: $PWD/waf-rules }" ;;
    *) echo "PROTECT is none, throttle, jwt, both or waf" >&2; exit 64 ;;
esac
export ROUTE_KEYS
case ${PROTECT:-none} in jwt | both) WRK_HEADER="Authorization: Bearer $("$dir/examples/mint-token")" ;; esac
before_cleanup() { if [ -n "${KEEP:-}" ]; then cp "$work/cg.out" "$KEEP"; fi; }
. bench/work.sh

"$dir/examples/upstream" --port "$UPSTREAM_PORT" --name static >/dev/null &
pids+=($!)
callgrind=(valgrind --tool=callgrind --instr-atstart=no "${extra[@]}" --callgrind-out-file="$work/cg.out")
if [ "$PEER" = nginx ]; then
    nginx_proxy_conf "$work/nginx.conf" "$work" "$PROXY_PORT" "$UPSTREAM_PORT" "access_log off;" \
        "worker_processes 1;" "master_process off;"
    "${callgrind[@]}" nginx -c "$work/nginx.conf" -p "$work" >"$work/proxy.log" 2>&1 &
else
    gatehouse_proxy_conf "$work/routes.yaml" "$PROXY_PORT" "$UPSTREAM_PORT" false "" "workers: 1" "${TOP:-}"
    "${callgrind[@]}" "${BIN:-$dir/gatehouse}" serve --config "$work/routes.yaml" >"$work/proxy.log" 2>&1 &
fi
vg=$!
pids+=($vg)
url="http://127.0.0.1:$PROXY_PORT/healthz"
for _ in $(seq 300); do
    curl -fs -o /dev/null "$url" && break
    sleep 0.1
done
headers=()
if [ -n "${WRK_HEADER:-}" ]; then headers=(-H "$WRK_HEADER"); fi
. bench/waf-loads.sh
case ${LOAD:-plain} in
    plain) ;;
    get) url="http://127.0.0.1:$PROXY_PORT$waf_query" headers+=("${waf_browser[@]}") ;;
    post) waf_post_lua "$work/post.lua" && headers+=(-s "$work/post.lua") ;;
    unique) waf_post_lua "$work/post.lua" unique && headers+=(-s "$work/post.lua") ;;
    *) echo "LOAD is plain, get, post or unique" >&2; exit 64 ;;
esac
wrk -t1 -c"$CONNS" -d2s "${headers[@]}" "$url" >/dev/null
callgrind_control -i on "$vg" >/dev/null
requests=$(wrk -t1 -c"$CONNS" -d"$DURATION" "${headers[@]}" "$url" | awk '/requests in/ { print $1 }')
callgrind_control -i off "$vg" >/dev/null
# Both write their profile when they stop: nginx on QUIT, gatehouse on INT.
if [ "$PEER" = nginx ]; then kill -QUIT "$vg"; else kill -INT "$vg"; fi
wait "$vg" 2>/dev/null || true
total=$(callgrind_annotate "$work/cg.out" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
awk -v p="$PEER" -v t="$total" -v n="$requests" 'BEGIN { printf "%s: %d requests, %.0f instructions per request\n", p, n, t / n }'
if [ ${#extra[@]} -gt 0 ]; then
    callgrind_annotate "$work/cg.out" 2>/dev/null | awk -v n="$requests" '
        /^Events shown:/ { for (i = 3; i <= NF; i++) name[i - 2] = $i; k = NF - 2 }
        /PROGRAM TOTALS/ {
            # Each total is followed by its share, "(100.0%)".
            j = 0
            for (i = 1; i <= NF && j < k; i++) if ($i !~ /[()]/) { v = $i; gsub(",", "", v); printf "  %s %.1f", name[++j], v / n }
            print " (per request)"
        }'
fi
