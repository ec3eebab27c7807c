//! Connections to upstream targets: TCP (and TLS for `https://` targets),
//! the HTTP/1.1 or HTTP/2 handshake, and a pool of idle connections per
//! target.
//!
//! Each target owns its pool, so picking a connection needs no lookup. An
//! HTTP/1.1 connection goes back to its pool when the response body has been
//! read to the end (a [`Lease`] travels with the body); most recently used
//! first, so warm connections are reused and cold ones age out. HTTP/2 keeps
//! one shared connection per target.
//!
//! Errors say whether the request may have reached the upstream:
//! [`SendError::NotSent`] (connect failure, handshake failure, a pooled
//! connection closed before the request went out) is always safe to retry;
//! [`SendError::Failed`] is not, unless the method is idempotent.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;

use super::upstream::Target;
use super::UpstreamBody;
use crate::config::{PoolConfig, UpstreamProtocol};

/// Why a request did not get a response.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// The request never left: retrying it elsewhere is always safe.
    #[error("{0}")]
    NotSent(String),
    /// The request may have been (partly) sent.
    #[error(transparent)]
    Failed(hyper::Error),
}

/// Opens connections to the targets of one upstream.
pub(crate) struct Connector {
    protocol: UpstreamProtocol,
    tls: tokio_rustls::TlsConnector,
    connect_timeout: Duration,
    pool: PoolConfig,
}

/// A target's idle connections.
#[derive(Debug, Default)]
pub(crate) struct ConnPool {
    idle: Mutex<Vec<Idle>>,
    shared_h2: Mutex<Option<http2::SendRequest<UpstreamBody>>>,
}

#[derive(Debug)]
struct Idle {
    sender: http1::SendRequest<UpstreamBody>,
    since: Instant,
}

impl ConnPool {
    fn take(&self, max_age: Duration) -> Option<http1::SendRequest<UpstreamBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(conn) = idle.pop() {
            if !conn.sender.is_closed() && conn.since.elapsed() < max_age {
                return Some(conn.sender);
            }
        }
        None
    }

    fn put(&self, sender: http1::SendRequest<UpstreamBody>, max_idle: usize) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < max_idle {
            idle.push(Idle { sender, since: Instant::now() });
        }
    }

    /// Drops idle connections older than `max_age` or closed by the peer.
    pub(crate) fn evict(&self, max_age: Duration) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|c| !c.sender.is_closed() && c.since.elapsed() < max_age);
    }

    /// Idle HTTP/1.1 connections held now.
    pub(crate) fn idle_count(&self) -> usize {
        self.idle.lock().map(|i| i.len()).unwrap_or(0)
    }
}

/// An HTTP/1.1 connection lent to one exchange. [`Lease::release`] returns it
/// to its pool once the response body is done; dropping it closes it.
pub(crate) struct Lease {
    sender: http1::SendRequest<UpstreamBody>,
    pool: Arc<ConnPool>,
    max_idle: usize,
}

impl Lease {
    pub(crate) fn release(self) {
        self.pool.put(self.sender, self.max_idle);
    }
}

impl Connector {
    pub(crate) fn new(
        protocol: UpstreamProtocol,
        mut tls: rustls::ClientConfig,
        connect_timeout: Duration,
        pool: PoolConfig,
    ) -> Self {
        tls.alpn_protocols = match protocol {
            UpstreamProtocol::Http1 => vec![b"http/1.1".to_vec()],
            UpstreamProtocol::Http2 => vec![b"h2".to_vec()],
        };
        Self { protocol, tls: tokio_rustls::TlsConnector::from(Arc::new(tls)), connect_timeout, pool }
    }

    pub(crate) fn idle_timeout(&self) -> Duration {
        self.pool.idle_timeout
    }

