#!/usr/bin/env bash
# WAF A/B: two gatehouse binaries up side by side, each with bench/waf.sh's
# routes a (`waf: off`), b (the shipped rules) and c (rules + RS256 JWT +
# a throttle), under bench/waf.sh's loads (LOADS: get, post, and unique,
# the POST with its text new on every request), in interleaved rounds (the
# binary that goes first alternates). Prints, per binary and load, the
# medians of the per-round ratios b/a and c/a, and new a / old a; and the
# gateway's own CPU time per request (from /proc, user + system), whose
# differences b - a and c - a are what the WAF and the other layers cost
# (steadier than requests/s, which moves with whatever else the machine
# runs). On a shared, noisy machine this compares a change where a full
# bench/waf.sh run cannot: both binaries meet the same noise in the same
# minutes.
#
#   OLD=/tmp/gatehouse-before bench/waf-ab.sh       # NEW: target/release/gatehouse
#   OLD=... NEW=... RUNS=12 DURATION=3s bench/waf-ab.sh
#
# Installs wrk from Debian if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${OLD:?OLD=path to the gatehouse binary to compare against}"
NEW=${NEW:-target/release/gatehouse}
RUNS=${RUNS:-8}
DURATION=${DURATION:-3s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
LOADS=${LOADS:-get post unique}
UPSTREAM_PORT=${UPSTREAM_PORT:-19300}
OLD_PORT=${OLD_PORT:-19303}
NEW_PORT=${NEW_PORT:-19304}

. bench/need.sh
. bench/waf-loads.sh
need wrk wrk
[ -n "${NO_BUILD:-}" ] || cargo build --release --quiet --bin gatehouse --example upstream --example mint-token
. bench/work.sh

./target/release/examples/upstream --port "$UPSTREAM_PORT" --name static >/dev/null &
pids+=($!)
waf_routes "$work/old.yaml" "$OLD_PORT"
waf_routes "$work/new.yaml" "$NEW_PORT"
"$OLD" serve --config "$work/old.yaml" >"$work/old.log" 2>&1 &
pids+=($!)
old_pid=$!
"$NEW" serve --config "$work/new.yaml" >"$work/new.log" 2>&1 &
pids+=($!)
new_pid=$!
# CPU time (user + system, in clock ticks) a process has used.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
tick_us=$((1000000 / $(getconf CLK_TCK)))
seconds=${DURATION%s}
wait_for "http://127.0.0.1:$OLD_PORT/a/healthz"
wait_for "http://127.0.0.1:$NEW_PORT/a/healthz"
token=$(./target/release/examples/mint-token)
waf_post_lua "$work/post.lua"
waf_post_lua "$work/unique.lua" unique

run() { # port route load
    local auth=()
    [ "$2" = c ] && auth=(-H "Authorization: Bearer $token")
    case $3 in
        get) measure "http://127.0.0.1:$1/$2$waf_query" "${waf_browser[@]}" "${auth[@]}" ;;
        post | unique) measure "http://127.0.0.1:$1/$2/api/reviews" "${waf_browser[@]}" "${auth[@]}" -s "$work/$3.lua" ;;
    esac
}

echo "# wrk -t$THREADS -c$CONNS -d$DURATION, $RUNS interleaved rounds, $(nproc) cores"
echo "# old: $OLD; new: $NEW"
for load in $LOADS; do
    for round in $(seq "$RUNS"); do
        order="old new"
        [ $((round % 2)) -eq 0 ] && order="new old"
        for v in $order; do
            port=$([ $v = old ] && echo "$OLD_PORT" || echo "$NEW_PORT")
            pid=$([ $v = old ] && echo "$old_pid" || echo "$new_pid")
            for route in a b c; do
                before=$(ticks "$pid")
                read -r rps _ < <(run "$port" "$route" "$load")
                cpu=$(awk -v t=$(($(ticks "$pid") - before)) -v us="$tick_us" -v r="$rps" -v s="$seconds" \
                    'BEGIN { printf "%.2f", t * us / (r * s) }')
                echo "$rps" >>"$work/$load-$v-$route"
                echo "$cpu" >>"$work/$load-$v-$route.cpu"
                printf '%-5s %-3s %-4s %-2s %10s %8s us CPU\n' "$load" "$round" "$v" "$route" "$rps" "$cpu"
            done
        done
    done
done

ratio() { # load v1 route1 v2 route2
    paste "$work/$1-$2-$3" "$work/$1-$4-$5" | awk '{ printf "%.4f\n", $1 / $2 }' | median
}
extra() { # load v route: median over rounds of (route's CPU - a's CPU) per request
    paste "$work/$1-$2-$3.cpu" "$work/$1-$2-a.cpu" | awk '{ printf "%.2f\n", $1 - $2 }' | median
}
echo
printf '%-6s %-4s %10s %8s %8s %10s %10s %10s\n' load bin "a req/s" "b / a" "c / a" "a us CPU" "b - a" "c - a"
for load in $LOADS; do
    for v in old new; do
        printf '%-6s %-4s %10s %8.3f %8.3f %10s %10s %10s\n' "$load" "$v" "$(median <"$work/$load-$v-a")" \
            "$(ratio "$load" "$v" b "$v" a)" "$(ratio "$load" "$v" c "$v" a)" \
            "$(median <"$work/$load-$v-a.cpu")" "$(extra "$load" "$v" b)" "$(extra "$load" "$v" c)"
    done
    printf '%-5s new a / old a: %.3f\n' "$load" "$(ratio "$load" new a old a)"
done
echo "(medians over rounds; ratios are medians of per-round ratios; us CPU: the gateway's CPU time per request)"
