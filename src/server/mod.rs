//! Listeners and connections: accept loop, connection limit, TLS handshake,
//! the hyper connection (HTTP/1.1 and HTTP/2, h2c by prior knowledge), the
//! slow-client timeouts, and graceful shutdown.
//!
//! The server knows nothing about routes: it serves any tower service, made
//! once per connection from that connection's [`ConnInfo`] (so a service
//! that needs the peer's address holds it, instead of every request
//! carrying a copy in its extensions).
//!
//! Timeouts are enforced per connection by a watchdog that reads an
//! [`Activity`] record kept up to date by the IO wrapper and the service
//! wrapper:
//! - `header_read_timeout`: from accept (TLS handshake included) or from the
//!   first byte of a later request on an HTTP/1.1 connection, to the moment
//!   the request head is complete. Expiry closes the connection.
//! - `idle_timeout`: no request in flight and no bytes either way. Expiry
//!   closes the connection gracefully (HTTP/2 gets a GOAWAY).

mod balance;
pub mod rescue;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tower::{Service, ServiceExt};

use crate::body::{BodyDeadline, ClientBody};
use crate::config::{ConnectionBalance, ConnectionLimits};
use crate::tls::ReloadableServerConfig;
use balance::{Balancer, Handoff};

/// What the server knows about the connection a request arrived on.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub tls: bool,
    /// The peer's IP address as a header value (`X-Forwarded-For`), rendered
    /// once per connection rather than once per request.
    pub peer_ip: http::HeaderValue,
}

/// The lifecycle every connection watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    Running = 0,
    /// Stop accepting; finish in-flight requests; close idle connections.
    Draining = 1,
    /// Close everything now.
    Stopped = 2,
}

impl Phase {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Phase::Running,
            1 => Phase::Draining,
            _ => Phase::Stopped,
        }
    }
}

/// Counters a listener keeps about its connections.
#[derive(Debug)]
pub struct ListenerStats {
    /// Open connections by the worker serving them; the last entry counts
    /// those served off the worker threads (the admin listener's).
    pub per_worker: Box<[AtomicUsize]>,
    pub accepted: AtomicU64,
    pub handshake_failures: AtomicU64,
    pub header_timeouts: AtomicU64,
    /// Requests whose body stalled past `body_timeout` (answered 408).
    pub body_timeouts: Arc<AtomicU64>,
}

impl ListenerStats {
    pub fn new(workers: usize) -> Self {
        Self {
            per_worker: (0..=workers).map(|_| AtomicUsize::new(0)).collect(),
            accepted: AtomicU64::new(0),
            handshake_failures: AtomicU64::new(0),
            header_timeouts: AtomicU64::new(0),
            body_timeouts: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Open connections, all workers together.
    pub fn active(&self) -> usize {
        self.per_worker.iter().map(|n| n.load(Ordering::Relaxed)).sum()
    }
}

/// How to serve one listener.
#[derive(Clone)]
pub struct ListenerSpec {
    pub tls: Option<ReloadableServerConfig>,
    pub limits: ConnectionLimits,
    /// How many data-plane workers accept on this listener (0: it is
    /// served off the workers, like the admin listener).
    pub workers: usize,
    /// How connections are spread over them.
    pub balance: ConnectionBalance,
}

/// One listening address, shared by every worker that accepts on it: they
/// share its connection limit, statistics and drain.
pub struct Listener {
    pub local_addr: SocketAddr,
    pub stats: Arc<ListenerStats>,
    spec: ListenerSpec,
    slots: Arc<Semaphore>,
    max: u32,
    builder: Arc<auto::Builder<TokioExecutor>>,
    balancer: Option<Arc<Balancer>>,
    connections: Mutex<Registry>,
}

/// The open connections of a listener, so a phase change reaches each one
/// without every connection polling a shared channel on every wake-up.
#[derive(Default)]
struct Registry {
    next: u64,
    phase: Option<Phase>,
    signals: HashMap<u64, Arc<PhaseSignal>>,
}

/// How one connection learns of a phase change.
#[derive(Default)]
struct PhaseSignal {
    phase: AtomicU8,
    waker: AtomicWaker,
}

impl PhaseSignal {
    fn get(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Acquire))
    }

    fn set(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Release);
        self.waker.wake();
    }

    /// Ready when the phase differs from `seen`.
    fn poll_changed(&self, seen: Phase, cx: &mut Context<'_>) -> Poll<Phase> {
        self.waker.register(cx.waker());
        match self.get() {
            now if now != seen => Poll::Ready(now),
            _ => Poll::Pending,
        }
    }
}

