//! The fixed-answer target of `respond:` routes.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::future::{ready, Ready};
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};
use tower::Service;

use crate::body::GatewayBody;
use crate::config::FixedResponse;
use crate::error::BoxHttpError;
use crate::exchange::Exchange;

/// A `respond:` route's answer, built once.
#[derive(Clone)]
pub struct FixedAnswer(Arc<Answer>);

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl FixedAnswer {
    pub fn new(f: &FixedResponse) -> Self {
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&f.content_type) {
            headers.insert(CONTENT_TYPE, v);
        }
        for (k, v) in &f.headers {
            if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
                headers.append(k, v);
            }
        }
        Self(Arc::new(Answer {
            status: StatusCode::from_u16(f.status).unwrap_or(StatusCode::OK),
            headers,
            body: Bytes::from(f.body.clone()),
        }))
    }

    fn response(&self) -> Response<GatewayBody> {
        let mut r = Response::new(GatewayBody::full(self.0.body.clone()));
        *r.status_mut() = self.0.status;
        *r.headers_mut() = self.0.headers.clone();
        r
    }
}

impl Service<Exchange> for FixedAnswer {
    type Response = Response<GatewayBody>;
    type Error = BoxHttpError;
    type Future = Ready<Result<Response<GatewayBody>, BoxHttpError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxHttpError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Exchange) -> Self::Future {
        ready(Ok(self.response()))
    }
}
