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
use tokio::io::AsyncWriteExt;

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
            assert!(stricter_on_purpose(wire), "gatehouse refused {wire:?} ({e}); hyper read {b:?}")
        }
    }
});

/// Answers gatehouse refuses although hyper's client reads them, on
/// purpose: both `Content-Length` and `Transfer-Encoding` (RFC 9112 §6.3:
/// "ought to be handled as an error"; hyper lets the chunks win, and the
/// length left behind once truncated answers on their way to the client).
fn stricter_on_purpose(wire: &[u8]) -> bool {
    let head_end = wire.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(wire.len());
    let head = String::from_utf8_lossy(&wire[..head_end]).to_ascii_lowercase();
    let has = |name: &str| head.lines().skip(1).any(|l| l.split(':').next().is_some_and(|n| n == name));
    has("content-length") && has("transfer-encoding")
}

async fn hyper_reads(wire: &[u8]) -> Result<(StatusCode, Vec<u8>), String> {
    let (client, mut server) = tokio::io::duplex(1 << 20);
    server.write_all(wire).await.map_err(|e| e.to_string())?;
    // The upstream closes its side after answering; it still takes the request.
    server.shutdown().await.map_err(|e| e.to_string())?;
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
}
