//! Routing and upstream proxying, over real sockets.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use http::Request;
use hyper::body::Incoming;
use serde_json::Value;
use tokio::sync::mpsc;

async fn json(resp: reqwest::Response) -> Value {
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_follow_precedence_and_misses_get_json_404_and_405() {
    let (a, b, c) = (named("prefix").await, named("param").await, named("literal").await);
    let gw = Gateway::start(&config(
        &format!(
            "  a: {{ targets: [\"{}\"] }}\n  b: {{ targets: [\"{}\"] }}\n  c: {{ targets: [\"{}\"] }}",
            a.url, b.url, c.url
        ),
        "  - { name: new-order, path: /api/orders/new, upstream: c }
  - { name: get-order, path: \"/api/orders/{id}\", methods: [GET], upstream: b }
  - { name: api, path: /api/*, upstream: a }
  - { name: wild, path: /*, host: \"*.example.test\", respond: { body: wildcard-host } }
  - { name: create, path: /only-post, methods: [POST, PUT], respond: { status: 201, body: created } }",
    ))
    .await;
    let http = client();
    let get = |path: &str| http.get(format!("{}{path}", gw.url)).send();

    assert_eq!(get("/api/orders/7").await.unwrap().text().await.unwrap(), "param");
    assert_eq!(get("/api/orders/new").await.unwrap().text().await.unwrap(), "literal");
    assert_eq!(get("/api/users").await.unwrap().text().await.unwrap(), "prefix");
    assert_eq!(get("/api").await.unwrap().text().await.unwrap(), "prefix");
    // DELETE on /api/orders/7: the {id} route is GET-only, the prefix route takes it.
    let r = http.delete(format!("{}/api/orders/7", gw.url)).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "prefix");
    // An exact host pattern beats everything without one.
    let r = http
        .get(format!("{}/api/orders/7", gw.url))
        .header("host", "shop.example.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "wildcard-host");

    let r = get("/nothing/here").await.unwrap();
    assert_eq!(r.status(), 404);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body = json(r).await;
    assert_eq!(body["error"], "route_not_found");
    assert_eq!(body["message"], "no route matches GET /nothing/here");
    assert_eq!(body["request_id"], id.as_str());

    let r = get("/only-post").await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST, PUT");
    assert_eq!(json(r).await["error"], "method_not_allowed");
    let r = http.post(format!("{}/only-post", gw.url)).send().await.unwrap();
    assert_eq!(r.status(), 201);

    // Dot segments are resolved before matching: /api/../x is /x.
    let r = http.get(format!("{}/api/%2e%2e/secret", gw.url)).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(json(r).await["message"], "no route matches GET /secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_sets_forwarded_headers_strips_hop_by_hop_and_prefix() {
    let up = echo().await;
    let gw = Gateway::start(&config(
        &format!(
            "  svc: {{ targets: [\"{0}\"] }}\n  svc-target-host: {{ targets: [\"{0}\"], host_header: target }}",
            up.url
        ),
        "  - { name: svc, path: /svc/*, upstream: svc, strip_prefix: /svc }
  - { name: th, path: /th, upstream: svc-target-host }",
    ))
    .await;
    let http = client();
    let r = http
        .get(format!("{}/svc/a/b?x=1&y=%20", gw.url))
        .header("host", "api.test:8443")
        .header("connection", "x-hop")
        .header("x-hop", "secret")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic eDp5")
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-request-id", "client-chosen-id")
        .header("authorization", "Bearer keep-me")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], "client-chosen-id");
    let seen = json(r).await;
    let h = &seen["headers"];
    assert_eq!(seen["uri"], "/a/b?x=1&y=%20");
    assert_eq!(seen["version"], "HTTP/1.1");
    assert_eq!(h["host"], "api.test:8443");
    assert_eq!(h["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "api.test:8443");
    assert_eq!(h["x-request-id"], "client-chosen-id");
    assert_eq!(h["authorization"], "Bearer keep-me");
    for hop in ["x-hop", "keep-alive", "proxy-authorization"] {
        assert!(h.get(hop).is_none(), "{hop} must not be forwarded: {h}");
    }

    // Without a client id, one is generated and sent both ways.
    let r = http.get(format!("{}/th", gw.url)).send().await.unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 32);
    let seen = json(r).await;
    assert_eq!(seen["headers"]["x-request-id"], id.as_str());
    assert_eq!(seen["headers"]["host"], up.addr.to_string(), "host_header: target");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_requests_evenly() {
    let backends = [named("a").await, named("b").await, named("c").await];
    let targets: Vec<String> = backends.iter().map(|b| format!("\"{}\"", b.url)).collect();
    let gw = Gateway::start(&config(
        &format!("  rr: {{ targets: [{}], balance: round_robin }}", targets.join(", ")),
        "  - { name: all, path: /*, upstream: rr }",
    ))
    .await;
    let http = client();
    for _ in 0..30 {
        assert_eq!(http.get(format!("{}/x", gw.url)).send().await.unwrap().status(), 200);
    }
    let hits: Vec<usize> = backends.iter().map(Backend::hits).collect();
    assert_eq!(hits, vec![10, 10, 10]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_request_avoids_a_target_that_is_busy() {
    // `stuck` never answers; `free` answers at once.
    let (entered_tx, mut entered) = mpsc::unbounded_channel::<()>();
    let stuck = backend(move |_| {
        let entered = entered_tx.clone();
        async move {
            let _ = entered.send(());
            std::future::pending::<()>().await;
            text(200, "stuck")
        }
    })
    .await;
    let free = named("free").await;
    let gw = Gateway::start(&config(
        &format!("  lr: {{ targets: [\"{}\", \"{}\"], balance: least_request }}", stuck.url, free.url),
        "  - { name: all, path: /*, upstream: lr }",
    ))
    .await;
    let http = client();
    // Send requests until one is held by `stuck`.
    let mut held = Vec::new();
    loop {
        let mut req = tokio::spawn(http.get(format!("{}/x", gw.url)).send());
        tokio::select! {
            _ = entered.recv() => { held.push(req); break; }
            r = &mut req => assert_eq!(r.unwrap().unwrap().text().await.unwrap(), "free"),
        }
    }
    // With one request in flight on `stuck`, every new one goes to `free`.
    for _ in 0..20 {
        let r = http.get(format!("{}/x", gw.url)).send().await.unwrap();
        assert_eq!(r.text().await.unwrap(), "free");
    }
    assert_eq!(stuck.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failures_are_retried_on_another_target() {
    let good = named("good").await;
    let dead = closed_port();
    let gw = Gateway::start(&config(
        &format!("  u: {{ targets: [\"http://{dead}\", \"{}\"], retries: {{ max: 1 }} }}", good.url),
        "  - { name: all, path: /*, upstream: u }",
    ))
    .await;
    let http = client();
    for i in 0..6 {
        // POST too: a connect failure means the request was never sent.
        let r = http.post(format!("{}/x", gw.url)).body(format!("attempt {i}")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "good");
    }
    assert_eq!(good.hits(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_requests_retry_on_configured_statuses_only() {
    let bad = backend(|_| async { text(503, "bad") }).await;
    let good = named("good").await;
    let gw = Gateway::start(&config(
        &format!(
            "  u: {{ targets: [\"{}\", \"{}\"], retries: {{ max: 1, statuses: [503] }}, passive_health: {{ consecutive_failures: 0 }} }}",
            bad.url, good.url
        ),
        "  - { name: all, path: /*, upstream: u }",
    ))
    .await;
    let http = client();
    for _ in 0..6 {
        let r = http.get(format!("{}/x", gw.url)).send().await.unwrap();
        assert_eq!(r.text().await.unwrap(), "good", "GET is retried on 503");
    }
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(http.post(format!("{}/x", gw.url)).body("x").send().await.unwrap().status().as_u16());
    }
    assert!(statuses.contains(&503), "POST is not retried on a status: {statuses:?}");
    assert!(statuses.contains(&200), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_upstreams_are_502_and_slow_ones_504() {
    let silent = backend(|_| async {
        std::future::pending::<()>().await;
        text(200, "never")
    })
    .await;
    let gw = Gateway::start(&config(
        &format!(
            "  dead: {{ targets: [\"http://{}\"], retries: {{ max: 0 }} }}\n  slow: {{ targets: [\"{}\"], timeout: 30s }}",
            closed_port(),
            silent.url
        ),
        "  - { name: dead, path: /dead, upstream: dead }
  - { name: slow, path: /slow, upstream: slow, timeout: 300ms }",
    ))
    .await;
    let http = client();
    let r = http.get(format!("{}/dead", gw.url)).send().await.unwrap();
    assert_eq!(r.status(), 502);
    let body = json(r).await;
    assert_eq!(body["error"], "upstream_connect_failed");
    assert!(body["request_id"].is_string());

    let start = Instant::now();
    let r = http.get(format!("{}/slow", gw.url)).send().await.unwrap();
    assert_eq!(r.status(), 504);
    assert!(start.elapsed() < Duration::from_secs(5), "the route's timeout wins over the upstream's");
    let body = json(r).await;
    assert_eq!(body["error"], "upstream_timeout");
    assert_eq!(body["message"], "upstream `slow` did not answer within 300ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_health_checks_eject_and_readmit_targets() {
    let a_ok = Arc::new(AtomicBool::new(true));
    let flag = a_ok.clone();
    let a = backend(move |req: Request<Incoming>| {
        let ok = flag.load(Ordering::SeqCst);
        async move {
            match req.uri().path() {
                "/healthz" if ok => text(200, "ok"),
                "/healthz" => text(500, "sick"),
                _ => text(200, "a"),
            }
        }
    })
    .await;
    let b = named("b").await;
    let gw = Gateway::start(&config(
        &format!(
            "  u:\n    targets: [\"{}\", \"{}\"]\n    health_check: {{ path: /healthz, interval: 50ms, healthy_threshold: 2, unhealthy_threshold: 2 }}",
            a.url, b.url
        ),
        "  - { name: all, path: /*, upstream: u }",
    ))
    .await;
    let http = client();
    let admin = gw.admin_url();
    let healthy = format!("gatehouse_upstream_target_healthy{{upstream=\"u\",target=\"{}\"}}", a.url);
    let scrape =
        || async { http.get(format!("{admin}/metrics")).send().await.unwrap().text().await.unwrap() };

    eventually("readiness once health is known", || async {
        http.get(format!("{admin}/readyz")).send().await.unwrap().status() == 200
    })
    .await;
    assert_eq!(metric(&scrape().await, &healthy), Some(1.0));

    a_ok.store(false, Ordering::SeqCst);
    eventually("target a marked unhealthy", || async { metric(&scrape().await, &healthy) == Some(0.0) })
        .await;
    for _ in 0..10 {
        assert_eq!(http.get(format!("{}/x", gw.url)).send().await.unwrap().text().await.unwrap(), "b");
    }

    a_ok.store(true, Ordering::SeqCst);
    eventually("target a re-admitted", || async { metric(&scrape().await, &healthy) == Some(1.0) }).await;
    let mut saw_a = false;
    for _ in 0..10 {
        saw_a |= http.get(format!("{}/x", gw.url)).send().await.unwrap().text().await.unwrap() == "a";
    }
    assert!(saw_a, "a takes requests again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_health_ejects_failing_targets_for_a_while() {
    let failing = Arc::new(AtomicBool::new(true));
    let flag = failing.clone();
    let a = backend(move |_| {
        let fail = flag.load(Ordering::SeqCst);
        async move {
            if fail {
                text(500, "a-broken")
            } else {
                text(200, "a")
            }
        }
    })
    .await;
    let b = named("b").await;
    let gw = Gateway::start(&config(
        &format!(
            "  u: {{ targets: [\"{}\", \"{}\"], retries: {{ max: 0 }}, passive_health: {{ consecutive_failures: 2, eject_for: 500ms }} }}",
            a.url, b.url
        ),
        "  - { name: all, path: /*, upstream: u }",
    ))
    .await;
    let http = client();
    let mut answers = Vec::new();
    for _ in 0..12 {
        answers.push(http.get(format!("{}/x", gw.url)).send().await.unwrap().text().await.unwrap());
    }
    // Round robin reaches `a` twice, then `a` is ejected.
    assert_eq!(answers.iter().filter(|a| *a == "a-broken").count(), 2, "{answers:?}");
    assert!(answers[4..].iter().all(|a| a == "b"), "{answers:?}");
    let scrape = http.get(format!("{}/metrics", gw.admin_url())).send().await.unwrap().text().await.unwrap();
    let ejections =
        format!("gatehouse_upstream_target_ejections_total{{upstream=\"u\",target=\"{}\"}}", a.url);
    assert_eq!(metric(&scrape, &ejections), Some(1.0), "{scrape}");

    // After `eject_for`, `a` is tried again.
    failing.store(false, Ordering::SeqCst);
    eventually("a re-admitted after eject_for", || async {
        http.get(format!("{}/x", gw.url)).send().await.unwrap().text().await.unwrap() == "a"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_limits_answer_413_for_declared_and_streamed_bodies() {
    let up = echo().await;
    let gw = Gateway::start(&config(
        &format!("  u: {{ targets: [\"{}\"] }}", up.url),
        "  - { name: upload, path: /upload, upstream: u, max_body: 1KiB }",
    ))
    .await;
    let http = client();
    let r = http.post(format!("{}/upload", gw.url)).body(vec![b'x'; 1024]).send().await.unwrap();
    assert_eq!(json(r).await["body_len"], 1024);

    let r = http.post(format!("{}/upload", gw.url)).body(vec![b'x'; 1025]).send().await.unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(json(r).await["error"], "payload_too_large");
    assert_eq!(up.hits(), 1, "a declared oversize body never reaches the upstream");

    // Chunked, no length: the limit is enforced while streaming.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..40).map(|_| Ok(vec![b'y'; 100])).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let r = http.post(format!("{}/upload", gw.url)).body(body).send().await.unwrap();
    assert_eq!(r.status(), 413);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrades_are_tunnelled_both_ways() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ws_addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() || msg.is_binary() {
                        ws.send(msg).await.unwrap();
                    }
                }
            });
        }
    });
    let gw = Gateway::start(&config(
        &format!("  ws: {{ targets: [\"http://{ws_addr}\"] }}"),
        "  - { name: ws, path: /ws, upstream: ws }",
    ))
    .await;
    let (mut ws, resp) = tokio_tungstenite::connect_async(format!("ws://{}/ws", gw.addr)).await.unwrap();
    assert_eq!(resp.status(), 101);
    use tokio_tungstenite::tungstenite::Message;
    ws.send(Message::text("hello through the gateway")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello through the gateway"));
    let big = vec![7u8; 300_000];
    ws.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::binary(big));
    ws.close(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_upstreams_are_spoken_to_in_http2() {
    let up = echo().await;
    let gw = Gateway::start(&config(
        &format!("  h2: {{ targets: [\"{}\"], protocol: http2 }}", up.url),
        "  - { name: h2, path: /*, upstream: h2 }",
    ))
    .await;
    let r = client().get(format!("{}/x", gw.url)).send().await.unwrap();
    assert_eq!(json(r).await["version"], "HTTP/2.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_responses_need_no_backend() {
    let gw = Gateway::start(&config(
        "",
        "  - { name: teapot, path: /tea, respond: { status: 418, body: \"{\\\"short\\\":true}\", content_type: application/json, headers: { x-tea: earl-grey } } }",
    ))
    .await;
    let r = client().get(format!("{}/tea", gw.url)).send().await.unwrap();
    assert_eq!(r.status(), 418);
    assert_eq!(r.headers()["x-tea"], "earl-grey");
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(json(r).await["short"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstreams_that_close_idle_connections_cause_no_errors() {
    // Answers one request per connection with a keep-alive response, then
    // closes the socket without saying so: the pooled connection goes stale.
    let addr = one_answer_upstream(false).await;
    let gw = Gateway::start(&config(
        &format!("  flaky: {{ targets: [\"http://{addr}\"], retries: {{ max: 0 }} }}"),
        "  - { name: all, path: /*, upstream: flaky }",
    ))
    .await;
    let http = client();
    for i in 0..20 {
        let r = http.post(format!("{}/x", gw.url)).body(format!("{i}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "request {i}");
        assert_eq!(r.text().await.unwrap(), "ok");
    }
}
