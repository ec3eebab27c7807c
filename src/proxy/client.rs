//! Connections to upstream targets: TCP (and TLS for `https://` targets),
//! the HTTP/1.1 or HTTP/2 handshake, and a pool of idle connections per
//! target.
//!
//! Body-less requests to plaintext HTTP/1.1 targets go over gatehouse's own
//! exchange ([`h1`](super::h1)); requests with a body, upgrades and TLS
//! targets over hyper's client connections. Each kind has its own idle list.
//!
//! Each target owns its pool (one per worker), so picking a connection needs
//! no lookup. An HTTP/1.1 connection goes back to its pool when the response
//! body has been read to the end (a [`Lease`] travels with hyper's bodies;
//! the own exchange's body carries its connection); most recently used
//! first, so warm connections are reused and cold ones age out. HTTP/2 keeps
//! one shared connection per target.
//!
//! Errors say whether the request may have reached the upstream:
//! [`SendError::NotSent`] (connect failure, handshake failure, a pooled
//! connection closed before the request went out) is always safe to retry;
//! [`SendError::Failed`] is not, unless the method is idempotent.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;

use super::h1::{self, ExchangeError};
use super::upstream::Target;
use super::UpstreamBody;
use crate::body::BoxError;
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
    /// The own exchange failed after the request went out.
    #[error("{0}")]
    Broken(String),
}

