#!/usr/bin/env bash
# Queue benchmark: the same load generator (examples/queue_load.rs, AWS JSON
# 1.0 over HTTP/1.1) against gatehouse (durable: SQLite WAL, fsync at every
# commit) and moto's server (in memory), interleaved round by round, several
# rounds, medians and ratios reported.
#
#   1. throughput: PRODUCERS tasks SendMessageBatch (10 × SIZE bytes),
#      CONSUMERS tasks ReceiveMessage (10, long poll) + DeleteMessageBatch;
#      end-to-end messages/s (deleted), p50/p99 per call, send → receive.
#   2. latency: open-loop SendMessage at RATE requests/s over 64
#      connections; p50/p99 from each request's intended start when the
#      server held it back, else from when it was sent (a server that
#      falls behind is cut off after 1.5 × the duration: "unsent").
#   3. backlog (gatehouse only): fill one queue with BACKLOG messages, RSS
#      after the fill (and peak), then kill -9 and restart on the same data
#      directory: seconds until the queue answers with its backlog counted
#      and a message received.
#
#   bench/queue.sh                                  # defaults below
#   RUNS=5 DURATION=20 RATE=2000 BACKLOG=1000000 bench/queue.sh
#   SKIP_MOTO=1 bench/queue.sh                      # gatehouse only
#
# Installs moto (pip) if moto_server is missing. Release build.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
DURATION=${DURATION:-20}
LAT_DURATION=${LAT_DURATION:-20}
RATE=${RATE:-2000}
PRODUCERS=${PRODUCERS:-32}
CONSUMERS=${CONSUMERS:-64}
SIZE=${SIZE:-1024}
BACKLOG=${BACKLOG:-1000000}
SKIP_MOTO=${SKIP_MOTO:-}
AWS_PORT=${AWS_PORT:-19324}
GATEWAY_PORT=${GATEWAY_PORT:-19180}
MOTO_PORT=${MOTO_PORT:-19500}

. bench/moto.sh
need_moto

cargo build --release --quiet --bin gatehouse --example queue_load
load=./target/release/examples/queue_load
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
  gateway: { bind: "127.0.0.1:$GATEWAY_PORT" }
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
}
rss_mb() { awk -v k="$2:" '$1 == k { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }


start_gatehouse
wait_port "$AWS_PORT"
targets=(gatehouse)
tp_targets=(gatehouse)
[ -z "$SKIP_MOTO" ] && targets+=(moto) && tp_targets+=(moto moto-best)
endpoint() {
    case $1 in
        gatehouse) echo "http://127.0.0.1:$AWS_PORT" ;;
        moto*) echo "http://127.0.0.1:$MOTO_PORT" ;;
    esac
}

echo "# queue_load, $RUNS interleaved rounds, $(nproc) cores; gatehouse sync=full (fsync per commit), moto in memory"
echo "## throughput: $PRODUCERS producers SendMessageBatch(10 x $SIZE B), $CONSUMERS consumers ReceiveMessage(10, wait 20) + DeleteMessageBatch, ${DURATION}s"
echo "## (moto-best: moto with 1 producer and 2 consumers, the concurrency at which it does best)"
printf '%-6s %-10s %9s %9s %9s %9s %9s %9s %9s\n' round target "e2e/s" "sendp50" "sendp99" "recvp50" "recvp99" "delp99" "e2ep99"
for round in $(seq "$RUNS"); do
    for t in "${tp_targets[@]}"; do
        p=$PRODUCERS c=$CONSUMERS
        [ "$t" = moto-best ] && p=1 c=2
        case $t in moto*) restart_moto ;; esac
        r=$($load throughput --endpoint "$(endpoint "$t")" --queue "tp-$round" --size "$SIZE" \
            --producers "$p" --consumers "$c" --duration "$DURATION" | grep '^RESULT' || true)
        stop_moto
        if [ -z "$r" ]; then echo "$round $t: run failed (its errors are above)"; continue; fi
        for k in deleted send_p50 send_p99 recv_p50 recv_p99 del_p99 e2e_p99 errors; do
            echo "$r" | field "$k" >>"$work/$t.tp.$k"
        done
        printf '%-6s %-10s %9s %9s %9s %9s %9s %9s %9s\n' "$round" "$t" \
            "$(echo "$r" | field deleted)" "$(echo "$r" | field send_p50)" "$(echo "$r" | field send_p99)" \
            "$(echo "$r" | field recv_p50)" "$(echo "$r" | field recv_p99)" "$(echo "$r" | field del_p99)" \
            "$(echo "$r" | field e2e_p99)"
    done
