//! The gateway's side of topic deliveries: POSTs to HTTP(S) subscribers
//! for the topic engine ([`notify::Deliver`](crate::notify::Deliver)).
//!
//! Each endpoint (a subscriber's URL) is parsed once and keeps, per
//! data-plane worker, at most [`CONNECTIONS_PER_ENDPOINT`] HTTP/1.1
//! connections: a delivery takes an idle one or opens one while under the
//! cap, and otherwise waits for one to come back. A backlog therefore
//! queues inside gatehouse instead of opening (and tearing down) a
//! connection per delivery, and a subscriber sees a bounded number of
//! connections whatever the publish rate. TLS endpoints are verified
//! against the system's roots. A delivery has a deadline (waiting for a
//! connection, connecting, sending, and the answer's head): a subscriber
//! that stalls is a failed attempt, retried per its delivery policy, never
//! a held slot.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{header, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::notify::Deliver;
use crate::worker::PerWorker;

/// How long one delivery may take, from asking for a connection to the
/// answer's head.
const DEADLINE: Duration = Duration::from_secs(15);
/// Connections to one endpoint per data-plane worker. With 2 workers, 50
/// local subscribers took 20,000 deliveries/s (400 publishes/s) at a p99
/// delay under 100 ms (`bench/topics.sh`); more connections only sit idle
/// between bursts, and a subscriber sees at most this many per worker.
const CONNECTIONS_PER_ENDPOINT: usize = 8;
/// Endpoints remembered per worker; past this, those without a delivery
/// in progress are forgotten (their idle connections close).
const MAX_ENDPOINTS: usize = 10_000;

const USER_AGENT: HeaderValue =
    HeaderValue::from_static("Amazon Simple Notification Service Agent (gatehouse)");

/// Delivers over HTTP(S) with pooled connections. Each data-plane worker
/// keeps its own endpoints (a connection is driven by the runtime that
/// opened it, so it is reused on that thread).
pub struct HttpDeliverer {
    tls: tokio_rustls::TlsConnector,
    endpoints: PerWorker<Mutex<HashMap<String, Arc<Endpoint>>>>,
}

/// One subscriber URL, parsed, with its connections on one worker.
struct Endpoint {
    tls: bool,
    host: String,
    port: u16,
    authority: HeaderValue,
    path: String,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
    /// One permit per connection that may be open.
    slots: Semaphore,
}

impl HttpDeliverer {
    /// A deliverer for `workers` data-plane workers.
    pub fn new(workers: usize) -> Result<Self, String> {
        let config =
            crate::tls::client_config(None, &crate::config::KeyPath::root()).map_err(|p| p.message)?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config));
        Ok(HttpDeliverer { tls, endpoints: PerWorker::new(workers) })
    }

    /// This worker's state for `url`, parsed on first use.
    fn endpoint(&self, url: &str) -> Result<Arc<Endpoint>, String> {
        let mut map = self.endpoints.get().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = map.get(url) {
            return Ok(e.clone());
        }
        let endpoint = Arc::new(Endpoint::parse(url)?);
        if map.len() >= MAX_ENDPOINTS {
            map.retain(|_, e| Arc::strong_count(e) > 1);
        }
        map.insert(url.to_owned(), endpoint.clone());
        Ok(endpoint)
    }

    async fn send(
        tls: tokio_rustls::TlsConnector,
        endpoint: Arc<Endpoint>,
        headers: Vec<(&'static str, String)>,
        body: String,
    ) -> Result<u16, String> {
        let _slot = endpoint.slots.acquire().await.map_err(|e| e.to_string())?;
        let mut sender = match endpoint.take_idle() {
            Some(s) => s,
            None => endpoint.connect(&tls).await?,
        };
        let mut req = Request::post(endpoint.path.as_str())
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let map = req.headers_mut();
        map.insert(header::HOST, endpoint.authority.clone());
        map.insert(header::USER_AGENT, USER_AGENT);
        for (name, value) in headers {
            if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(value)) {
                map.insert(HeaderName::from_static(name), v);
            }
        }
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        // Read (and drop) the answer, so the connection can carry the next.
        let complete = resp.into_body().collect().await.is_ok();
        if complete && sender.is_ready() {
            endpoint.idle.lock().unwrap_or_else(|e| e.into_inner()).push(sender);
        }
        Ok(status)
    }
}

impl Endpoint {
    fn parse(url: &str) -> Result<Endpoint, String> {
        let uri: Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(format!("{url}: not an http(s) URL")),
        };
        let host = uri.host().ok_or_else(|| format!("{url}: no host"))?.to_owned();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let authority = uri.authority().map_or(host.as_str(), |a| a.as_str());
        let authority = HeaderValue::from_str(authority).map_err(|e| format!("{url}: {e}"))?;
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        Ok(Endpoint {
            tls,
            host,
            port,
            authority,
            path,
            idle: Mutex::new(Vec::new()),
            slots: Semaphore::new(CONNECTIONS_PER_ENDPOINT),
        })
    }

    /// A pooled connection still open, most recently used first.
    fn take_idle(&self) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(s) = idle.pop() {
            if !s.is_closed() {
                return Some(s);
            }
        }
        None
    }

    async fn connect(&self, tls: &tokio_rustls::TlsConnector) -> Result<SendRequest<Full<Bytes>>, String> {
        let (host, port) = (self.host.as_str(), self.port);
        let tcp = TcpStream::connect((host, port)).await.map_err(|e| format!("{host}:{port}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        if self.tls {
            let name = ServerName::try_from(host.to_owned()).map_err(|e| format!("{host}: {e}"))?;
            let stream = tls.connect(name, tcp).await.map_err(|e| format!("{host}:{port}: {e}"))?;
            handshake(TokioIo::new(stream)).await
        } else {
            handshake(TokioIo::new(tcp)).await
        }
    }
}

async fn handshake<T>(io: TokioIo<T>) -> Result<SendRequest<Full<Bytes>>, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) = http1::handshake(io).await.map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

impl Deliver for HttpDeliverer {
    fn post(
        &self,
        url: &str,
        headers: Vec<(&'static str, String)>,
        body: String,
    ) -> Pin<Box<dyn Future<Output = Result<u16, String>> + Send + 'static>> {
        let endpoint = self.endpoint(url);
        let tls = self.tls.clone();
        Box::pin(async move {
            let send = Self::send(tls, endpoint?, headers, body);
            match tokio::time::timeout(DEADLINE, send).await {
                Ok(r) => r,
                Err(_) => Err(format!("no answer within {}s", DEADLINE.as_secs())),
            }
        })
    }
}
