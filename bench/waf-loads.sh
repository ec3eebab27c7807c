# Sourced by bench/waf.sh and bench/waf-ab.sh: the routes and the loads
# the WAF is measured with. `waf_routes FILE PORT`: a gatehouse config
# listening on PORT with routes a (`waf: off`), b (the shipped rules) and
# c (rules + RS256 JWT + a throttle admitting all) in front of
# $UPSTREAM_PORT (its JWKS, `jwks.json`, beside FILE). The loads:
# `waf_query`: a GET's path and query string (9 arguments);
# `waf_browser`: a browser's headers (curl/wrk -H arguments);
# `waf_post_lua FILE`: writes a wrk script that POSTs a 1 KiB JSON
# product review;
# `waf_post_lua FILE unique`: the same review, its text new on every
# request (a tag of the wrk thread's random id and a counter), so that
# no value longer than 128 bytes is ever seen twice.
waf_query='/api/search?q=red+running+shoes&category=sports%20%26%20outdoors&sort=price&order=asc&page=2&per_page=24&utm_source=newsletter&utm_medium=email&utm_campaign=spring_sale'
waf_browser=(-H 'User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36'
    -H 'Accept: application/json, text/plain, */*' -H 'Accept-Language: en-US,en;q=0.9'
    -H 'Cookie: session=8f3a2c1e9b7d4f60a5e1c3b2d4f6a8c0; theme=dark; _ga=GA1.2.1234567890.1712345678')
waf_post_lua() { # file [unique]
    python3 - "$1" "${2:-}" <<'PY'
import json, sys
doc = {"product_id": 48213, "rating": 4, "title": "Comfortable, but runs a little small",
       "body": ("I've worn these for three weeks of morning runs (5-8 km each) and they're comfortable; "
                "the cushioning is great on pavement. Sizing: order half a size up -- my usual 42 was tight. "
                "Colour is exactly as pictured. Would buy again, maybe in blue or grey."),
       "author": {"name": "Siobhán O'Brien", "email": "siobhan.obrien+reviews@example.com", "country": "IE"},
       "verified_purchase": True, "helpful_votes": 12, "tags": ["running", "road", "cushioned"],
       "images": [], "submitted_at": "2026-03-14T08:21:45.120Z",
       "client": {"app": "shop-web", "version": "4.18.2", "locale": "en-IE"}}
unique = sys.argv[2] == "unique"
tag = "@" * 25  # " #" + 16 hex digits of the thread's id + 7 of the counter
if unique:
    doc["body"] += tag
body = json.dumps(doc)
body += " " * (1024 - len(body))
assert len(body) == 1024, len(body)
with open(sys.argv[1], "w") as f:
    f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n')
    if not unique:
        f.write("wrk.body = %s\n" % json.dumps(body))
    else:
        head, tail = body.split(tag)
        f.write("local head, tail = %s, %s\n" % (json.dumps(head), json.dumps(tail)))
        f.write('''local id, n = "", 0
function init(args)
    local r = io.open("/dev/urandom", "rb")
    id = r:read(8):gsub(".", function(c) return string.format("%02x", c:byte()) end)
    r:close()
end
function request()
    n = n + 1
    return wrk.format(nil, nil, nil, head .. " #" .. id .. string.format("%07d", n % 10000000) .. tail)
end
''')
PY
}

waf_routes() { # file port
    cp examples/jwt/jwks.json "$(dirname "$1")/jwks.json"
    cat >"$1" <<YAML
listen:
  gateway: { bind: "127.0.0.1:$2" }
  admin: off
  aws: off
log: { access: false, level: error }
waf: { rules: $PWD/waf-rules }
auth:
  jwt:
    demo: { issuer: https://id.example.test/, audiences: [orders-api], jwks_file: jwks.json }
upstreams:
  static: { targets: ["http://127.0.0.1:$UPSTREAM_PORT"] }
routes:
  - { name: a, path: /a/*, strip_prefix: /a, upstream: static, waf: off }
  - { name: b, path: /b/*, strip_prefix: /b, upstream: static }
  - { name: c, path: /c/*, strip_prefix: /c, upstream: static, auth: demo, throttle: { rate: 1000000/s, burst: 1000000 } }
YAML
}
