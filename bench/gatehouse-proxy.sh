# Sourced by the proxy benchmarks: the gatehouse configuration measured
# against nginx (bench/nginx-proxy.sh). One route proxies everything to a
# single upstream target over pooled HTTP/1.1 keep-alive; admin and AWS
# listeners off.
#
#   gatehouse_proxy_conf FILE PORT UPSTREAM_PORT ACCESS_LOG [LISTEN_KEYS] [TOP_LEVEL...]
#
# ACCESS_LOG is true or false; LISTEN_KEYS are added to the gateway
# listener (", connection_balance: kernel"); each TOP_LEVEL line goes to the
# top level ("workers: 1"). ROUTE_KEYS, if set, are added to the route
# (", auth: demo").
gatehouse_proxy_conf() {
    local file=$1 port=$2 upstream=$3 access=$4 listen=${5:-}
    shift 4
    if [ $# -gt 0 ]; then shift; fi
    {
        cat <<EOF
listen:
  gateway: { bind: "127.0.0.1:$port"$listen }
  admin: off
  aws: off
log: { access: $access, level: warn }
upstreams:
  static: { targets: ["http://127.0.0.1:$upstream"] }
routes:
  - { name: all, path: /*, upstream: static${ROUTE_KEYS:-} }
EOF
        if [ $# -gt 0 ]; then printf '%s\n' "$@"; fi
    } >"$file"
}
