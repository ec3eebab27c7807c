#!/usr/bin/env bash
# Connection balancing A/B: the proxy benchmark's load (bench/proxy.sh)
# against nginx and two gatehouses, one per `connection_balance` setting
# (`exact`, the default, and `kernel`), taking turns going first, several
# rounds. Prints each run's latency percentiles (a wrk Lua script), the
# medians per proxy, and each gatehouse's ratios to nginx.
#
#   bench/balance.sh                      # keep-alive, 64 connections
#   RUNS=15 DURATION=6s bench/balance.sh
#   CLOSE=1 CONNS=16 bench/balance.sh     # a new connection per request:
#                                         # what a handover costs
#
# Installs wrk and nginx from Debian if missing. Release build.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-9}
DURATION=${DURATION:-6s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
CLOSE=${CLOSE:-0}
UPSTREAM_PORT=${UPSTREAM_PORT:-19020}
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
names=(nginx exact kernel)
ports=(19021 19022 19023)
nginx_proxy_conf "$work/nginx.conf" "$work" "${ports[0]}" "$UPSTREAM_PORT" "access_log off;" "worker_processes auto;"
nginx -c "$work/nginx.conf" -p "$work" &
pids+=($!)
for i in 1 2; do
    gatehouse_proxy_conf "$work/${names[$i]}.yaml" "${ports[$i]}" "$UPSTREAM_PORT" false \
        ", connection_balance: ${names[$i]}"
    ./target/release/gatehouse serve --config "$work/${names[$i]}.yaml" >"$work/${names[$i]}.log" 2>&1 &
    pids+=($!)
done

cat >"$work/pct.lua" <<'EOF'
done = function(summary, latency, requests)
  local s = string.format("rps=%.0f", summary.requests / (summary.duration / 1e6))
  for _, p in ipairs({50, 90, 99, 99.9}) do
    s = s .. string.format(" p%s=%.3f", p, latency:percentile(p) / 1000)
  end
  io.write(s .. "\n")
end
EOF

headers=()
[ "$CLOSE" = 1 ] && headers=(-H "Connection: close")
run() { # port seconds
    wrk -t"$THREADS" -c"$CONNS" -d"$2" "${headers[@]}" -s "$work/pct.lua" "http://127.0.0.1:$1$PATH_UNDER_TEST" | tail -1
}
for p in "${ports[@]}"; do
    for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$p$PATH_UNDER_TEST" && break; sleep 0.1; done
    run "$p" 2s >/dev/null
done

echo "# wrk -t$THREADS -c$CONNS -d$DURATION$([ "$CLOSE" = 1 ] && echo ", Connection: close"), $RUNS rounds, $(nproc) cores; latencies in ms"
for round in $(seq "$RUNS"); do
    for k in 0 1 2; do
        i=$(((round + k) % 3))
        echo "$round ${names[$i]} $(run "${ports[$i]}" "$DURATION")"
    done
done | tee "$work/rounds"

echo
python3 - "$work/rounds" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    f = line.split()
    rows.setdefault(f[0], {})[f[1]] = {k: float(v) for k, v in (x.split("=") for x in f[2:])}
keys = ["rps", "p50", "p90", "p99", "p99.9"]
for name in ["nginx", "exact", "kernel"]:
    print(f"{name:7}", " ".join(f"{k}={statistics.median(r[name][k] for r in rows.values()):.3f}" for k in keys))
for name in ["exact", "kernel"]:
    ratios = " ".join(
        f"{k} {statistics.median(r[name][k] / r['nginx'][k] for r in rows.values()):.3f}x" for k in ["rps", "p99", "p99.9"]
    )
    print(f"{name}/nginx, median of per-round ratios: {ratios}")
EOF
