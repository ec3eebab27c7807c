//! [`TimeoutLayer`]: the route's `timeout`, for every kind of route.
//!
//! The deadline covers everything until the response head: the layers
//! below, the wait for an upstream (retries included), a queue's commit.
//! When it passes, the inner future is dropped (which cancels whatever it
//! was doing) and the answer is `504`, unless gatehouse was still waiting
//! for the client's request body: then the client is the one to blame,
//! and the answer is `408` with the connection closed.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use http::StatusCode;
use http_body::Body as _;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::body::BodyProgress;
use crate::config::units::format_duration;
use crate::error::{BoxHttpError, HttpError};
use crate::exchange::Exchange;

/// Who a missed deadline is reported against.
#[derive(Clone, Debug)]
pub enum Waiting {
    /// An upstream, by name (`upstream_timeout`).
    Upstream(Arc<str>),
    /// The route itself (`route_timeout`): a queue commit, a topic publish.
    Route(Arc<str>),
}

#[derive(Clone, Debug)]
pub struct TimeoutLayer {
    after: Duration,
    waiting: Waiting,
}

impl TimeoutLayer {
    pub fn new(after: Duration, waiting: Waiting) -> Self {
        Self { after, waiting }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;
    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout { inner, after: self.after, waiting: self.waiting.clone() }
    }
}

#[derive(Clone, Debug)]
pub struct Timeout<S> {
    inner: S,
    after: Duration,
    waiting: Waiting,
}

/// A missed route deadline.
#[derive(Debug, thiserror::Error)]
pub enum TimeoutError {
    #[error("upstream `{0}` did not answer within {after}", after = format_duration(*.1))]
    Upstream(Arc<str>, Duration),
    #[error("route `{0}` did not finish within {after}", after = format_duration(*.1))]
    Route(Arc<str>, Duration),
    #[error("the client had not sent its whole request body when the route's timeout ({after}) passed", after = format_duration(*.0))]
    BodyIncomplete(Duration),
}

impl HttpError for TimeoutError {
    fn status(&self) -> StatusCode {
        match self {
            TimeoutError::BodyIncomplete(_) => StatusCode::REQUEST_TIMEOUT,
            _ => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            TimeoutError::Upstream(..) => "upstream_timeout",
            TimeoutError::Route(..) => "route_timeout",
            TimeoutError::BodyIncomplete(_) => "body_timeout",
        }
    }

    fn closes_connection(&self) -> bool {
        matches!(self, TimeoutError::BodyIncomplete(_))
    }
}

impl<S, R> Service<Exchange> for Timeout<S>
where
    S: Service<Exchange, Response = R, Error = BoxHttpError>,
{
    type Response = R;
    type Error = BoxHttpError;
    type Future = TimeoutFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxHttpError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut ex: Exchange) -> Self::Future {
        // Watched only when there is a body: most requests have none.
        let body = ex.request.body_mut();
        let progress = (!body.is_end_stream()).then(|| body.watch());
        TimeoutFuture {
            inner: self.inner.call(ex),
            sleep: tokio::time::sleep(self.after),
            progress,
            after: self.after,
            waiting: self.waiting.clone(),
        }
    }
}

pin_project! {
    pub struct TimeoutFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        sleep: tokio::time::Sleep,
        progress: Option<Arc<BodyProgress>>,
        after: Duration,
        waiting: Waiting,
    }
}

impl<F, R> Future for TimeoutFuture<F>
where
    F: Future<Output = Result<R, BoxHttpError>>,
{
    type Output = Result<R, BoxHttpError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.inner.poll(cx) {
            return Poll::Ready(out);
        }
        ready!(this.sleep.poll(cx));
        let after = *this.after;
        let err = if this.progress.as_ref().is_some_and(|p| p.waiting_on_client()) {
            TimeoutError::BodyIncomplete(after)
        } else {
            match this.waiting {
                Waiting::Upstream(name) => TimeoutError::Upstream(name.clone(), after),
                Waiting::Route(name) => TimeoutError::Route(name.clone(), after),
            }
        };
        Poll::Ready(Err(err.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_wait_has_its_own_answer() {
        let after = Duration::from_secs(5);
        let route = TimeoutError::Route("submit".into(), after);
        assert_eq!((route.status(), route.code()), (StatusCode::GATEWAY_TIMEOUT, "route_timeout"));
        assert_eq!(route.to_string(), "route `submit` did not finish within 5s");
        let upstream = TimeoutError::Upstream("orders".into(), Duration::from_millis(1500));
        assert_eq!(upstream.code(), "upstream_timeout");
        assert_eq!(upstream.to_string(), "upstream `orders` did not answer within 1500ms");
        let body = TimeoutError::BodyIncomplete(after);
        assert_eq!((body.status(), body.code()), (StatusCode::REQUEST_TIMEOUT, "body_timeout"));
        assert!(body.closes_connection() && !route.closes_connection());
    }
}
