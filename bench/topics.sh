#!/usr/bin/env bash
# Topic benchmark: the same load generator (examples/topic_load.rs, SNS
# Query protocol over HTTP/1.1) against gatehouse (durable: every queue
# write fsynced before the publish is acknowledged) and moto's server (in
# memory), interleaved round by round, medians reported.
#
#   1. fan-out to queues: a topic with QUEUES queue subscriptions, 1 KiB
#      messages, CONNS connections publishing as fast as they are answered,
#      with Publish and with PublishBatch (10), enveloped and raw; then each
#      queue is checked to hold every acknowledged message.
#   2. HTTP fan-out: SUBSCRIBERS HTTP subscribers in the generator's
#      process, Publish at RATE/s open loop for HTTP_DURATION s; delivery
#      delay (publish → arrival) p50/p99, and deliveries lost. gatehouse is
#      killed with SIGKILL halfway through and restarted on the same data:
#      what it acknowledged before the kill must still arrive. Enveloped
#      (signed, SNS's default) and raw (HTTP_VARIANTS picks). "cpu s" is
#      gatehouse's CPU time from the round's start to the kill.
#
#   bench/topics.sh
#   RUNS=5 DURATION=10 bench/topics.sh
#   SKIP_MOTO=1 bench/topics.sh
#   SKIP_FANOUT=1 RATE=300 bench/topics.sh          # the HTTP part only
#
# Installs moto (pip) if moto_server is missing. Release build.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-32}
QUEUES=${QUEUES:-3}
SUBSCRIBERS=${SUBSCRIBERS:-50}
RATE=${RATE:-1000}
HTTP_DURATION=${HTTP_DURATION:-20}
SKIP_MOTO=${SKIP_MOTO:-}
SKIP_FANOUT=${SKIP_FANOUT:-}
HTTP_VARIANTS=${HTTP_VARIANTS:-enveloped raw}
AWS_PORT=${AWS_PORT:-19324}
MOTO_PORT=${MOTO_PORT:-19500}

. bench/moto.sh
need_moto

cargo build --release --quiet --bin gatehouse --example topic_load
load=./target/release/examples/topic_load
work=$(mktemp -d)
gh_pid=
cleanup() {
    [ -n "$gh_pid" ] && kill "$gh_pid" 2>/dev/null || true
    [ -n "$moto_pid" ] && kill "$moto_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/routes.yaml" <<EOF
listen:
  gateway: { bind: "127.0.0.1:0" }
  aws: { bind: "127.0.0.1:$AWS_PORT" }
  admin: off
log: { level: warn, access: false }
storage: { path: ./data, sync: full }
routes:
  - { name: home, path: /, respond: { body: "ok" } }
EOF

start_gatehouse() {
    ./target/release/gatehouse serve --config "$work/routes.yaml" >>"$work/gatehouse.log" 2>&1 &
    gh_pid=$!
    wait_port "$AWS_PORT"
}
endpoint() {
    case $1 in
        gatehouse) echo "http://127.0.0.1:$AWS_PORT" ;;
        moto) echo "http://127.0.0.1:$MOTO_PORT" ;;
    esac
}

# CPU time of a process so far, in clock ticks (user + system).
cpu_of() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

start_gatehouse
targets=(gatehouse)
[ -z "$SKIP_MOTO" ] && targets+=(moto)

echo "# topic_load, $RUNS interleaved rounds, $(nproc) cores; gatehouse sync=full (fsync per commit), moto in memory"
if [ -z "$SKIP_FANOUT" ]; then
echo "## fan-out: $QUEUES queue subscriptions, ${DURATION}s, $CONNS connections, 1 KiB messages"
printf '%-6s %-10s %-14s %10s %12s %9s %9s %8s %8s\n' round target load "msgs/s" "q-writes/s" "p50 ms" "p99 ms" missing errors
for round in $(seq "$RUNS"); do
    for variant in publish publish-raw batch batch-raw; do
        for t in "${targets[@]}"; do
            args=(publish --queues "$QUEUES" --connections "$CONNS" --duration "$DURATION")
            case $variant in *raw) args+=(--raw) ;; esac
            case $variant in batch*) args+=(--batch) ;; esac
            [ "$t" = moto ] && restart_moto
            r=$($load --endpoint "$(endpoint "$t")" --name "r$round-$variant" "${args[@]}" | grep '^RESULT' || true)
            stop_moto
            if [ -z "$r" ]; then echo "$round $t $variant: run failed"; continue; fi
            echo "$r" | field per_s >>"$work/$t.$variant.rate"
            echo "$r" | field writes_per_s >>"$work/$t.$variant.writes"
            echo "$r" | field p99 >>"$work/$t.$variant.p99"
            printf '%-6s %-10s %-14s %10s %12s %9s %9s %8s %8s\n' "$round" "$t" "$variant" \
                "$(echo "$r" | field per_s)" "$(echo "$r" | field writes_per_s)" "$(echo "$r" | field p50)" \
                "$(echo "$r" | field p99)" "$(echo "$r" | field missing)" "$(echo "$r" | field errors)"
        done
    done
