//! gatehouse's own HTTP/1.1 exchange (body-less requests to plaintext
//! targets) against a scripted upstream that answers with raw bytes: body
//! framings, informational answers, connection reuse and closing, and
//! malformed answers.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// What the scripted upstream does for one request.
enum Reply {
    /// Writes these bytes and keeps the connection.
    Keep(Vec<u8>),
    /// Writes these bytes and closes the connection.
    Close(Vec<u8>),
}

/// The raw answer for a request line like `GET /path HTTP/1.1`.
fn script(method: &str, path: &str) -> Reply {
    use Reply::*;
    let bytes = |s: &str| s.as_bytes().to_vec();
    match path {
        "/ok" => Keep(bytes("HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-up: 1\r\n\r\nok")),
        "/chunked" => Keep(bytes(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nx-trailer: t\r\n\r\n",
        )),
        "/until-close" => Close(bytes("HTTP/1.1 200 OK\r\n\r\nall of it")),
        "/continue" => Keep(bytes(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 4\r\n\r\ndone",
        )),
        "/empty" if method == "HEAD" => Keep(bytes("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n")),
        "/no-content" => Keep(bytes("HTTP/1.1 204 No Content\r\n\r\n")),
        "/conflict" => Close(bytes("HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok")),
        "/garbage" => Close(bytes("SMTP ready\r\n\r\n")),
        "/truncated" => Close(bytes("HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf")),
        "/closing" => Close(bytes("HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 3\r\n\r\nbye")),
        "/silent" => Close(Vec::new()),
        "/large" => {
            let body = "x".repeat(1 << 20);
            Keep(format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len()).into_bytes())
        }
        _ => Keep(bytes("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")),
    }
}

struct Scripted {
    addr: SocketAddr,
    /// Connections accepted so far.
    accepted: Arc<AtomicUsize>,
    /// Request heads received, in order.
    heads: Arc<std::sync::Mutex<Vec<String>>>,
}

async fn scripted() -> Scripted {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (a, h) = (accepted.clone(), heads.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            a.fetch_add(1, Ordering::SeqCst);
            let heads = h.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while let Some(head) = read_request_head(&mut s, &mut seen).await {
                    let mut line = head.split_whitespace();
                    let (method, path) =
                        (line.next().unwrap_or("").to_owned(), line.next().unwrap_or("").to_owned());
                    heads.lock().unwrap().push(head);
                    match script(&method, &path) {
                        Reply::Keep(bytes) => {
                            if s.write_all(&bytes).await.is_err() {
                                return;
                            }
                        }
                        Reply::Close(bytes) => {
                            let _ = s.write_all(&bytes).await;
                            return;
                        }
                    }
                }
            });
        }
    });
    Scripted { addr, accepted, heads }
}

/// A gateway with one worker, so that one idle list holds every pooled
/// connection whichever client connection a request comes on.
async fn gateway(upstream: SocketAddr) -> Gateway {
    let yaml = config(
        &format!("  raw: {{ targets: [\"http://{upstream}\"], retries: {{ max: 0 }} }}"),
        "  - { name: all, path: /*, upstream: raw }",
    );
    Gateway::start(&format!("workers: 1\n{yaml}")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_framings_are_read_and_connections_reused() {
    let up = scripted().await;
    let gw = gateway(up.addr).await;
    let http = client();

    for _ in 0..5 {
        let r = http.get(format!("{}/ok", gw.url)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-up"], "1");
        assert!(r.headers().contains_key("x-request-id"));
        assert_eq!(r.text().await.unwrap(), "ok");
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1, "one pooled connection carried all five");

    let r = http.get(format!("{}/chunked", gw.url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "Wikipedia");

    let r = http.get(format!("{}/continue", gw.url)).send().await.unwrap();
    assert_eq!(r.status(), 201, "informational answers are skipped");
    assert_eq!(r.text().await.unwrap(), "done");

    let r = http.head(format!("{}/empty", gw.url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "5");
    assert_eq!(r.bytes().await.unwrap().len(), 0);

    let r = http.delete(format!("{}/no-content", gw.url)).send().await.unwrap();
    assert_eq!(r.status(), 204);

    let r = http.get(format!("{}/large", gw.url)).send().await.unwrap();
    assert_eq!(r.bytes().await.unwrap().len(), 1 << 20, "a body larger than one read streams whole");
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1, "still the same connection");

    let r = http.get(format!("{}/until-close", gw.url)).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "all of it", "a body delimited by closing the connection");
    let r = http.get(format!("{}/closing", gw.url)).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "bye");
    let r = http.get(format!("{}/ok", gw.url)).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "ok");
    assert_eq!(up.accepted.load(Ordering::SeqCst), 3, "closed connections are not reused");

    let heads = up.heads.lock().unwrap().clone();
    let first = &heads[0];
    assert!(first.starts_with("GET /ok HTTP/1.1\r\n"), "{first}");
    assert!(first.contains(&format!("host: {}\r\n", gw.addr)), "{first}");
    assert!(first.contains("x-forwarded-for: 127.0.0.1\r\n"), "{first}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_or_missing_answers_are_502_and_truncated_bodies_abort() {
    let up = scripted().await;
    let gw = gateway(up.addr).await;
    let http = client();

    for path in ["/conflict", "/garbage", "/silent"] {
        let r = http.get(format!("{}{path}", gw.url)).send().await.unwrap();
        assert_eq!(r.status(), 502, "{path}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"], "upstream_failed", "{path}: {body}");
        assert!(body["request_id"].is_string(), "{path}: {body}");
    }

    // Whether the head reached the client first depends on flushing; either
    // way the client must see an error, not a short success.
    let outcome = match http.get(format!("{}/truncated", gw.url)).send().await {
        Ok(r) => r.bytes().await.map(|b| b.len()),
        Err(e) => Err(e),
    };
    assert!(outcome.is_err(), "a truncated body came through as {outcome:?}");

    // The gateway is unharmed.
    let r = http.get(format!("{}/ok", gw.url)).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_requests_on_pooled_connections_are_retried_when_idempotent() {
    // Each connection answers its first request (claiming keep-alive), then
    // reads the next one and closes without answering: what an upstream
    // closing an idle connection as a request arrives looks like.
    let addr = one_answer_upstream(true).await;
    let gw = gateway(addr).await;
    let http = client();
    for i in 0..10 {
        let r = http.get(format!("{}/x", gw.url)).send().await.unwrap();
        assert_eq!(r.status(), 200, "GET {i} goes on a fresh connection");
        assert_eq!(r.text().await.unwrap(), "ok");
    }
    // Not idempotent: not repeated, the client hears of the failure.
    let mut failed = 0;
    for _ in 0..4 {
        let r = http.post(format!("{}/x", gw.url)).send().await.unwrap();
        failed += usize::from(r.status() == 502);
    }
    assert!(failed >= 1, "a dropped POST was repeated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_pooled_connections_are_replaced_for_body_less_requests() {
    // Every answer closes its connection right after it is written, though
    // it claims keep-alive: the pooled connection goes stale.
    let addr = one_answer_upstream(false).await;
    let gw = gateway(addr).await;
    let http = client();
    for i in 0..50 {
        let r = http.get(format!("{}/x", gw.url)).send().await.unwrap();
        assert_eq!(r.status(), 200, "request {i}");
        assert_eq!(r.text().await.unwrap(), "ok");
    }
}
