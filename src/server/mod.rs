//! Listeners and connections: accept loop, connection limit, TLS handshake,
//! the hyper connection (HTTP/1.1 and HTTP/2, h2c by prior knowledge), the
//! slow-client timeouts, and graceful shutdown.
//!
//! The server knows nothing about routes: it serves any tower service and
//! inserts a [`ConnInfo`] into each request's extensions.
//!
//! Timeouts are enforced per connection by a watchdog that reads an
//! [`Activity`] record kept up to date by the IO wrapper and the service
//! wrapper:
//! - `header_read_timeout`: from accept (TLS handshake included) or from the
//!   first byte of a later request on an HTTP/1.1 connection, to the moment
//!   the request head is complete. Expiry closes the connection.
//! - `idle_timeout`: no request in flight and no bytes either way. Expiry
//!   closes the connection gracefully (HTTP/2 gets a GOAWAY).

pub mod rescue;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tower::{Service, ServiceExt};

use crate::config::ConnectionLimits;
use crate::tls::ReloadableServerConfig;

/// What the server knows about the connection a request arrived on.
#[derive(Clone, Copy, Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub tls: bool,
}

/// The lifecycle every connection watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Running,
    /// Stop accepting; finish in-flight requests; close idle connections.
    Draining,
    /// Close everything now.
    Stopped,
}

/// Counters a listener keeps about its connections.
#[derive(Debug, Default)]
pub struct ListenerStats {
    pub active: AtomicUsize,
    pub accepted: AtomicU64,
    pub handshake_failures: AtomicU64,
    pub header_timeouts: AtomicU64,
}

/// How to serve one listener.
#[derive(Clone)]
pub struct ListenerSpec {
    pub tls: Option<ReloadableServerConfig>,
    pub limits: ConnectionLimits,
}

/// A running listener.
pub struct ListenerHandle {
    pub local_addr: SocketAddr,
    pub stats: Arc<ListenerStats>,
    slots: Arc<Semaphore>,
    max: u32,
    task: JoinHandle<()>,
}

impl ListenerHandle {
    /// Resolves once every connection of this listener has closed (the
    /// accept loop must have stopped, see [`Phase::Draining`]).
    pub async fn drained(&self) {
        // Every open connection holds one permit until it closes.
        let _all = self.slots.acquire_many(self.max).await;
    }

    pub fn abort(&self) {
        self.task.abort();
    }
}

/// Starts accepting on `listener`. `make_service` is called once per
/// connection.
pub fn spawn_listener<M, S, B>(
    listener: TcpListener,
    spec: ListenerSpec,
    make_service: M,
    phase: watch::Receiver<Phase>,
) -> io::Result<ListenerHandle>
where
    M: Fn(ConnInfo) -> S + Send + Sync + 'static,
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let local_addr = listener.local_addr()?;
    let stats = Arc::new(ListenerStats::default());
    let max = u32::try_from(spec.limits.max_connections).unwrap_or(u32::MAX >> 3);
    let slots = Arc::new(Semaphore::new(max as usize));
    let builder = Arc::new(http_builder(&spec.limits));
    let task = tokio::spawn(accept_loop(
        listener,
        spec,
        Arc::new(make_service),
        phase,
        slots.clone(),
        stats.clone(),
        builder,
    ));
    Ok(ListenerHandle { local_addr, stats, slots, max, task })
}

fn http_builder(limits: &ConnectionLimits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    let max_head = usize::try_from(limits.max_header_size).unwrap_or(usize::MAX).max(8192);
    b.http1()
        .timer(TokioTimer::new())
        // Header and idle timeouts are the watchdog's (see module docs):
        // hyper's own header timer also runs while a keep-alive connection
        // waits for its next request, which would cap the idle time.
        .header_read_timeout(None)
        .max_buf_size(max_head)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(max_head).unwrap_or(u32::MAX))
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    b
}

