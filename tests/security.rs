//! Hostile input on the request path, over raw sockets: the holes the
//! security review found (issue 14), each checked against an upstream that
//! records exactly the bytes it received.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An upstream over raw TCP that records every request head it receives
/// and answers each with `answer(head)`.
struct RawUpstream {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    connections: Arc<std::sync::atomic::AtomicUsize>,
}

impl RawUpstream {
    async fn start(answer: fn(&str) -> Vec<u8>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (h, c) = (heads.clone(), connections.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else { return };
                c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let h = h.clone();
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    while let Some(head) = read_request_head(&mut s, &mut seen).await {
                        // Bodies are skipped by their declared length.
                        let len = header(&head, "content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
                        while seen.len() < len {
                            let mut buf = [0u8; 4096];
                            match s.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => seen.extend_from_slice(&buf[..n]),
                            }
                        }
                        seen.drain(..len);
                        h.lock().unwrap().push(head.clone());
                        if s.write_all(&answer(&head)).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self { addr, heads, connections }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }

    fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn ok(_: &str) -> Vec<u8> {
    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec()
}

/// The value of header `name` in a raw head (the first, any case).
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn headers<'a>(head: &'a str, name: &str) -> Vec<&'a str> {
    head.lines()
        .skip(1)
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
        .collect()
}

/// A raw response: status, head and body (by `content-length`, else to the
/// end of the connection).
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    /// Asserts a gatehouse error answer: its status and JSON `error` code.
    fn assert_error(&self, status: u16, code: &str, context: &str) {
        assert_eq!(self.status, status, "{context:?}: {}", self.head);
        let body: serde_json::Value = serde_json::from_slice(&self.body).unwrap();
        assert_eq!(body["error"], code, "{context:?}");
    }
}

async fn read_answer(s: &mut TcpStream) -> Answer {
    let mut seen = Vec::new();
    let mut buf = [0u8; 8192];
    let end = loop {
        if let Some(i) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "connection closed before an answer: {:?}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&seen[..end]).into_owned();
    let mut body = seen[end..].to_vec();
    match header(&head, "content-length").and_then(|v| v.parse::<usize>().ok()) {
        Some(len) => {
            while body.len() < len {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0, "connection closed in the body");
                body.extend_from_slice(&buf[..n]);
            }
        }
        None => {
            let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut body)).await;
        }
    }
    let status = head[9..12].parse().unwrap();
    Answer { status, head, body }
}

/// Sends `raw` on a new connection and reads one answer.
async fn exchange(addr: SocketAddr, raw: &str) -> Answer {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw.as_bytes()).await.unwrap();
    read_answer(&mut s).await
}

/// Whether the peer closes `s` (reads reach the end) within 10 s.
async fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

async fn gateway_to(up: &RawUpstream, routes: &str) -> Gateway {
    let upstreams = format!("  svc: {{ targets: [\"http://{}\"], retries: {{ max: 0 }} }}", up.addr);
    Gateway::start(&config(&upstreams, routes)).await
}

const CATCH_ALL: &str = "  - { name: all, path: \"/*\", upstream: svc }";

#[tokio::test]
async fn requests_without_exactly_one_valid_host_get_400() {
    let up = RawUpstream::start(ok).await;
    let gw = gateway_to(&up, CATCH_ALL).await;
    for raw in [
        "GET /x HTTP/1.1\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: a.example\r\nhost: a.example\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: user@a.example\r\n\r\n",
    ] {
        exchange(gw.addr, raw).await.assert_error(400, "invalid_host", raw);
    }
    assert!(up.heads().is_empty(), "forwarded: {:?}", up.heads());
    // One Host, or HTTP/1.0 without any: forwarded.
    assert_eq!(exchange(gw.addr, "GET /x HTTP/1.1\r\nHost: a.example\r\n\r\n").await.status, 200);
    assert_eq!(exchange(gw.addr, "GET /x HTTP/1.0\r\n\r\n").await.status, 200);
    assert_eq!(headers(&up.heads()[0], "host"), vec!["a.example"]);
    assert_eq!(header(&up.heads()[0], "x-forwarded-host"), Some("a.example"));
}