done
[ -d "/proc/$gh_pid" ] && echo "gatehouse RSS after throughput rounds: $(rss_mb "$gh_pid" VmRSS) MB (peak $(rss_mb "$gh_pid" VmHWM) MB)"

echo
echo "## latency: SendMessage at $RATE/s open loop, 64 connections, ${LAT_DURATION}s"
printf '%-6s %-10s %9s %9s %9s %9s %9s\n' round target achieved "p50 ms" "p99 ms" "max ms" unsent
for round in $(seq "$RUNS"); do
    for t in "${targets[@]}"; do
        case $t in moto*) restart_moto ;; esac
        r=$($load latency --endpoint "$(endpoint "$t")" --queue "lat-$round" --size "$SIZE" \
            --rate "$RATE" --duration "$LAT_DURATION" | grep '^RESULT' || true)
        stop_moto
        if [ -z "$r" ]; then echo "$round $t: run failed (its errors are above)"; continue; fi
        for k in achieved p50 p99; do echo "$r" | field "$k" >>"$work/$t.lat.$k"; done
        printf '%-6s %-10s %9s %9s %9s %9s %9s\n' "$round" "$t" "$(echo "$r" | field achieved)" \
            "$(echo "$r" | field p50)" "$(echo "$r" | field p99)" "$(echo "$r" | field max)" \
            "$(echo "$r" | field unsent)"
    done
done

echo
echo "## summary (medians)"
printf '%-10s %10s %10s %10s %12s %12s\n' target "e2e msg/s" "send p99" "recv p99" "lat p50 ms" "lat p99 ms"
for t in "${tp_targets[@]}"; do
    lat50=- lat99=-
    [ -f "$work/$t.lat.p50" ] && lat50=$(median <"$work/$t.lat.p50") && lat99=$(median <"$work/$t.lat.p99")
    printf '%-10s %10s %10s %10s %12s %12s\n' "$t" "$(median <"$work/$t.tp.deleted")" \
        "$(median <"$work/$t.tp.send_p99")" "$(median <"$work/$t.tp.recv_p99")" "$lat50" "$lat99"
done
if [ -z "$SKIP_MOTO" ]; then
    g=$(median <"$work/gatehouse.tp.deleted")
    awk -v g="$g" -v m="$(median <"$work/moto.tp.deleted")" -v b="$(median <"$work/moto-best.tp.deleted")" \
        'BEGIN { printf "gatehouse/moto end-to-end messages/s: %.0fx (same load), %.0fx (moto at its best concurrency)\n", g / m, g / b }'
    awk -v g="$(median <"$work/gatehouse.lat.p99")" -v m="$(median <"$work/moto.lat.p99")" \
        'BEGIN { printf "SendMessage p99 at %s/s: gatehouse %.2f ms, moto %.0f ms (%.0fx lower)\n", '"$RATE"', g, m, m / g }'
fi

echo
echo "## backlog: $BACKLOG x $SIZE B messages in one queue (gatehouse)"
r=$($load fill --endpoint "http://127.0.0.1:$AWS_PORT" --queue backlog --size "$SIZE" --count "$BACKLOG" | grep '^RESULT')
echo "filled in $(echo "$r" | field seconds) s ($(echo "$r" | field rate) msg/s)"
echo "RSS after fill: $(rss_mb "$gh_pid" VmRSS) MB (peak since start $(rss_mb "$gh_pid" VmHWM) MB); data directory $(du -sh "$work/data" | cut -f1)"
kill -9 "$gh_pid"
wait "$gh_pid" 2>/dev/null || true
# The probe starts first and retries every 5 ms, so its clock covers the
# whole restart: exec, opening the database, rebuilding state, binding.
$load ready --endpoint "http://127.0.0.1:$AWS_PORT" --queue backlog --expect "$BACKLOG" --timeout 120 >"$work/ready.out" &
probe=$!
start_gatehouse
wait "$probe"
echo "restart after kill -9 ready in $(field ready <"$work/ready.out") s; RSS after restart $(rss_mb "$gh_pid" VmRSS) MB"
