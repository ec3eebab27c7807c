# Sourced by the proxy bench scripts: a scratch directory `$work` and the
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
