//! Differential: the bytes an upstream sent, read by gatehouse's own
//! HTTP/1.1 exchange and by hyper's client. Where both accept, status and
//! body must be the same; gatehouse must never accept what hyper refuses;
//! gatehouse may refuse what hyper accepts only where it is stricter on
//! purpose (see `stricter_on_purpose`).
#![no_main]

use std::sync::LazyLock;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

static RUNTIME: LazyLock<tokio::runtime::Runtime> =
    LazyLock::new(|| tokio::runtime::Builder::new_current_thread().build().unwrap());

fuzz_target!(|wire: &[u8]| {
    let ours = gatehouse::proxy::read_whole_response(&Method::GET, wire);
    let theirs = RUNTIME.block_on(hyper_reads(wire));
    match (&ours, &theirs) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "gatehouse and hyper read {wire:?} differently"),
        (Err(_), Err(_)) => {}
        (Ok(a), Err(e)) => panic!("gatehouse accepted {wire:?} as {a:?}; hyper refused it: {e}"),
        (Err(e), Ok(b)) => {
            assert!(stricter_on_purpose(wire, e), "gatehouse refused {wire:?} ({e}); hyper read {b:?}")
        }
    }
});

/// Answers gatehouse refuses although hyper's client reads them, on
/// purpose:
/// - both `Content-Length` and `Transfer-Encoding` (RFC 9112 §6.3: "ought
///   to be handled as an error"; hyper lets the chunks win, and the length
///   left behind once truncated answers on their way to the client);
/// - a framing header (`Content-Length`, `Transfer-Encoding`) whose value
///   is not text, or a `Transfer-Encoding` list with an empty element
///   (`chunked,`), or a `Content-Length` that is not one number: hyper
///   reads such a `Transfer-Encoding` as "not chunked" and the body as
///   running to the close, and ignores the length of a 204 or 304;
///   an obfuscated framing header is a smuggling attempt, not an answer to
///   pass on;
/// - `101 Switching Protocols` to a request that asked for no upgrade
///   (hyper hands it over as a response; the proxy answers 502, on either
///   path, rather than tunnel past route matching);
/// - an HTTP/1.0 answer with `Transfer-Encoding`, whatever its status
///   (hyper checks only answers that have a body; RFC 9112 §6.1 calls the
///   framing faulty);
/// - a malformed trailer section: hyper hands the trailer bytes to
///   httparse, which takes a bare LF as a line end and stops at the first
///   empty line, ignoring what follows; gatehouse drops trailers, but only
///   well-formed ones (CRLF-ended field lines).
fn stricter_on_purpose(wire: &[u8], our_error: &str) -> bool {
    // Told by gatehouse's own reason where the heads are hard to find
    // again from outside (heads ended by bare LFs, say).
    // Framing headers refused in an answer hyper reads without looking at
    // them (a 204, a 304, an informational head): the same categories.
    let framing_refused = ["Content-Length", "content-length", "Transfer-Encoding", "transfer-encoding"]
        .iter()
        .any(|h| our_error.contains(h));
    let bodiless = |w: &[u8]| {
        w.windows(13).any(|x| x == b"HTTP/1.1 204 " || x == b"HTTP/1.1 304 ")
            || w.windows(13).any(|x| x == b"HTTP/1.0 204 " || x == b"HTTP/1.0 304 ")
            || w.windows(10).any(|x| x.starts_with(b"HTTP/1.") && x[8] == b' ' && x[9] == b'1')
    };
    if our_error.contains("trailer")
        || our_error.contains("switched protocols unasked")
        || our_error.contains("HTTP/1.0 response with Transfer-Encoding")
        || (framing_refused && bodiless(wire))
    {
        return true;
    }
    // Each head in turn: informational ones, then the final one (empty
    // lines before a head are skipped, by both readers).
    let skip = wire.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(wire.len());
    let mut rest = &wire[skip..];
    loop {
        let head_end = rest.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(rest.len());
        let head = &rest[..head_end];
        let status = head.get(9..12);
        if status == Some(b"101".as_slice()) || framing_is_suspect(head) {
            return true;
        }
        if !status.is_some_and(|s| s[0] == b'1') || head_end == rest.len() {
            return false;
        }
        rest = &rest[head_end + 4..];
        let skip = rest.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(rest.len());
        rest = &rest[skip..];
    }
}

/// Both framing headers, or one whose value is not text.
fn framing_is_suspect(head: &[u8]) -> bool {
    let framing: Vec<(String, &[u8])> = head
        .split(|&b| b == b'\n')
        .skip(1)
        .filter_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            let name = String::from_utf8_lossy(&line[..colon]).trim().to_ascii_lowercase();
            (name == "content-length" || name == "transfer-encoding").then(|| (name, &line[colon + 1..]))
        })
        .collect();
    let has = |name: &str| framing.iter().any(|(n, _)| n == name);
    // Text as `HeaderValue::to_str` has it: visible ASCII, space and tab
    // (hyper reads a `Transfer-Encoding` with other bytes, valid UTF-8
    // included, as not chunked).
    let text = |v: &[u8]| {
        let v = v.strip_suffix(b"\r").unwrap_or(v);
        v.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b)).then(|| String::from_utf8_lossy(v).into_owned())
    };
    let garbled = framing.iter().any(|(name, value)| match text(value) {
        None => true,
        Some(text) if name == "transfer-encoding" => text.split(',').any(|c| c.trim().is_empty()),
        Some(text) => {
            let items: Vec<&str> = text.split(',').map(str::trim).collect();
            !items.iter().all(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()) && *i == items[0])
        }
    });
    (has("content-length") && has("transfer-encoding")) || garbled
}

async fn hyper_reads(wire: &[u8]) -> Result<(StatusCode, Vec<u8>), String> {
    let (client, mut server) = tokio::io::duplex(1 << 20);
    // The upstream: reads the request head, answers with `wire`, closes its
    // side (and stays, so the buffered answer is read to its end).
    let upstream = async move {
        let mut seen = Vec::new();
        let mut buf = [0u8; 1024];
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            match server.read(&mut buf).await {
                Ok(0) | Err(_) => return server,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        let _ = server.write_all(wire).await;
        let _ = server.shutdown().await;
        server
    };
    let client = async move {
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(client)).await.map_err(|e| e.to_string())?;
        let exchange = async move {
            let req = Request::get("/").header("host", "upstream").body(Empty::<Bytes>::new()).unwrap();
            let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status();
            let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
            Ok((status, body.to_vec()))
        };
        let mut exchange = std::pin::pin!(exchange);
        let mut conn = std::pin::pin!(conn);
        tokio::select! {
            biased;
            result = &mut exchange => result,
            _ = &mut conn => exchange.await,
        }
    };
    let (_server, result) = tokio::join!(upstream, client);
    result
}
