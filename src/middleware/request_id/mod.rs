//! [`RequestIdLayer`]: every request carries an `X-Request-Id` from here
//! on: the one the client sent, or one the layer's [`MakeRequestId`] makes
//! (gatehouse's: [`RandomRequestId`]). The access log, error bodies and the
//! upstream see it; `server::rescue` copies it onto the response.
//!
//! A request whose id the gateway made carries [`OwnRequestId`]: layers
//! that inspect what the client sent (the WAF) leave that header out. It is
//! new on every request, so inspecting it would cost a full check each
//! time and could never find what a client put there.
//!
//! tower-http's `SetRequestId` does the same with its own extension
//! (`RequestId`, which nothing here reads) but cannot say whose the id is;
//! this layer keeps its [`MakeRequestId`] interface.

use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request};
use tower::{Layer, Service};
pub use tower_http::request_id::{MakeRequestId, RequestId};

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Marks a request whose `X-Request-Id` the gateway made.
#[derive(Clone, Copy, Debug)]
pub struct OwnRequestId;

/// Whether the gateway made the request's `X-Request-Id` (the client sent
/// none).
pub fn is_own<B>(request: &Request<B>) -> bool {
    request.extensions().get::<OwnRequestId>().is_some()
}

#[derive(Clone, Copy, Debug)]
pub struct RequestIdLayer<M> {
    make: M,
}

impl<M> RequestIdLayer<M> {
    pub fn new(make: M) -> Self {
        Self { make }
    }
}

impl<S, M: Clone> Layer<S> for RequestIdLayer<M> {
    type Service = SetRequestId<S, M>;
    fn layer(&self, inner: S) -> SetRequestId<S, M> {
        SetRequestId { inner, make: self.make.clone() }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct SetRequestId<S, M> {
    inner: S,
    make: M,
}

impl<S, M, B> Service<Request<B>> for SetRequestId<S, M>
where
    S: Service<Request<B>>,
    M: MakeRequestId,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> S::Future {
        if !req.headers().contains_key(X_REQUEST_ID) {
            if let Some(id) = self.make.make_request_id(&req) {
                req.headers_mut().insert(X_REQUEST_ID, id.into_header_value());
                req.extensions_mut().insert(OwnRequestId);
            }
        }
        self.inner.call(req)
    }
}

/// Request ids: 128 random bits as 32 hex digits.
#[derive(Clone, Copy, Debug, Default)]
pub struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut n = fastrand::u128(..);
        let mut out = [0u8; 32];
        for b in out.iter_mut().rev() {
            *b = HEX[(n & 0xf) as usize];
            n >>= 4;
        }
        // One allocation that every clone (header, log) shares;
        // `from_bytes` would copy into a buffer that the first clone then
        // moves into a second, shared one.
        HeaderValue::from_maybe_shared(Bytes::from_owner(out)).ok().map(RequestId::new)
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;

    /// The request as the next layer sees it: its id, and whether it is
    /// the gateway's.
    async fn seen(req: Request<()>) -> (String, bool) {
        let inner = tower::service_fn(|req: Request<()>| async move {
            let id = req.headers()[X_REQUEST_ID].to_str().unwrap().to_owned();
            Ok::<_, Infallible>((id, is_own(&req)))
        });
        let mut svc = RequestIdLayer::new(RandomRequestId).layer(inner);
        svc.call(req).await.unwrap()
    }

    #[tokio::test]
    async fn a_client_id_is_kept_and_a_missing_one_made_and_marked() {
        let sent = Request::builder().header("x-request-id", "client-chosen").body(()).unwrap();
        assert_eq!(seen(sent).await, ("client-chosen".to_owned(), false));
        let (a, own) = seen(Request::new(())).await;
        assert!(own);
        assert!(a.len() == 32 && a.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{a}");
        assert_ne!(seen(Request::new(())).await.0, a, "a new one each time");
    }
}
