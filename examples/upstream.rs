//! A small upstream for trying gatehouse out.
//!
//! ```text
//! cargo run --example upstream -- --port 9000 --name one
//! ```
//!
//! - `GET /healthz`: 200 `ok`
//! - `GET /status/{code}`: answers with that status
//! - `GET /slow/{ms}`: answers after `ms` milliseconds
//! - anything else: a JSON description of the request it received (method,
//!   path, headers, body size) and which instance answered
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};

#[derive(Parser)]
struct Args {
    /// Port to listen on (127.0.0.1).
    #[arg(long, default_value_t = 9000)]
    port: u16,
    /// Name reported in answers, to tell instances apart.
    #[arg(long, default_value = "upstream")]
    name: String,
}

async fn answer(name: &'static str, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let reply = |status: StatusCode, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r
    };
    if path == "/healthz" {
        return reply(StatusCode::OK, "ok\n".into());
    }
    if let Some(code) = path.strip_prefix("/status/").and_then(|c| c.parse::<u16>().ok()) {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
        return reply(status, format!("{name}: status {code}\n"));
    }
    if let Some(ms) = path.strip_prefix("/slow/").and_then(|m| m.parse::<u64>().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        return reply(StatusCode::OK, format!("{name}: answered after {ms}ms\n"));
    }
    let (parts, body) = req.into_parts();
    let size = body.collect().await.map(|b| b.to_bytes().len()).unwrap_or(0);
    let headers: serde_json::Map<String, serde_json::Value> =
        parts.headers.iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("(binary)").into())).collect();
    let json = serde_json::json!({
        "instance": name,
        "method": parts.method.as_str(),
        "uri": parts.uri.to_string(),
        "headers": headers,
        "body_bytes": size,
    });
    let mut r = reply(StatusCode::OK, format!("{json:#}\n"));
    r.headers_mut().insert("content-type", "application/json".parse().expect("static header"));
    r
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let name: &'static str = Box::leak(args.name.into_boxed_str());
    let addr = SocketAddr::from(([127, 0, 0, 1], args.port));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("upstream `{name}` listening on http://{addr}");
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(
                    move |req| async move { Ok::<_, Infallible>(answer(name, req).await) },
                );
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
