//! The gateway's side of topic deliveries: POSTs to HTTP(S) subscribers
//! for the topic engine ([`notify::Deliver`](crate::notify::Deliver)).
//!
//! Each endpoint (scheme, host, port) keeps a few idle HTTP/1.1
//! connections for the next delivery; TLS endpoints are verified against
//! the system's roots. A delivery has a deadline (connect, send, and the
//! answer's head): a subscriber that stalls is a failed attempt, retried
//! per its delivery policy, never a held slot.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;

use crate::notify::Deliver;
use crate::worker::PerWorker;

/// How long one delivery may take, from connecting to the answer's head.
const DEADLINE: Duration = Duration::from_secs(15);
/// Idle connections kept per endpoint.
const IDLE_PER_ENDPOINT: usize = 64;

type Key = (bool, String, u16);

/// Delivers over HTTP(S) with pooled connections. Each data-plane worker
/// keeps its own idle connections (a connection is driven by the runtime
/// that opened it, so it is reused on that thread).
pub struct HttpDeliverer {
    pool: Arc<Pool>,
}

type Idle = Mutex<HashMap<Key, Vec<SendRequest<Full<Bytes>>>>>;

struct Pool {
    tls: tokio_rustls::TlsConnector,
    idle: PerWorker<Idle>,
}

impl HttpDeliverer {
    /// A deliverer for `workers` data-plane workers.
    pub fn new(workers: usize) -> Result<Self, String> {
        let config =
            crate::tls::client_config(None, &crate::config::KeyPath::root()).map_err(|p| p.message)?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config));
        Ok(HttpDeliverer { pool: Arc::new(Pool { tls, idle: PerWorker::new(workers) }) })
    }
}

impl Pool {
    async fn send(
        &self,
        url: String,
        headers: Vec<(&'static str, String)>,
        body: String,
    ) -> Result<u16, String> {
        let uri: Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let tls = uri.scheme_str() == Some("https");
        let host = uri.host().ok_or_else(|| format!("{url}: no host"))?.to_owned();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let key: Key = (tls, host.clone(), port);
        let mut sender = match self.take_idle(&key) {
            Some(s) => s,
            None => self.connect(tls, &host, port).await?,
        };
        let authority = uri.authority().map_or(host.clone(), |a| a.as_str().to_owned());
        let mut req = Request::post(uri.path_and_query().map_or("/", |p| p.as_str()))
            .header(header::HOST, authority)
            .header(header::USER_AGENT, "Amazon Simple Notification Service Agent (gatehouse)")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        for (name, value) in headers {
            if let Ok(v) = http::HeaderValue::from_str(&value) {
                req.headers_mut().insert(name, v);
            }
        }
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        // Read (and drop) the answer, so the connection can carry the next.
        let complete = resp.into_body().collect().await.is_ok();
        if complete && sender.is_ready() {
            self.put_idle(key, sender);
        }
        Ok(status)
    }

    fn take_idle(&self, key: &Key) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.idle.get().lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(key)?;
        while let Some(s) = list.pop() {
            if !s.is_closed() {
                return Some(s);
            }
        }
        None
    }

    fn put_idle(&self, key: Key, sender: SendRequest<Full<Bytes>>) {
        let mut idle = self.idle.get().lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.entry(key).or_default();
        if list.len() < IDLE_PER_ENDPOINT {
            list.push(sender);
        }
    }

    async fn connect(&self, tls: bool, host: &str, port: u16) -> Result<SendRequest<Full<Bytes>>, String> {
        let tcp = TcpStream::connect((host, port)).await.map_err(|e| format!("{host}:{port}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        if tls {
            let name = ServerName::try_from(host.to_owned()).map_err(|e| format!("{host}: {e}"))?;
            let stream = self.tls.connect(name, tcp).await.map_err(|e| format!("{host}:{port}: {e}"))?;
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
        let pool = self.pool.clone();
        let url = url.to_owned();
        Box::pin(async move {
            match tokio::time::timeout(DEADLINE, pool.send(url, headers, body)).await {
                Ok(r) => r,
                Err(_) => Err(format!("no answer within {}s", DEADLINE.as_secs())),
            }
        })
    }
}
