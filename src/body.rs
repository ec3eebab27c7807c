//! The response body every layer of the request path carries: a fixed
//! buffer (error answers, fixed responses, admin pages) or an upstream's
//! streamed body. A plain enum rather than a boxed trait object, which saves
//! an allocation per request on the proxy's hot path.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::proxy::ResponseBody;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pin_project! {
    #[project = GatewayBodyProj]
    pub enum GatewayBody {
        Full { data: Option<Bytes> },
        Upstream { #[pin] body: ResponseBody },
    }
}

impl GatewayBody {
    pub fn empty() -> Self {
        GatewayBody::Full { data: None }
    }

    pub fn full(data: impl Into<Bytes>) -> Self {
        let data: Bytes = data.into();
        GatewayBody::Full { data: (!data.is_empty()).then_some(data) }
    }
}

impl From<Bytes> for GatewayBody {
    fn from(data: Bytes) -> Self {
        GatewayBody::full(data)
    }
}

impl From<ResponseBody> for GatewayBody {
    fn from(body: ResponseBody) -> Self {
        GatewayBody::Upstream { body }
    }
}

impl Default for GatewayBody {
    fn default() -> Self {
        Self::empty()
    }
}

impl Body for GatewayBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project() {
            GatewayBodyProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            GatewayBodyProj::Upstream { body } => body.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            GatewayBody::Full { data } => data.is_none(),
            GatewayBody::Upstream { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            GatewayBody::Full { data } => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            GatewayBody::Upstream { body } => body.size_hint(),
        }
    }
}

pin_project! {
    /// A client's request body, as every service of the request path
    /// receives it: hyper's body with the listener's read deadline
    /// (`body_timeout`). The deadline is the longest wait for the client's
    /// next bytes: the clock runs only while a reader waits on the client
    /// (a poll that finds nothing), and restarts with every frame, so a slow
    /// upload that keeps moving is fine and a reader that is itself slow
    /// (an upstream applying backpressure) is never blamed on the client.
    /// When it passes, the body fails with [`BodyTimeout`], which answers
    /// `408` and closes the connection.
    pub struct ClientBody {
        #[pin]
        inner: hyper::body::Incoming,
        deadline: Option<BodyDeadline>,
        // Armed on the first wait; boxed because most bodies never wait.
        timer: Option<Pin<Box<tokio::time::Sleep>>>,
        // Whether the timer's deadline is for the current wait.
        armed: bool,
        timed_out: bool,
        // Shared with whoever asked to watch (see `ClientBody::watch`).
        progress: Option<std::sync::Arc<BodyProgress>>,
        // What a layer read ahead (the WAF), handed on first (boxed: most
        // bodies are never read ahead).
        replay: Option<Box<Replay>>,
    }
}

/// Frames read off a body before its target reads it, to be read again.
#[derive(Debug, Default)]
struct Replay {
    data: Option<Bytes>,
    trailers: Option<http::HeaderMap>,
}

/// Whether a request body is waiting on its client, for a deadline that is
/// not the body's own (a route's timeout) to tell who made it pass.
#[derive(Debug, Default)]
pub struct BodyProgress {
    waiting: std::sync::atomic::AtomicBool,
    ended: std::sync::atomic::AtomicBool,
}

impl BodyProgress {
    /// The body is not complete and its last read found nothing: the client
    /// is the one being waited for.
    pub fn waiting_on_client(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        self.waiting.load(Relaxed) && !self.ended.load(Relaxed)
    }
}

/// The read deadline of a listener's request bodies and the counter of
/// bodies that missed it.
#[derive(Clone, Debug)]
pub struct BodyDeadline {
    pub after: std::time::Duration,
    pub expired: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// A request body that stalled longer than its listener's `body_timeout`.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the client sent no request body data for {}", crate::config::units::format_duration(*.0))]
pub struct BodyTimeout(pub std::time::Duration);

impl crate::error::HttpError for BodyTimeout {
    fn status(&self) -> http::StatusCode {
        http::StatusCode::REQUEST_TIMEOUT
    }

    fn code(&self) -> &'static str {
        "body_timeout"
    }

    fn closes_connection(&self) -> bool {
        true
    }
}

impl ClientBody {
    pub fn new(inner: hyper::body::Incoming, deadline: Option<BodyDeadline>) -> Self {
        Self { inner, deadline, timer: None, armed: false, timed_out: false, progress: None, replay: None }
    }

    /// Puts back what was read off the body: its next frames are `data`,
    /// then (if the body had ended) `trailers`, then whatever the client
    /// still sends.
    pub fn put_back(&mut self, data: Bytes, trailers: Option<http::HeaderMap>) {
        let data = (!data.is_empty()).then_some(data);
        if data.is_some() || trailers.is_some() {
            self.replay = Some(Box::new(Replay { data, trailers }));
        }
    }

    /// A handle that tells, while the body is read elsewhere, whether it is
    /// waiting on the client.
    pub fn watch(&mut self) -> std::sync::Arc<BodyProgress> {
        self.progress.get_or_insert_with(Default::default).clone()
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if let Some(replay) = this.replay.as_mut() {
            let frame = match replay.data.take() {
                Some(data) => Some(Frame::data(data)),
                None => replay.trailers.take().map(Frame::trailers),
            };
            if replay.data.is_none() && replay.trailers.is_none() {
                *this.replay = None;
            }
            if let Some(frame) = frame {
                return Poll::Ready(Some(Ok(frame)));
            }
        }
        if *this.timed_out {
            return Poll::Ready(None);
        }
        let polled = this.inner.poll_frame(cx);
        if let Some(p) = this.progress.as_ref() {
            use std::sync::atomic::Ordering::Relaxed;
            p.waiting.store(polled.is_pending(), Relaxed);
            if matches!(polled, Poll::Ready(None)) {
                p.ended.store(true, Relaxed);
            }
        }
        match polled {
            Poll::Ready(frame) => {
                *this.armed = false;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let Some(deadline) = this.deadline.as_ref() else { return Poll::Pending };
                let due = || tokio::time::Instant::now() + deadline.after;
                if !*this.armed {
                    *this.armed = true;
                    match this.timer {
                        Some(timer) => timer.as_mut().reset(due()),
                        None => *this.timer = Some(Box::pin(tokio::time::sleep_until(due()))),
                    }
                }
                let timer = this.timer.as_mut().expect("armed above");
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                *this.timed_out = true;
                deadline.expired.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Poll::Ready(Some(Err(Box::new(BodyTimeout(deadline.after)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.replay.is_none() && (self.timed_out || self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let ahead = self.replay.as_ref().and_then(|r| r.data.as_ref()).map_or(0, |d| d.len() as u64);
        let inner = self.inner.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + ahead);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + ahead);
        }
        hint
    }
}

/// The first error of type `E` in `e`'s chain of causes.
pub fn find_cause<'a, E: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a E> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(found) = err.downcast_ref::<E>() {
            return Some(found);
        }
        cur = err.source();
    }
    None
}

/// Whether `e`, or an error it wraps, is a missed body deadline; the
/// deadline if so.
pub fn body_timeout_in(e: &(dyn std::error::Error + 'static)) -> Option<BodyTimeout> {
    find_cause::<BodyTimeout>(e).copied()
}
