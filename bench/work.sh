# Sourced by the proxy bench scripts: `wait_for`, `median` and `measure`, a scratch directory `$work` and the
# background processes in `pids`, all gone when the script exits (nginx by
# its pid file in `$work`, as bench/nginx-proxy.sh writes it). A script that
# defines `before_cleanup` has it run first (to keep an output file, say).
work=$(mktemp -d)
pids=()
cleanup() {
    if declare -F before_cleanup >/dev/null; then before_cleanup || true; fi
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    # nginx may already be gone (and its pid file with it).
    kill "$(cat "$work/nginx.pid" 2>/dev/null)" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# Waits until URL answers (10 s at most).
wait_for() { # url
    for _ in $(seq 100); do
        curl -fs -o /dev/null "$1" && return 0
        sleep 0.1
    done
    echo "not answering: $1" >&2
    exit 1
}

# The median of the numbers on standard input, one per line.
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# Prints "requests_per_second p99_ms" for one wrk run (THREADS, CONNS and
# DURATION set by the script); extra args go to wrk.
measure() { # url [wrk args...]
    local url=$1
    shift
    wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$@" "$url" | awk '
        /Requests\/sec:/ { rps = $2 }
        /^ +99%/ {
            v = $2
            if (v ~ /us$/) { sub(/us$/, "", v); p99 = v / 1000 }
            else if (v ~ /ms$/) { sub(/ms$/, "", v); p99 = v }
            else if (v ~ /s$/) { sub(/s$/, "", v); p99 = v * 1000 }
        }
        /Non-2xx|Socket errors/ { errors = errors $0 " " }
        END {
            if (errors != "") print "wrk reported: " errors > "/dev/stderr"
            printf "%.0f %.3f\n", rps, p99
        }'
}

