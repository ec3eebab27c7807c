#!/usr/bin/env bash
# WAF benchmark (issue 16), in one run: gatehouse's WAF with the shipped
# rules against nginx + ModSecurity v3 + OWASP CRS (Debian's packages: CRS
# 3.3.4, paranoia 1, blocking, SecRequestBodyAccess On), in front of the
# same upstream.
#
# 1. Accuracy: the corpora of tests/waf (attacks and benign requests, each
#    request as raw bytes) through both; refused per family
#    (examples/waf-corpus.rs).
# 2. Speed: wrk against
#      a       gatehouse, the route without the WAF
#      b       gatehouse with the shipped rules
#      c       gatehouse with WAF + RS256 JWT + a throttle admitting all
#      nginx   nginx's plain proxy
#      modsec  nginx + ModSecurity + CRS
#    under three loads (LOADS): a GET with a realistic query string and
#    browser headers (get), a 1 KiB JSON POST (post: wrk sends the same
#    body every time, so its long review text is remembered as clean from
#    its second request on), and that POST with its text new on every
#    request (unique: what free text costs). Rounds interleave (the order
#    reverses every other round); ratios are medians of per-round ratios.
#
#   bench/waf.sh                  # RUNS=3 DURATION=5s CONNS=64
#   NO_BUILD=1 RUNS=5 bench/waf.sh
#
# Targets: b >= 0.85x a; c >= 0.75x a and >= 1.0x nginx; b >= 20x modsec's
# requests/s with a lower p99. Installs wrk, nginx,
# libnginx-mod-http-modsecurity and modsecurity-crs from Debian if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
DURATION=${DURATION:-5s}
CONNS=${CONNS:-64}
LOADS=${LOADS:-get post unique}
THREADS=${THREADS:-2}
UPSTREAM_PORT=${UPSTREAM_PORT:-19100}
NGINX_PORT=${NGINX_PORT:-19101}
MODSEC_PORT=${MODSEC_PORT:-19102}
GATEHOUSE_PORT=${GATEHOUSE_PORT:-19103}
ACCURACY_PORT=${ACCURACY_PORT:-19104}
CRS=/usr/share/modsecurity-crs

. bench/need.sh
. bench/nginx-proxy.sh
. bench/waf-loads.sh
need wrk wrk
need nginx nginx
need_package libnginx-mod-http-modsecurity
need_package modsecurity-crs

[ -n "${NO_BUILD:-}" ] ||
    cargo build --release --quiet --bin gatehouse --example upstream --example mint-token --example waf-corpus
. bench/work.sh

./target/release/examples/upstream --port "$UPSTREAM_PORT" --name static >/dev/null &
pids+=($!)

# nginx, plain.
nginx_proxy_conf "$work/nginx.conf" "$work" "$NGINX_PORT" "$UPSTREAM_PORT" "access_log off;" "worker_processes auto;"
nginx -c "$work/nginx.conf" -p "$work" &
pids+=($!)

# nginx + ModSecurity + CRS: the package's recommended modsecurity.conf with
# the engine on (it ships in DetectionOnly), no audit log and no response
# body inspection (gatehouse inspects requests only), then CRS.
mkdir -p "$work/modsec"
sed -e 's/^SecRuleEngine .*/SecRuleEngine On/' \
    -e 's/^SecAuditEngine .*/SecAuditEngine Off/' \
    -e 's/^SecResponseBodyAccess .*/SecResponseBodyAccess Off/' \
    -e "s|^SecTmpDir .*|SecTmpDir $work/modsec/|" \
    -e "s|^SecDataDir .*|SecDataDir $work/modsec/|" \
    -e "s|^SecAuditLog .*|SecAuditLog $work/modsec/audit.log|" \
    -e "s|^SecUnicodeMapFile .*|SecUnicodeMapFile /etc/nginx/unicode.mapping 20127|" \
    /etc/nginx/modsecurity.conf >"$work/modsec/main.conf"
