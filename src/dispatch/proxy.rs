//! The proxy target: forwards the exchange to the route's upstream.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Response;
use tower::Service;

use crate::body::GatewayBody;
use crate::error::BoxHttpError;
use crate::exchange::Exchange;
use crate::middleware::access_log::RequestLog;
use crate::proxy::{ForwardOptions, Forwarded, Upstream};

use super::RouteFuture;

/// What a proxied route forwards with.
pub struct ProxyRoute {
    pub upstream: Upstream,
    pub strip_prefix: Option<String>,
    pub max_body: u64,
    /// `Upgrade` protocols the route passes through.
    pub upgrades: Vec<String>,
}

#[derive(Clone)]
pub struct ProxyTarget(Arc<ProxyRoute>);

impl ProxyTarget {
    pub fn new(route: ProxyRoute) -> Self {
        Self(Arc::new(route))
    }
}

impl Service<Exchange> for ProxyTarget {
    type Response = Response<GatewayBody>;
    type Error = BoxHttpError;
    /// Boxed: the forwarding future cannot be named, and layers around it
    /// need a type to wrap.
    type Future = RouteFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxHttpError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, exchange: Exchange) -> RouteFuture {
        Box::pin(forward(self.0.clone(), exchange))
    }
}

// Not an `async fn`: it would keep the exchange twice in its state (once
// as the argument, once moved into the body), and every proxied request's
// future is moved into a box (see `Connector::send`).
#[allow(clippy::manual_async_fn)]
fn forward(
    route: Arc<ProxyRoute>,
    ex: Exchange,
) -> impl Future<Output = Result<Response<GatewayBody>, BoxHttpError>> + Send {
    async move {
        let log = ex.request.extensions().get::<Arc<RequestLog>>().cloned();
        let opts = ForwardOptions {
            normalized_path: ex.normalized_path.as_deref(),
            strip_prefix: route.strip_prefix.as_deref(),
            client_ip: &ex.conn.peer_ip,
            tls: ex.conn.tls,
            max_body: route.max_body,
            upgrades: &route.upgrades,
        };
        match route.upstream.forward(ex.request, opts).await {
            Ok(Forwarded { response, target }) => {
                if let Some(log) = &log {
                    log.set_target(&target);
                }
                Ok(response)
            }
            Err(e) => {
                if let (Some(log), Some(t)) = (&log, e.target()) {
                    log.set_target(t);
                }
                Err(e.into())
            }
        }
    }
}
