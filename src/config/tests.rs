use super::*;
use std::path::Path;

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse(src: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("routes.yaml"), src, &no_env)
}

fn problems(src: &str) -> Vec<String> {
    let err = parse(src).expect_err("config should be rejected");
    err.to_string().lines().map(str::to_owned).collect()
}

#[test]
fn an_empty_file_gets_the_defaults() {
    let c = parse("").unwrap();
    assert_eq!(c.listen.gateway.len(), 1);
    assert_eq!(c.listen.gateway[0].bind.to_string(), "0.0.0.0:8080");
    assert_eq!(c.listen.admin.unwrap().to_string(), "127.0.0.1:9901");
    assert!(c.routes.is_empty());
    assert_eq!(c.drain_timeout, defaults::DRAIN_TIMEOUT);
}

#[test]
fn a_full_gateway_config_decodes() {
    let src = r#"
listen:
  gateway:
    - { bind: "127.0.0.1:8080", idle_timeout: 2m, max_header_size: 16KiB }
    - { bind: "127.0.0.1:8443", max_connections: 50, connection_balance: kernel }
  admin: { bind: "127.0.0.1:9999" }
log: { format: json, access: false }
drain_timeout: 5s
upstreams:
  orders-svc:
    targets: ["http://127.0.0.1:9000", "https://Orders.internal"]
    balance: least_request
    timeout: 15s
    health_check: { path: /healthz, interval: 1s, unhealthy_threshold: 2 }
    retries: { max: 2, statuses: [502, 503] }
routes:
  - name: get-order
    path: /api/orders/{id}
    methods: [get, HEAD]
    host: "*.example.com"
    upstream: orders-svc
    strip_prefix: /api/
    timeout: 2s
    max_body: 1MiB
  - name: ping
    path: /ping
    respond: { status: 200, body: "pong", headers: { X-Test: yes } }
"#;
    let c = parse(src).unwrap();
    assert_eq!(c.listen.gateway.len(), 2);
    assert_eq!(c.listen.gateway[0].limits.idle_timeout, Duration::from_secs(120));
    assert_eq!(c.listen.gateway[0].limits.max_header_size, 16 * 1024);
    assert_eq!(c.listen.gateway[1].limits.max_connections, 50);
    assert_eq!(c.listen.gateway[0].connection_balance, ConnectionBalance::Exact);
    assert_eq!(c.listen.gateway[1].connection_balance, ConnectionBalance::Kernel);
    assert_eq!(c.log.format, LogFormat::Json);
    assert!(!c.log.access);
    let u = &c.upstreams["orders-svc"];
    assert_eq!(u.targets[1], TargetUrl { tls: true, host: "orders.internal".into(), port: 443 });
    assert_eq!(u.balance, Balance::LeastRequest);
    assert_eq!(u.health_check.as_ref().unwrap().unhealthy_threshold, 2);
    assert_eq!(u.health_check.as_ref().unwrap().healthy_threshold, 2);
    assert_eq!(u.retries.statuses, vec![502, 503]);
    let r = &c.routes[0];
    assert_eq!(r.methods, vec!["GET", "HEAD"]);
    assert_eq!(r.strip_prefix.as_deref(), Some("/api"));
    assert_eq!(r.max_body, 1 << 20);
    assert_eq!(r.host, Some(HostPattern::Suffix(".example.com".into())));
    let RouteTarget::Respond(resp) = &c.routes[1].target else { panic!("respond route") };
    assert_eq!(resp.body, "pong");
    assert_eq!(resp.headers, vec![("x-test".into(), "yes".into())]);
}

