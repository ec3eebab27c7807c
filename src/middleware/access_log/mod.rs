//! Access log and request metrics, recorded when a response body ends (or
//! is abandoned), so latency and byte counts cover the whole exchange.
//!
//! Inner layers report what they decided (route, upstream target) through a
//! [`RequestLog`] found in the request's extensions.
//!
//! Log lines go to the `access` tracing target: with the human format they
//! read `GET /api/orders/7 200 route=get-order target=http://… 1.2ms 512B`;
//! with `log.format: json` each is one JSON object.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{ready, Context, Poll};
use std::time::Instant;

use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::metrics::{HttpMetrics, RouteStats};

/// What inner layers learned about a request, for its log line.
#[derive(Debug, Default)]
pub struct RequestLog {
    route: OnceLock<Arc<RouteStats>>,
    target: OnceLock<Arc<str>>,
}

impl RequestLog {
    /// Records the matched route (its metric handles carry its name).
    pub fn set_route(&self, route: &Arc<RouteStats>) {
        let _ = self.route.set(route.clone());
    }

    pub fn set_target(&self, target: &Arc<str>) {
        let _ = self.target.set(target.clone());
    }
}

#[derive(Clone)]
pub struct AccessLogLayer {
    /// Shared: the per-connection stack is cloned for every request, and
    /// `HttpMetrics` holds several reference-counted handles.
    metrics: Arc<HttpMetrics>,
    enabled: bool,
    client: Option<IpAddr>,
}

impl AccessLogLayer {
    /// `enabled` turns the log lines on; metrics are always recorded.
    pub fn new(metrics: HttpMetrics, enabled: bool) -> Self {
        Self { metrics: Arc::new(metrics), enabled, client: None }
    }

    /// The client address logged with each request (the layer is built per
    /// connection).
    pub fn client(mut self, ip: IpAddr) -> Self {
        self.client = Some(ip);
        self
    }
}

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;
    fn layer(&self, inner: S) -> AccessLog<S> {
        AccessLog { inner, metrics: self.metrics.clone(), enabled: self.enabled, client: self.client }
    }
}

#[derive(Clone)]
pub struct AccessLog<S> {
    inner: S,
    metrics: Arc<HttpMetrics>,
    enabled: bool,
    client: Option<IpAddr>,
}

impl<S, B, RB> Service<Request<B>> for AccessLog<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
{
    type Response = Response<LoggedBody<RB>>;
    type Error = S::Error;
    type Future = AccessLogFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let log = Arc::new(RequestLog::default());
        req.extensions_mut().insert(log.clone());
        self.metrics.in_flight.inc();
        // Boxed: the record travels with the response through every layer,
        // and most gateways run without access lines.
        let line = self.enabled.then(|| {
            Box::new(Line {
                method: req.method().clone(),
                uri: req.uri().clone(),
                version: req.version(),
                client: self.client,
                request_id: req.headers().get("x-request-id").cloned(),
            })
        });
        let record = Record {
            start: Instant::now(),
            log,
            metrics: self.metrics.clone(),
            line,
            status: StatusCode::OK,
            bytes: 0,
        };
        AccessLogFuture { inner: self.inner.call(req), record: Some(record) }
    }
}

/// Request facts kept for the log line (only when logging is on).
struct Line {
    method: Method,
    uri: Uri,
    version: Version,
    client: Option<IpAddr>,
    request_id: Option<HeaderValue>,
}

struct Record {
    start: Instant,
    log: Arc<RequestLog>,
    metrics: Arc<HttpMetrics>,
    line: Option<Box<Line>>,
    status: StatusCode,
    bytes: u64,
}

impl Drop for Record {
    /// Emitted exactly once: at the end of the body, or when the body (or the
    /// whole exchange) is dropped early.
    fn drop(&mut self) {
        let elapsed = self.start.elapsed();
        let stats = self.log.route.get().unwrap_or(&self.metrics.unmatched);
        self.metrics.in_flight.dec();
        stats.record(self.status, elapsed.as_secs_f64());
        let Some(line) = &self.line else { return };
        let route = &stats.name;
        let target = self.log.target.get().map(|t| &**t).unwrap_or("-");
        let request_id = line.request_id.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("-");
        let route = if route.is_empty() { "-" } else { route.as_str() };
        tracing::info!(
            target: "access",
            method = %line.method,
            path = %line.uri.path(),
            status = self.status.as_u16(),
            route,
            upstream = target,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            bytes = self.bytes,
            client = %line.client.map(|c| c.to_canonical().to_string()).unwrap_or_default(),
            version = ?line.version,
            request_id,
        );
    }
}

pin_project! {
    pub struct AccessLogFuture<F> {
        #[pin]
        inner: F,
        record: Option<Record>,
    }
}

impl<F, RB, E> Future for AccessLogFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = Result<Response<LoggedBody<RB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let mut record = this.record.take();
        Poll::Ready(result.map(|resp| {
            if let Some(r) = record.as_mut() {
                r.status = resp.status();
            }
            resp.map(|inner| LoggedBody { inner, record })
        }))
    }
}

pin_project! {
    /// A response body that counts its bytes and logs when it ends.
    pub struct LoggedBody<B> {
        #[pin]
        inner: B,
        record: Option<Record>,
    }
}

impl<B: Body> Body for LoggedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(r), Some(data)) = (this.record.as_mut(), frame.data_ref()) {
                    r.bytes += bytes::Buf::remaining(data) as u64;
                }
            }
            Poll::Ready(None | Some(Err(_))) => {
                this.record.take();
            }
            Poll::Pending => {}
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