async fn accept_loop<M, S, B>(
    listener: TcpListener,
    spec: ListenerSpec,
    make_service: Arc<M>,
    mut phase: watch::Receiver<Phase>,
    slots: Arc<Semaphore>,
    stats: Arc<ListenerStats>,
    builder: Arc<auto::Builder<TokioExecutor>>,
) where
    M: Fn(ConnInfo) -> S + Send + Sync + 'static,
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let local = listener.local_addr().ok();
    loop {
        if *phase.borrow() != Phase::Running {
            break;
        }
        // At the connection limit, wait for a slot: new clients queue in the
        // kernel backlog instead of being accepted and starved.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = phase.changed() => continue,
        };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = phase.changed() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        let info = ConnInfo {
            peer,
            local: stream.local_addr().ok().or(local).unwrap_or(peer),
            tls: spec.tls.is_some(),
        };
        let slot = ConnectionSlot::new(permit, stats.clone());
        let service = make_service(info);
        let tls = spec.tls.as_ref().map(ReloadableServerConfig::current);
        let limits = spec.limits.clone();
        let phase = phase.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let activity = Arc::new(Activity::new());
            match tls {
                None => {
                    let io = Tracked::new(stream, activity.clone(), slot);
                    drive(io, activity, false, service, info, &limits, phase, &builder).await;
                }
                Some(config) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(config);
                    let handshake = tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream));
                    match handshake.await {
                        Ok(Ok(tls_stream)) => {
                            let h2 = tls_stream.get_ref().1.alpn_protocol() == Some(b"h2");
                            let io = Tracked::new(tls_stream, activity.clone(), slot);
                            drive(io, activity, h2, service, info, &limits, phase, &builder).await;
                        }
                        Ok(Err(e)) => {
                            slot.stats.handshake_failures.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
                        }
                        Err(_) => {
                            slot.stats.handshake_failures.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(peer = %peer, "TLS handshake timed out");
                        }
                    }
                }
            }
        });
    }
    tracing::debug!(addr = ?local, "listener stopped accepting");
}

/// Serves one connection until it ends, times out, or shutdown closes it.
#[allow(clippy::too_many_arguments)]
async fn drive<I, S, B>(
    io: Tracked<I>,
    activity: Arc<Activity>,
    h2: bool,
    service: S,
    info: ConnInfo,
    limits: &ConnectionLimits,
    mut phase: watch::Receiver<Phase>,
    builder: &auto::Builder<TokioExecutor>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if h2 {
        activity.h2.store(true, Ordering::Relaxed);
    }
    let service = ConnService { inner: service, activity: activity.clone(), info };
    let mut conn = pin!(builder.serve_connection_with_upgrades(TokioIo::new(io), service));
    let mut closing = false;
    let mut watching_phase = true;
    loop {
        let wake = activity.next_check(Instant::now(), limits);
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(peer = %info.peer, error = %e, "connection ended with an error");
                }
                return;
            }
            changed = phase.changed(), if watching_phase => {
                let now = if changed.is_err() { Phase::Stopped } else { *phase.borrow_and_update() };
                match now {
                    Phase::Running => {}
                    Phase::Draining => {
                        if !closing {
                            conn.as_mut().graceful_shutdown();
                            closing = true;
                        }
                    }
                    Phase::Stopped => return,
                }
                if changed.is_err() {
                    watching_phase = false;
                }
            }
            _ = tokio::time::sleep_until(wake) => {
                match activity.verdict(Instant::now(), limits) {
                    Verdict::Fine => {}
                    Verdict::HeaderTimeout => {
                        tracing::debug!(peer = %info.peer, "request head not received in time; closing");
                        return;
                    }
                    Verdict::Idle if closing => return,
                    Verdict::Idle => {
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                    }
                }
            }
        }
    }
}

const NONE: u64 = u64::MAX;

/// What the watchdog knows about a connection. Times are milliseconds since
/// the connection was accepted.
#[derive(Debug)]
struct Activity {
    start: Instant,
    last_io: AtomicU64,
    /// When the head of the request being received began (`NONE` if no
    /// request is being received).
    head_started: AtomicU64,
    in_flight: AtomicUsize,
    h2: AtomicBool,
    sniffed: AtomicBool,
}

enum Verdict {
    Fine,
    HeaderTimeout,
    Idle,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last_io: AtomicU64::new(0),
            // The first request's head is due from the moment of accept.
            head_started: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            h2: AtomicBool::new(false),
            sniffed: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn at(&self, ms: u64) -> Instant {
        self.start + Duration::from_millis(ms)
    }

    fn on_read(&self, first_bytes: &[u8]) {
        let now = self.now_ms();
        self.last_io.store(now, Ordering::Relaxed);
        if !self.sniffed.swap(true, Ordering::Relaxed) && first_bytes.starts_with(b"PRI * HTTP/2") {
            self.h2.store(true, Ordering::Relaxed);
        }
        if self.in_flight.load(Ordering::Relaxed) == 0 && self.head_started.load(Ordering::Relaxed) == NONE {
            self.head_started.store(now, Ordering::Relaxed);
        }
    }

    fn on_write(&self) {
        self.last_io.store(self.now_ms(), Ordering::Relaxed);
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_started.store(NONE, Ordering::Relaxed);
    }