/// Unregisters a connection's signal when the connection ends.
struct Registered<'a> {
    listener: &'a Listener,
    id: u64,
    signal: Arc<PhaseSignal>,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.listener.connections.lock().unwrap_or_else(|e| e.into_inner()).signals.remove(&self.id);
    }
}

impl Listener {
    pub fn new(local_addr: SocketAddr, spec: ListenerSpec) -> Arc<Self> {
        let max = u32::try_from(spec.limits.max_connections).unwrap_or(u32::MAX >> 3);
        Arc::new(Self {
            local_addr,
            stats: Arc::new(ListenerStats::new(spec.workers)),
            slots: Arc::new(Semaphore::new(max as usize)),
            max,
            builder: Arc::new(http_builder(&spec.limits)),
            balancer: match spec.balance {
                ConnectionBalance::Exact => Balancer::new(spec.workers),
                ConnectionBalance::Kernel => None,
            },
            spec,
            connections: Mutex::new(Registry::default()),
        })
    }

    /// Tells every open connection (and every later one) that the gateway
    /// is draining or stopping. The accept loops learn it from the `phase`
    /// channel given to [`Listener::serve`].
    pub fn set_phase(&self, phase: Phase) {
        let mut reg = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        reg.phase = Some(phase);
        for signal in reg.signals.values() {
            signal.set(phase);
        }
    }

    fn register(&self) -> Registered<'_> {
        let mut reg = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        let id = reg.next;
        reg.next += 1;
        let signal = Arc::new(PhaseSignal::default());
        signal.phase.store(reg.phase.unwrap_or(Phase::Running) as u8, Ordering::Release);
        reg.signals.insert(id, signal.clone());
        Registered { listener: self, id, signal }
    }

    /// Accepts connections on `socket` (one of this listener's sockets)
    /// and serves them on the current runtime until the phase leaves
    /// [`Phase::Running`]. `make_service` is called once per connection.
    pub fn serve<M, S, B>(
        self: &Arc<Self>,
        socket: std::net::TcpListener,
        make_service: M,
        phase: watch::Receiver<Phase>,
    ) -> io::Result<JoinHandle<()>>
    where
        M: Fn(ConnInfo) -> S + Send + Sync + 'static,
        S: Service<Request<ClientBody>, Response = Response<B>, Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        socket.set_nonblocking(true)?;
        let socket = TcpListener::from_std(socket)?;
        Ok(tokio::spawn(accept_loop(socket, self.clone(), Arc::new(make_service), phase)))
    }

    /// Resolves once every connection of this listener has closed (the
    /// accept loops must have stopped, see [`Phase::Draining`]).
    pub async fn drained(&self) {
        // Every open connection holds one permit until it closes.
        let _all = self.slots.acquire_many(self.max).await;
    }
}

