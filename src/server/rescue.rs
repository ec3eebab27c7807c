//! Rescue: the one place where request-path errors become HTTP responses,
//! and where every response gets its request's `X-Request-Id`.
//!
//! Every rejection (no route, body too large, upstream down, ...) is an
//! [`HttpError`]; [`Rescue`] turns it into a response with the error's status
//! and headers and a JSON body:
//!
//! ```json
//! {"error":"upstream_unavailable","message":"...","request_id":"..."}
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::error::BoxHttpError;
use crate::middleware::request_id::X_REQUEST_ID;

/// Renders `err` as the response a client receives.
pub fn render<B: From<Bytes>>(err: &BoxHttpError, request_id: Option<&HeaderValue>) -> Response<B> {
    let mut body = serde_json::json!({
        "error": err.code(),
        "message": err.to_string(),
    });
    if let Some(id) = request_id.and_then(|v| v.to_str().ok()) {
        body["request_id"] = serde_json::Value::String(id.to_owned());
    }
    for (key, value) in err.details() {
        body[key] = value;
    }
    let mut bytes = serde_json::to_vec(&body).unwrap_or_default();
    bytes.push(b'\n');
    let mut resp = Response::new(B::from(Bytes::from(bytes)));
    *resp.status_mut() = err.status();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for (name, value) in err.headers() {
        headers.append(name, value);
    }
    resp
}

#[derive(Clone, Copy, Debug, Default)]
pub struct RescueLayer;

impl<S> Layer<S> for RescueLayer {
    type Service = Rescue<S>;
    fn layer(&self, inner: S) -> Rescue<S> {
        Rescue { inner }
    }
}

/// Turns `Err(HttpError)` from the inner service into a response, and
/// copies the request's `X-Request-Id` (set by an outer layer) onto every
/// response that does not carry one.
#[derive(Clone, Debug)]
pub struct Rescue<S> {
    inner: S,
}

impl<S, B, RB> Service<Request<B>> for Rescue<S>
where
    S: Service<Request<B>, Response = Response<RB>, Error = BoxHttpError>,
    RB: From<Bytes>,
{
    type Response = Response<RB>;
    type Error = std::convert::Infallible;
    type Future = RescueFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The inner stack is always ready (no layer applies backpressure
        // through poll_ready); an error here would have no request to answer.
        match self.inner.poll_ready(cx) {
            Poll::Ready(_) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let request_id = req.headers().get(X_REQUEST_ID).cloned();
        // HTTP/2 closes a stream, never the connection, for one request.
        let h1 = req.version() <= http::Version::HTTP_11;
        RescueFuture { inner: self.inner.call(req), request_id, h1 }
    }
}

pin_project! {
    pub struct RescueFuture<F> {
        #[pin]
        inner: F,
        request_id: Option<HeaderValue>,
        h1: bool,
    }
}

impl<F, RB> Future for RescueFuture<F>
where
    F: Future<Output = Result<Response<RB>, BoxHttpError>>,
    RB: From<Bytes>,
{
    type Output = Result<Response<RB>, std::convert::Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut resp = match ready!(this.inner.poll(cx)) {
            Ok(resp) => resp,
            Err(err) => {
                let mut resp = render(&err, this.request_id.as_ref());
                if *this.h1 && err.closes_connection() {
                    resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                resp
            }
        };
        if let Some(id) = this.request_id.take() {
            if let http::header::Entry::Vacant(slot) = resp.headers_mut().entry(X_REQUEST_ID) {
                slot.insert(id);
            }
        }
        Poll::Ready(Ok(resp))
    }
}