#[test]
fn every_problem_is_reported_with_file_line_column_and_key() {
    let src = "\
listen:
  gateway: { bnid: \"0.0.0.0:8080\" }
upstreams:
  orders:
    targets: [\"ftp://x\"]
    timeout: 30
routes:
  - name: a
    path: api/orders
    upstream: orders
  - name: b
    path: /x
    upstream: ordres
    methods: [GET, \"B@D\"]
";
    let lines = problems(src);
    assert_eq!(
        lines,
        vec![
            "routes.yaml:2:14: listen.gateway.bnid: unknown key `bnid` (did you mean `bind`?)",
            "routes.yaml:5:15: upstreams.orders.targets[0]: a target must start with http:// or https://, found `ftp://x`",
            "routes.yaml:6:14: upstreams.orders.timeout: `30` has no unit: write e.g. `30s` or `30ms`",
            "routes.yaml:9:11: routes[0].path: a path must start with `/`, found `api/orders`",
            "routes.yaml:13:15: routes[1].upstream: unknown upstream `ordres` (did you mean `orders`?)",
            "routes.yaml:14:20: routes[1].methods[1]: `B@D` is not an HTTP method",
            "6 problems in routes.yaml",
        ]
    );
}

#[test]
fn references_are_checked_after_decoding() {
    let src = "\
upstreams:
  orders: { targets: [\"http://127.0.0.1:1\"] }
routes:
  - { name: a, path: /x, upstream: ordrs }
  - { name: a, path: /y, upstream: orders }
  - { name: c, path: /y, upstream: orders, strip_prefix: /z }
";
    let lines = problems(src);
    assert!(
        lines[0].starts_with(
            "routes.yaml:4:36: routes[0].upstream: unknown upstream `ordrs` (did you mean `orders`?)"
        ),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("routes[1].name: route name `a` is already used by routes[0]")),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l.contains("`/z` is not a leading part")), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.contains("route `c` has the same host, path and methods as route `a`")),
        "{lines:?}"
    );
}

#[test]
fn identical_routes_are_rejected_but_disjoint_methods_are_fine() {
    let base = "upstreams: { u: { targets: [\"http://127.0.0.1:1\"] } }\nroutes:\n";
    let dup = format!("{base}  - {{ name: a, path: /x, upstream: u, methods: [GET] }}\n  - {{ name: b, path: /x, upstream: u, methods: [GET, POST] }}\n");
    assert!(problems(&dup)[0].contains("same host, path and methods as route `a`"));
    let ok = format!("{base}  - {{ name: a, path: /x, upstream: u, methods: [GET] }}\n  - {{ name: b, path: /x, upstream: u, methods: [POST] }}\n");
    assert!(parse(&ok).is_ok());
}

#[test]
fn alarms_decode_and_name_what_they_watch() {
    let c = parse(
        "queues: { orders: { dead_letter: { queue: dlq, max_receives: 3 } }, dlq: {} }
topics: { ops: {} }
alarms:
  backlog: { queue: orders, metric: visible, above: 1000, for: 2m, notify: [ops] }
  stale: { queue: orders, metric: oldest_age, above: 5m }
  drained: { queue: orders, metric: in_flight, below: 1 }
  dead: { queue: orders, metric: dead_letter, above: 0 }
",
    )
    .unwrap();
    let a = &c.alarms["backlog"];
    assert_eq!(
        (a.metric, a.above, a.threshold, a.hold),
        (AlarmMetric::Visible, true, 1000.0, Duration::from_secs(120))
    );
    assert_eq!(a.notify, ["ops"]);
    assert_eq!(c.alarms["stale"].threshold, 300.0);
    assert!(!c.alarms["drained"].above);
    for (yaml, problem) in [
        (
            "alarms: { a: { queue: q, metric: depth, above: 1 } }\nqueues: { q: {} }\n",
            "expected one of visible",
        ),
        (
            "alarms: { a: { queue: q, metric: visible, above: 1, below: 2 } }\nqueues: { q: {} }\n",
            "one threshold",
        ),
        ("alarms: { a: { queue: nope, metric: visible, above: 1 } }\n", "unknown queue `nope`"),
        (
            "alarms: { a: { queue: q, metric: visible, above: 1, notify: [x] } }\nqueues: { q: {} }\n",
            "alarms.a.notify[0]: unknown topic `x`",
        ),
        (
            "alarms: { a: { queue: q, metric: dead_letter, above: 0 } }\nqueues: { q: {} }\n",
            "has no `dead_letter`",
        ),
        ("alarms: { a: { queue: q, metric: oldest_age, above: 5 } }\nqueues: { q: {} }\n", "has no unit"),
        (
            "alarms: { a: { queue: q, metric: visible, above: -1 } }\nqueues: { q: {} }\n",
            "a number of messages",
        ),
    ] {
        let lines = problems(yaml);
        assert!(lines.iter().any(|l| l.contains(problem)), "{yaml}: {lines:?}");
    }
}

#[test]
fn topics_subscriptions_and_topic_routes_decode() {
    let c = parse(
        "queues: { orders: {}, dlq: {} }
topics:
  events:
    display_name: Events
    subscriptions:
      - { queue: orders, raw: true, filter: { type: [created, { prefix: \"ord\" }] }, filter_scope: body }
      - { url: \"https://hooks.example.com/x\", confirmed: true, dead_letter: dlq }
  pay.fifo: { content_based_deduplication: true }
routes:
  - { name: e, path: /e, topic: events, message: { subject: \"header:x-subject\", group_id: \"header:x-g\" } }
",
    )
    .unwrap();
    let t = &c.topics["events"];
    assert_eq!(t.display_name.as_deref(), Some("Events"));
    assert!(!t.fifo && c.topics["pay.fifo"].fifo && c.topics["pay.fifo"].content_based_deduplication);
    let s = &t.subscriptions[0];
    assert_eq!(s.endpoint, Endpoint::Queue("orders".into()));
    assert!(s.raw && s.filter_body);
    assert_eq!(s.filter.as_deref(), Some(r#"{"type":["created",{"prefix":"ord"}]}"#));
    let u = &t.subscriptions[1];
    assert_eq!(u.endpoint, Endpoint::Url("https://hooks.example.com/x".into()));
    assert!(u.confirmed && u.dead_letter.as_deref() == Some("dlq"));
    let RouteTarget::Topic { topic, message } = &c.routes[0].target else { panic!("topic route") };
    assert_eq!(topic, "events");
    assert_eq!(message.subject, Some(ValueSource::Header("x-subject".into())));

    for (yaml, problem) in [
        ("routes:\n  - { name: e, path: /e, topic: nope }\n", "routes[0].topic: unknown topic `nope`"),
        ("topics: { t: { subscriptions: [ { queue: q, url: \"http://x\" } ] } }\n", "one endpoint"),
        ("topics: { t: { subscriptions: [ { url: \"ftp://x\" } ] } }\n", "is not an http:// or https:// URL"),
        ("topics: { t: { subscriptions: [ { queue: nope } ] } }\n", "unknown queue `nope`"),
        ("topics: { t: { subscriptions: [ { queue: q, confirmed: true } ] } }\nqueues: { q: {} }\n", "`confirmed` applies to `url`"),
        ("topics: { t: { content_based_deduplication: true } }\n", "only FIFO topics"),
        ("topics: { \"bad name\": {} }\n", "is not a topic name"),
        ("topics: { t: {} }\nqueues: { q.fifo: { fifo: true } }\n\ntopics2: 1\n", "unknown key `topics2`"),
        ("topics: { t.fifo: { subscriptions: [ { url: \"http://x/y\" } ] } }\n", "FIFO topics deliver to queues only"),
        ("topics: { t: { subscriptions: [ { queue: q.fifo } ] } }\nqueues: { q.fifo: { fifo: true } }\n", "FIFO queues can only subscribe to FIFO topics"),
        ("routes:\n  - { name: q, path: /q, queue: q, message: { subject: \"header:s\" } }\nqueues: { q: {} }\n", "`subject` applies to routes with `topic`"),
    ] {
        let lines = problems(yaml);
        assert!(lines.iter().any(|l| l.contains(problem)), "{yaml}: {lines:?}");
    }
}

#[test]
fn environment_variables_expand_and_missing_ones_are_problems() {
    let env = |n: &str| (n == "PORT").then(|| "7000".to_string());
    let src = "listen: { gateway: { bind: \"127.0.0.1:${PORT}\" }, admin: { bind: \"${ADMIN}\" } }";
    let err = Config::parse(Path::new("r.yaml"), src, &env).unwrap_err();
    assert_eq!(err.problems.len(), 1);
    assert!(err.problems[0].message.contains("`ADMIN` is not set"));
    let ok = Config::parse(Path::new("r.yaml"), "listen: { gateway: { bind: \"127.0.0.1:${PORT}\" } }", &env)
        .unwrap();
    assert_eq!(ok.listen.gateway[0].bind.port(), 7000);
}

#[test]
fn yaml_syntax_errors_are_located() {
    let lines = problems("routes:\n  - name: [a\n");
    assert!(lines[0].starts_with("routes.yaml:3:1: invalid YAML:"), "{lines:?}");
}

#[test]
fn missing_tls_files_are_reported() {
    let lines = problems("listen: { gateway: { tls: { cert: nope.pem, key: nope.key } } }");
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines[0].contains("listen.gateway.tls.cert: cannot read"), "{lines:?}");
}

#[test]
fn targets_parse_scheme_host_and_port() {
    assert_eq!(
        TargetUrl::parse("http://127.0.0.1:9000/").unwrap(),
        TargetUrl { tls: false, host: "127.0.0.1".into(), port: 9000 }
    );
    assert_eq!(TargetUrl::parse("http://svc").unwrap().port, 80);
    assert_eq!(TargetUrl::parse("http://[::1]:81").unwrap().authority(), "[::1]:81");
    assert!(TargetUrl::parse("http://x/path").is_err());
    assert!(TargetUrl::parse("http://x:99999").is_err());
    assert!(TargetUrl::parse("http://:80").is_err());
}

#[test]
fn queues_storage_and_aws_decode() {
    let src = r#"
listen:
  aws: { bind: "127.0.0.1:9400", credentials: [ { access_key: AKID1, secret_key: "${SECRET}" } ] }
aws: { account_id: "123456789012", region: eu-west-1 }
storage: { path: ./queues, sync: normal, cache: 32MiB }
queues:
  orders: { visibility_timeout: 45s, retention: 2d, delay: 5s, max_message_size: 512KiB, receive_wait: 20s, dead_letter: { queue: orders-dlq, max_receives: 5 }, tags: { team: core } }
  orders-dlq: {}
  pay.fifo: { content_based_deduplication: true }
routes:
  - { name: o, path: /o, methods: [POST], queue: orders, message: { group_id: "header:X-Tenant", attributes: { src: "header:x-source" } } }
"#;
    let env = |n: &str| (n == "SECRET").then(|| "shh".to_string());
    let c = Config::parse(Path::new("/etc/gh/routes.yaml"), src, &env).unwrap();
    let aws = c.listen.aws.as_ref().unwrap();
    assert_eq!(aws.bind.port(), 9400);
    assert_eq!(aws.credentials, vec![("AKID1".to_string(), "shh".to_string())]);
    assert_eq!(c.aws.account_id, "123456789012");
    assert_eq!(c.storage.path, Path::new("/etc/gh/./queues"));
    assert_eq!(c.storage.sync, SyncMode::Normal);
    let o = &c.queues["orders"];
    assert_eq!(o.visibility_timeout, Duration::from_secs(45));
    assert_eq!(o.dead_letter.as_ref().unwrap().max_receives, 5);
    assert!(c.queues["pay.fifo"].fifo, "FIFO from the name");
    let attrs = o.sqs_attributes("arn:aws:sqs:eu-west-1:123456789012:");
    assert_eq!(attrs["DelaySeconds"], "5");
    assert!(attrs["RedrivePolicy"].contains("arn:aws:sqs:eu-west-1:123456789012:orders-dlq"));
    let RouteTarget::Queue { queue, message } = &c.routes[0].target else { panic!("queue route") };
    assert_eq!(queue, "orders");
    assert_eq!(message.group_id, Some(ValueSource::Header("x-tenant".into())));
    // Defaults: the AWS listener on loopback, storage next to the file.
    let d = Config::parse(Path::new("/srv/routes.yaml"), "", &no_env).unwrap();
    assert_eq!(d.listen.aws.unwrap().bind.to_string(), "127.0.0.1:9324");
    assert_eq!(d.storage.path, Path::new("/srv/data"));
    assert!(Config::parse(Path::new("r.yaml"), "listen: { aws: off }", &no_env)
        .unwrap()
        .listen
        .aws
        .is_none());
}

#[test]
fn queue_problems_are_all_reported() {
    let src = "\
queues:
  jobs: { visibility_timeout: 1500ms, dead_letter: { queue: jobz, max_receives: 3 } }
  work.fifo: { fifo: false }
  std: { content_based_deduplication: true, retention: 30s }
  f.fifo: { dead_letter: { queue: std, max_receives: 2 } }
routes:
  - { name: a, path: /a, queue: jbos }
  - { name: b, path: /b, queue: jobs, message: { group_id: \"jwt:sub\" } }
  - { name: c, path: /c, respond: {}, message: {} }
";
    let lines = problems(src);
    let has =
        |needle: &str| assert!(lines.iter().any(|l| l.contains(needle)), "missing `{needle}` in {lines:#?}");
    has("queues.jobs.visibility_timeout: queues count time in whole seconds");
    has("queues.jobs.dead_letter.queue: unknown queue `jobz` (did you mean `jobs`?)");
    has("queues.\"work.fifo\".fifo: a FIFO queue's name ends with `.fifo`");
    has("queues.std.content_based_deduplication: content-based deduplication is for FIFO queues");
    has("queues.std.retention: must be between");
    has("queues.\"f.fifo\".dead_letter.queue: a dead-letter queue must be of the same type");
    has("routes[0].queue: unknown queue `jbos` (did you mean `jobs`?)");
    has("routes[1].message: `jwt:` sources need a verified token: the route has no `auth`");
    has("routes[2].message: `message` applies to routes with `queue`");
}

#[test]
fn connection_balance_names_its_choices() {
    let p = problems("listen:\n  gateway: { connection_balance: exactly }\n");
    assert!(
        p.iter().any(|l| l.contains("listen.gateway.connection_balance")
            && l.contains("`exactly` is not one of: exact, kernel (did you mean `exact`?)")),
        "{p:?}"
    );
}

#[test]
fn throttle_and_auth_problems_are_located() {
    let src = "\
trusted_proxies: [10.0.0.0/8, 10.0.0.300/8]
throttle: { rate: 0/s, burst: 0, key: client_ip }
auth:
  jwt:
    main: { issuer: https://id.example.com/, jwks_file: jwks.json, algorithms: [RS256, HS256] }
    hmac: { secret: short }
    both: { jwks_file: a.json, public_key: b.pem }
routes:
  - { name: a, path: /a, respond: {}, throttle: { rate: 10/s, key: jwt:sub } }
  - { name: b, path: /b, respond: {}, throttle: [ { rate: 1/s }, { rate: 2/min } ] }
  - { name: c, path: /c, respond: {}, throttle: { rate: 5/fortnight, key: cookie:x } }
  - { name: d, path: /d, respond: {}, auth: mian, scopes: [a], claims_to_headers: { sub: Host } }
  - { name: e, path: /e, respond: {}, scopes: [a] }
";
    let lines = problems(src);
    let has =
        |needle: &str| assert!(lines.iter().any(|l| l.contains(needle)), "missing `{needle}` in {lines:#?}");
    has("routes.yaml:1:31: trusted_proxies[1]: expected an address range");
    has("routes.yaml:2:19: throttle.rate: a rate must admit at least one request");
    has("throttle.burst: 0 is out of range");
    has("auth.jwt.main.algorithms[1]: `HS256` is an HMAC algorithm: it is allowed only with a `secret`");
    has("auth.jwt.hmac.secret: an HMAC secret must be at least 32 bytes");
    has("auth.jwt.both: a provider has one key source, found jwks_file and public_key");
    has("routes[0].throttle.key: `jwt:sub` needs a verified token: the route has no `auth`");
    has("routes[1].throttle[1].name: limit name `default` is used twice");
    has("routes[2].throttle.rate: expected a rate such as `100/s`");
    has("routes[2].throttle.key: unknown key `cookie:x`");
    has("routes[3].auth: unknown JWT provider `mian` (did you mean `main`?)");
    has("routes[3].claims_to_headers: `host` is set by gatehouse");
    has("routes[4].scopes: `scopes` applies to routes with `auth`");
}

#[test]
fn throttle_defaults_apply_to_every_route_unless_overridden() {
    let c = parse(
        "throttle: [ { name: fast, rate: 10/s, burst: 20 }, { name: hourly, rate: 1000/h, key: \"header:X-Api-Key\" } ]
auth: { jwt: { main: { jwks_file: jwks.json } } }
routes:
  - { name: a, path: /a, respond: {} }
  - { name: b, path: /b, respond: {}, throttle: off }
  - { name: c, path: /c, respond: {}, auth: main, throttle: { rate: 5/min, key: \"jwt:sub\", max_keys: 10 } }
",
    )
    .unwrap();
    let a = c.limits_of(&c.routes[0]);
    assert_eq!(a.len(), 2);
    assert_eq!((a[0].name.as_str(), a[0].rate.count, a[0].burst), ("fast", 10, 20));
    assert_eq!(a[1].key, crate::config::LimitKey::Header("x-api-key".into()));
    assert_eq!(a[1].rate.per, std::time::Duration::from_secs(3600));
    assert_eq!(a[1].burst, 1000, "burst defaults to the rate's count");
    assert!(c.limits_of(&c.routes[1]).is_empty());
    let own = c.limits_of(&c.routes[2]);
    assert_eq!((own.len(), own[0].max_keys, own[0].name.as_str()), (1, 10, "default"));
    let p = c.provider("main").unwrap();
    assert_eq!(p.algorithms.len(), 9, "every asymmetric algorithm by default");
    assert_eq!(p.leeway, std::time::Duration::from_secs(60));
}

#[test]
fn waf_settings_are_checked_with_their_keys() {
    let lines = problems(concat!(
        "waf: { mode: block-ish, paranoia: 5, anomaly_threshold: 0, body_limit: 64MiB, body_over_limit: drop }\n",
        "routes:\n",
        "  - { name: a, path: /x, respond: {}, waf: { exclude: [\"9 2\"], mode: detect, exclude_args: [{ rule: 942100 }] } }\n",
        "  - { name: b, path: /y, respond: {}, waf: maybe }\n",
    ));
    let expect = [
        "1:14: waf.mode: `block-ish` is not one of: block, detect",
        "1:35: waf.paranoia: 5 is out of range: expected 1 to 4",
        "1:57: waf.anomaly_threshold: 0 is out of range",
        "1:72: waf.body_limit: expected a size from 1B to 16MiB",
        "1:96: waf.body_over_limit: `drop` is not one of: inspect_prefix, reject",
        "routes[0].waf.exclude[0]: expected a rule id or a family name",
        "routes[0].waf.exclude_args[0]: missing required key `arg`",
        "routes[1].waf: expected `off` or a mapping",
    ];
    for e in expect {
        assert!(lines.iter().any(|l| l.contains(e)), "no `{e}` in {lines:#?}");
    }
    let lines = problems("routes:\n  - { name: a, path: /x, respond: {}, waf: { exclude: [sqli] } }\n");
    assert!(lines[0].contains("there is no top-level `waf`"), "{lines:?}");
    assert!(parse("routes:\n  - { name: a, path: /x, respond: {}, waf: off }\n").is_ok());
}