/// Binds `count` sockets to `addr` with `SO_REUSEPORT`, one per worker, so
/// the kernel spreads new connections across the workers. With port 0, the
/// first socket picks a free port and the others share it.
///
/// `SO_REUSEPORT` would also let another process of the same user join the
/// port and take a share of its connections (a second gatehouse started on
/// the same config, say). So a fixed port is first bound once without it:
/// that fails while any other socket listens there, and the address is
/// reported in use, as for any other program holding it.
pub fn bind(addr: SocketAddr, count: usize) -> io::Result<Vec<std::net::TcpListener>> {
    use socket2::{Domain, Protocol, Socket, Type};
    if addr.port() != 0 {
        let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        // Connections of an earlier run in TIME_WAIT do not count.
        probe.set_reuse_address(true)?;
        if let Err(e) = probe.bind(&addr.into()) {
            return Err(match e.kind() {
                io::ErrorKind::AddrInUse => io::Error::new(
                    e.kind(),
                    "the address is already in use by another process (another gatehouse on the same config?)",
                ),
                _ => e,
            });
        }
    }
    let mut sockets = Vec::with_capacity(count);
    let mut at = addr;
    for _ in 0..count.max(1) {
        let socket = Socket::new(Domain::for_address(at), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&at.into())?;
        socket.listen(1024)?;
        let listener: std::net::TcpListener = socket.into();
        at = listener.local_addr()?;
        sockets.push(listener);
    }
    Ok(sockets)
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
        // Head and body go out from one buffer, in one `send`: for the small
        // answers of most API traffic that costs less than a `writev` of
        // hyper's queued slices (about 450 instructions fewer per proxied
        // request). A large body pays one extra copy per chunk, little
        // beside the system call that sends it.
        .writev(false)
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
    socket: TcpListener,
    shared: Arc<Listener>,
    make_service: Arc<M>,
    mut phase: watch::Receiver<Phase>,
) where
    M: Fn(ConnInfo) -> S + Send + Sync + 'static,
    S: Service<Request<ClientBody>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = socket;
    let (spec, slots, stats, builder) = (&shared.spec, &shared.slots, &shared.stats, &shared.builder);
    let local = listener.local_addr().ok();
    // This worker's index (the last for a listener served off the worker
    // threads) and, with balancing, its inbox of connections other workers
    // hand over.
    let workers = stats.per_worker.len() - 1;
    let me = crate::worker::current().filter(|w| *w < workers).unwrap_or(workers);
    let balancer = shared.balancer.as_ref().filter(|_| me < workers);
    let mut inbox = balancer.and_then(|b| b.take_inbox(me));
    // Serves an accepted connection on this worker.
    let serve = |stream: tokio::net::TcpStream, peer: SocketAddr, slot: ConnectionSlot| {
        let _ = stream.set_nodelay(true);
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        let info = ConnInfo {
            peer,
            tls: spec.tls.is_some(),
            peer_ip: http::HeaderValue::from_str(&peer.ip().to_canonical().to_string())
                .unwrap_or(http::HeaderValue::from_static("unknown")),
        };
        let service = make_service(info);
        let tls = spec.tls.as_ref().map(ReloadableServerConfig::current);
        let limits = spec.limits.clone();
        let builder = builder.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            let registered = shared.register();
            let activity = Arc::new(Activity::new());
            match tls {
                None => {
                    let io = Tracked::new(stream, activity.clone(), slot);
                    drive(io, activity, false, service, peer, &limits, &registered.signal, &builder).await;
                }
                Some(config) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(config);
                    let handshake = tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream));
                    match handshake.await {
                        Ok(Ok(tls_stream)) => {
                            let h2 = tls_stream.get_ref().1.alpn_protocol() == Some(b"h2");
                            let io = Tracked::new(tls_stream, activity.clone(), slot);
                            drive(io, activity, h2, service, peer, &limits, &registered.signal, &builder)
                                .await;
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
    };
    // Serves a connection another worker handed over (it holds its slot).
    let take_over = |handoff: Handoff| match tokio::net::TcpStream::from_std(handoff.stream) {
        Ok(stream) => serve(stream, handoff.peer, handoff.slot),
        Err(e) => {
            tracing::warn!(peer = %handoff.peer, error = %e, "could not take over a connection; closed it")
        }
    };
    loop {
        if *phase.borrow() != Phase::Running {
            break;
        }
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(handoff) = next_handoff(&mut inbox) => {
                take_over(handoff);
                continue;
            }
            _ = phase.changed() => continue,
        };
        // At the connection limit, the accepted connection waits for a slot
        // before it is served, and this worker accepts nothing more until
        // then. (Taking the slot before `accept` would deadlock: the limit is
        // shared by all workers, and the waiting client may sit in another
        // worker's backlog.) Connections handed over meanwhile already hold
        // slots, so they are served while this one waits: otherwise they
        // could hold the very slots it waits for.
        let permit = loop {
            tokio::select! {
                p = slots.clone().acquire_owned() => break p.ok(),
                Some(handoff) = next_handoff(&mut inbox) => take_over(handoff),
                _ = phase.wait_for(|p| *p != Phase::Running) => break None,
            }
        };
        let Some(permit) = permit else { break };
        let slot = match balancer {
            None => ConnectionSlot::new(permit, stats.clone(), me),
            Some(balancer) => {
                let slot = balancer.assign(stats, permit, me);
                if slot.worker == me {
                    slot
                } else {
                    match hand_over(balancer, stream, peer, slot) {
                        Ok(()) => continue,
                        // The other worker is stopping: served here.
                        Err(Some((stream, mut slot))) => {
                            slot.move_to(me);
                            serve(stream, peer, slot);
                            continue;
                        }
                        Err(None) => continue,
                    }
                }
            }
        };
        serve(stream, peer, slot);
    }
    tracing::debug!(addr = ?local, "listener stopped accepting");
}