    /// Sends `req` to `target` on an idle connection if there is one, a new
    /// one otherwise. HTTP/1.1 answers come with the [`Lease`] of their
    /// connection.
    pub(crate) async fn send(
        &self,
        target: &Target,
        mut req: Request<UpstreamBody>,
    ) -> Result<(Response<Incoming>, Option<Lease>), SendError> {
        if self.protocol == UpstreamProtocol::Http2 {
            // Boxed: kept out of the HTTP/1.1 path's state, which every
            // request's future embeds (and moves) whole.
            return Box::pin(self.send_h2(target, req)).await;
        }
        loop {
            let pool = target.pools.get();
            let (mut sender, reused) = match pool.take(self.pool.idle_timeout) {
                Some(sender) => (sender, true),
                // Boxed: the connect path (TCP, TLS, handshake) is a large
                // state machine, and inlining it would make every request's
                // future that large even when a pooled connection is reused.
                None => (Box::pin(self.connect_h1(target)).await?, false),
            };
            if let Err(e) = sender.ready().await {
                if reused {
                    continue;
                }
                return Err(SendError::NotSent(format!("connection closed before use: {e}")));
            }
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    let lease = Lease { sender, pool: pool.clone(), max_idle: self.pool.max_idle_per_target };
                    return Ok((resp, Some(lease)));
                }
                Err(mut e) => match e.take_message() {
                    // A pooled connection the upstream had closed: the
                    // request never went out, so it goes on another one.
                    Some(unsent) if reused => req = unsent,
                    Some(_) => return Err(SendError::NotSent(e.into_error().to_string())),
                    None => return Err(SendError::Failed(e.into_error())),
                },
            }
        }
    }

    async fn send_h2(
        &self,
        target: &Target,
        req: Request<UpstreamBody>,
    ) -> Result<(Response<Incoming>, Option<Lease>), SendError> {
        let pool = target.pools.get();
        let existing = pool
            .shared_h2
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .filter(|s| !s.is_closed())
            .cloned();
        let mut sender = match existing {
            Some(s) => s,
            None => {
                let s = Box::pin(self.connect_h2(target)).await?;
                *pool.shared_h2.lock().unwrap_or_else(|e| e.into_inner()) = Some(s.clone());
                s
            }
        };
        sender.ready().await.map_err(|e| SendError::NotSent(e.to_string()))?;
        match sender.try_send_request(req).await {
            Ok(resp) => Ok((resp, None)),
            Err(mut e) => match e.take_message() {
                Some(_) => Err(SendError::NotSent(e.into_error().to_string())),
                None => Err(SendError::Failed(e.into_error())),
            },
        }
    }

    async fn connect_h1(&self, target: &Target) -> Result<http1::SendRequest<UpstreamBody>, SendError> {
        let handshake = async {
            let tcp = self.tcp(target).await?;
            if target.scheme == http::uri::Scheme::HTTPS {
                let tls = self.tls(target, tcp).await?;
                spawn_h1(http1::handshake(TokioIo::new(tls)).await)
            } else {
                spawn_h1(http1::handshake(TokioIo::new(tcp)).await)
            }
        };
        self.within_timeout(target, handshake).await
    }

    async fn connect_h2(&self, target: &Target) -> Result<http2::SendRequest<UpstreamBody>, SendError> {
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder.timer(TokioTimer::new()).keep_alive_interval(Duration::from_secs(30));
        let handshake = async {
            let tcp = self.tcp(target).await?;
            if target.scheme == http::uri::Scheme::HTTPS {
                let tls = self.tls(target, tcp).await?;
                spawn_h2(builder.handshake(TokioIo::new(tls)).await)
            } else {
                spawn_h2(builder.handshake(TokioIo::new(tcp)).await)
            }
        };
        self.within_timeout(target, handshake).await
    }

    async fn within_timeout<T>(
        &self,
        target: &Target,
        fut: impl std::future::Future<Output = Result<T, SendError>>,
    ) -> Result<T, SendError> {
        match tokio::time::timeout(self.connect_timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(SendError::NotSent(format!(
                "connecting to {} timed out after {}",
                target.label,
                crate::config::units::format_duration(self.connect_timeout)
            ))),
        }
    }

    async fn tcp(&self, target: &Target) -> Result<TcpStream, SendError> {
        let tcp = TcpStream::connect(target.authority.as_str())
            .await
            .map_err(|e| SendError::NotSent(format!("connect to {}: {e}", target.label)))?;
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    }

    async fn tls(
        &self,
        target: &Target,
        tcp: TcpStream,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, SendError> {
        let host = target.authority.host().trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| SendError::NotSent(format!("bad TLS server name `{host}`: {e}")))?;
        self.tls
            .connect(name, tcp)
            .await
            .map_err(|e| SendError::NotSent(format!("TLS handshake with {}: {e}", target.label)))
    }
}

fn spawn_h1<I>(
    handshake: hyper::Result<(http1::SendRequest<UpstreamBody>, http1::Connection<I, UpstreamBody>)>,
) -> Result<http1::SendRequest<UpstreamBody>, SendError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) = handshake.map_err(|e| SendError::NotSent(format!("HTTP/1.1 handshake: {e}")))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

fn spawn_h2<I>(
    handshake: hyper::Result<(
        http2::SendRequest<UpstreamBody>,
        http2::Connection<I, UpstreamBody, TokioExecutor>,
    )>,
) -> Result<http2::SendRequest<UpstreamBody>, SendError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) = handshake.map_err(|e| SendError::NotSent(format!("HTTP/2 handshake: {e}")))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "upstream HTTP/2 connection ended with an error");
        }
    });
    Ok(sender)
}
