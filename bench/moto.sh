# Sourced by the AWS-API bench scripts (queue.sh, topics.sh): installs moto
# when missing (`need_moto`), waits for ports, reads the load generators'
# `RESULT key=value …` lines, takes medians, and restarts moto's server
# between runs. Expects `$work`, `$MOTO_PORT` and `$SKIP_MOTO`.

need_moto() {
    if [ -z "$SKIP_MOTO" ] && ! command -v moto_server >/dev/null 2>&1; then
        echo "installing moto[server] ..." >&2
        python3 -m pip install --quiet 'moto[server]' || python3 -m pip install --quiet --break-system-packages 'moto[server]'
    fi
}

wait_port() { # port
    for _ in $(seq 300); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listening on $1" >&2
    exit 1
}

field() { # key < RESULT line
    sed -n "s/.* $1=\([^ ]*\).*/\1/p; s/^RESULT $1=\([^ ]*\).*/\1/p" | head -1
}

median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# moto gets a fresh server for each of its runs: it keeps working through
# abandoned requests after a run it could not keep up with, and that work
# would land in the next round's measurement.
moto_pid=
stop_moto() {
    if [ -n "$moto_pid" ]; then
        kill "$moto_pid" 2>/dev/null || true
        wait "$moto_pid" 2>/dev/null || true
        moto_pid=
    fi
}
restart_moto() {
    stop_moto
    moto_server -H 127.0.0.1 -p "$MOTO_PORT" >>"$work/moto.log" 2>&1 &
    moto_pid=$!
    wait_port "$MOTO_PORT"
}