/// The next connection another worker hands over; never, without an inbox.
async fn next_handoff(inbox: &mut Option<mpsc::UnboundedReceiver<Handoff>>) -> Option<Handoff> {
    match inbox {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Moves an accepted connection to the worker its slot counts it against.
/// Gives it back if that worker is stopping; `Err(None)` if the socket was
/// lost on the way (logged).
fn hand_over(
    balancer: &Balancer,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    slot: ConnectionSlot,
) -> Result<(), Option<(tokio::net::TcpStream, ConnectionSlot)>> {
    let lost = |e: io::Error| {
        tracing::warn!(%peer, error = %e, "could not move a connection between workers; closed it");
        None
    };
    let stream = stream.into_std().map_err(lost)?;
    match balancer.send(Handoff { stream, peer, slot }) {
        Ok(()) => Ok(()),
        Err(back) => {
            let stream = tokio::net::TcpStream::from_std(back.stream).map_err(lost)?;
            Err(Some((stream, back.slot)))
        }
    }
}

/// Serves one connection until it ends, times out, or shutdown closes it.
#[allow(clippy::too_many_arguments)]
async fn drive<I, S, B>(
    io: Tracked<I>,
    activity: Arc<Activity>,
    h2: bool,
    service: S,
    peer: SocketAddr,
    limits: &ConnectionLimits,
    signal: &PhaseSignal,
    builder: &auto::Builder<TokioExecutor>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<ClientBody>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if h2 {
        activity.h2.store(true, Ordering::Relaxed);
    }
    let stats = io._slot.stats.clone();
    let deadline =
        limits.body_timeout.map(|after| BodyDeadline { after, expired: stats.body_timeouts.clone() });
    let service = ConnService { inner: service, activity: activity.clone(), deadline };
    let mut conn = pin!(builder.serve_connection_with_upgrades(TokioIo::new(io), service));
    let mut closing = false;
    let mut phase = Phase::Running;
    let mut watchdog = Watchdog::default();
    loop {
        if phase != signal.get() {
            phase = signal.get();
            match phase {
                Phase::Running => {}
                Phase::Draining => {
                    if !closing {
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                    }
                }
                Phase::Stopped => return,
            }
        }
        let wake = watchdog.next_check(&activity, Instant::now(), limits);
        let mut timer = pin!(tokio::time::sleep_until(wake));
        let mut armed = false;
        let event = std::future::poll_fn(|cx| {
            if let Poll::Ready(res) = conn.as_mut().poll(cx) {
                return Poll::Ready(Event::Ended(res));
            }
            if signal.poll_changed(phase, cx).is_ready() {
                return Poll::Ready(Event::Phase);
            }
            // The timer is polled once to arm it; then its firing wakes this
            // task and shows as elapsed. Polling it on every wake-up of a
            // busy connection cost more than the rest of the watchdog.
            if (!armed || timer.is_elapsed()) && timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Event::Timer);
            }
            armed = true;
            Poll::Pending
        })
        .await;
        match event {
            Event::Ended(res) => {
                if let Err(e) = res {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            Event::Phase => {}
            Event::Timer => match watchdog.verdict(&activity, Instant::now(), limits) {
                Verdict::Fine => {}
                Verdict::HeaderTimeout => {
                    stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%peer, "request head not received in time; closing");
                    return;
                }
                Verdict::Idle if closing => return,
                Verdict::Idle => {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            },
        }
    }
}

/// What woke a connection's driver.
enum Event<E> {
    Ended(Result<(), E>),
    Phase,
    Timer,
}

const NONE: u64 = u64::MAX;

/// What the watchdog knows about a connection, kept up to date by the IO
/// wrapper and the service wrapper. Times are milliseconds since accept; the
/// clock is read once per request, not on every read or write.
#[derive(Debug)]
struct Activity {
    start: Instant,
    /// Reads and writes so far; the watchdog notices traffic by its change.
    io_events: AtomicU64,
    /// When the last request finished.
    last_done: AtomicU64,
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
            io_events: AtomicU64::new(0),
            last_done: AtomicU64::new(0),
            // The first request's head is due from the moment of accept.
            head_started: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            h2: AtomicBool::new(false),
            sniffed: AtomicBool::new(false),
        }
    }

    fn ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.start).as_millis() as u64
    }

    fn at(&self, ms: u64) -> Instant {
        self.start + Duration::from_millis(ms)
    }

    fn on_read(&self, first_bytes: &[u8]) {
        self.io_events.fetch_add(1, Ordering::Relaxed);
        if !self.sniffed.load(Ordering::Relaxed) {
            self.sniffed.store(true, Ordering::Relaxed);
            if first_bytes.starts_with(b"PRI * HTTP/2") {
                self.h2.store(true, Ordering::Relaxed);
            }
        }
        if self.in_flight.load(Ordering::Relaxed) == 0 && self.head_started.load(Ordering::Relaxed) == NONE {
            self.head_started.store(self.ms(Instant::now()), Ordering::Relaxed);
        }
    }

    fn on_write(&self) {
        self.io_events.fetch_add(1, Ordering::Relaxed);
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_started.store(NONE, Ordering::Relaxed);
    }

    fn request_finished(&self) {
        self.last_done.store(self.ms(Instant::now()), Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The watchdog's own view: when it last saw traffic.
#[derive(Default)]
struct Watchdog {
    seen_events: u64,
    last_traffic_ms: u64,
}

impl Watchdog {
    /// Notes traffic since the last look; returns when the connection was
    /// last active (no earlier than the real time, so never closes early).
    fn last_active(&mut self, a: &Activity, now: Instant) -> Instant {
        let events = a.io_events.load(Ordering::Relaxed);
        if events != self.seen_events {
            self.seen_events = events;
            self.last_traffic_ms = a.ms(now);
        }
        a.at(self.last_traffic_ms.max(a.last_done.load(Ordering::Relaxed)))
    }

    /// When to look again: at the next deadline, and at least every half
    /// header timeout, so a head that starts while the watchdog sleeps is
    /// timed out within half a timeout of its deadline at worst.
    fn next_check(&mut self, a: &Activity, now: Instant, limits: &ConnectionLimits) -> Instant {
        let cap = now + (limits.header_read_timeout / 2).max(Duration::from_millis(20));
        if a.in_flight.load(Ordering::Relaxed) > 0 {
            return cap;
        }
        let mut due = self.last_active(a, now) + limits.idle_timeout;
        let head = a.head_started.load(Ordering::Relaxed);
        if head != NONE && !a.h2.load(Ordering::Relaxed) {
            due = due.min(a.at(head) + limits.header_read_timeout);
        }
        due.min(cap)
    }

    fn verdict(&mut self, a: &Activity, now: Instant, limits: &ConnectionLimits) -> Verdict {
        let last_active = self.last_active(a, now);
        if a.in_flight.load(Ordering::Relaxed) > 0 {
            return Verdict::Fine;
        }
        let head = a.head_started.load(Ordering::Relaxed);
        if head != NONE && !a.h2.load(Ordering::Relaxed) && now >= a.at(head) + limits.header_read_timeout {
            return Verdict::HeaderTimeout;
        }
        if now >= last_active + limits.idle_timeout {
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
    /// The worker serving the connection (an index into `per_worker`).
    worker: usize,
}

impl ConnectionSlot {
    fn new(permit: OwnedSemaphorePermit, stats: Arc<ListenerStats>, worker: usize) -> Self {
        stats.per_worker[worker].fetch_add(1, Ordering::Relaxed);
        Self { _permit: permit, stats, worker }
    }

    /// Counts the connection against another worker.
    fn move_to(&mut self, worker: usize) {
        self.stats.per_worker[self.worker].fetch_sub(1, Ordering::Relaxed);
        self.stats.per_worker[worker].fetch_add(1, Ordering::Relaxed);
        self.worker = worker;
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.stats.per_worker[self.worker].fetch_sub(1, Ordering::Relaxed);
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

/// Adapts a tower service to hyper for one connection and keeps the
/// in-flight count the watchdog reads.
#[derive(Clone)]
struct ConnService<S> {
    inner: S,
    activity: Arc<Activity>,
    /// The listener's request body deadline.
    deadline: Option<BodyDeadline>,
}

impl<S, B> hyper::service::Service<Request<Incoming>> for ConnService<S>
where
    S: Service<Request<ClientBody>, Response = Response<B>, Error = Infallible> + Clone,
{
    type Response = Response<ConnBody<B>>;
    type Error = Infallible;
    type Future = ConnFuture<tower::util::Oneshot<S, Request<ClientBody>>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        self.activity.request_started();
        let req = req.map(|body| ClientBody::new(body, self.deadline.clone()));
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
