//! Listener behaviour: TLS (SNI, ALPN, versions, client certificates),
//! HTTP/2, slow-client protection, connection limits, the admin endpoints.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A CA with certificates for `a.test` and `b.test` / `*.b.test`, written
/// into a fresh directory.
fn sni_setup() -> (tempfile::TempDir, TestCa, Leaf, Leaf) {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("gatehouse test CA");
    let a = ca.leaf(&["a.test"]);
    let b = ca.leaf(&["b.test", "*.b.test"]);
    a.write(dir.path(), "a");
    b.write(dir.path(), "b");
    ca.write(dir.path());
    (dir, ca, a, b)
}

fn tls_config(tls: &str) -> String {
    format!(
        "listen:\n  gateway: {{ bind: \"127.0.0.1:0\", tls: {tls} }}\n  admin: off\n  aws: off\nlog: {{ access: false }}\nroutes:\n  - {{ name: ping, path: /ping, respond: {{ body: pong }} }}\n"
    )
}

const SNI_TLS: &str = "{ certificates: [ { cert: a.pem, key: a-key.pem, hosts: [a.test] }, { cert: b.pem, key: b-key.pem, hosts: [b.test, \"*.b.test\"] } ] }";

fn peer_cert(resp: &reqwest::Response) -> Vec<u8> {
    let info = resp.extensions().get::<reqwest::tls::TlsInfo>().expect("TLS info");
    info.peer_certificate().expect("a peer certificate").to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_chooses_the_certificate_by_sni_and_negotiates_h2() {
    let (dir, ca, a, b) = sni_setup();
    let gw = Gateway::start_in(dir, &tls_config(SNI_TLS)).await;
    let port = gw.addr.port();
    let http = ca.https_client(&["a.test", "b.test", "api.b.test"], gw.addr, None);

    for (host, want) in [("a.test", &a), ("b.test", &b), ("api.b.test", &b)] {
        let r = http.get(format!("https://{host}:{port}/ping")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.version(), reqwest::Version::HTTP_2, "ALPN picks h2 for {host}");
        assert_eq!(peer_cert(&r), want.der.to_vec(), "certificate for {host}");
        assert_eq!(r.text().await.unwrap(), "pong");
    }

    // A client that offers only http/1.1 gets HTTP/1.1.
    let mut h1 = ca.client_config(None);
    h1.alpn_protocols = vec![b"http/1.1".to_vec()];
    let http1 = reqwest::Client::builder()
        .no_proxy()
        .tls_backend_preconfigured(h1)
        .resolve("a.test", gw.addr)
        .build()
        .unwrap();
    let r = http1.get(format!("https://a.test:{port}/ping")).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_versions_below_the_minimum_are_refused() {
    let (dir, ca, _, _) = sni_setup();
    let gw =
        Gateway::start_in(dir, &tls_config("{ cert: a.pem, key: a-key.pem, min_version: \"1.3\" }")).await;
    let handshake = |versions: &'static [&'static rustls::SupportedProtocolVersion]| {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.cert_der.clone()).unwrap();
        let config = rustls::ClientConfig::builder_with_protocol_versions(versions)
            .with_root_certificates(roots)
            .with_no_client_auth();
        let addr = gw.addr;
        async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
            connector.connect("a.test".try_into().unwrap(), tcp).await
        }
    };
    static TLS12_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS12];
    static TLS13_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    assert!(handshake(&TLS12_ONLY).await.is_err(), "TLS 1.2 refused with min_version 1.3");
    let tls = handshake(&TLS13_ONLY).await.expect("TLS 1.3 accepted");
    assert_eq!(tls.get_ref().1.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_listeners_speak_h2c_with_prior_knowledge() {
    let gw = Gateway::start(&config("", "  - { name: ping, path: /ping, respond: { body: pong } }")).await;
    init();
    let h2c = reqwest::Client::builder().no_proxy().http2_prior_knowledge().build().unwrap();
    let r = h2c.get(format!("{}/ping", gw.url)).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.text().await.unwrap(), "pong");
    let r = client().get(format!("{}/ping", gw.url)).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_checked_when_client_ca_is_set() {
    let (dir, ca, _, _) = sni_setup();
    let stranger_ca = TestCa::new("someone else");
    let gw = Gateway::start_in(dir, &tls_config("{ cert: a.pem, key: a-key.pem, client_ca: ca.pem }")).await;
    let url = format!("https://a.test:{}/ping", gw.addr.port());

    let trusted = ca.client_leaf("worker-1");
    let r = ca.https_client(&["a.test"], gw.addr, Some(&trusted)).get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);

    assert!(
        ca.https_client(&["a.test"], gw.addr, None).get(&url).send().await.is_err(),
        "no client certificate"
    );
    let untrusted = stranger_ca.client_leaf("intruder");
    assert!(
        ca.https_client(&["a.test"], gw.addr, Some(&untrusted)).get(&url).send().await.is_err(),
        "certificate from an unknown CA"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_client_auth_admits_anonymous_clients() {
    let (dir, ca, _, _) = sni_setup();
    let gw = Gateway::start_in(
        dir,
        &tls_config("{ cert: a.pem, key: a-key.pem, client_ca: ca.pem, client_auth: optional }"),
    )
    .await;
    let url = format!("https://a.test:{}/ping", gw.addr.port());
    let r = ca.https_client(&["a.test"], gw.addr, None).get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

fn limits_config(limits: &str) -> String {
    format!(
        "listen:\n  gateway: {{ bind: \"127.0.0.1:0\", {limits} }}\n  admin: off\n  aws: off\nlog: {{ access: false }}\nroutes:\n  - {{ name: ping, path: /ping, respond: {{ body: pong }} }}\n"
    )
}

/// Reads until the peer closes; returns what was read.
async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out))
        .await
        .expect("connection closed");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_heads_are_cut_off() {
    let gw = Gateway::start(&limits_config("header_read_timeout: 300ms, idle_timeout: 60s")).await;
    // A head that never completes.
    let start = Instant::now();
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
    let got = read_to_close(&mut s).await;
    assert!(got.is_empty(), "no response to an incomplete head");
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(290) && waited < Duration::from_secs(3),
        "closed after {waited:?}"
    );

    // A connection that never sends anything is cut off the same way.
    let start = Instant::now();
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    read_to_close(&mut s).await;
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_connections_close_after_the_idle_timeout_not_the_header_timeout() {
    let gw = Gateway::start(&limits_config("header_read_timeout: 200ms, idle_timeout: 900ms")).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Idle longer than the header timeout: still open.
    let start = Instant::now();
    let got = read_to_close(&mut s).await;
    assert!(got.is_empty());
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(850), "idle connection closed early, after {waited:?}");
    assert!(waited < Duration::from_secs(3), "idle connection closed late, after {waited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_heads_get_431() {
    let gw = Gateway::start(&limits_config("max_header_size: 8KiB")).await;
    let r = client().get(format!("{}/ping", gw.url)).header("x-big", "v".repeat(4000)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r =
        client().get(format!("{}/ping", gw.url)).header("x-big", "v".repeat(20_000)).send().await.unwrap();
    assert_eq!(r.status(), 431);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_beyond_max_connections_wait_for_a_slot() {
    let gw = Gateway::start(&limits_config("max_connections: 1")).await;
    let request = b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut first = TcpStream::connect(gw.addr).await.unwrap();
    first.write_all(request).await.unwrap();
    let mut buf = [0u8; 512];
    assert!(first.read(&mut buf).await.unwrap() > 0);

    // The second client's request is not served while the first holds the
    // only slot...
    let mut second = TcpStream::connect(gw.addr).await.unwrap();
    second.write_all(request).await.unwrap();
    let early = tokio::time::timeout(Duration::from_millis(300), second.read(&mut buf)).await;
    assert!(early.is_err(), "served beyond max_connections");
    // ...and is served as soon as the first goes away.
    drop(first);
    let n = tokio::time::timeout(Duration::from_secs(5), second.read(&mut buf)).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_serves_health_readiness_and_metrics() {
    let gw = Gateway::start(&config("", "  - { name: ping, path: /ping, respond: { body: pong } }")).await;
    let http = client();
    http.get(format!("{}/ping", gw.url)).send().await.unwrap().text().await.unwrap();
    let admin = gw.admin_url();
    let r = http.get(format!("{admin}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = http.get(format!("{admin}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["status"], "ready");

    let r = http.get(format!("{admin}/metrics")).send().await.unwrap();
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let text = r.text().await.unwrap();
    assert_eq!(
        metric(&text, "gatehouse_http_requests_total{route=\"ping\",status=\"2xx\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(metric(&text, "gatehouse_http_request_duration_seconds_count{route=\"ping\"}"), Some(1.0));
    let active = format!("gatehouse_connections_active{{listener=\"gateway {}\"}}", gw.addr);
    assert!(metric(&text, &active).is_some(), "{text}");
    assert!(text.ends_with("# EOF\n"));

    let r = http.get(format!("{admin}/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = http.post(format!("{admin}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_waits_for_the_first_health_check() {
    // The health endpoint answers only when the test lets it.
    let (release, release_rx) = tokio::sync::watch::channel(false);
    let up = backend(move |_| {
        let mut release = release_rx.clone();
        async move {
            let _ = release.wait_for(|r| *r).await;
            text(200, "ok")
        }
    })
    .await;
    let gw = Gateway::start(&config(
        &format!(
            "  u: {{ targets: [\"{}\"], health_check: {{ path: /healthz, interval: 1h, timeout: 30s }} }}",
            up.url
        ),
        "  - { name: all, path: /*, upstream: u }",
    ))
    .await;
    let http = client();
    let r = http.get(format!("{}/readyz", gw.admin_url())).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["waiting_for"][0], "first health check of upstream `u`");

    release.send(true).unwrap();
    eventually("ready after the first check", || async {
        http.get(format!("{}/readyz", gw.admin_url())).send().await.unwrap().status() == 200
    })
    .await;
}

/// Opens a keep-alive connection and has one request answered on it.
async fn served_connection(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /ping HTTP/1.1\r\nhost: t\r\n\r\n").await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !seen.ends_with(b"pong") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed before answering: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(seen.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&seen));
    s
}

/// Opens `n` keep-alive connections one after another, each answered
/// before the next is opened.
async fn served_connections(addr: std::net::SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut open = Vec::with_capacity(n);
    for _ in 0..n {
        open.push(served_connection(addr).await);
    }
    open
}

/// Open connections per worker, from the admin listener's metrics.
async fn per_worker(gw: &Gateway, workers: usize) -> Vec<f64> {
    let text =
        client().get(format!("{}/metrics", gw.admin_url())).send().await.unwrap().text().await.unwrap();
    (0..workers)
        .map(|w| {
            let key = format!(
                "gatehouse_worker_connections_active{{listener=\"gateway {}\",worker=\"{w}\"}}",
                gw.addr
            );
            metric(&text, &key).unwrap_or_else(|| panic!("no {key} in\n{text}"))
        })
        .collect()
}

fn balance_config(balance: &str) -> String {
    format!(
        "listen:\n  gateway: {{ bind: \"127.0.0.1:0\"{balance} }}\n  admin: {{ bind: \"127.0.0.1:0\" }}\n  aws: off\nworkers: 4\nlog: {{ access: false }}\nroutes:\n  - {{ name: ping, path: /ping, respond: {{ body: pong }} }}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_spread_evenly_over_the_workers() {
    // The default, `connection_balance: exact`. With the kernel's hash,
    // 12 connections over 4 workers split 3/3/3/3 about one time in 20.
    let gw = Gateway::start(&balance_config("")).await;
    // One at a time, each answered: connections handed from one worker to
    // another are served like the rest.
    let mut open = served_connections(gw.addr, 12).await;
    assert_eq!(per_worker(&gw, 4).await, vec![3.0; 4]);

    // Closing connections frees their workers' places; new ones fill the
    // emptiest worker first.
    open.truncate(9);
    eventually("closed connections uncounted", || async {
        per_worker(&gw, 4).await.iter().sum::<f64>() == 9.0
    })
    .await;
    open.extend(served_connections(gw.addr, 3).await);
    assert_eq!(per_worker(&gw, 4).await, vec![3.0; 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_balancing_leaves_the_split_to_the_reuseport_hash() {
    let gw = Gateway::start(&balance_config(", connection_balance: kernel")).await;
    let _open = served_connections(gw.addr, 12).await;
    assert_eq!(per_worker(&gw, 4).await.iter().sum::<f64>(), 12.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_limit_each_freed_slot_reaches_a_waiting_client_across_workers() {
    // Two workers, exact balancing, two slots. Connections handed from one
    // worker to another hold their slot on the way; a worker waiting for a
    // slot must still serve them, or the slot they hold is never freed.
    let gw = Gateway::start(&format!("workers: 2\n{}", limits_config("max_connections: 2"))).await;
    let first = served_connection(gw.addr).await;
    let _second = served_connection(gw.addr).await;

    // Four more clients wait; each closes as soon as it is answered, so one
    // freed slot is passed along the whole queue.
    let (done, mut answered) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..4 {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(b"GET /ping HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n").await.unwrap();
        let done = done.clone();
        tokio::spawn(async move {
            let answer = read_to_close(&mut s).await;
            if answer.starts_with(b"HTTP/1.1 200") {
                let _ = done.send(i);
            }
        });
    }
    let early = tokio::time::timeout(Duration::from_millis(200), answered.recv()).await;
    assert!(early.is_err(), "served beyond max_connections");

    drop(first);
    let mut served = Vec::new();
    for _ in 0..4 {
        let i = tokio::time::timeout(Duration::from_secs(5), answered.recv())
            .await
            .unwrap_or_else(|_| panic!("a waiting client was not served; served so far: {served:?}"))
            .unwrap();
        served.push(i);
    }
    served.sort();
    assert_eq!(served, vec![0, 1, 2, 3]);
}
