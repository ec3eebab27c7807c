#!/usr/bin/env bash
# Edge protection benchmark: the load of bench/proxy.sh (wrk, keep-alive,
# a static upstream) through one gatehouse on routes that differ only in
# their protection, beside nginx's plain proxy, interleaved round by round:
#
#   a        no protection
#   b1       a throttle that admits everything, one key (client_ip)
#   b2       the same, keyed by 10,000 client addresses behind a trusted proxy
#   c1       RS256 JWT on every request, one token (the cache works)
#   c2       RS256 JWT, 10,000 distinct tokens (a signature check per new token)
#   d        throttle + JWT, one token
#   nginx    nginx proxying to the same upstream (bench/nginx-proxy.sh)
#   nginx-t  the same, each request carrying d's `Authorization` header
#            (nginx forwards it unread): what carrying a 700-byte token
#            costs wrk, the kernel and the upstream on a machine they share
#
# b2 and c2 pick a header value per request in a wrk Lua script, which
# costs wrk itself some throughput; "a-lua" is route a under the same
# script, their fair baseline.
#
# Then: RSS after 1,000,000 requests with distinct throttle keys (max_keys
# 100,000; 1/min with bursts of 1000, so every bucket stays busy and the cap,
# not the idle sweep, bounds them), against RSS before.
#
#   bench/protect.sh                    # RUNS=3 DURATION=5s CONNS=64
#   NO_BUILD=1 bench/protect.sh         # with the release binaries as they are
#   CPU=1 VARIANTS="a d nginx nginx-t" FLOOD=0 bench/protect.sh
#                                       # also where the CPU goes, per request
#
# With CPU=1, each run also reads the CPU time (user and system, from /proc)
# of the proxy, the upstream and wrk, and the table after the ratios gives
# their medians in microseconds per request: on two cores they share, a
# proxy's requests/s is set by the sum, not by its own part alone.
#
# Targets (issue 15): d keeps >= 90% of a's requests/s and >= 1.0x nginx.
# Installs wrk and nginx from Debian if missing. Release build.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
DURATION=${DURATION:-5s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
KEYS=${KEYS:-10000}
FLOOD=${FLOOD:-1000000}
UPSTREAM_PORT=${UPSTREAM_PORT:-19000}
NGINX_PORT=${NGINX_PORT:-19081}
GATEHOUSE_PORT=${GATEHOUSE_PORT:-19083}
ADMIN_PORT=${ADMIN_PORT:-19983}

. bench/need.sh
. bench/nginx-proxy.sh
need wrk wrk
need nginx nginx

[ -n "${NO_BUILD:-}" ] || cargo build --release --quiet --bin gatehouse --example upstream --example mint-token
. bench/work.sh

./target/release/examples/upstream --port "$UPSTREAM_PORT" --name static >/dev/null &
pids+=($!)
nginx_proxy_conf "$work/nginx.conf" "$work" "$NGINX_PORT" "$UPSTREAM_PORT" "access_log off;" "worker_processes auto;"
nginx -c "$work/nginx.conf" -p "$work" &
pids+=($!)

cp examples/jwt/jwks.json "$work/jwks.json"
open='rate: 1000000/s, burst: 1000000'
cat >"$work/routes.yaml" <<EOF
listen:
  gateway: { bind: "127.0.0.1:$GATEHOUSE_PORT" }
  admin: { bind: "127.0.0.1:$ADMIN_PORT" }
  aws: off
log: { access: false, level: warn }
trusted_proxies: [127.0.0.1]
auth:
  jwt:
    demo: { issuer: https://id.example.test/, audiences: [orders-api], jwks_file: jwks.json }
upstreams:
  static: { targets: ["http://127.0.0.1:$UPSTREAM_PORT"] }
routes:
  - { name: a, path: /a/*, strip_prefix: /a, upstream: static }
  - { name: b1, path: /b1/*, strip_prefix: /b1, upstream: static, throttle: { $open } }
  - { name: b2, path: /b2/*, strip_prefix: /b2, upstream: static, throttle: { $open } }
  - { name: c1, path: /c1/*, strip_prefix: /c1, upstream: static, auth: demo }
  - { name: c2, path: /c2/*, strip_prefix: /c2, upstream: static, auth: demo }
  - { name: d, path: /d/*, strip_prefix: /d, upstream: static, auth: demo, throttle: { $open } }
  - { name: flood, path: /flood/*, strip_prefix: /flood, upstream: static, throttle: { rate: 1/min, burst: 1000, key: "header:x-key" } }
EOF
./target/release/gatehouse serve --config "$work/routes.yaml" >"$work/gatehouse.log" 2>&1 &
gh_pid=$!
pids+=($gh_pid)

echo "minting $KEYS tokens ..." >&2
./target/release/examples/mint-token --count "$KEYS" >"$work/tokens.txt"
token=$(head -1 "$work/tokens.txt")

# Lua: a header value per request, from a file or a counter.
cat >"$work/pick.lua" <<'EOF'
local values = {}
local header = os.getenv("PICK_HEADER")
local prefix = os.getenv("PICK_PREFIX") or ""
for line in io.lines(os.getenv("PICK_FILE")) do values[#values + 1] = line end
request = function()
    local v = values[math.random(#values)]
    return wrk.format(nil, nil, { [header] = prefix .. v })
end
EOF
# Every key distinct: a counter per wrk thread, prefixed with the thread's
# number (set as a global in the thread's own Lua state).
cat >"$work/flood.lua" <<'EOF'
local made = 0
setup = function(thread) made = made + 1; thread:set("id", made) end
local counter = 0
request = function()
    counter = counter + 1
    return wrk.format(nil, nil, { ["x-key"] = id .. "-" .. counter })
end
EOF
for i in $(seq "$KEYS"); do echo "10.$((i / 65536)).$((i / 256 % 256)).$((i % 256))"; done >"$work/ips.txt"

wait_for "http://127.0.0.1:$UPSTREAM_PORT/healthz"
wait_for "http://127.0.0.1:$NGINX_PORT/healthz"
wait_for "http://127.0.0.1:$GATEHOUSE_PORT/a/healthz"

run() { # variant
    local g="http://127.0.0.1:$GATEHOUSE_PORT"
    case $1 in
        a) measure "$g/a/healthz" ;;
        a-lua) PICK_FILE=$work/ips.txt PICK_HEADER=x-ignored measure "$g/a/healthz" -s "$work/pick.lua" ;;
        b1) measure "$g/b1/healthz" ;;
        b2) PICK_FILE=$work/ips.txt PICK_HEADER=x-forwarded-for measure "$g/b2/healthz" -s "$work/pick.lua" ;;
        c1) measure "$g/c1/healthz" -H "Authorization: Bearer $token" ;;
        c2) PICK_FILE=$work/tokens.txt PICK_HEADER=authorization PICK_PREFIX="Bearer " measure "$g/c2/healthz" -s "$work/pick.lua" ;;
        d) measure "$g/d/healthz" -H "Authorization: Bearer $token" ;;
        nginx) measure "http://127.0.0.1:$NGINX_PORT/healthz" ;;
        nginx-t) measure "http://127.0.0.1:$NGINX_PORT/healthz" -H "Authorization: Bearer $token" ;;
    esac
}

variants=${VARIANTS:-a a-lua b1 b2 c1 c2 d nginx nginx-t}
nginx_pid=${pids[1]}
upstream_pid=${pids[0]}
# User and system CPU ticks used so far by the given processes, summed.
ticks() { for p in "$@"; do awk '{ print $14, $15 }' "/proc/$p/stat"; done | awk '{ u += $1; s += $2 } END { print u + 0, s + 0 }'; }
proxy_pids() { # variant
    case $1 in nginx*) pgrep -P "$nginx_pid" ;; *) echo "$gh_pid" ;; esac
}
# One run of a variant; with CPU=1 also appends "proxy-user proxy-system
# upstream wrk" (microseconds per request) to $work/VARIANT.cpu.
measured() { # variant
    if [ -z "${CPU:-}" ]; then
        run "$1"
        return
    fi
    local proxy
    proxy=$(proxy_pids "$1" | tr '\n' ' ')
    # shellcheck disable=SC2086
    read -r pu0 ps0 < <(ticks $proxy)
    read -r uu0 us0 < <(ticks "$upstream_pid")
    # wrk's CPU: the children's times of the subshell that waited for it.
    out=$(
        run "$1"
        awk '{ print $16 + $17 }' "/proc/$BASHPID/stat"
    )
    # shellcheck disable=SC2086
    read -r pu1 ps1 < <(ticks $proxy)
    read -r uu1 us1 < <(ticks "$upstream_pid")
    read -r rps p99 wrk_ticks < <(echo $out)
    awk -v r="$rps" -v d="${DURATION%s}" -v hz="$(getconf CLK_TCK)" \
        -v pu=$((pu1 - pu0)) -v ps=$((ps1 - ps0)) -v up=$((uu1 + us1 - uu0 - us0)) -v w="$wrk_ticks" '
        BEGIN { k = 1e6 / hz / (r * d); printf "%.2f %.2f %.2f %.2f\n", pu * k, ps * k, up * k, w * k }' >>"$work/$1.cpu"
    echo "$rps $p99"
}
# Warm up: pools, the token cache, every key and token seen once.
for v in $variants; do DURATION=2s run "$v" >/dev/null; done

echo "# wrk -t$THREADS -c$CONNS -d$DURATION, $RUNS interleaved rounds, $(nproc) cores, $KEYS keys/tokens"
printf '%-6s %-8s %12s %10s\n' round variant "req/s" "p99 ms"
for round in $(seq "$RUNS"); do
    order=$variants
    [ $((round % 2)) -eq 0 ] && order=$(echo "$variants" | tr ' ' '\n' | tac | tr '\n' ' ')
    for v in $order; do
        read -r rps p99 < <(measured "$v")
        echo "$rps" >>"$work/$v.rps"
        echo "$p99" >>"$work/$v.p99"
        cpu=""
        [ -z "${CPU:-}" ] || cpu="  cpu us/req (proxy usr, sys, upstream, wrk): $(tail -1 "$work/$v.cpu")"
        printf '%-6s %-8s %12s %10s%s\n' "$round" "$v" "$rps" "$p99" "$cpu"
    done
done

echo
# Ratios taken within each round (the variants measured back to back),
# then their median: less exposed to this machine's load drifting between
# rounds than the ratio of the medians.
ratio() { # variant base
    paste "$work/$1.rps" "$work/$2.rps" | awk '{ printf "%.4f\n", $1 / $2 }' | median
}
printf '%-8s %12s %10s %8s %8s\n' variant "req/s" "p99 ms" "vs a" "vs nginx"
for v in $variants; do
    base=a
    case $v in b2 | c2) base=a-lua ;; esac
    printf '%-8s %12s %10s %7.2fx %7.2fx\n' "$v" "$(median <"$work/$v.rps")" "$(median <"$work/$v.p99")" \
        "$(ratio "$v" "$base")" "$(ratio "$v" nginx)"
done
echo "(medians over rounds; ratios are medians of per-round ratios)"
echo "(b2 and c2 are compared with a-lua, route a under the same wrk script)"
case " $variants " in *" c1 "*" d "*" nginx-t "*)
    printf 'c1 vs nginx-t %.2fx, d vs nginx-t %.2fx (nginx carrying the same token)\n' "$(ratio c1 nginx-t)" "$(ratio d nginx-t)" ;;
esac
if [ -n "${CPU:-}" ]; then
    echo
    echo "# CPU per request, microseconds (medians over rounds; wrk's from its own rusage)"
    printf '%-8s %10s %10s %10s %10s %10s\n' variant "proxy usr" "proxy sys" upstream wrk total
    for v in $variants; do
        col() { awk -v c="$1" '{ print $c }' "$work/$v.cpu" | median; }
        tot=$(awk '{ printf "%.2f\n", $1 + $2 + $3 + $4 }' "$work/$v.cpu" | median)
        printf '%-8s %10s %10s %10s %10s %10s\n' "$v" "$(col 1)" "$(col 2)" "$(col 3)" "$(col 4)" "$tot"
    done
fi

[ "$FLOOD" -gt 0 ] || exit 0
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$gh_pid/status"; }
before=$(rss_kb)
echo
echo "# $FLOOD requests with distinct throttle keys (max_keys 100000) ..."
requests=0
while [ "$requests" -lt "$FLOOD" ]; do
    out=$(wrk -t"$THREADS" -c"$CONNS" -d5s -s "$work/flood.lua" "http://127.0.0.1:$GATEHOUSE_PORT/flood/healthz")
    done_now=$(echo "$out" | awk '/requests in/ { print $1 }')
    requests=$((requests + done_now))
done
after=$(rss_kb)
metrics=$(curl -s "http://127.0.0.1:$ADMIN_PORT/metrics")
keys=$(echo "$metrics" | awk '/^gatehouse_throttle_keys\{route="flood"/ { print $2 }')
evicted=$(echo "$metrics" | awk '/^gatehouse_throttle_evictions_total\{route="flood".*capacity/ { print $2 }')
awk -v b="$before" -v a="$after" -v r="$requests" -v k="$keys" -v e="$evicted" 'BEGIN {
    printf "requests %d, keys held %d, evicted for capacity %d\n", r, k, e
    printf "RSS before %.1f MB, after %.1f MB (+%.1f MB)\n", b / 1024, a / 1024, (a - b) / 1024
}'