#[tokio::test]
async fn http2_authority_and_host_must_agree() {
    let up = RawUpstream::start(ok).await;
    let gw = gateway_to(&up, CATCH_ALL).await;
    let stream = TcpStream::connect(gw.addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let request = |host: Option<&str>| {
        let mut b = http::Request::get(format!("http://{}/x", gw.addr));
        if let Some(h) = host {
            b = b.header("host", h);
        }
        b.body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap()
    };
    let resp = send.send_request(request(Some("evil.example"))).await.unwrap();
    assert_eq!(resp.status(), 400);
    let resp = send.send_request(request(Some(&gw.addr.to_string()))).await.unwrap();
    assert_eq!(resp.status(), 200);
    let resp = send.send_request(request(None)).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.heads().len(), 2);
}

#[tokio::test]
async fn connection_cannot_strip_host_or_the_headers_gatehouse_sets() {
    let up = RawUpstream::start(ok).await;
    let gw = gateway_to(&up, CATCH_ALL).await;
    let raw = "GET /x HTTP/1.1\r\nHost: api.example\r\nX-Request-Id: client-id-1\r\n\
               Connection: keep-alive, Host, X-Request-Id, X-Forwarded-For, X-Secret\r\nX-Secret: 1\r\n\r\n";
    let a = exchange(gw.addr, raw).await;
    assert_eq!(a.status, 200);
    assert_eq!(header(&a.head, "x-request-id"), Some("client-id-1"));
    let head = &up.heads()[0];
    assert_eq!(headers(head, "host"), vec!["api.example"], "{head}");
    assert_eq!(header(head, "x-request-id"), Some("client-id-1"), "{head}");
    assert_eq!(header(head, "x-forwarded-for"), Some("127.0.0.1"), "{head}");
    assert_eq!(header(head, "x-forwarded-host"), Some("api.example"), "{head}");
    // A hop-by-hop extension the client names still goes.
    assert_eq!(header(head, "x-secret"), None, "{head}");
    assert_eq!(header(head, "connection"), None, "{head}");
}

/// Answers 101 to any request that asks to switch (whatever the protocol),
/// as an upstream that speaks h2c would.
fn switch_if_asked(head: &str) -> Vec<u8> {
    match header(head, "upgrade") {
        Some(p) => format!("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: {p}\r\n\r\n")
            .into_bytes(),
        None => ok(head),
    }
}

#[tokio::test]
async fn h2c_upgrades_are_never_forwarded_and_routes_choose_their_upgrades() {
    let up = RawUpstream::start(switch_if_asked).await;
    let routes = "  - { name: ws, path: \"/ws\", upstream: svc }\n  - { name: none, path: \"/none\", upstream: svc, upgrades: [] }";
    let gw = gateway_to(&up, routes).await;
    // h2c: stripped, so the upstream answers the request itself.
    let h2c = "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n";
    let a = exchange(gw.addr, h2c).await;
    assert_eq!(a.status, 200, "{}", a.head);
    let head = up.heads().pop().unwrap();
    assert_eq!(header(&head, "upgrade"), None, "{head}");
    assert_eq!(header(&head, "http2-settings"), None, "{head}");
    // A websocket upgrade passes where the route allows it (the default)...
    let ws = "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(ws.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&buf[..n]));
    drop(s);
    // ...and not where it lists none.
    let a = exchange(gw.addr, &ws.replace("/ws", "/none")).await;
    assert_eq!(a.status, 200, "{}", a.head);
    assert_eq!(header(&up.heads().pop().unwrap(), "upgrade"), None);
}

fn switch_unasked(_: &str) -> Vec<u8> {
    b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n".to_vec()
}

