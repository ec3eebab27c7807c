//! Fetching a JWKS document (`jwks_url`) with gatehouse's own HTTP client:
//! one HTTP/1.1 GET over a fresh connection, TLS with the system roots (or
//! the provider's `tls.ca`), bounded in time and size.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;

/// A fetch gives up after this long.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Larger documents are refused.
pub const MAX_DOCUMENT: usize = 1 << 20;

/// A fetched document and how long its server says it stays fresh.
pub struct Fetched {
    pub body: Bytes,
    pub max_age: Option<Duration>,
}

/// Fetches `url`.
pub struct Fetcher {
    url: Uri,
    tls: tokio_rustls::TlsConnector,
}

impl Fetcher {
    pub fn new(url: &str, tls: rustls::ClientConfig) -> Result<Fetcher, String> {
        let url: Uri = url.parse().map_err(|e| format!("invalid URL: {e}"))?;
        if url.host().is_none() || !matches!(url.scheme_str(), Some("https" | "http")) {
            return Err("expected an http:// or https:// URL with a host".into());
        }
        Ok(Fetcher { url, tls: tokio_rustls::TlsConnector::from(Arc::new(tls)) })
    }

    pub fn url(&self) -> &Uri {
        &self.url
    }

    pub async fn fetch(&self) -> Result<Fetched, String> {
        tokio::time::timeout(FETCH_TIMEOUT, self.get())
            .await
            .map_err(|_| format!("no answer within {}s", FETCH_TIMEOUT.as_secs()))?
    }

    async fn get(&self) -> Result<Fetched, String> {
        let host = self.url.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
        let https = self.url.scheme_str() == Some("https");
        let port = self.url.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tcp = TcpStream::connect((host, port)).await.map_err(|e| format!("cannot connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let request = Request::get(self.url.path_and_query().map_or("/", |p| p.as_str()))
            .header(header::HOST, self.url.authority().map_or(host, |a| a.as_str()))
            .header(header::ACCEPT, "application/jwk-set+json, application/json")
            .header(header::USER_AGENT, concat!("gatehouse/", env!("CARGO_PKG_VERSION")))
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = if https {
            let name =
                ServerName::try_from(host.to_owned()).map_err(|e| format!("invalid host name: {e}"))?;
            let tls = self.tls.connect(name, tcp).await.map_err(|e| format!("TLS: {e}"))?;
            send(TokioIo::new(tls), request).await?
        } else {
            send(TokioIo::new(tcp), request).await?
        };
        let (parts, body) = response.into_parts();
        if parts.status != StatusCode::OK {
            return Err(format!("the server answered {}", parts.status));
        }
        let body = Limited::new(body, MAX_DOCUMENT)
            .collect()
            .await
            .map_err(|e| format!("reading the document: {e}"))?
            .to_bytes();
        Ok(Fetched { body, max_age: max_age(parts.headers.get(header::CACHE_CONTROL)) })
    }
}

async fn send<IO>(
    io: IO,
    request: Request<Empty<Bytes>>,
) -> Result<http::Response<hyper::body::Incoming>, String>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(io).await.map_err(|e| format!("HTTP handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender.send_request(request).await.map_err(|e| format!("request failed: {e}"))
}

/// `max-age` of a `Cache-Control` value (`no-store`/`no-cache` count as 0).
fn max_age(v: Option<&http::HeaderValue>) -> Option<Duration> {
    let v = v?.to_str().ok()?;
    let mut age = None;
    for directive in v.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(Duration::ZERO);
        }
        if let Some(n) = lower.strip_prefix("max-age=") {
            age = n.trim_matches('"').parse::<u64>().ok().map(Duration::from_secs);
        }
    }
    age
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_max_age() {
        let v = |s: &str| http::HeaderValue::from_str(s).unwrap();
        assert_eq!(max_age(Some(&v("public, max-age=300"))), Some(Duration::from_secs(300)));
        assert_eq!(max_age(Some(&v("no-store"))), Some(Duration::ZERO));
        assert_eq!(max_age(Some(&v("public"))), None);
        assert_eq!(max_age(None), None);
    }
}
