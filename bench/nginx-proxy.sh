# Sourced by the proxy benchmarks: the nginx configuration gatehouse is
# compared against. HTTP/1.1 with keep-alive to the upstream, and the same
# headers gatehouse sets by default (X-Forwarded-For/-Proto/-Host,
# X-Request-Id to the upstream and back).
#
#   nginx_proxy_conf FILE WORK PORT UPSTREAM_PORT ACCESS_LOG [MAIN_DIRECTIVE...]
#
# ACCESS_LOG is an access_log directive ("access_log off;"); each
# MAIN_DIRECTIVE goes to the top level ("worker_processes auto;").
nginx_proxy_conf() {
    local file=$1 work=$2 port=$3 upstream=$4 access=$5
    shift 5
    {
        printf '%s\n' "$@"
        cat <<EOF
pid $work/nginx.pid;
error_log $work/error.log warn;
daemon off;
events { worker_connections 4096; }
http {
    $access
    upstream static { server 127.0.0.1:$upstream; keepalive 128; }
    server {
        listen 127.0.0.1:$port;
        location / {
            proxy_pass http://static;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Host \$host;
            proxy_set_header X-Request-Id \$request_id;
            add_header X-Request-Id \$request_id;
        }
    }
}
EOF
    } >"$file"
}