#[tokio::test]
async fn an_upstream_that_switches_protocols_unasked_gets_502() {
    let up = RawUpstream::start(switch_unasked).await;
    let gw = gateway_to(&up, CATCH_ALL).await;
    // Body-less (gatehouse's own exchange) and with a body (hyper's client).
    let a = exchange(gw.addr, "GET /x HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(a.status, 502, "{}", a.head);
    let a = exchange(gw.addr, "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi").await;
    assert_eq!(a.status, 502, "{}", a.head);
    // A websocket request answered with another protocol: 502 too.
    let ws = "GET /x HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    assert_eq!(exchange(gw.addr, ws).await.status, 502);
}

fn both_framings(_: &str) -> Vec<u8> {
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        .to_vec()
}

#[tokio::test]
async fn a_response_with_both_content_length_and_chunked_is_a_502_and_its_connection_is_dropped() {
    let up = RawUpstream::start(both_framings).await;
    let gw = gateway_to(&up, CATCH_ALL).await;
    for raw in [
        "GET /x HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: a\r\n\r\n",
        "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi",
        "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi",
    ] {
        exchange(gw.addr, raw).await.assert_error(502, "upstream_failed", raw);
    }
    // No connection was reused after such an answer.
    assert_eq!(up.heads().len(), 4);
    assert_eq!(up.connections(), 4);
}

#[tokio::test]
async fn encoded_separators_and_dot_segments_cannot_reach_another_path() {
    let up = RawUpstream::start(ok).await;
    let routes = "  - { name: files, path: \"/files/public/*\", upstream: svc, strip_prefix: /files }";
    let gw = gateway_to(&up, routes).await;
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n");
    for path in [
        "/files/public/..%2fadmin/x",
        "/files/public/..%2Fadmin/x",
        "/files/public/..%5cadmin/x",
        "/files/public/x%",
    ] {
        let a = exchange(gw.addr, &get(path)).await;
        assert_eq!(a.status, 400, "{path}: {}", a.head);
    }
    // Dot segments, encoded or not, are resolved before the match.
    assert_eq!(exchange(gw.addr, &get("/files/public/%2e%2e/admin/x")).await.status, 404);
    assert_eq!(exchange(gw.addr, &get("/files/public/../admin/x")).await.status, 404);
    // Unreserved escapes are decoded; double encoding is never decoded twice.
    for (path, forwarded) in [
        ("/files/public/%61bc?q=%2F", "/public/abc?q=%2F"),
        ("/files/public/..%252fadmin/x", "/public/..%252fadmin/x"),
        ("/files/public/a/./b/../c", "/public/a/c"),
    ] {
        assert_eq!(exchange(gw.addr, &get(path)).await.status, 200, "{path}");
        let head = up.heads().pop().unwrap();
        assert_eq!(head.lines().next().unwrap(), format!("GET {forwarded} HTTP/1.1"), "{path}");
    }
    assert_eq!(up.heads().len(), 3);
}

#[tokio::test]
async fn escaped_slashes_decode_routes_and_forwards_the_decoded_path() {
    let up = RawUpstream::start(ok).await;
    let yaml = format!(
        "listen:\n  gateway: {{ bind: \"127.0.0.1:0\", escaped_slashes: decode }}\n  admin: off\n  aws: off\nlog: {{ access: false }}\nupstreams:\n  svc: {{ targets: [\"http://{}\"] }}\nroutes:\n  - {{ name: files, path: \"/files/public/*\", upstream: svc, strip_prefix: /files }}\n",
        up.addr
    );
    let gw = Gateway::start(&yaml).await;
    let a = exchange(gw.addr, "GET /files/public/..%2fadmin/x HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(a.status, 404, "{}", a.head);
    let a = exchange(gw.addr, "GET /files/public/a%2Fb HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(a.status, 200, "{}", a.head);
    assert_eq!(up.heads()[0].lines().next().unwrap(), "GET /public/a/b HTTP/1.1");
}

/// A gatehouse with a proxy route, a queue route and the AWS listener, all
/// with a short body deadline.
async fn stalled_body_gateway(up: &RawUpstream) -> Gateway {
    let yaml = format!(
        "listen:\n  gateway: {{ bind: \"127.0.0.1:0\", body_timeout: 300ms }}\n  admin: {{ bind: \"127.0.0.1:0\" }}\n  aws: {{ bind: \"127.0.0.1:0\", body_timeout: 300ms }}\nworkers: 2\nlog: {{ access: false }}\nupstreams:\n  svc: {{ targets: [\"http://{}\"], timeout: 60s }}\nqueues:\n  jobs: {{}}\nroutes:\n  - {{ name: proxy, path: \"/proxy\", upstream: svc }}\n  - {{ name: enqueue, path: \"/enqueue\", queue: jobs }}\n",
        up.addr
    );
    Gateway::start(&yaml).await
}

#[tokio::test]
async fn a_stalled_request_body_gets_408_and_its_connection_closed() {
    let up = RawUpstream::start(ok).await;
    let gw = stalled_body_gateway(&up).await;
    let aws = gw.gh().aws_addr.unwrap();
    for (addr, path) in [(gw.addr, "/proxy"), (gw.addr, "/enqueue"), (aws, "/")] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let head = format!("POST {path} HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nonly ten b");
        s.write_all(head.as_bytes()).await.unwrap();
        let started = std::time::Instant::now();
        let a = read_answer(&mut s).await;
        assert_eq!(a.status, 408, "{path}: {}", a.head);
        assert!(started.elapsed() < Duration::from_secs(5), "{path}: 408 after {:?}", started.elapsed());
        assert_eq!(header(&a.head, "connection"), Some("close"), "{path}: {}", a.head);
        assert!(closed(&mut s).await, "{path}: the connection stayed open");
    }
    assert!(up.heads().is_empty() || header(&up.heads()[0], "content-length") == Some("100"));
    let text =
        client().get(format!("{}/metrics", gw.admin_url())).send().await.unwrap().text().await.unwrap();
    let gateway = format!("gatehouse_request_body_timeouts_total{{listener=\"gateway {}\"}}", gw.addr);
    assert_eq!(metric(&text, &gateway), Some(2.0), "{text}");
    let aws_metric = format!("gatehouse_request_body_timeouts_total{{listener=\"aws {aws}\"}}");
    assert_eq!(metric(&text, &aws_metric), Some(1.0), "{text}");
}

#[tokio::test]
async fn a_slow_body_that_keeps_moving_is_not_cut_off() {
    let up = RawUpstream::start(ok).await;
    let gw = stalled_body_gateway(&up).await;
    for path in ["/proxy", "/enqueue"] {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\nContent-Length: 8\r\n\r\n"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        // 8 bytes over about 1.2 s, four times the deadline, never 300ms apart.
        for chunk in [b"ab", b"cd", b"ef", b"gh"] {
            tokio::time::sleep(Duration::from_millis(150)).await;
            s.write_all(chunk).await.unwrap();
        }
        let a = read_answer(&mut s).await;
        assert_eq!(a.status, 200, "{path}: {}", a.head);
    }
}

/// Signs a Query-protocol POST to `/` the way SDKs do (SigV4, with the
/// body's hash in `X-Amz-Content-Sha256`, or `payload_hash` instead); the
/// raw request text with `body` after it.
fn signed_post(host: &str, body: &str, payload_hash: Option<&str>, key: &str, secret: &str) -> String {
    use sha2::{Digest, Sha256};
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let (days, secs) = (now.div_euclid(86_400), now.rem_euclid(86_400));
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let date = format!("{y:04}{m:02}{d:02}");
    let amz_date = format!("{date}T{:02}{:02}{:02}Z", secs / 3600, secs / 60 % 60, secs % 60);
    let hash = payload_hash.map(str::to_owned).unwrap_or_else(|| hex(&Sha256::digest(body.as_bytes())));
    let canonical = format!(
        "POST\n/\n\ncontent-type:application/x-www-form-urlencoded\nhost:{host}\nx-amz-content-sha256:{hash}\nx-amz-date:{amz_date}\n\ncontent-type;host;x-amz-content-sha256;x-amz-date\n{hash}"
    );
    let scope = format!("{date}/us-east-1/sqs/aws4_request");
    let to_sign =
        format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", hex(&Sha256::digest(canonical.as_bytes())));
    let key_bytes = gatehouse::aws::sigv4::signing_key(secret, &date, "us-east-1", "sqs");
    let mut mac = <hmac::Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&key_bytes).unwrap();
    hmac::Mac::update(&mut mac, to_sign.as_bytes());
    let signature = hex(&hmac::Mac::finalize(mac).into_bytes());
    format!(
        "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\nX-Amz-Date: {amz_date}\r\nX-Amz-Content-Sha256: {hash}\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential={key}/{scope}, SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date, Signature={signature}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn a_captured_signed_request_cannot_be_replayed_with_another_body() {
    let gw = Gateway::start(&queue_config("").replace(
        "aws: { bind: \"127.0.0.1:0\" }",
        "aws: { bind: \"127.0.0.1:0\", credentials: [ { access_key: AKIDTEST, secret_key: s3cret } ] }",
    ))
    .await;
    let aws = gw.gh().aws_addr.unwrap();
    let sqs = sqs_at(aws, "AKIDTEST", "s3cret");
    let url = create_queue(&sqs, "signed", &[]).await;
    let host = aws.to_string();
    let body = format!("Action=SendMessage&Version=2012-11-05&QueueUrl={url}&MessageBody=hello");
    let request = signed_post(&host, &body, None, "AKIDTEST", "s3cret");
    let a = exchange(aws, &request).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    // The same head and signature, another body of the same length.
    let forged = request.replace("MessageBody=hello", "MessageBody=evil!");
    let a = exchange(aws, &forged).await;
    assert_eq!(a.status, 400, "{}", String::from_utf8_lossy(&a.body));
    assert!(String::from_utf8_lossy(&a.body).contains("XAmzContentSHA256Mismatch"));
    // UNSIGNED-PAYLOAD, signed as such: refused.
    let unsigned = signed_post(&host, &body, Some("UNSIGNED-PAYLOAD"), "AKIDTEST", "s3cret");
    let a = exchange(aws, &unsigned).await;
    assert_eq!(a.status, 403, "{}", String::from_utf8_lossy(&a.body));
    // Only the genuine message was stored.
    let got = sqs.receive_message().queue_url(&url).max_number_of_messages(10).send().await.unwrap();
    let bodies: Vec<_> = got.messages().iter().filter_map(|m| m.body()).collect();
    assert_eq!(bodies, vec!["hello"]);
}

#[tokio::test]
async fn query_message_bodies_that_are_not_utf8_are_refused() {
    let gw = start_queues("").await;
    let aws = gw.gh().aws_addr.unwrap();
    let url = create_queue(&sqs(&gw), "bytes", &[]).await;
    let body = format!("Action=SendMessage&Version=2012-11-05&QueueUrl={url}&MessageBody=%FF%FE");
    let raw = format!(
        "POST / HTTP/1.1\r\nHost: {aws}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let a = exchange(aws, &raw).await;
    assert_eq!(a.status, 400);
    let text = String::from_utf8_lossy(&a.body);
    assert!(text.contains("<Code>InvalidMessageContents</Code>"), "{text}");
    let attrs = sqs(&gw)
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .unwrap();
    assert_eq!(
        attrs.attributes().unwrap()[&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages],
        "0"
    );
}

/// Upstream answers the differential fuzz target (fuzz/) found gatehouse's
/// own HTTP/1.1 reader taking more leniently than hyper's client.
fn fuzz_found(head: &str) -> Vec<u8> {
    let path = head.split(' ').nth(1).unwrap_or("/");
    let answer: &[u8] = match path {
        "/http10-chunked" => b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
        "/te-trailing-comma" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked,\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
        "/size-then-text" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2 OK\r\nhi\r\n0\r\n\r\n",
        "/trailer-not-a-field" => {
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\nhello\r\n\r\n"
        }
        _ => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
    };
    answer.to_vec()
}

#[tokio::test]
async fn upstream_answers_the_fuzzer_found_are_refused() {
    let up = RawUpstream::start(fuzz_found).await;
    let gw = gateway_to(&up, CATCH_ALL).await;
    let http = client();
    // Faulty framing in the head: 502 before anything is forwarded.
    for path in ["/http10-chunked", "/te-trailing-comma"] {
        let r = http.get(format!("{}{path}", gw.url)).send().await.unwrap();
        assert_eq!(r.status(), 502, "{path}");
    }
    // Faulty chunks, found once the head is on its way: the answer is cut
    // (before or after its head), never completed with made-up framing.
    for path in ["/size-then-text", "/trailer-not-a-field"] {
        let complete = match http.get(format!("{}{path}", gw.url)).send().await {
            Ok(r) => r.bytes().await.is_ok(),
            Err(_) => false,
        };
        assert!(!complete, "{path}: the answer arrived complete");
    }
    assert_eq!(http.get(format!("{}/fine", gw.url)).send().await.unwrap().text().await.unwrap(), "ok");
}

#[tokio::test]
async fn a_route_timeout_that_passes_while_the_client_holds_back_its_body_blames_the_client() {
    let up = RawUpstream::start(ok).await;
    // The body deadline (30s by default) is longer than the route's timeout.
    let upstreams = format!(
        "  buffered: {{ targets: [\"http://{0}\"], timeout: 400ms }}\n  streamed: {{ targets: [\"http://{0}\"], timeout: 400ms, retries: {{ max: 0 }} }}",
        up.addr
    );
    let routes = "  - { name: b, path: /buffered, upstream: buffered }\n  - { name: s, path: /streamed, upstream: streamed }";
    let gw = Gateway::start(&config(&upstreams, routes)).await;
    for path in ["/buffered", "/streamed"] {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        let head = format!("POST {path} HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nonly ten b");
        s.write_all(head.as_bytes()).await.unwrap();
        read_answer(&mut s).await.assert_error(408, "body_timeout", path);
        assert!(closed(&mut s).await, "{path}: the connection stayed open");
    }
}
