//! [`Exchange`]: what a route's stack passes from layer to layer.
//!
//! Route matching turns a request into an exchange; the route's layers
//! (timeout, throttles, auth) read and extend it, and its target (proxy,
//! queue send) consumes it. It carries what the request alone does not: the
//! connection it came on, the normalised path the route matched, and, once
//! the auth layer has verified a token, the token's claims.

use std::sync::Arc;

use http::{Request, Response};
use tower::Service;

use crate::body::{ClientBody, GatewayBody};
use crate::error::BoxHttpError;
use crate::server::ConnInfo;

/// A verified token's claims (the JSON object of its payload).
pub type Claims = serde_json::Map<String, serde_json::Value>;

/// A request on its way through a route's stack.
pub struct Exchange {
    pub request: Request<ClientBody>,
    /// The connection the request came on.
    pub conn: Arc<ConnInfo>,
    /// The normalised path the route matched, when normalising changed it
    /// (otherwise the request's own path is it).
    pub normalized_path: Option<Arc<str>>,
    /// The claims of the request's token, once the route's auth layer has
    /// verified it.
    pub claims: Option<Arc<Claims>>,
}

impl Exchange {
    pub fn new(request: Request<ClientBody>, conn: Arc<ConnInfo>, normalized_path: Option<Arc<str>>) -> Self {
        Self { request, conn, normalized_path, claims: None }
    }

    /// A claim of the verified token as text: strings as they are, numbers
    /// and booleans in their JSON form. `None` without a token, for an
    /// absent claim, or for one that is an object, a list or null.
    pub fn claim_text(&self, name: &str) -> Option<String> {
        claim_text(self.claims.as_deref()?, name)
    }
}

/// `claims[name]` as text; see [`Exchange::claim_text`].
pub fn claim_text(claims: &Claims, name: &str) -> Option<String> {
    match claims.get(name)? {
        serde_json::Value::String(s) => Some(s.clone()),
        v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_)) => Some(v.to_string()),
        _ => None,
    }
}

/// What a route's stack is made of: a service that takes an exchange and
/// answers a response or a typed error, cloned into each request's future
/// (the layers' own services and the targets).
pub trait ExchangeService:
    Service<Exchange, Response = Response<GatewayBody>, Error = BoxHttpError, Future: Send + 'static>
    + Clone
    + Send
    + 'static
{
}

impl<S> ExchangeService for S where
    S: Service<Exchange, Response = Response<GatewayBody>, Error = BoxHttpError, Future: Send + 'static>
        + Clone
        + Send
        + 'static
{
}
