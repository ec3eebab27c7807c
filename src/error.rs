//! The typed-error contract of the request path.
//!
//! A layer that rejects a request returns an error implementing [`HttpError`]:
//! the error says which status and stable code it deserves, and
//! `server::rescue` (the only place that does so) renders it as a JSON body
//! carrying the request id. No layer builds its own error responses.

use http::{HeaderName, HeaderValue, StatusCode};

/// An error that knows the HTTP answer it deserves.
pub trait HttpError: std::error::Error + Send + Sync + 'static {
    fn status(&self) -> StatusCode;

    /// A stable, machine-readable code (`route_not_found`, `upstream_timeout`).
    fn code(&self) -> &'static str;

    /// Fields the JSON body carries besides `error`, `message` and
    /// `request_id` (the rule ids of a WAF block, say).
    fn details(&self) -> Vec<(&'static str, serde_json::Value)> {
        Vec::new()
    }

    /// Extra headers the answer must carry (`Allow` for 405, say).
    fn headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        Vec::new()
    }

    /// Whether the connection must close after this answer (an HTTP/1.1
    /// request whose body was not read to its end cannot be followed by
    /// another on the same connection).
    fn closes_connection(&self) -> bool {
        false
    }
}

/// What the services of the request path fail with.
pub type BoxHttpError = Box<dyn HttpError>;

impl<E: HttpError> From<E> for BoxHttpError {
    fn from(e: E) -> Self {
        Box::new(e)
    }
}
