//! Reload and shutdown: nothing in flight is dropped.

mod common;

use std::time::Duration;

use common::*;
use http::Request;
use hyper::body::Incoming;
use tokio::sync::{mpsc, watch};

/// A backend that holds every request until `release` is set to true, and
/// reports each arrival on `entered`.
async fn held_backend() -> (Backend, mpsc::UnboundedReceiver<()>, watch::Sender<bool>) {
    let (entered_tx, entered) = mpsc::unbounded_channel();
    let (release, release_rx) = watch::channel(false);
    let b = backend(move |_req: Request<Incoming>| {
        let entered = entered_tx.clone();
        let mut release = release_rx.clone();
        async move {
            let _ = entered.send(());
            let _ = release.wait_for(|r| *r).await;
            text(200, "finally")
        }
    })
    .await;
    (b, entered, release)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_routes_without_dropping_requests_or_connections() {
    let (slow, mut entered, release) = held_backend().await;
    let v1 = config(
        &format!("  slow: {{ targets: [\"{}\"] }}", slow.url),
        "  - { name: slow, path: /slow, upstream: slow }\n  - { name: old, path: /old, respond: { body: v1 } }",
    );
    let gw = Gateway::start(&v1).await;
    // One keep-alive connection, used before and after the reload: if the
    // reload dropped connections, the requests after it would fail on it.
    let mut conn = keep_alive(gw.addr).await;
    assert_eq!(get(&mut conn, "/old").await, (200, "v1".to_owned()));

    let http = client();
    let in_flight = tokio::spawn(http.get(format!("{}/slow", gw.url)).send());
    entered.recv().await.unwrap();

    let v2 = config(
        &format!("  slow: {{ targets: [\"{}\"] }}", slow.url),
        "  - { name: slow, path: /slow, upstream: slow }\n  - { name: new, path: /new, respond: { body: v2 } }",
    );
    gw.reload(&v2).await.expect("valid reload");

    assert_eq!(get(&mut conn, "/new").await, (200, "v2".to_owned()));
    assert_eq!(get(&mut conn, "/old").await.0, 404);

    release.send(true).unwrap();
    let resp = in_flight.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "finally");
}

/// An HTTP/1.1 connection to `addr`, driven in the background.
async fn keep_alive(addr: std::net::SocketAddr) -> hyper::client::conn::http1::SendRequest<Body> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, driver) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(driver);
    sender
}

/// GET `path` on `conn`: status and body.
async fn get(conn: &mut hyper::client::conn::http1::SendRequest<Body>, path: &str) -> (u16, String) {
    use http_body_util::BodyExt;
    conn.ready().await.expect("the keep-alive connection is still open");
    let req = Request::get(path).header(http::header::HOST, "gatehouse.test").body(full("")).unwrap();
    let resp = conn.send_request(req).await.expect("the keep-alive connection is still open");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_reload_changes_nothing_and_names_every_problem() {
    let gw =
        Gateway::start(&config("", "  - { name: keep, path: /keep, respond: { body: still-here } }")).await;
    let err = gw
        .reload("routes:\n  - { name: a, path: nope, respond: {} }\n  - { name: b, path: /b, upstream: missing }\n")
        .await
        .expect_err("bad config refused");
    let text = err.to_string();
    assert!(text.contains("routes.yaml:2:22: routes[0].path: a path must start with `/`"), "{text}");
    assert!(text.contains("routes.yaml:3:36: routes[1].upstream: unknown upstream `missing`"), "{text}");
    let r = client().get(format!("{}/keep", gw.url)).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "still-here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_read_again_on_reload() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("reload CA");
    let first = ca.leaf(&["a.test"]);
    first.write(dir.path(), "a");
    let yaml = "listen:\n  gateway: { bind: \"127.0.0.1:0\", tls: { cert: a.pem, key: a-key.pem } }\n  admin: off\n  aws: off\nroutes:\n  - { name: ping, path: /ping, respond: { body: pong } }\n";
    let gw = Gateway::start_in(dir, yaml).await;
    let url = format!("https://a.test:{}/ping", gw.addr.port());
    let served = |http: reqwest::Client| {
        let url = url.clone();
        async move {
            let r = http.get(&url).send().await.unwrap();
            r.extensions().get::<reqwest::tls::TlsInfo>().unwrap().peer_certificate().unwrap().to_vec()
        }
    };
    assert_eq!(served(ca.https_client(&["a.test"], gw.addr, None)).await, first.der.to_vec());

    let second = ca.leaf(&["a.test"]);
    second.write(gw.dir.path(), "a");
    gw.reload(yaml).await.unwrap();
    // A new connection gets the new certificate.
    assert_eq!(served(ca.https_client(&["a.test"], gw.addr, None)).await, second.der.to_vec());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_accepting_and_drains_in_flight_requests() {
    let (slow, mut entered, release) = held_backend().await;
    let mut gw = Gateway::start(&config(
        &format!("  slow: {{ targets: [\"{}\"] }}", slow.url),
        "  - { name: slow, path: /slow, upstream: slow }",
    ))
    .await;
    let http = client();
    let in_flight = tokio::spawn(http.get(format!("{}/slow", gw.url)).send());
    entered.recv().await.unwrap();

    let addr = gw.addr;
    let gh = gw.gh.take().unwrap();
    let shutdown = tokio::spawn(gh.shutdown());
    eventually("the listener to stop accepting", || async {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;
    assert!(!shutdown.is_finished(), "shutdown waits for the request in flight");

    release.send(true).unwrap();
    let resp = in_flight.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "finally");
    assert!(shutdown.await.unwrap(), "drained before the deadline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_gives_up_at_the_drain_deadline() {
    let (slow, mut entered, _never_released) = held_backend().await;
    let yaml = format!(
        "drain_timeout: 300ms\n{}",
        config(
            &format!("  slow: {{ targets: [\"{}\"] }}", slow.url),
            "  - { name: slow, path: /slow, upstream: slow }"
        )
    );
    let mut gw = Gateway::start(&yaml).await;
    let in_flight = tokio::spawn(client().get(format!("{}/slow", gw.url)).send());
    entered.recv().await.unwrap();
    let started = std::time::Instant::now();
    assert!(!gw.shutdown().await, "the request could not finish");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(in_flight.await.unwrap().is_err(), "the abandoned request's connection is closed");
}