cat >>"$work/modsec/main.conf" <<EOF
Include /etc/modsecurity/crs/crs-setup.conf
Include $CRS/rules/*.conf
EOF
nginx_proxy_conf "$work/modsec/nginx.conf" "$work/modsec" "$MODSEC_PORT" "$UPSTREAM_PORT" "access_log off;" \
    "load_module /usr/lib/nginx/modules/ngx_http_modsecurity_module.so;" "worker_processes auto;"
sed -i "s|        location / {|        modsecurity on;\n        modsecurity_rules_file $work/modsec/main.conf;\n        location / {|" \
    "$work/modsec/nginx.conf"
nginx -c "$work/modsec/nginx.conf" -p "$work/modsec" &
pids+=($!)

# gatehouse: one instance for the speed routes, one that inspects every
# path (as ModSecurity does) for the corpora.
waf_routes "$work/routes.yaml" "$GATEHOUSE_PORT"
./target/release/gatehouse serve --config "$work/routes.yaml" >"$work/gatehouse.log" 2>&1 &
pids+=($!)
sed -e "s/$GATEHOUSE_PORT/$ACCURACY_PORT/" -e '/^routes:/,$d' "$work/routes.yaml" >"$work/accuracy.yaml"
printf 'routes:\n  - { name: all, path: /*, upstream: static }\n' >>"$work/accuracy.yaml"
./target/release/gatehouse serve --config "$work/accuracy.yaml" >"$work/accuracy.log" 2>&1 &
pids+=($!)

wait_for "http://127.0.0.1:$UPSTREAM_PORT/healthz"
wait_for "http://127.0.0.1:$NGINX_PORT/healthz"
wait_for "http://127.0.0.1:$MODSEC_PORT/healthz"
wait_for "http://127.0.0.1:$GATEHOUSE_PORT/a/healthz"
wait_for "http://127.0.0.1:$ACCURACY_PORT/healthz"

echo "# 1. Accuracy: tests/waf corpora, paranoia 1 (gatehouse: waf-rules/; ModSecurity: CRS $(sed -n 's/.*ver:.OWASP_CRS\/\([0-9.]*\).*/\1/p' "$CRS/rules/REQUEST-901-INITIALIZATION.conf" | head -1))"
./target/release/examples/waf-corpus "gatehouse=127.0.0.1:$ACCURACY_PORT" "modsecurity=127.0.0.1:$MODSEC_PORT" \
    tests/waf/attacks.jsonl tests/waf/benign.jsonl

# The loads.
token=$(./target/release/examples/mint-token)
waf_post_lua "$work/post.lua"
waf_post_lua "$work/unique.lua" unique

run() { # variant load
    local url auth=()
    case $1 in
        a | b | c) url="http://127.0.0.1:$GATEHOUSE_PORT/$1" ;;
        nginx) url="http://127.0.0.1:$NGINX_PORT" ;;
        modsec) url="http://127.0.0.1:$MODSEC_PORT" ;;
    esac
    [ "$1" = c ] && auth=(-H "Authorization: Bearer $token")
    case $2 in
        get) measure "$url$waf_query" "${waf_browser[@]}" "${auth[@]}" ;;
        post | unique) measure "$url/api/reviews" "${waf_browser[@]}" "${auth[@]}" -s "$work/$2.lua" ;;
    esac
}

variants="a b c nginx modsec"
for load in $LOADS; do
    for v in $variants; do DURATION=2s run "$v" "$load" >/dev/null; done
done
echo
echo "# 2. Speed: wrk -t$THREADS -c$CONNS -d$DURATION, $RUNS interleaved rounds, $(nproc) cores"
printf '%-6s %-5s %-7s %12s %10s\n' round load variant "req/s" "p99 ms"
for round in $(seq "$RUNS"); do
    order=$variants
    [ $((round % 2)) -eq 0 ] && order=$(echo "$variants" | tr ' ' '\n' | tac | tr '\n' ' ')
    for load in $LOADS; do
        for v in $order; do
            read -r rps p99 < <(run "$v" "$load")
            echo "$rps" >>"$work/$load-$v.rps"
            echo "$p99" >>"$work/$load-$v.p99"
            printf '%-6s %-5s %-7s %12s %10s\n' "$round" "$load" "$v" "$rps" "$p99"
        done
    done
done

ratio() { # load variant base
    paste "$work/$1-$2.rps" "$work/$1-$3.rps" | awk '{ printf "%.4f\n", $1 / $2 }' | median
}
echo
printf '%-5s %-7s %10s %9s %8s %9s %10s\n' load variant "req/s" "p99 ms" "vs a" "vs nginx" "vs modsec"
for load in $LOADS; do
    for v in $variants; do
        printf '%-5s %-7s %10s %9s %7.2fx %8.2fx %9.1fx\n' "$load" "$v" \
            "$(median <"$work/$load-$v.rps")" "$(median <"$work/$load-$v.p99")" \
            "$(ratio "$load" "$v" a)" "$(ratio "$load" "$v" nginx)" "$(ratio "$load" "$v" modsec)"
    done
done
echo "(medians over rounds; ratios are medians of per-round ratios)"