    fn request_finished(&self) {
        self.last_io.store(self.now_ms(), Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// When the watchdog should look again. It looks at least every half
    /// header timeout, so a head that starts while it sleeps is still timed
    /// out within half a timeout of its deadline at worst.
    fn next_check(&self, now: Instant, limits: &ConnectionLimits) -> Instant {
        let cap = now + (limits.header_read_timeout / 2).max(Duration::from_millis(20));
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return cap;
        }
        let mut due = self.at(self.last_io.load(Ordering::Relaxed)) + limits.idle_timeout;
        let head = self.head_started.load(Ordering::Relaxed);
        if head != NONE && !self.h2.load(Ordering::Relaxed) {
            due = due.min(self.at(head) + limits.header_read_timeout);
        }
        due.min(cap)
    }

    fn verdict(&self, now: Instant, limits: &ConnectionLimits) -> Verdict {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Verdict::Fine;
        }
        let head = self.head_started.load(Ordering::Relaxed);
        if head != NONE
            && !self.h2.load(Ordering::Relaxed)
            && now >= self.at(head) + limits.header_read_timeout
        {
            return Verdict::HeaderTimeout;
        }
        if now >= self.at(self.last_io.load(Ordering::Relaxed)) + limits.idle_timeout {
            return Verdict::Idle;
        }
        Verdict::Fine
    }
}

/// One slot of a listener's connection limit, released when the
/// connection's IO is dropped (after an upgrade, that is when the tunnel
/// closes).
struct ConnectionSlot {
    _permit: OwnedSemaphorePermit,
    stats: Arc<ListenerStats>,
}

impl ConnectionSlot {
    fn new(permit: OwnedSemaphorePermit, stats: Arc<ListenerStats>) -> Self {
        stats.active.fetch_add(1, Ordering::Relaxed);
        Self { _permit: permit, stats }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.stats.active.fetch_sub(1, Ordering::Relaxed);
    }
}

pin_project! {
    /// An IO stream that reports its traffic to the watchdog and holds the
    /// connection's slot.
    struct Tracked<I> {
        #[pin]
        io: I,
        activity: Arc<Activity>,
        _slot: ConnectionSlot,
    }
}

impl<I> Tracked<I> {
    fn new(io: I, activity: Arc<Activity>, slot: ConnectionSlot) -> Self {
        Self { io, activity, _slot: slot }
    }
}

impl<I: AsyncRead> AsyncRead for Tracked<I> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        ready!(this.io.poll_read(cx, buf))?;
        let filled = &buf.filled()[before..];
        if !filled.is_empty() {
            this.activity.on_read(filled);
        }
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncWrite> AsyncWrite for Tracked<I> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.project();
        let n = ready!(this.io.poll_write(cx, buf))?;
        if n > 0 {
            this.activity.on_write();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let n = ready!(this.io.poll_write_vectored(cx, bufs))?;
        if n > 0 {
            this.activity.on_write();
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}

/// Adapts a tower service to hyper for one connection: adds [`ConnInfo`] to
/// each request and keeps the in-flight count the watchdog reads.
#[derive(Clone)]
struct ConnService<S> {
    inner: S,
    activity: Arc<Activity>,
    info: ConnInfo,
}

impl<S, B> hyper::service::Service<Request<Incoming>> for ConnService<S>
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible> + Clone,
{
    type Response = Response<ConnBody<B>>;
    type Error = Infallible;
    type Future = ConnFuture<tower::util::Oneshot<S, Request<Incoming>>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        self.activity.request_started();
        req.extensions_mut().insert(self.info);
        ConnFuture {
            inner: self.inner.clone().oneshot(req),
            guard: Some(RequestGuard(self.activity.clone())),
        }
    }
}

/// Marks a request finished when dropped: at the end of its response body,
/// or when the connection gives up on it.
struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

pin_project! {
    struct ConnFuture<F> {
        #[pin]
        inner: F,
        guard: Option<RequestGuard>,
    }
}

impl<F, B> Future for ConnFuture<F>
where
    F: Future<Output = Result<Response<B>, Infallible>>,
{
    type Output = Result<Response<ConnBody<B>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(resp) = ready!(this.inner.poll(cx));
        let guard = this.guard.take();
        Poll::Ready(Ok(resp.map(|body| ConnBody { inner: body, guard })))
    }
}

pin_project! {
    /// A response body that releases its request's in-flight mark when done.
    struct ConnBody<B> {
        #[pin]
        inner: B,
        guard: Option<RequestGuard>,
    }
}

impl<B: Body> Body for ConnBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(None | Some(Err(_))) = &polled {
            this.guard.take();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