done
echo
echo "## medians"
printf '%-14s %-10s %10s %12s %9s %12s\n' load target "msgs/s" "q-writes/s" "p99 ms" "vs moto"
for variant in publish publish-raw batch batch-raw; do
    g=$(median <"$work/gatehouse.$variant.rate")
    for t in "${targets[@]}"; do
        m=$(median <"$work/$t.$variant.rate")
        ratio=
        [ "$t" = gatehouse ] && [ -s "$work/moto.$variant.rate" ] &&
            ratio=$(awk -v a="$g" -v b="$(median <"$work/moto.$variant.rate")" 'BEGIN { if (b > 0) printf "%.1fx", a / b }')
        printf '%-14s %-10s %10s %12s %9s %12s\n' "$variant" "$t" "$m" "$(median <"$work/$t.$variant.writes")" \
            "$(median <"$work/$t.$variant.p99")" "$ratio"
    done
done

fi

echo
echo "## HTTP fan-out: $SUBSCRIBERS subscribers, Publish at $RATE/s for ${HTTP_DURATION}s (gatehouse: SIGKILL at half time, restarted)"
printf '%-6s %-10s %-10s %8s %8s %12s %8s %10s %10s %8s %8s\n' round target variant acked "pub/s" deliveries lost \
    "p50 ms" "p99 ms" unsent "cpu s"
for round in $(seq "$RUNS"); do
    for variant in $HTTP_VARIANTS; do
        for t in "${targets[@]}"; do
            args=(http --subscribers "$SUBSCRIBERS" --rate "$RATE" --duration "$HTTP_DURATION")
            [ "$variant" = raw ] && args+=(--raw)
            [ "$t" = moto ] && restart_moto
            cpu0=$(cpu_of "$gh_pid")
            $load --endpoint "$(endpoint "$t")" --name "h$round$variant" "${args[@]}" >"$work/http.out" 2>>"$work/load.log" &
            load_pid=$!
            cpu=
            if [ "$t" = gatehouse ]; then
                sleep $((HTTP_DURATION / 2 + 2))
                cpu=$(awk -v a="$cpu0" -v b="$(cpu_of "$gh_pid")" 'BEGIN { printf "%.1f", (b - a) / 100 }')
                kill -9 "$gh_pid"
                wait "$gh_pid" 2>/dev/null || true
                start_gatehouse
            fi
            wait "$load_pid" || true
            stop_moto
            r=$(grep '^RESULT' "$work/http.out" || true)
            if [ -z "$r" ]; then echo "$round $t $variant: run failed"; continue; fi
            echo "$r" | field delay_p99 >>"$work/$t.$variant.http.p99"
            echo "$r" | field lost >>"$work/$t.$variant.http.lost"
            printf '%-6s %-10s %-10s %8s %8s %12s %8s %10s %10s %8s %8s\n' "$round" "$t" "$variant" \
                "$(echo "$r" | field acked)" "$(echo "$r" | field publish_per_s)" "$(echo "$r" | field deliveries)" \
                "$(echo "$r" | field lost)" "$(echo "$r" | field delay_p50)" "$(echo "$r" | field delay_p99)" \
                "$(echo "$r" | field unsent)" "$cpu"
        done
    done
done
for variant in $HTTP_VARIANTS; do
    for t in "${targets[@]}"; do
        [ -s "$work/$t.$variant.http.p99" ] &&
            echo "median $t $variant: delivery p99 $(median <"$work/$t.$variant.http.p99") ms, lost $(median <"$work/$t.$variant.http.lost")"
    done
done