pin_project_lite::pin_project! {
    /// An upstream's response body, from whichever client read the head.
    #[project = UpstreamIncomingProj]
    pub(crate) enum UpstreamIncoming {
        Hyper { #[pin] body: Incoming },
        Own { #[pin] body: h1::RawBody },
    }
}

impl Body for UpstreamIncoming {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project() {
            UpstreamIncomingProj::Hyper { body } => body.poll_frame(cx).map_err(|e| Box::new(e) as BoxError),
            UpstreamIncomingProj::Own { body } => body.poll_frame(cx).map_err(|e| Box::new(e) as BoxError),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamIncoming::Hyper { body } => body.is_end_stream(),
            UpstreamIncoming::Own { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamIncoming::Hyper { body } => body.size_hint(),
            UpstreamIncoming::Own { body } => body.size_hint(),
        }
    }
}

fn from_hyper(resp: Response<Incoming>) -> Response<UpstreamIncoming> {
    resp.map(|body| UpstreamIncoming::Hyper { body })
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
    /// Connections of the own HTTP/1.1 exchange.
    own: Mutex<Vec<h1::Conn>>,
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

    fn take_own(&self, max_age: Duration) -> Option<h1::Conn> {
        let mut own = self.own.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(conn) = own.pop() {
            if conn.since.elapsed() < max_age && conn.is_usable() {
                return Some(conn);
            }
        }
        None
    }

    pub(crate) fn put_own(&self, conn: h1::Conn, max_idle: usize) {
        let mut own = self.own.lock().unwrap_or_else(|e| e.into_inner());
        if own.len() < max_idle {
            own.push(conn);
        }
    }

    /// Drops idle connections older than `max_age` or closed by the peer.
    pub(crate) fn evict(&self, max_age: Duration) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|c| !c.sender.is_closed() && c.since.elapsed() < max_age);
        drop(idle);
        let mut own = self.own.lock().unwrap_or_else(|e| e.into_inner());
        own.retain(|c| c.since.elapsed() < max_age && c.is_usable());
    }

    /// Idle HTTP/1.1 connections held now.
    pub(crate) fn idle_count(&self) -> usize {
        self.idle.lock().map(|i| i.len()).unwrap_or(0) + self.own.lock().map(|o| o.len()).unwrap_or(0)
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
    ///
    /// Written as a function returning an `async move` block (as are the
    /// other steps of the request path) rather than as an `async fn`: an
    /// `async fn` keeps each by-value argument twice in its state, once as
    /// passed and once as the local it is moved into, and every request's
    /// future embeds (and moves) this state.
    #[allow(clippy::manual_async_fn, reason = "an `async fn` keeps by-value arguments twice in its state")]
    pub(crate) fn send<'a>(
        &'a self,
        target: &'a Target,
        req: Request<UpstreamBody>,
    ) -> impl Future<Output = Result<(Response<UpstreamIncoming>, Option<Lease>), SendError>> + Send + 'a
    {
        async move {
            let upgrade = req.headers().contains_key(header::UPGRADE);
            if self.exchanges_own(target, req.body().is_end_stream(), upgrade) {
                let resp = self.send_own(target, h1::RequestHead::of(&req, &target.authority)).await?;
                return Ok((resp.map(|body| UpstreamIncoming::Own { body }), None));
            }
            // Boxed: the common case above stays small.
            Box::pin(self.send_hyper(target, req)).await
        }
    }

    /// Sends `req` over hyper's client: HTTP/2, or HTTP/1.1 for requests the
    /// own exchange does not take. Callers box this future; its connect and
    /// handshake states are large.
    pub(crate) async fn send_hyper(
        &self,
        target: &Target,
        req: Request<UpstreamBody>,
    ) -> Result<(Response<UpstreamIncoming>, Option<Lease>), SendError> {
        if self.protocol == UpstreamProtocol::Http2 {
            return self.send_h2(target, req).await.map(|(r, l)| (from_hyper(r), l));
        }
        let (resp, lease) = self.send_hyper_h1(target, req).await?;
        Ok((from_hyper(resp), Some(lease)))
    }

    /// Whether a request goes over the own exchange: a body-less, non-upgrade
    /// HTTP/1.1 request to a plaintext target.
    pub(crate) fn exchanges_own(&self, target: &Target, body_empty: bool, upgrade: bool) -> bool {
        self.protocol == UpstreamProtocol::Http1
            && target.scheme == http::uri::Scheme::HTTP
            && body_empty
            && !upgrade
    }

    /// A body-less request over the own exchange (see
    /// [`exchanges_own`](Self::exchanges_own)). A pooled connection that
    /// fails before the request went out (or, for idempotent methods, closes
    /// without answering) is dropped and the request goes on another one.
    #[allow(clippy::manual_async_fn, reason = "an `async fn` keeps by-value arguments twice in its state")]
    pub(crate) fn send_own<'a>(
        &'a self,
        target: &'a Target,
        head: h1::RequestHead<'a>,
    ) -> impl Future<Output = Result<Response<h1::RawBody>, SendError>> + Send + 'a {
        async move {
            let pool = target.pools.get();
            let retry_closed = super::headers::is_idempotent(head.method);
            loop {
                let (conn, reused) = match pool.take_own(self.pool.idle_timeout) {
                    Some(conn) => (conn, true),
                    None => (Box::pin(self.connect_own(target)).await?, false),
                };
                let home = h1::Home { pool: pool.clone(), max_idle: self.pool.max_idle_per_target };
                match conn.exchange(&head, home).await {
                    Ok(resp) => return Ok(resp),
                    Err(ExchangeError::Unsent(_) | ExchangeError::Closed) if reused && retry_closed => {
                        continue
                    }
                    Err(ExchangeError::Unsent(_)) if reused => continue,
                    Err(ExchangeError::Unsent(e)) => {
                        return Err(SendError::NotSent(format!("writing to {}: {e}", target.label)))
                    }
                    Err(ExchangeError::Closed) => {
                        return Err(SendError::Broken(
                            "upstream closed the connection without answering".into(),
                        ))
                    }
                    Err(ExchangeError::Broken(reason)) => return Err(SendError::Broken(reason)),
                }
            }
        }
    }

    async fn connect_own(&self, target: &Target) -> Result<h1::Conn, SendError> {
        self.within_timeout(target, async { self.tcp(target).await.map(h1::Conn::new) }).await
    }

    async fn send_hyper_h1(
        &self,
        target: &Target,
        mut req: Request<UpstreamBody>,
    ) -> Result<(Response<Incoming>, Lease), SendError> {
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
                    return Ok((resp, lease));
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
